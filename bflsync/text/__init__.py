"""Tokenising and case folding for ``--text`` and ``~``, the same on both engines."""
