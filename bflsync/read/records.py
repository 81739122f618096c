"""A finetune as the read side answers it, decoded lazily from a result row of either database.

Timestamps come back from SQLite as the naive-UTC text the store keeps and from PostgreSQL
as aware datetimes; both become aware UTC here. Details that a strict JSON reader refuses
(``NaN`` or ``Infinity`` written by another tool) decode with those values as ``null``, and
the record says so, so output stays valid JSON and the CLI can name the finetune.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bflsync.columns import COLUMN_KINDS, COLUMN_NAMES, Kind
from bflsync.errors import StoredValueError
from bflsync.read.label_reads import decode_labels, utc

if TYPE_CHECKING:
    from bflsync.read.filters import FieldRef

DETAILS = "details"
LABELS = "labels"
"""Not a column of ``finetune``: the finetune's labels (``finetune_label``) as one JSON object."""
# Every column a record can hold, in row order: the catalogue, the raw details, the labels.
ALL_COLUMNS: tuple[str, ...] = (*COLUMN_NAMES, DETAILS, LABELS)


def decode_time(value: str | datetime | None) -> datetime | None:
    """A stored timestamp as aware UTC (SQLite: naive-UTC text; PostgreSQL: an aware datetime)."""
    return None if value is None else utc(value)


def decode_value(kind: Kind, value: Any) -> Any:
    """A column value as Python: timestamps aware UTC, booleans bool (SQLite keeps 0 and 1)."""
    if kind is Kind.TIME:
        return decode_time(value)
    if kind is Kind.BOOL and value is not None:
        return bool(value)
    return value


class _NonFinite:
    """``json.loads`` hook: note a NaN or Infinity constant and read it as null."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, _constant: str) -> None:
        self.seen = True


def decode_details(text: str | None) -> tuple[Any, bool]:
    """Parsed details and whether they held NaN/Infinity (read as null: JSON has no such numbers)."""
    if text is None:
        return None, False

    hook = _NonFinite()
    return json.loads(text, parse_constant=hook), hook.seen


def lookup(details: Any, path: Sequence[str]) -> Any:
    """The value at a key path of parsed details, ``None`` when any step is missing."""
    value = details
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


class FinetuneRecord:
    """One finetune as a query answers it: current state, or its state at ``--as-of``.

    A view over the result row holding only the columns the output needs (``columns``
    names them in row order), decoding a value only when it is read.
    """

    __slots__ = ("_details", "_index", "_values")

    def __init__(self, values: Sequence[Any], index: Mapping[str, int]) -> None:
        self._values = values
        self._index = index
        self._details: tuple[Any, bool] | None = None

    @property
    def finetune_id(self) -> str:
        return str(self._values[self._index["finetune_id"]])

    @property
    def source(self) -> str:
        return str(self._values[self._index["source"]])

    @property
    def account(self) -> str:
        return str(self._values[self._index["account"]])

    @property
    def version(self) -> int:
        return int(self._values[self._index["version"]])

    @property
    def deleted_at(self) -> datetime | None:
        return decode_time(self._values[self._index["deleted_at"]])

    @property
    def details(self) -> Any:
        return self._decoded()[0]

    @property
    def details_not_json(self) -> bool:
        """Whether the stored details held NaN or Infinity, shown as null."""
        return DETAILS in self._index and self._decoded()[1]

    @property
    def labels(self) -> dict[str, Any]:
        """The finetune's current labels (``bflsync label``), keys sorted."""
        return decode_labels(self._values[self._index[LABELS]])

    def _decoded(self) -> tuple[Any, bool]:
        if self._details is None:
            try:
                self._details = decode_details(self._values[self._index[DETAILS]])
            except RecursionError:
                raise StoredValueError(
                    f"the stored details of finetune {self.finetune_id!r} nest too deeply for bflsync to read"
                ) from None
        return self._details

    def column(self, name: str) -> Any:
        """The value of a column (see :data:`bflsync.columns.RECORD_COLUMNS`), decoded."""
        return decode_value(COLUMN_KINDS[name], self._values[self._index[name]])

    def value(self, field: FieldRef) -> Any:
        """The field's value, ``None`` when missing; details keys are looked up in the raw JSON."""
        if field.column is not None:
            return self.column(field.column)
        if field.label is not None:
            return self.labels.get(field.label)
        return lookup(self.details, field.path)

    def as_dict(self) -> dict[str, Any]:
        """The documented output record: ids, extracted fields, bookkeeping, raw details, labels."""
        return {
            **{name: self.column(name) for name in COLUMN_NAMES},
            DETAILS: self.details,
            LABELS: self.labels,
        }


def record_index(columns: Sequence[str]) -> dict[str, int]:
    return {name: position for position, name in enumerate(columns)}
