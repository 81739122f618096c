"""The store: its tables, where it lives and how to open it, migrations' helpers, the lock, and the writes."""
