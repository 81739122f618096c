"""Alembic owns the schema: one head, clean up/down paths, models that match, data that survives."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from bflsync import db

ROOT = Path(__file__).resolve().parent.parent
TABLES = {"finetune", "finetune_version", "sync_run", "sync_error"}


def table_names(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    connection.close()
    return {name for (name,) in rows}


def test_upgrade_from_base_creates_every_table(db_path: Path) -> None:
    db.upgrade_store(db.locate_store(str(db_path)), revision="head").engine.dispose()
    assert TABLES | {"alembic_version"} <= table_names(db_path)


def test_downgrade_to_base_and_back_up(db_path: Path) -> None:
    location = db.locate_store(str(db_path))
    db.upgrade_store(location, revision="head").engine.dispose()
    db.downgrade_store(location, revision="base")
    assert table_names(db_path) == {"alembic_version"}
    opened = db.upgrade_store(location, revision="head")
    with opened.engine.connect() as connection:
        assert db.read_revision(connection) == db.HEAD_REVISION
    opened.engine.dispose()
    assert table_names(db_path) >= TABLES


def test_models_match_migrations(db_path: Path) -> None:
    location = db.locate_store(str(db_path))
    db.upgrade_store(location, revision="head").engine.dispose()
    engine = db.open_store_for_read(location)
    try:
        with engine.connect() as connection:
            db.alembic_check(connection)
    finally:
        engine.dispose()


def test_rows_written_at_the_first_revision_survive_the_upgrade_to_head(db_path: Path) -> None:
    location = db.locate_store(str(db_path))
    db.upgrade_store(location, revision=db.KNOWN_REVISIONS[0]).engine.dispose()
    with sqlite3.connect(db_path) as connection:
        connection.executescript(
            """
            INSERT INTO sync_run (id, started_at, finished_at, status, source, pid, bflsync_version, listed,
                fetched, created, updated, unchanged, deleted, restored, failed, error)
            VALUES (1, '2026-01-01 00:00:00.000000', '2026-01-01 00:01:00.000000', 'partial', 'api.us1.bfl.ai',
                42, '0.1.0', 2, 2, 1, 0, 0, 0, 0, 1, NULL);
            INSERT INTO finetune (id, source, finetune_id, details, finetune_comment, trigger_word, mode,
                finetune_type, priority, iterations, lora_rank, learning_rate, captioning, remote_timestamp,
                content_hash, version, first_seen_at, last_seen_at, last_changed_at, deleted_at)
            VALUES (1, 'api.us1.bfl.ai', 'org/lora', '{"finetune_comment":"Ünïcode ✨","mode":"character"}',
                'Ünïcode ✨', NULL, 'character', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'abc', 1,
                '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000', NULL);
            INSERT INTO finetune_version (id, finetune_pk, version, change, details, content_hash, changed_keys,
                observed_at, sync_run_id)
            VALUES (1, 1, 1, 'created', '{"finetune_comment":"Ünïcode ✨","mode":"character"}', 'abc',
                '["finetune_comment","mode"]', '2026-01-01 00:00:00.000000', 1);
            INSERT INTO sync_error (id, sync_run_id, finetune_id, kind, http_status, message, attempts)
            VALUES (1, 1, 'broken', 'http', 500, 'server error', 5);
            """
        )
    connection.close()
    before = dump_tables(db_path)
    opened = db.open_store_for_write(location)
    opened.engine.dispose()
    after = dump_tables(db_path)
    for table, rows in before.items():
        columns = rows[0].keys()
        assert [{c: row[c] for c in columns} for row in after[table]] == rows, table


def dump_tables(path: Path) -> dict[str, list[dict[str, object]]]:
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return {
                table: [
                    dict(row._mapping)
                    for row in connection.exec_driver_sql(f"SELECT * FROM {table} ORDER BY id")
                ]
                for table in sorted(TABLES)
            }
    finally:
        engine.dispose()


def test_contributors_alembic_cli_works_from_the_repo_root(tmp_path: Path) -> None:
    url = f"url=sqlite:///{tmp_path / 'dev.db'}"
    alembic = [sys.executable, "-W", "always", "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "-x", url]
    upgrade = subprocess.run([*alembic, "upgrade", "head"], cwd=ROOT, capture_output=True, text=True)
    assert upgrade.returncode == 0, upgrade.stderr
    assert "Warning" not in upgrade.stderr, upgrade.stderr  # path_separator is set, among others
    check = subprocess.run([*alembic, "check"], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr + check.stdout
    assert "No new upgrade operations detected" in check.stdout + check.stderr
