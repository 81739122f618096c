"""The release this code is, in one place that every layer can import without loading the public API."""

__version__ = "0.1.0"
