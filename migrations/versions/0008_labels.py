"""Labels and notes: finetune_label (current values), finetune_label_change and finetune_note (append-only).

New tables only, so no table is rebuilt and the full-text triggers on ``finetune`` are untouched.

Revision ID: 0008_labels
Revises: 0007_fts_discoverable
Create Date: 2026-12-01 10:18:36.687060
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

import sqlmodel


revision: str = "0008_labels"
down_revision: str | None = "0007_fts_discoverable"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "finetune_label",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("finetune_pk", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("set_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["finetune_pk"], ["finetune.id"], name=op.f("fk_finetune_label_finetune_pk_finetune")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finetune_label")),
        sa.UniqueConstraint("finetune_pk", "key", name=op.f("uq_finetune_label_finetune_pk_key")),
    )
    with op.batch_alter_table("finetune_label", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_finetune_label_finetune_pk"), ["finetune_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_label_key"), ["key"], unique=False)

    op.create_table(
        "finetune_label_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("finetune_pk", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("change", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("changed_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("change IN ('set', 'removed')", name=op.f("ck_finetune_label_change_change")),
        sa.ForeignKeyConstraint(
            ["finetune_pk"], ["finetune.id"], name=op.f("fk_finetune_label_change_finetune_pk_finetune")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finetune_label_change")),
    )
    with op.batch_alter_table("finetune_label_change", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_finetune_label_change_changed_at"), ["changed_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_finetune_label_change_finetune_pk"), ["finetune_pk"], unique=False
        )

    op.create_table(
        "finetune_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("finetune_pk", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("written_by", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["finetune_pk"], ["finetune.id"], name=op.f("fk_finetune_note_finetune_pk_finetune")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finetune_note")),
    )
    with op.batch_alter_table("finetune_note", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_finetune_note_finetune_pk"), ["finetune_pk"], unique=False)
        batch_op.create_index(batch_op.f("ix_finetune_note_written_at"), ["written_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("finetune_note", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_finetune_note_written_at"))
        batch_op.drop_index(batch_op.f("ix_finetune_note_finetune_pk"))

    op.drop_table("finetune_note")
    with op.batch_alter_table("finetune_label_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_finetune_label_change_finetune_pk"))
        batch_op.drop_index(batch_op.f("ix_finetune_label_change_changed_at"))

    op.drop_table("finetune_label_change")
    with op.batch_alter_table("finetune_label", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_finetune_label_key"))
        batch_op.drop_index(batch_op.f("ix_finetune_label_finetune_pk"))

    op.drop_table("finetune_label")
