"""Accounts: a finetune is identified by (source, account, finetune_id).

Several API keys (BFL keys are scoped to projects) and several regions or gateway prefixes
now share one store without tombstoning each other's finetunes:

* ``finetune.account`` and ``sync_run.account``: the label given with ``sync --account``.
  Every row a 0002 store holds becomes ``default``, the label a sync uses without the option,
  so an upgraded store goes on syncing exactly as before.
* The unique constraint moves from (source, finetune_id) to (source, account, finetune_id).
* ``account``: one row per synced (source, account) with the fingerprint of the key that last
  synced it. Rows are carried over from the 0002 runs with no fingerprint (NULL): the first
  sync after the upgrade records one.
* ``store_meta`` holds the store's random secret for those fingerprints, made here once.
* ``sync_run.key_changed``: the run went ahead with a key other than the recorded one.

``source`` values are kept as they are. Before 0003 a source was ``host[:port]``; from now on
it is ``host[:port][/path prefix]``, which is the same text for every URL without a path
(both BFL regions, the mock). Only finetunes synced through a gateway with a path prefix
were stored under the bare host; they stay there, and the next sync through the prefix
stores them again under ``host/prefix`` (docs/accounts.md).

Downgrading to 0002 is refused (exit 2, nothing changed) while one finetune id is stored for
two accounts of a source: 0002 cannot hold both rows. Without such ids every row and version
survives; only the account labels and fingerprints are lost.

On SQLite moving the unique constraint rebuilds ``finetune``; ``triggers_kept`` keeps the
full-text index's triggers through it, both ways.

Revision ID: 0003_accounts
Revises: 0002_fts
Create Date: 2026-12-01 10:16:02
"""

import secrets
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from bflsync.store.account_merge import downgrade_refusal
from bflsync.errors import InputError
from bflsync.store.fts_triggers import triggers_kept


revision: str = "0003_accounts"
down_revision: str | None = "0002_fts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_ACCOUNT = "default"


def upgrade() -> None:
    op.create_table(
        "store_meta",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_store_meta")),
    )
    op.create_table(
        "account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("account", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("key_fingerprint", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("first_synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["last_run_id"], ["sync_run.id"], name=op.f("fk_account_last_run_id_sync_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account")),
        sa.UniqueConstraint("source", "account", name=op.f("uq_account_source_account")),
    )
    with triggers_kept("finetune"), op.batch_alter_table("finetune", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "account", sqlmodel.sql.sqltypes.AutoString(), server_default=DEFAULT_ACCOUNT, nullable=False
            )
        )
        batch_op.drop_constraint(batch_op.f("uq_finetune_source_finetune_id"), type_="unique")
        batch_op.create_index(batch_op.f("ix_finetune_account"), ["account"], unique=False)
        batch_op.create_unique_constraint(
            batch_op.f("uq_finetune_source_account_finetune_id"), ["source", "account", "finetune_id"]
        )

    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "account", sqlmodel.sql.sqltypes.AutoString(), server_default=DEFAULT_ACCOUNT, nullable=False
            )
        )
        batch_op.add_column(sa.Column("key_changed", sa.Boolean(), server_default=sa.false(), nullable=False))

    store_meta = sa.table("store_meta", sa.column("name"), sa.column("value"))
    op.get_bind().execute(store_meta.insert().values(name="fingerprint_secret", value=secrets.token_hex(32)))
    # Every (source) synced so far becomes its 'default' account, its key not yet known.
    op.execute(
        "INSERT INTO account (source, account, key_fingerprint, first_synced_at, last_synced_at, last_run_id)"
        f" SELECT source, '{DEFAULT_ACCOUNT}', NULL, min(started_at), max(started_at), max(id)"
        " FROM sync_run GROUP BY source ORDER BY min(id)"
    )


def downgrade() -> None:
    _refuse_ids_held_by_several_accounts()
    op.drop_table("account")
    op.drop_table("store_meta")
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.drop_column("key_changed")
        batch_op.drop_column("account")

    with triggers_kept("finetune"), op.batch_alter_table("finetune", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_finetune_source_account_finetune_id"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_finetune_account"))
        batch_op.create_unique_constraint(
            batch_op.f("uq_finetune_source_finetune_id"), ["source", "finetune_id"]
        )
        batch_op.drop_column("account")


def _refuse_ids_held_by_several_accounts() -> None:
    refusal = downgrade_refusal(op.get_bind())
    if refusal is not None:
        raise InputError(refusal)
