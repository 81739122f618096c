"""Pure functions from a raw ``finetune_details`` object to what the store indexes.

The raw JSON is the source of truth; everything here can be recomputed from it at any time
(``bflsync db reextract``). Nothing here does I/O and nothing raises on odd input: a value
that cannot be converted without losing information becomes ``None``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from bflsync.timeform import iso_utc, parse_utc

if TYPE_CHECKING:
    import json

# SQLite stores integers as signed 64-bit; anything wider would not round-trip or bind.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# ASCII digits only: int() and float() also accept Arabic-Indic or fullwidth digits, which no API means.
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@cache
def _canonical_encoder() -> json.JSONEncoder:
    """One encoder for every call: json.dumps would build a new one each time for these options,
    a noticeable share of storing tens of thousands of finetunes. Built on first use, so the
    read commands that never encode JSON do not import it."""
    import json

    return json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


# Integers up to 2**53 are exactly representable as doubles, so such a float and the integer
# are the same JSON number however the server spells it; beyond that the float keeps its form.
_EXACT_INTEGRAL_FLOAT = 2.0**53


def canonical_json(value: Any) -> str:
    """One text per JSON value: sorted keys, compact separators, UTF-8 kept as is, one number form.

    Two payloads that differ only in key order, whitespace or the spelling of a number
    (``300`` / ``300.0``, ``0`` / ``-0.0``) give the same text, so the content hash changes
    only when the content does. An integral float of magnitude up to 2**53 is written as an
    integer; other floats as Python's shortest round-trip form (``1e-05``, ``1e+300``).
    """
    encoder = _canonical_encoder()
    text = encoder.encode(value)
    # A float written "300.0" or "-0.0" always contains ".0": most payloads skip the second pass.
    if ".0" not in text:
        return text
    return encoder.encode(_canonical_numbers(value))


def _canonical_numbers(value: Any) -> Any:
    if isinstance(value, float):
        if value.is_integer() and abs(value) <= _EXACT_INTEGRAL_FLOAT:
            return int(value)
        return value
    if isinstance(value, dict):
        return {key: _canonical_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical_numbers(item) for item in value]
    return value


def content_hash(details: Any) -> str:
    """SHA-256 of the canonical JSON, the change detector for audit versions."""
    return hash_canonical(canonical_json(details))


def hash_canonical(canonical: str) -> str:
    """:func:`content_hash` of a value whose canonical JSON the caller already has."""
    import hashlib  # here, not at the top: the read path imports this module and never hashes

    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def storable_text(text: str) -> str:
    """``text`` with U+0000 replaced by U+FFFD, the form every text column outside ``details`` takes.

    PostgreSQL's ``text`` cannot hold NUL at all; SQLite can, but then the same finetune would read
    back differently from the two engines. ``details`` is untouched: its canonical JSON keeps the
    ``\\u0000`` escape, so the raw record and its content hash stay exactly what the API sent.
    """
    return text.replace("\x00", "\ufffd")


def without_nul(value: Any) -> Any:
    """A JSON value with U+0000 replaced by U+FFFD in every string and key: what ``jsonb`` can hold.

    PostgreSQL's ``jsonb`` refuses the ``\\u0000`` escape, so its copy of the details (for JSON
    filters) takes this form, computed from the parsed value: replacing the six characters
    ``\\u0000`` in JSON text would also hit an escaped backslash followed by ``u0000``. Two keys that
    differ only by NUL against U+FFFD collapse into one, the later in key order winning.
    """
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, Mapping):
        return {storable_text(key): without_nul(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value


def as_text(value: Any) -> str | None:
    return storable_text(value) if isinstance(value, str) else None


def as_int(value: Any) -> int | None:
    """Integers, integral floats ("300", 300.0, "3e2") and nothing that would lose information."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number: int | float = value
    elif isinstance(value, float):
        number = value
    elif isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            number = float(text)
    else:
        return None
    if isinstance(number, float):
        if not math.isfinite(number) or not number.is_integer():
            return None
        number = int(number)
    return number if INT64_MIN <= number <= INT64_MAX else None


def as_float(value: Any) -> float | None:
    """Finite numbers and numeric strings ("1e-5"); booleans, NaN and infinities are not rates."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if not _NUMBER_TEXT.fullmatch(value.strip()):
            return None
        value = value.strip()
    if not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def as_bool(value: Any) -> bool | None:
    """JSON booleans, the strings "true"/"false" (any case) and the integers 0/1."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return None


def as_timestamp_text(value: Any) -> str | None:
    """The ``timestamp`` key in the one time form (:mod:`bflsync.timeform`) when it reads as a time.

    BFL has sent ISO 8601 with and without a zone (naive means UTC) and epoch seconds; each becomes
    ``2026-03-01T12:00:00.000000Z``, so ``remote_timestamp`` compares in SQL like every other time.
    Text that is no time is kept verbatim (NUL aside); other types are null.
    """
    if isinstance(value, str):
        try:
            return iso_utc(parse_utc(value.strip()))
        except (ValueError, OverflowError):
            return storable_text(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        try:
            return iso_utc(datetime.fromtimestamp(value, UTC))
        except (ValueError, OverflowError, OSError):
            import json

            return json.dumps(value)
    return None


# Extracted column -> (key in finetune_details, converter). Adding a column starts here.
EXTRACTED_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "finetune_comment": ("finetune_comment", as_text),
    "trigger_word": ("trigger_word", as_text),
    "mode": ("mode", as_text),
    "finetune_type": ("finetune_type", as_text),
    "priority": ("priority", as_text),
    "iterations": ("iterations", as_int),
    "lora_rank": ("lora_rank", as_int),
    "learning_rate": ("learning_rate", as_float),
    "captioning": ("captioning", as_bool),
    "remote_timestamp": ("timestamp", as_timestamp_text),
}


def extract_fields(details: Any) -> dict[str, Any]:
    """Typed column values for one finetune; every column present, ``None`` where unusable."""
    source: Mapping[str, Any] = details if isinstance(details, Mapping) else {}
    return {column: convert(source.get(key)) for column, (key, convert) in EXTRACTED_FIELDS.items()}


def changed_keys(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """Sorted top-level keys whose value differs, counting added and removed keys.

    Values are compared by their canonical JSON, so a key counts as changed exactly when it
    changes the content hash (reordered nested objects do not).
    """
    before = old or {}
    after = new or {}
    return sorted(
        key
        for key in before.keys() | after.keys()
        if key not in before or key not in after or canonical_json(before[key]) != canonical_json(after[key])
    )


class _Missing:
    """The value of a field one side of a comparison does not have (neither null nor absent-as-null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""What a details leaf, column or label is on a side that lacks it: ``compare``, ``diff`` and ``history`` print it ``(missing)``."""


def flatten_details(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Each leaf of nested objects by its key path; an empty object nested inside is a leaf too.

    The one flattening of details: ``diff`` compares leaves, so a change deep inside ``extra``
    shows where it is, and ``compare`` makes a field of each path.
    """
    if not isinstance(value, Mapping) or (prefix and not value):
        return {prefix: value}
    flat: dict[tuple[str, ...], Any] = {}
    for key, item in value.items():
        flat.update(flatten_details(item, (*prefix, key)))
    return flat
