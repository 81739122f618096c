"""The one form of a timestamp bflsync stores and prints: ``2026-12-04T13:18:17.637556Z``.

ISO 8601 in UTC with a ``T``, always six fractional digits and a ``Z``: fixed width, so text
comparison orders it correctly, and what the CLI prints is exactly what the store holds, so a
printed time pasted into SQL (sqlite3, sqlite-utils, Datasette, DuckDB, psql) finds the same rows.
SQLite keeps it as text; PostgreSQL as ``timestamptz``, which reads the same text.
"""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
SQLITE_STORAGE_FORMAT = (
    "%(year)04d-%(month)02d-%(day)02dT%(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06dZ"
)
"""The same form in SQLAlchemy's SQLite ``DATETIME(storage_format=...)`` spelling."""
SQLITE_REGEXP = r"(\d+)-(\d+)-(\d+)[T ](\d+):(\d+):(\d+)(?:\.(\d{6}))?"
"""Reads the form back (and the space-separated text written before revision 0011_iso_times)."""


def iso_utc(moment: datetime) -> str:
    """``moment`` (aware) in the one form; a naive datetime is taken to be UTC."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(FORMAT)


def parse_utc(text: str) -> datetime:
    """Stored or printed text back to an aware UTC datetime (any ISO 8601 form; naive means UTC)."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
