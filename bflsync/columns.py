"""The catalogue of a finetune record's columns: one list, readable without SQLAlchemy.

Everything on the read side that names a column (the filter compiler, the record a query
returns, the JSON and CSV output, completion) takes it from :data:`RECORD_COLUMNS`, so adding
a column to ``finetune`` is one line here (plus the model and its migration); a test keeps
this list equal to the ``finetune`` table's columns. The fields ``extract.py`` derives from
the raw details are listed in :data:`bflsync.extract.EXTRACTED_FIELDS` and spliced in.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, NamedTuple

from bflsync.extract import EXTRACTED_FIELDS, as_bool, as_float, as_int


class Kind(enum.Enum):
    """How a column's values compare: a filter's value is typed by its column's kind."""

    TEXT = "text"
    NUMBER = "number"
    BOOL = "bool"
    TIME = "time"


class Column(NamedTuple):
    name: str
    kind: Kind


def _kind_of(convert: Callable[[Any], Any]) -> Kind:
    if convert is as_bool:
        return Kind.BOOL
    if convert in (as_int, as_float):
        return Kind.NUMBER
    return Kind.TEXT


# The training status as get_result last reported it (NULL: no sync has asked yet).
LIFECYCLE: dict[str, Kind] = {
    "status": Kind.TEXT,
    "progress": Kind.NUMBER,
    "status_checked_at": Kind.TIME,
    "ready_at": Kind.TIME,
}
LIFECYCLE_COLUMNS: tuple[str, ...] = tuple(LIFECYCLE)

# In the order of a record's row and of its JSON object; `details` follows them.
RECORD_COLUMNS: tuple[Column, ...] = (
    Column("finetune_id", Kind.TEXT),
    Column("source", Kind.TEXT),
    Column("account", Kind.TEXT),
    *(Column(name, _kind_of(convert)) for name, (_key, convert) in EXTRACTED_FIELDS.items()),
    Column("version", Kind.NUMBER),
    Column("content_hash", Kind.TEXT),
    Column("first_seen_at", Kind.TIME),
    Column("last_seen_at", Kind.TIME),
    Column("last_changed_at", Kind.TIME),
    Column("deleted_at", Kind.TIME),
    *(Column(name, kind) for name, kind in LIFECYCLE.items()),
)
COLUMN_NAMES: tuple[str, ...] = tuple(column.name for column in RECORD_COLUMNS)
COLUMN_KINDS: dict[str, Kind] = {column.name: column.kind for column in RECORD_COLUMNS}

# The counters of a sync run, in the order of its JSON, of the runs table and of `sync_run`.
RUN_COUNTERS = (
    "listed",
    "fetched",
    "created",
    "updated",
    "unchanged",
    "deleted",
    "restored",
    "failed",
    "status_failed",
)
# The columns of `sync_run` in the model's order: the order of `runs` JSON keys and CSV columns,
# whatever order migrations added them to a table in (a test keeps this equal to the model).
RUN_FIELDS = (
    "id",
    "started_at",
    "finished_at",
    "status",
    "source",
    "account",
    "key_changed",
    "pid",
    "bflsync_version",
    *RUN_COUNTERS,
    "credits",
    "error",
    "chain_seq",
    "row_hash",
)
ERROR_FIELDS = ("id", "sync_run_id", "finetune_id", "kind", "http_status", "message", "attempts")
