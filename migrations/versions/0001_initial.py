"""Initial schema: finetune (current state), finetune_version (audit), sync_run, sync_error.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25 17:09:28.124384
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "finetune",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("finetune_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("finetune_comment", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("trigger_word", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("mode", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("finetune_type", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("priority", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("iterations", sa.Integer(), nullable=True),
        sa.Column("lora_rank", sa.Integer(), nullable=True),
        sa.Column("learning_rate", sa.Float(), nullable=True),
        sa.Column("captioning", sa.Boolean(), nullable=True),
        sa.Column("remote_timestamp", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("content_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finetune")),
        sa.UniqueConstraint("source", "finetune_id", name=op.f("uq_finetune_source_finetune_id")),
    )
    with op.batch_alter_table("finetune", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_finetune_deleted_at"), ["deleted_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_finetune_id"), ["finetune_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_finetune_type"), ["finetune_type"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_iterations"), ["iterations"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_last_changed_at"), ["last_changed_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_learning_rate"), ["learning_rate"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_lora_rank"), ["lora_rank"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_mode"), ["mode"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_priority"), ["priority"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_trigger_word"), ["trigger_word"], unique=False)

    op.create_table(
        "sync_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("bflsync_version", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("listed", sa.Integer(), nullable=False),
        sa.Column("fetched", sa.Integer(), nullable=False),
        sa.Column("created", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Integer(), nullable=False),
        sa.Column("restored", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'ok', 'partial', 'failed', 'interrupted')", name=op.f("ck_sync_run_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_run")),
    )
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_run_started_at"), ["started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_sync_run_status"), ["status"], unique=False)

    op.create_table(
        "finetune_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("finetune_pk", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("change", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("content_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("changed_keys", sa.Text(), nullable=True),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sync_run_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "change IN ('created', 'updated', 'deleted', 'restored')", name=op.f("ck_finetune_version_change")
        ),
        sa.ForeignKeyConstraint(
            ["finetune_pk"], ["finetune.id"], name=op.f("fk_finetune_version_finetune_pk_finetune")
        ),
        sa.ForeignKeyConstraint(
            ["sync_run_id"], ["sync_run.id"], name=op.f("fk_finetune_version_sync_run_id_sync_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finetune_version")),
        sa.UniqueConstraint("finetune_pk", "version", name=op.f("uq_finetune_version_finetune_pk_version")),
    )
    with op.batch_alter_table("finetune_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_finetune_version_finetune_pk"), ["finetune_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_version_observed_at"), ["observed_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_version_sync_run_id"), ["sync_run_id"], unique=False)

    op.create_table(
        "sync_error",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sync_run_id", sa.Integer(), nullable=False),
        sa.Column("finetune_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sync_run_id"], ["sync_run.id"], name=op.f("fk_sync_error_sync_run_id_sync_run")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_error")),
    )
    with op.batch_alter_table("sync_error", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_error_finetune_id"), ["finetune_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sync_error_sync_run_id"), ["sync_run_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sync_error", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_error_sync_run_id"))
        batch_op.drop_index(batch_op.f("ix_sync_error_finetune_id"))

    op.drop_table("sync_error")
    with op.batch_alter_table("finetune_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_finetune_version_sync_run_id"))
        batch_op.drop_index(batch_op.f("ix_finetune_version_observed_at"))
        batch_op.drop_index(batch_op.f("ix_finetune_version_finetune_pk"))

    op.drop_table("finetune_version")
    with op.batch_alter_table("sync_run", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_run_status"))
        batch_op.drop_index(batch_op.f("ix_sync_run_started_at"))

    op.drop_table("sync_run")
    with op.batch_alter_table("finetune", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_finetune_trigger_word"))
        batch_op.drop_index(batch_op.f("ix_finetune_priority"))
        batch_op.drop_index(batch_op.f("ix_finetune_mode"))
        batch_op.drop_index(batch_op.f("ix_finetune_lora_rank"))
        batch_op.drop_index(batch_op.f("ix_finetune_learning_rate"))
        batch_op.drop_index(batch_op.f("ix_finetune_last_changed_at"))
        batch_op.drop_index(batch_op.f("ix_finetune_iterations"))
        batch_op.drop_index(batch_op.f("ix_finetune_finetune_type"))
        batch_op.drop_index(batch_op.f("ix_finetune_finetune_id"))
        batch_op.drop_index(batch_op.f("ix_finetune_deleted_at"))

    op.drop_table("finetune")
