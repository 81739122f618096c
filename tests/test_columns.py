"""The read side's column catalogue is the ``finetune`` table, name for name and type for type."""

from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa

from bflsync.columns import COLUMN_NAMES, ERROR_FIELDS, RECORD_COLUMNS, RUN_FIELDS, Kind
from bflsync.store.schema import Finetune, SyncError, SyncRun, UTCDateTime

# Columns the table holds that are not part of a record: the key and the raw JSON itself.
NOT_RECORD_COLUMNS = {"id", "details"}


def kind_of(column: sa.Column[object]) -> Kind:
    if isinstance(column.type, UTCDateTime):
        return Kind.TIME
    if isinstance(column.type, sa.Boolean):
        return Kind.BOOL
    if isinstance(column.type, sa.Integer | sa.Float):
        return Kind.NUMBER
    return Kind.TEXT


def test_the_catalogue_names_every_column_of_the_finetune_table_once() -> None:
    table: sa.Table = Finetune.__table__  # type: ignore[attr-defined]
    assert len(set(COLUMN_NAMES)) == len(COLUMN_NAMES)
    assert set(COLUMN_NAMES) == set(table.c.keys()) - NOT_RECORD_COLUMNS


def test_each_catalogue_kind_matches_the_column_type() -> None:
    table: sa.Table = Finetune.__table__  # type: ignore[attr-defined]
    assert {column.name: column.kind for column in RECORD_COLUMNS} == {
        name: kind_of(table.c[name]) for name in COLUMN_NAMES
    }


def test_the_catalogue_imports_no_sqlalchemy() -> None:
    script = "import sys, bflsync.columns; print('sqlalchemy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout == "False\n"


def test_runs_and_their_errors_list_the_model_columns_in_the_model_order() -> None:
    run_table: sa.Table = SyncRun.__table__  # type: ignore[attr-defined]
    error_table: sa.Table = SyncError.__table__  # type: ignore[attr-defined]
    assert list(RUN_FIELDS) == list(run_table.c.keys())
    assert list(ERROR_FIELDS) == list(error_table.c.keys())
