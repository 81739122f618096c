"""Full-text index that Datasette and sqlite-utils find, and a trigram index for scripts without spaces.

Datasette (``detect_fts``) and sqlite-utils (``Table.detect_fts``) look for an FTS table whose
``CREATE VIRTUAL TABLE`` text says ``content="finetune"`` (or ``content=[finetune]``); the
contentless ``finetune_fts`` of ``0002_fts`` (``content=''``) is invisible to them, so
``_search`` was ignored and ``sqlite-utils search`` refused. Here ``finetune_fts`` becomes an
external-content table over ``finetune`` keyed on ``finetune.id`` (``content_rowid="id"``). It
still stores only the index, and it is still written only by the triggers, which index the
string values of the details (gathered with ``json_tree``), not the JSON text with its keys. Its
one column is named ``details`` so that anything reading the content through it (Datasette
showing the table) gets a real column rather than an error; searches read only the index.
Because the indexed text is derived, not the content column itself, FTS5's ``'rebuild'`` and
``'integrity-check'`` commands (``sqlite-utils rebuild-fts``) do not apply: they would index the
raw JSON. ``bflsync db upgrade`` after a downgrade rebuilds both indexes from the rows.

``finetune_fts_trigram`` is a contentless ``trigram`` index of the same text: ``unicode61``
makes one token of a whole run of Chinese or Japanese text, so ``--text 日本`` found nothing
inside ``日本の風景``. Substrings of three or more characters are answered from it; shorter
ones from the details themselves (see ``bflsync.text.matching``).

The triggers keep the guarantees of ``0002_fts``: the update trigger fires only when
``details`` changes, rows whose details SQLite cannot parse are left out instead of failing the
write, and a ``'delete'`` hands FTS5 the text the row was indexed with. On other databases this
revision does nothing.

Revision ID: 0007_fts_discoverable
Revises: 0006_lifecycle
Create Date: 2026-12-01 10:40:00
"""

from collections.abc import Sequence

from alembic import op


revision: str = "0007_fts_discoverable"
down_revision: str | None = "0006_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGERS = ("finetune_fts_update", "finetune_fts_delete", "finetune_fts_insert")
INDEXES = ("finetune_fts", "finetune_fts_trigram")


def _text_of(row: str) -> str:
    """SQL for the indexed text of a row alias (``new``, ``old`` or ``finetune``)."""
    return f"(SELECT group_concat(value, ' ') FROM json_tree({row}.details) WHERE type = 'text')"


def _tables(column: str, word_options: str) -> tuple[str, ...]:
    return (
        f"CREATE VIRTUAL TABLE finetune_fts USING fts5({column}, {word_options}"
        "tokenize='unicode61 remove_diacritics 2')",
        f"CREATE VIRTUAL TABLE finetune_fts_trigram USING fts5({column}, content='', tokenize='trigram')",
    )


def _triggers(column: str, indexes: Sequence[str]) -> tuple[str, ...]:
    def insert(row: str, guard: str) -> str:
        return "".join(
            f"INSERT INTO {index} (rowid, {column}) SELECT {row}.id, {_text_of(row)} WHERE {guard};\n"
            for index in indexes
        )

    def delete(row: str, guard: str) -> str:
        return "".join(
            f"INSERT INTO {index} ({index}, rowid, {column}) "
            f"SELECT 'delete', {row}.id, {_text_of(row)} WHERE {guard};\n"
            for index in indexes
        )

    return (
        f"CREATE TRIGGER finetune_fts_insert AFTER INSERT ON finetune\n"
        f"WHEN json_valid(new.details)\nBEGIN\n{insert('new', '1')}END",
        f"CREATE TRIGGER finetune_fts_delete AFTER DELETE ON finetune\n"
        f"WHEN json_valid(old.details)\nBEGIN\n{delete('old', '1')}END",
        f"CREATE TRIGGER finetune_fts_update AFTER UPDATE OF details ON finetune\n"
        f"WHEN old.details IS NOT new.details\nBEGIN\n"
        f"{delete('old', 'json_valid(old.details)')}{insert('new', 'json_valid(new.details)')}END",
    )


def _fill(column: str, indexes: Sequence[str]) -> tuple[str, ...]:
    return tuple(
        f"INSERT INTO {index} (rowid, {column}) SELECT id, {_text_of('finetune')} FROM finetune"
        " WHERE json_valid(details)"
        for index in indexes
    )


def _drop_all() -> None:
    # IF EXISTS: a revision that rebuilt `finetune` without bflsync.store.fts_triggers.triggers_kept lost them.
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    for index in INDEXES:
        op.execute(f"DROP TABLE IF EXISTS {index}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _drop_all()
    for statement in (
        *_tables("details", 'content="finetune", content_rowid="id", '),
        *_triggers("details", INDEXES),
        *_fill("details", INDEXES),
    ):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    _drop_all()
    # Back to 0002_fts exactly: one contentless word index with a `body` column.
    for statement in (
        "CREATE VIRTUAL TABLE finetune_fts USING fts5("
        "body, content='', tokenize='unicode61 remove_diacritics 2')",
        *_triggers("body", ("finetune_fts",)),
        *_fill("body", ("finetune_fts",)),
    ):
        op.execute(statement)
