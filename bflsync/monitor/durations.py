"""Durations people type for ``status --max-age`` and ``schedule --every``: ``90s``, ``15m``, ``2h``, ``1d``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import timedelta

from bflsync.errors import InputError

_PART = re.compile(r"(\d{1,7})(min|s|m|h|d|w)")
_UNITS = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "min": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
FORMS = "90s, 15m, 2h, 1d, 1w, 1h30m"


def parse_duration(text: str, *, option: str) -> timedelta:
    """``text`` as a positive duration, or InputError (exit 2) naming ``option`` and the forms accepted."""
    spelled = text.strip().lower().replace(" ", "")
    parts = list(_PART.finditer(spelled))
    if not parts or "".join(part[0] for part in parts) != spelled:
        raise InputError(f"{option} {text!r}: expected a duration such as {FORMS}")
    try:
        total = sum((int(part[1]) * _UNITS[part[2]] for part in parts), timedelta())
    except OverflowError:  # past timedelta's billion days: many parts of seven digits each
        raise InputError(f"{option} {text!r}: too long a duration") from None
    if total <= timedelta():
        raise InputError(f"{option} {text!r}: the duration must be more than zero")
    return total


def spell_duration(duration: timedelta) -> str:
    """``duration`` the way people write it: ``2h``, ``1h30m``, ``45s``, ``3d4h`` (whole seconds)."""
    seconds = int(duration.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts) or "0s"
