"""The hash chain: ``chain_seq`` and ``row_hash`` on every append-only row, backfilled.

``finetune_version``, ``finetune_status``, ``finetune_label_change``, ``finetune_note`` and
``sync_run`` each get the row's place in the store's chain (``chain_seq``, unique) and its link
hash (``row_hash``); see :mod:`bflsync.store.chain` for the canonical content they hash. The
rows a store already has are chained in the order they were written, as near as the store can
tell: by their own time (a version's or status's ``observed_at``, a label change's ``changed_at``,
a note's ``written_at``, a run's ``finished_at``, else its ``started_at``), then table, then id.
Runs still ``running`` stay out: the sync that marks them interrupted chains them.

``store_meta`` gets ``chain_origin``, the origin line of the store's checkpoints: a random name,
so a copy of the store verifies against the same checkpoints and another store never does.

Columns added to existing tables, so SQLite needs no table rebuild on the way up; the way down
drops them (a rebuild on SQLite, with foreign keys switched off by ``bflsync db``).

Revision ID: 0010_hash_chain
Revises: 0009_search_text
Create Date: 2026-12-04 16:00:00
"""

import uuid
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

from bflsync.store import chain
from bflsync.store.schema import CHAIN_ORIGIN_META_NAME


revision: str = "0010_hash_chain"
down_revision: str | None = "0009_search_text"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each chained table and the time its rows were written.
_WRITTEN_AT = {
    "finetune_version": "observed_at",
    "finetune_status": "observed_at",
    "finetune_label_change": "changed_at",
    "finetune_note": "written_at",
    "sync_run": "coalesce(finished_at, started_at)",
}


def upgrade() -> None:
    for table in chain.CHAINED_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("chain_seq", sa.BigInteger(), nullable=True))
            batch_op.add_column(sa.Column("row_hash", sa.String(length=64), nullable=True))
            batch_op.create_index(batch_op.f(f"ix_{table}_chain_seq"), ["chain_seq"], unique=True)
    meta = sa.table("store_meta", sa.column("name"), sa.column("value"))
    op.get_bind().execute(
        meta.insert().values(name=CHAIN_ORIGIN_META_NAME, value=f"bflsync/store/{uuid.uuid4().hex}")
    )
    _backfill()


def _backfill() -> None:
    """Give every existing row its place, then walk the chain in that order writing each link."""
    bind = op.get_bind()
    keys = []
    for rank, table in enumerate(chain.CHAINED_TABLES):
        where = " WHERE status <> 'running'" if table == "sync_run" else ""
        query = f"SELECT id, {_WRITTEN_AT[table]} FROM {table}{where}"
        for row_id, written_at in bind.exec_driver_sql(query):
            keys.append((chain.normal_value(chain.Kind.TIME, written_at), rank, row_id))
    keys.sort(key=lambda key: (str(key[0]), key[1], key[2]))
    places: dict[str, list[dict[str, int]]] = {table: [] for table in chain.CHAINED_TABLES}
    for seq, (_, rank, row_id) in enumerate(keys, start=1):
        places[chain.CHAINED_TABLES[rank]].append({"pk": row_id, "new_seq": seq})
    _update(bind, "chain_seq", places)
    hashes: dict[str, list[dict[str, int]]] = {table: [] for table in chain.CHAINED_TABLES}
    previous = chain.GENESIS
    for row in chain.chained_rows(bind):
        previous = chain.link(previous, row.content())
        hashes[row.spec.name].append({"pk": row.row_id, "new_row_hash": previous.hex()})
    _update(bind, "row_hash", hashes)


def _update(bind: sa.Connection, column: str, values: dict[str, list[dict[str, object]]]) -> None:
    new = "new_seq" if column == "chain_seq" else "new_row_hash"
    for table, rows in values.items():
        if rows:
            target = sa.table(table, sa.column("id"), sa.column(column))
            bind.execute(
                target.update().where(target.c.id == sa.bindparam("pk")).values({column: sa.bindparam(new)}),
                rows,
            )


def downgrade() -> None:
    meta = sa.table("store_meta", sa.column("name"))
    op.get_bind().execute(meta.delete().where(meta.c.name == CHAIN_ORIGIN_META_NAME))
    for table in reversed(chain.CHAINED_TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_chain_seq"))
            batch_op.drop_column("row_hash")
            batch_op.drop_column("chain_seq")
