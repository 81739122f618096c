"""PostgreSQL ``finetune.search_text``: the text SQLite's trigram index holds, for ``--text`` substrings.

``--text`` finds runs of scripts written without spaces (Chinese, Japanese, Thai, …) as
substrings; on SQLite through ``finetune_fts_trigram`` (revision 0007_fts_discoverable). On
PostgreSQL ``search_tsv`` holds whole FTS5 tokens only, so ``日本`` found nothing inside
``日本の風景``. This column holds what the trigram index indexes: every string value of the
details (each to its first U+0000, as SQLite's ``json_tree`` reads it) joined by a space, case
folded as FTS5's ``trigram`` tokenizer folds (``bflsync.text.tokens.substring_text``); ``--text``
tests it with ``LIKE '%…%'`` (the needle escaped). NULL where ``details`` is NULL. The sync writes
it with every change of details, ``bflsync db reextract`` refreshes it; this revision backfills
existing rows, and writes ``search_tsv`` again (its values now end at U+0000 as well).

Where the ``pg_trgm`` extension can be created (it ships with PostgreSQL's contrib package and
is trusted: a database owner may create it), a GIN trigram index ``ix_finetune_search_text``
serves those ``LIKE`` tests; where it cannot, the revision goes on without the index and
``--text`` substrings scan the column. Downgrading drops the index and the column, not the
extension, which other things in the database may use.

SQLite stores have none of this: there the revision changes nothing. The column is not in the
models (``bflsync.store.schema.POSTGRES_ONLY_COLUMNS``).

Revision ID: 0009_search_text
Revises: 0008_labels
Create Date: 2026-12-01 14:30:00
"""

import json
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from bflsync.text.tokens import substring_text, tsvector_text


revision: str = "0009_search_text"
down_revision: str | None = "0008_labels"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAGE = 2000
INDEX = "ix_finetune_search_text"


def _backfill() -> None:
    """Fill ``search_text`` of every row with details, a primary-key page at a time.

    ``search_tsv`` is written again too: its values now end at their first U+0000, as SQLite's do.
    """
    table = sa.table(
        "finetune",
        sa.column("id", sa.Integer),
        sa.column("details", sa.Text),
        sa.column("search_text", sa.Text),
        sa.column("search_tsv", postgresql.TSVECTOR),
    )
    update = (
        table.update()
        .where(table.c.id == sa.bindparam("pk"))
        .values(
            search_text=sa.bindparam("new_text"),
            search_tsv=sa.bindparam("new_tsv", type_=postgresql.TSVECTOR),
        )
    )
    bind = op.get_bind()
    last = 0
    while page := bind.execute(
        sa.select(table.c.id, table.c.details)
        .where(table.c.id > last, table.c.details.is_not(None))
        .order_by(table.c.id)
        .limit(PAGE)
    ).all():
        last = page[-1].id
        updates = []
        for pk, text in page:
            details = json.loads(text)
            updates.append({"pk": pk, "new_text": substring_text(details), "new_tsv": tsvector_text(details)})
        bind.execute(update, updates)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.add_column("finetune", sa.Column("search_text", sa.Text(), nullable=True))
    _backfill()
    # After the backfill: building a GIN index once is much cheaper than growing it row by row.
    if _trigram_extension():
        op.create_index(
            INDEX,
            "finetune",
            ["search_text"],
            postgresql_using="gin",
            postgresql_ops={"search_text": "gin_trgm_ops"},
        )


def _trigram_extension() -> bool:
    """Whether ``pg_trgm`` is there or could be created (in a savepoint, so a refusal undoes nothing else)."""
    bind = op.get_bind()
    try:
        with bind.begin_nested():
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except sa.exc.DBAPIError:
        return False
    return True


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"DROP INDEX IF EXISTS {INDEX}")
    op.drop_column("finetune", "search_text")
