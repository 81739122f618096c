"""Full-text index for `bflsync query --text`: an FTS5 table kept current by triggers.

``finetune_fts`` is contentless (``content=''``): it stores only the index, keyed by
``rowid = finetune.id``, so the store does not hold the details' text twice. Its one column
is every string value of the details (comment and trigger word included), gathered with
``json_tree``. A contentless table forgets its text, so removing a row means handing FTS5
the same text again through the ``'delete'`` command; the triggers recompute it from the
old details, which give the same text they gave on insert.

The update trigger fires only when ``details`` changes, so the store's hot paths (marking
unchanged finetunes seen, tombstoning) cost nothing extra. Rows whose details are not valid
JSON to SQLite (Python writes ``NaN`` for a float NaN) are left out of the index instead of
failing the sync.

Other databases have no FTS5: there this revision does nothing and ``--text`` says so.

Revision ID: 0002_fts
Revises: 0001_initial
Create Date: 2026-11-26 10:00:00
"""

from collections.abc import Sequence

from alembic import op


revision: str = "0002_fts"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _text_of(row: str) -> str:
    """SQL for the indexed text of a row alias (``new``, ``old`` or ``finetune``)."""
    return f"(SELECT group_concat(value, ' ') FROM json_tree({row}.details) WHERE type = 'text')"


STATEMENTS = (
    "CREATE VIRTUAL TABLE finetune_fts USING fts5("
    "body, content='', tokenize='unicode61 remove_diacritics 2')",
    f"""
    CREATE TRIGGER finetune_fts_insert AFTER INSERT ON finetune
    WHEN json_valid(new.details)
    BEGIN
        INSERT INTO finetune_fts (rowid, body) VALUES (new.id, {_text_of("new")});
    END
    """,
    f"""
    CREATE TRIGGER finetune_fts_delete AFTER DELETE ON finetune
    WHEN json_valid(old.details)
    BEGIN
        INSERT INTO finetune_fts (finetune_fts, rowid, body) VALUES ('delete', old.id, {_text_of("old")});
    END
    """,
    f"""
    CREATE TRIGGER finetune_fts_update AFTER UPDATE OF details ON finetune
    WHEN old.details IS NOT new.details
    BEGIN
        INSERT INTO finetune_fts (finetune_fts, rowid, body)
            SELECT 'delete', old.id, {_text_of("old")} WHERE json_valid(old.details);
        INSERT INTO finetune_fts (rowid, body)
            SELECT new.id, {_text_of("new")} WHERE json_valid(new.details);
    END
    """,
    f"INSERT INTO finetune_fts (rowid, body) SELECT id, {_text_of('finetune')} FROM finetune"
    " WHERE json_valid(details)",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    # IF EXISTS: a later revision that rebuilt `finetune` in batch mode without
    # bflsync.store.fts_triggers.triggers_kept has already lost the triggers with the old table.
    for trigger in ("finetune_fts_update", "finetune_fts_delete", "finetune_fts_insert"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS finetune_fts")
