"""PostgreSQL search columns: a jsonb copy of the details for JSON filters, a tsvector for --text.

On PostgreSQL, ``finetune.details_jsonb`` and ``finetune_version.details_jsonb`` hold the details
as ``jsonb`` (NULL where ``details`` is NULL), with U+0000 replaced by U+FFFD in every string
and key since ``jsonb`` cannot hold it (``bflsync.extract.without_nul``); a GIN index
(``jsonb_path_ops``) on the finetune's serves ``@>`` containment. ``finetune.search_tsv`` holds the
tokens SQLite's ``finetune_fts`` (revision 0002_fts) would hold, as a ``tsvector`` with a GIN
index (``bflsync.text.tokens``). ``details`` itself stays the canonical JSON text, the source of
truth and of the content hash. The sync writes these columns with every change of details;
this revision backfills existing rows from their details with the same functions.

SQLite stores have none of this (``json_extract`` and FTS5 serve the same filters): there the
revision changes nothing. The columns are not in the models (``bflsync.store.schema.POSTGRES_ONLY``).

Revision ID: 0005_search
Revises: 0004_canonical_numbers
Create Date: 2026-12-01 10:30:00
"""

import json
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from bflsync.extract import without_nul
from bflsync.text.tokens import tsvector_text


revision: str = "0005_search"
down_revision: str | None = "0004_canonical_numbers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAGE = 2000


def _backfill(table_name: str, *, search_text: bool) -> None:
    """Fill the new columns of every row with details, a primary-key page at a time."""
    columns = [
        sa.column("id", sa.Integer),
        sa.column("details", sa.Text),
        sa.column("details_jsonb", postgresql.JSONB),
    ]
    if search_text:
        columns.append(sa.column("search_tsv", postgresql.TSVECTOR))
    table = sa.table(table_name, *columns)
    values = {"details_jsonb": sa.bindparam("new_jsonb", type_=postgresql.JSONB)}
    if search_text:
        values["search_tsv"] = sa.bindparam("new_tsv", type_=postgresql.TSVECTOR)
    update = table.update().where(table.c.id == sa.bindparam("pk")).values(values)
    bind = op.get_bind()
    last = 0
    while True:
        page = bind.execute(
            sa.select(table.c.id, table.c.details)
            .where(table.c.id > last, table.c.details.is_not(None))
            .order_by(table.c.id)
            .limit(PAGE)
        ).all()
        if not page:
            return
        last = page[-1].id
        updates = []
        for pk, text in page:
            details = json.loads(text)
            row = {"pk": pk, "new_jsonb": without_nul(details)}
            if search_text:
                row["new_tsv"] = tsvector_text(details)
            updates.append(row)
        bind.execute(update, updates)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.add_column("finetune", sa.Column("details_jsonb", postgresql.JSONB(), nullable=True))
    op.add_column("finetune", sa.Column("search_tsv", postgresql.TSVECTOR(), nullable=True))
    op.add_column("finetune_version", sa.Column("details_jsonb", postgresql.JSONB(), nullable=True))
    _backfill("finetune", search_text=True)
    _backfill("finetune_version", search_text=False)
    # After the backfill: building a GIN index once is much cheaper than growing it row by row.
    op.create_index(
        "ix_finetune_details_jsonb",
        "finetune",
        ["details_jsonb"],
        postgresql_using="gin",
        postgresql_ops={"details_jsonb": "jsonb_path_ops"},
    )
    op.create_index("ix_finetune_search_tsv", "finetune", ["search_tsv"], postgresql_using="gin")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_finetune_search_tsv", table_name="finetune")
    op.drop_index("ix_finetune_details_jsonb", table_name="finetune")
    op.drop_column("finetune_version", "details_jsonb")
    op.drop_column("finetune", "search_tsv")
    op.drop_column("finetune", "details_jsonb")
