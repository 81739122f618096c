"""Times people type: ``7d``, ``12h``, ``90m``, ``2w``, ``30s`` (ago), ``now``, ``today``, ``yesterday``.

Pure: the moment they are relative to is passed in (``now``, aware UTC). ``today`` and
``yesterday`` are midnight UTC, like every timestamp bflsync stores and prints. ISO 8601 dates
and datetimes are not handled here: callers try this first and fall back to ISO parsing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_AMOUNT = re.compile(r"(\d{1,7})\s*(s|sec|secs|m|min|mins|h|hr|hrs|d|day|days|w|wk|week|weeks)(?:\s+ago)?")
_UNITS = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
FORMS = "7d, 12h, 90m, 2w, 30s (ago), now, today, yesterday"


def parse_relative(text: str, *, now: datetime) -> datetime | None:
    """The moment ``text`` names relative to ``now``, or None when it is not a relative form."""
    word = text.strip().lower()
    if word == "now":
        return now
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if word == "today":
        return midnight
    if word == "yesterday":
        return midnight - timedelta(days=1)
    match = _AMOUNT.fullmatch(word)
    if match is None:
        return None
    amount, unit = int(match.group(1)), match.group(2)
    step = _UNITS["m" if unit.startswith("mi") or unit == "m" else unit[0]]
    return now - amount * step
