"""Lifecycle: each finetune's training status and the account's credits, which BFL forgets.

``finetune`` gains ``status``, ``progress``, ``status_checked_at`` and ``ready_at`` (NULL on
existing rows: not yet checked, until the next sync asks); ``finetune_status`` is the
append-only timeline of observed changes; ``sync_run`` gains the run's ``credits`` balance
and ``status_failed``, the count of status requests that failed.

Revision ID: 0006_lifecycle
Revises: 0005_search
Create Date: 2026-12-01 10:17:29
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

# Autogenerate renders string columns as sqlmodel.sql.sqltypes.AutoString; unused otherwise.
import sqlmodel

from bflsync.store.fts_triggers import triggers_kept


revision: str = "0006_lifecycle"
down_revision: str | None = "0005_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "finetune_status",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("finetune_pk", sa.Integer(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sync_run_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["finetune_pk"], ["finetune.id"], name=op.f("fk_finetune_status_finetune_pk_finetune")
        ),
        sa.ForeignKeyConstraint(
            ["sync_run_id"], ["sync_run.id"], name=op.f("fk_finetune_status_sync_run_id_sync_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finetune_status")),
    )
    with op.batch_alter_table("finetune_status", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_finetune_status_finetune_pk"), ["finetune_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_status_observed_at"), ["observed_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_status_sync_run_id"), ["sync_run_id"], unique=False)

    with op.batch_alter_table("finetune", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("progress", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("status_checked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_finetune_ready_at"), ["ready_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_status"), ["status"], unique=False)

    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_failed", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("credits", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("finetune_status", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_finetune_status_sync_run_id"))
        batch_op.drop_index(batch_op.f("ix_finetune_status_observed_at"))
        batch_op.drop_index(batch_op.f("ix_finetune_status_finetune_pk"))
    op.drop_table("finetune_status")

    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.drop_column("credits")
        batch_op.drop_column("status_failed")

    # Dropping columns rebuilds `finetune` on SQLite, which drops the full-text index's triggers.
    with triggers_kept("finetune"), op.batch_alter_table("finetune", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_finetune_status"))
        batch_op.drop_index(batch_op.f("ix_finetune_ready_at"))
        batch_op.drop_column("ready_at")
        batch_op.drop_column("status_checked_at")
        batch_op.drop_column("progress")
        batch_op.drop_column("status")
