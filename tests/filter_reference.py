"""The filter language's semantics for one JSON value, written apart from bflsync.query.

The property tests of details keys and of labels compare bflsync's answers with this reference.
"""

from __future__ import annotations

from typing import Any

from bflsync.extract import as_float


def number(value: Any) -> float | None:
    """A JSON value as a number the way the spec says: numbers and numeric strings, never booleans."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    return as_float(value) if isinstance(value, str) else None


def value_matches(found: Any, op: str, value: Any) -> bool:
    """Whether a stored value ``found`` (None when missing) satisfies ``op value``."""
    if op == "!=":
        return not value_matches(found, "=", value)
    if op == "~":
        return isinstance(found, str) and str(value).casefold() in found.casefold()
    if value is None:
        return found is None
    if isinstance(value, bool):
        return found is value
    if isinstance(value, str):
        return isinstance(found, str) and _compare(op, found, value)
    as_number = number(found)
    return as_number is not None and _compare(op, as_number, value)


def _compare(op: str, left: Any, right: Any) -> bool:
    return {
        "=": left == right,
        "<": left < right,
        "<=": left <= right,
        ">": left > right,
        ">=": left >= right,
    }[op]
