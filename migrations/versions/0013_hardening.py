"""Hardening: the sync lock table, who changed labels and notes as which role, and redaction marks.

* ``bflsync_lock``: one row (``id = 1``). On PostgreSQL a sync holds ``SELECT … FOR UPDATE``
  on it for the whole run. ``FOR UPDATE`` needs the UPDATE privilege on the table, so a role
  that cannot write the store cannot take the lock (a session advisory lock could be taken by
  anyone who can log in). SQLite stores keep locking the file and never read this table.
* ``finetune_label``, ``finetune_label_change``, ``finetune_note``: ``*_by_role``, the
  PostgreSQL ``session_user`` that made the change (NULL on SQLite), and ``*_as``, the
  free-text attribution of ``--as NAME`` (NULL without it). ``*_by`` stays the OS account.
* ``finetune_version.redacted``: the API key was found in the answer and replaced by
  ``bflsync.store.redaction.MARKER`` before the row was written.

Added columns only (nullable, or with a server default), so no table is rebuilt and the
full-text triggers are untouched.

Revision ID: 0013_hardening
Revises: 0009_search_text
Create Date: 2026-12-04 16:00:00
"""

from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

import sqlmodel


revision: str = "0013_hardening"
down_revision: str | None = "0012_views"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AUTHORSHIP = {
    "finetune_label": "set",
    "finetune_label_change": "changed",
    "finetune_note": "written",
}


def upgrade() -> None:
    lock = op.create_table(
        "bflsync_lock",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bflsync_lock")),
    )
    op.bulk_insert(lock, [{"id": 1}])
    for table, verb in _AUTHORSHIP.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(f"{verb}_by_role", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
            )
            batch_op.add_column(sa.Column(f"{verb}_as", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    with op.batch_alter_table("finetune_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("redacted", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("finetune_version", schema=None) as batch_op:
        batch_op.drop_column("redacted")
    for table, verb in _AUTHORSHIP.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(f"{verb}_as")
            batch_op.drop_column(f"{verb}_by_role")
    op.drop_table("bflsync_lock")
