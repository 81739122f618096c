"""The parameter x finetune matrix of ``bflsync compare``: pure functions over plain values.

``diff`` answers "what differs between these two"; after training a few variants the question
is "what differs between the one that worked and the others", for any number of them. Each
finetune (or version of one) is a :class:`Entry` holding its record's columns, its raw
details and its labels; :func:`matrix` lines them up field by field, and ``only_changed``
keeps the fields whose values differ. How the entries were read is the caller's business.

Fields are named as in filters and ``--columns``: a column (``mode``, typed as extraction made
it, so ``"300"`` and ``300`` do not count as a difference), a details key (dotted for nested
objects), or ``label.KEY``. A field an entry does not have is :data:`MISSING` there, which
differs from a JSON null.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bflsync.extract import EXTRACTED_FIELDS, MISSING, canonical_json, flatten_details

_SOURCE_KEYS = {column: key for column, (key, _) in EXTRACTED_FIELDS.items()}

# Record columns shown by default after the extracted ones, when any entry has a value.
OPTIONAL_COLUMNS = ("status",)


@dataclass(frozen=True, slots=True)
class Entry:
    """One finetune as compared: a column of the matrix, headed ``heading`` (``ID`` or ``ID@VERSION``)."""

    heading: str
    finetune_id: str
    source: str
    account: str
    version: int
    columns: Mapping[str, Any]
    details: Any
    labels: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Field:
    """A row of the matrix: a record column, a key path into the details, or a label."""

    name: str
    column: str | None = None
    path: tuple[str, ...] = ()
    label: str | None = None

    def value(self, entry: Entry) -> Any:
        if self.label is not None:
            return entry.labels.get(self.label, MISSING)
        if self.column is not None:
            # An extracted column of a key the details lack is missing there, as diff says, not null.
            key = _SOURCE_KEYS.get(self.column)
            if key is not None and isinstance(entry.details, Mapping) and key not in entry.details:
                return MISSING
            return entry.columns.get(self.column, MISSING)
        value = entry.details
        for key in self.path:
            if not isinstance(value, Mapping) or key not in value:
                return MISSING
            value = value[key]
        return value


@dataclass(frozen=True, slots=True)
class Row:
    field: Field
    values: list[Any]
    changed: bool


@dataclass(frozen=True, slots=True)
class Matrix:
    entries: list[Entry]
    rows: list[Row]


def default_fields(
    entries: Sequence[Entry], *, name_of_path: Callable[[tuple[str, ...]], str]
) -> list[Field]:
    """Extracted columns, recorded optional columns, the other details keys, then labels.

    ``name_of_path`` renders a key path in filter syntax (backticks where needed). A details
    key that an extracted column is derived from is shown once, as that column.
    """
    fields = [Field(name=name, column=name) for name in EXTRACTED_FIELDS]
    fields += [
        Field(name=name, column=name)
        for name in OPTIONAL_COLUMNS
        if any(entry.columns.get(name) is not None for entry in entries)
    ]
    extracted_keys = {key for key, _ in EXTRACTED_FIELDS.values()}
    paths: dict[tuple[str, ...], None] = {}
    for entry in entries:
        for path in flatten_details(entry.details):
            if path and path[0] not in extracted_keys:
                paths.setdefault(path)
    fields += [Field(name=name_of_path(path), path=path) for path in sorted(paths)]
    keys = sorted({key for entry in entries for key in entry.labels})
    fields += [Field(name=f"label.{key}", label=key) for key in keys]
    return fields


def matrix(entries: Sequence[Entry], fields: Sequence[Field], *, only_changed: bool = False) -> Matrix:
    """One row per field, one value per entry; ``only_changed`` keeps rows whose values differ."""
    rows = []
    for item in fields:
        values = [item.value(entry) for entry in entries]
        changed = len({_identity(value) for value in values}) > 1
        if changed or not only_changed:
            rows.append(Row(field=item, values=values, changed=changed))
    return Matrix(entries=list(entries), rows=rows)


def _identity(value: Any) -> str | None:
    return None if value is MISSING else canonical_json(value)
