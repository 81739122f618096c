"""One vocabulary for what differs: how ``diff``, ``compare`` and ``history`` print a field, a value and a change.

Read side by side, the three answer the same question ("what is different here?"), so a change
must look the same in each, or people compare spellings instead of values:

* a field is a leaf's key path in filter syntax (``extra.n``, ``label.project``), named as the
  column where an extracted column reads it (``remote_timestamp``, not ``timestamp``): any name
  printed pastes back into a filter or ``--columns`` (:func:`bflsync.read.filters.field_name`);
* a value is its compact canonical JSON, strings quoted (``"acme"``, ``300``, ``"300"``,
  ``null``), so text that looks like a number and a JSON null stay told apart;
* a value a side does not have is ``(missing)``;
* a change is ``field: old → new``.

Machine formats (json, jsonl, csv) keep the values typed; this is the text people read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from bflsync.cli.render import json_for_terminal, one_line
from bflsync.extract import MISSING, canonical_json, flatten_details
from bflsync.read.filters import field_name

MISSING_TEXT: Final = "(missing)"
ARROW: Final = "→"
# The header of the column naming the field, in every table that lists fields.
FIELD_HEADER: Final = "field"


def field_text(path: Sequence[str]) -> str:
    """A details key path as printed: its one name, safe for one terminal line."""
    return one_line(field_name(path))


def value_text(value: Any) -> str:
    """A value as printed: compact canonical JSON; :data:`MISSING` as ``(missing)``."""
    return MISSING_TEXT if value is MISSING else json_for_terminal(canonical_json(value))


def change_text(field: str, old: Any, new: Any) -> str:
    """``field: old → new``; pass :data:`MISSING` for a side without the value."""
    return f"{field}: {value_text(old)} {ARROW} {value_text(new)}"


def leaf_changes(key: str, change: Mapping[str, Any]) -> list[str]:
    """A changed top-level key (``{"old": ..., "new": ...}``, a missing side left out) as one change
    per differing leaf, the way ``diff`` compares nested objects."""
    old = flatten_details(change["old"], (key,)) if "old" in change else {}
    new = flatten_details(change["new"], (key,)) if "new" in change else {}
    return [
        change_text(field_text(path), old.get(path, MISSING), new.get(path, MISSING))
        for path in sorted(old.keys() | new.keys())
        if path not in old or path not in new or canonical_json(old[path]) != canonical_json(new[path])
    ]
