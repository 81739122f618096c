"""Migrations 0002_fts and 0007_fts_discoverable: the FTS5 indexes are created, back-filled, kept current, removable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from storebuild import day, write_sync

from bflsync.store import access, fts_triggers

FTS_TRIGGERS = {"finetune_fts_insert", "finetune_fts_delete", "finetune_fts_update"}


def fts_rowids(db_path: Path, words: str) -> list[int]:
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute(
            "SELECT rowid FROM finetune_fts WHERE finetune_fts MATCH ? ORDER BY rowid", (words,)
        ).fetchall()
    return [rowid for (rowid,) in rows]


def triggers(db_path: Path) -> dict[str, str]:
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
    connection.close()
    return dict(rows)


def rebuild_finetune(engine: Engine, *, keep_triggers: bool) -> None:
    """What a later revision's batch drop/alter of a finetune column does on SQLite: copy, drop, rename."""
    with engine.connect() as connection:
        raw = connection.connection.driver_connection
        assert raw is not None
        # as access.run_migration does, outside the transaction
        raw.execute("PRAGMA foreign_keys = OFF")
        raw.execute("PRAGMA legacy_alter_table = ON")
        with connection.begin(), Operations.context(MigrationContext.configure(connection)):
            from alembic import op

            if keep_triggers:
                with (
                    fts_triggers.triggers_kept("finetune"),
                    op.batch_alter_table("finetune", recreate="always"),
                ):
                    pass
            else:
                with op.batch_alter_table("finetune", recreate="always"):
                    pass
        raw.execute("PRAGMA legacy_alter_table = OFF")
        raw.execute("PRAGMA foreign_keys = ON")


def test_head_revision_is_the_migrations_head() -> None:
    scripts = ScriptDirectory.from_config(access.alembic_config())
    assert scripts.get_heads() == [access.HEAD_REVISION]
    assert [script.revision for script in reversed(list(scripts.walk_revisions()))] == list(
        access.KNOWN_REVISIONS
    )


def test_a_fresh_store_at_head_has_no_drift(store_engine: Engine) -> None:
    with store_engine.connect() as connection:
        access.alembic_check(connection)


def test_triggers_index_inserts_updates_and_deletes(store_engine: Engine, db_path: Path) -> None:
    write_sync(store_engine, {"a": {"finetune_comment": "red fox", "extra": {"tag": "Forest"}}}, now=day(1))
    assert (fts_rowids(db_path, "fox"), fts_rowids(db_path, "forest")) == ([1], [1])
    write_sync(store_engine, {"a": {"finetune_comment": "blue whale", "n": 1}}, now=day(2))
    assert (fts_rowids(db_path, "fox"), fts_rowids(db_path, "whale")) == ([], [1])
    with store_engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM finetune_version")
        connection.exec_driver_sql("DELETE FROM finetune")
    assert fts_rowids(db_path, "whale") == []


def test_details_sqlite_cannot_parse_are_left_out_of_the_index_without_failing_the_write(
    store_engine: Engine, db_path: Path
) -> None:
    write_sync(store_engine, {"nan": {"x": float("nan"), "w": "word"}, "ok": {"w": "word"}}, now=day(1))
    assert fts_rowids(db_path, "word") == [2]


def test_downgrade_to_0001_and_back_rebuilds_the_index_from_existing_rows(
    store_engine: Engine, db_path: Path
) -> None:
    write_sync(store_engine, {"a": {"trigger_word": "ohwx"}, "b": {"mode": "style"}}, now=day(1))
    store_engine.dispose()
    location = access.locate_store(str(db_path))
    access.downgrade_store(location, revision="0001_initial")
    with sqlite3.connect(db_path) as connection:
        names = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    assert not any(name.startswith("finetune_fts") for name in names)
    access.upgrade_store(location, revision="head").engine.dispose()
    assert (fts_rowids(db_path, "ohwx"), fts_rowids(db_path, "style")) == ([1], [2])


def test_a_batch_rebuild_of_finetune_inside_triggers_kept_keeps_the_index_current(
    store_engine: Engine, db_path: Path
) -> None:
    write_sync(store_engine, {"a": {"finetune_comment": "red fox"}}, now=day(1))
    before = triggers(db_path)
    assert set(before) == FTS_TRIGGERS
    rebuild_finetune(store_engine, keep_triggers=False)
    assert triggers(db_path) == {}  # why triggers_kept exists
    access.upgrade_store(access.locate_store(str(db_path)), revision="head").engine.dispose()
    store_engine.dispose()
    with sqlite3.connect(db_path) as connection:
        connection.executescript("".join(f"{sql};" for sql in before.values()))
    connection.close()
    rebuild_finetune(store_engine, keep_triggers=True)
    assert triggers(db_path) == before
    write_sync(store_engine, {"a": {"finetune_comment": "blue whale"}, "b": {"w": "owl"}}, now=day(2))
    assert (fts_rowids(db_path, "fox"), fts_rowids(db_path, "whale"), fts_rowids(db_path, "owl")) == (
        [],
        [1],
        [2],
    )


def test_downgrade_below_0002_works_when_a_rebuild_already_lost_the_triggers(
    store_engine: Engine, db_path: Path
) -> None:
    write_sync(store_engine, {"a": {"finetune_comment": "red fox"}}, now=day(1))
    rebuild_finetune(store_engine, keep_triggers=False)
    store_engine.dispose()
    location = access.locate_store(str(db_path))
    access.downgrade_store(location, revision="0001_initial")
    with sqlite3.connect(db_path) as connection:
        names = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    connection.close()
    assert not any(name.startswith("finetune_fts") for name in names)
    access.upgrade_store(location, revision="head").engine.dispose()
    assert (set(triggers(db_path)), fts_rowids(db_path, "fox")) == (FTS_TRIGGERS, [1])


def test_each_downgrade_from_head_to_0002_keeps_the_index_triggers(
    store_engine: Engine, db_path: Path
) -> None:
    """A later revision that rebuilds finetune must wrap its batch in fts_triggers.triggers_kept (docs/development.md).

    Only 0007_fts_discoverable changes the triggers on purpose (back to 0002's, same names).
    """
    write_sync(store_engine, {"a": {"finetune_comment": "red fox"}}, now=day(1))
    store_engine.dispose()
    expected = triggers(db_path)
    location = access.locate_store(str(db_path))
    later = access.KNOWN_REVISIONS[access.KNOWN_REVISIONS.index("0002_fts") :]
    for leaving, revision in zip(reversed(later), reversed(later[:-1]), strict=False):
        access.downgrade_store(location, revision=revision)
        if leaving == "0007_fts_discoverable":
            expected = triggers(db_path)
        assert set(expected) == FTS_TRIGGERS
        assert triggers(db_path) == expected, f"downgrade to {revision} lost the full-text triggers"
    with sqlite3.connect(db_path) as connection:
        connection.execute('UPDATE finetune SET details = \'{"w": "whale"}\'')
    connection.close()
    assert (fts_rowids(db_path, "fox"), fts_rowids(db_path, "whale")) == ([], [1])
