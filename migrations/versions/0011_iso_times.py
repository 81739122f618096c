"""One time form: every stored timestamp in ``2026-12-04T13:18:17.637556Z``; label values as plain text.

What the CLI prints is what the store holds, so a printed time pasted into SQL finds the same
rows (:mod:`bflsync.timeform`).

* SQLite keeps times as text: each time column is rewritten from SQLAlchemy's former
  ``2026-12-04 13:18:17.637556`` (or any other ISO 8601 text another tool wrote) to the one form.
  PostgreSQL keeps ``timestamptz``, which already compares with that text: nothing to rewrite.
* ``finetune.remote_timestamp`` (the ``timestamp`` BFL reports) is recomputed from the stored
  details in the one form where it reads as a time, on both engines.
* ``finetune_label.value`` becomes the value as people write it (``acme``, not ``"acme"``), so
  ``value='acme'`` finds it; the canonical JSON the queries compare moves to a new
  ``value_json`` column.

The downgrade writes every one of them back as it was.

Revision ID: 0011_iso_times
Revises: 0009_search_text
Create Date: 2026-12-04 16:00:00
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from alembic import op
import sqlalchemy as sa

from bflsync.extract import as_timestamp_text


revision: str = "0011_iso_times"
down_revision: str | None = "0013_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    "finetune": (
        "first_seen_at",
        "last_seen_at",
        "last_changed_at",
        "deleted_at",
        "status_checked_at",
        "ready_at",
    ),
    "finetune_version": ("observed_at",),
    "finetune_status": ("observed_at",),
    "sync_run": ("started_at", "finished_at"),
    "account": ("first_synced_at", "last_synced_at"),
    "finetune_label": ("set_at",),
    "finetune_label_change": ("changed_at",),
    "finetune_note": ("written_at",),
}
# The one form, as a GLOB pattern: rows already in it are left alone.
_ISO = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9]Z"
PAGE = 2000


def _iso(text: str) -> str | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _sqlalchemy_sqlite(text: str) -> str:
    """The one form back to what SQLAlchemy's SQLite DateTime wrote before (naive UTC, a space)."""
    return text[:10] + " " + text[11:26]


def _rewrite_times(*, upgrade: bool) -> None:
    bind = op.get_bind()
    for table, columns in TIME_COLUMNS.items():
        for column in columns:
            if upgrade:
                rows = bind.exec_driver_sql(
                    f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL AND {column} NOT GLOB ?",
                    (_ISO,),
                ).all()
                changes = [(new, pk) for pk, old in rows if (new := _iso(str(old))) is not None]
            else:
                rows = bind.exec_driver_sql(
                    f"SELECT id, {column} FROM {table} WHERE {column} GLOB ?", (_ISO,)
                ).all()
                changes = [(_sqlalchemy_sqlite(old), pk) for pk, old in rows]
            if changes:
                bind.exec_driver_sql(f"UPDATE {table} SET {column} = ? WHERE id = ?", changes)


def _old_timestamp_text(value: Any) -> str | None:
    """``remote_timestamp`` as revisions up to 0009 wrote it: strings verbatim, epoch numbers as JSON."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value == value
        and abs(value) != float("inf")
    ):
        return json.dumps(value)
    return None


def _rewrite_remote_timestamps(*, upgrade: bool) -> None:
    table = sa.table(
        "finetune",
        sa.column("id", sa.Integer),
        sa.column("details", sa.Text),
        sa.column("remote_timestamp", sa.String),
    )
    bind = op.get_bind()
    convert = as_timestamp_text if upgrade else _old_timestamp_text
    last = 0
    while True:
        rows = bind.execute(
            sa.select(table.c.id, table.c.details, table.c.remote_timestamp)
            .where(table.c.id > last)
            .order_by(table.c.id)
            .limit(PAGE)
        ).all()
        if not rows:
            return
        last = rows[-1][0]
        changes = []
        for pk, details, stored in rows:
            try:
                parsed = json.loads(details) if details is not None else None
            except ValueError:
                continue
            value = convert(parsed.get("timestamp")) if isinstance(parsed, dict) else None
            if value != stored:
                changes.append({"pk": pk, "value": value})
        if changes:
            bind.execute(
                table.update()
                .where(table.c.id == sa.bindparam("pk"))
                .values(remote_timestamp=sa.bindparam("value")),
                changes,
            )


def _plain(value_json: str) -> str:
    value = json.loads(value_json)
    return value if isinstance(value, str) else value_json


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rewrite_times(upgrade=True)
    _rewrite_remote_timestamps(upgrade=True)
    # ADD and DROP COLUMN in place on both engines: a batch rebuild of finetune_label would trip
    # over views that name it (SQLite re-checks views when the rebuilt table is renamed).
    op.add_column("finetune_label", sa.Column("value_json", sa.Text(), nullable=True))
    op.execute("UPDATE finetune_label SET value_json = value")
    bind = op.get_bind()
    rows = bind.exec_driver_sql("SELECT id, value_json FROM finetune_label").all()
    table = sa.table("finetune_label", sa.column("id", sa.Integer), sa.column("value", sa.Text))
    changes = [{"pk": pk, "plain": _plain(value)} for pk, value in rows]
    if changes:
        bind.execute(
            table.update().where(table.c.id == sa.bindparam("pk")).values(value=sa.bindparam("plain")),
            changes,
        )


def downgrade() -> None:
    op.execute("UPDATE finetune_label SET value = value_json")
    op.execute("ALTER TABLE finetune_label DROP COLUMN value_json")
    _rewrite_remote_timestamps(upgrade=False)
    if op.get_bind().dialect.name == "sqlite":
        _rewrite_times(upgrade=False)
