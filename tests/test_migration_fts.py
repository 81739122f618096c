"""Migration 0002_fts: the FTS5 index is created, back-filled, kept current, and removable."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from storebuild import day, write_sync

from bflsync import db


def fts_rowids(db_path: Path, words: str) -> list[int]:
    with sqlite3.connect(db_path) as connection:
        rows = connection.execute(
            "SELECT rowid FROM finetune_fts WHERE finetune_fts MATCH ? ORDER BY rowid", (words,)
        ).fetchall()
    return [rowid for (rowid,) in rows]


def test_head_revision_is_the_migrations_head() -> None:
    scripts = ScriptDirectory.from_config(db.alembic_config())
    assert scripts.get_heads() == [db.HEAD_REVISION]
    assert [script.revision for script in reversed(list(scripts.walk_revisions()))] == list(
        db.KNOWN_REVISIONS
    )


def test_a_fresh_store_at_head_has_no_drift(store_engine: Engine) -> None:
    with store_engine.connect() as connection:
        db.alembic_check(connection)


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
    location = db.locate_store(str(db_path))
    db.downgrade_store(location, revision="0001_initial")
    with sqlite3.connect(db_path) as connection:
        names = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
    assert not any(name.startswith("finetune_fts") for name in names)
    db.upgrade_store(location, revision="head").engine.dispose()
    assert (fts_rowids(db_path, "ohwx"), fts_rowids(db_path, "style")) == ([1], [2])
