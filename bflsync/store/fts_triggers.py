"""Keep the full-text index's triggers through a migration that rebuilds ``finetune``.

On SQLite, ``op.batch_alter_table("finetune")`` rebuilds the table for anything but adding
a column or an index (drop or alter a column): copy, drop, rename. Dropping the old table
drops its triggers, among them the ones revision ``0002_fts`` created to keep
``finetune_fts`` current, and nothing says so: the index just goes stale. Wrap such a batch
in :func:`triggers_kept`; it restores exactly the triggers the store had, so a migration
does not depend on what the trigger DDL looks like at any revision. The rows keep their
``id``, which is the index's ``rowid``, so the index itself stays valid.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import op


@contextmanager
def triggers_kept(table: str) -> Iterator[None]:
    """Recreate ``table``'s SQLite triggers after the block (a no-op on other databases)."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        yield
        return
    saved = bind.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? ORDER BY name", (table,)
    ).all()
    yield
    for name, sql in saved:
        op.execute(f'DROP TRIGGER IF EXISTS "{name}"')
        op.execute(sql)
