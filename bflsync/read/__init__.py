"""The read side: the filter language, its SQL for SQLite and PostgreSQL, and the readers."""
