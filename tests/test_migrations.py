"""Alembic owns the schema: one head, clean up/down paths, models that match, data that survives."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from bflsync.store import access

ROOT = Path(__file__).resolve().parent.parent
TABLES = {"finetune", "finetune_version", "sync_run", "sync_error"}


def table_names(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    connection.close()
    return {name for (name,) in rows}


def test_upgrade_from_base_creates_every_table(db_path: Path) -> None:
    access.upgrade_store(access.locate_store(str(db_path)), revision="head").engine.dispose()
    assert TABLES | {"alembic_version"} <= table_names(db_path)


def test_downgrade_to_base_and_back_up(db_path: Path) -> None:
    location = access.locate_store(str(db_path))
    access.upgrade_store(location, revision="head").engine.dispose()
    access.downgrade_store(location, revision="base")
    assert table_names(db_path) == {"alembic_version"}
    opened = access.upgrade_store(location, revision="head")
    with opened.engine.connect() as connection:
        assert access.read_revision(connection) == access.HEAD_REVISION
    opened.engine.dispose()
    assert table_names(db_path) >= TABLES


def test_models_match_migrations(db_path: Path) -> None:
    location = access.locate_store(str(db_path))
    access.upgrade_store(location, revision="head").engine.dispose()
    engine = access.open_store_for_read(location)
    try:
        with engine.connect() as connection:
            access.alembic_check(connection)
    finally:
        engine.dispose()


def test_rows_written_at_the_first_revision_survive_the_upgrade_to_head(db_path: Path) -> None:
    location = access.locate_store(str(db_path))
    access.upgrade_store(location, revision=access.KNOWN_REVISIONS[0]).engine.dispose()
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
    opened = access.open_store_for_write(location)
    opened.engine.dispose()
    after = dump_tables(db_path)
    for table, rows in before.items():
        columns = rows[0].keys()
        expected = [{c: _in_the_one_time_form(value) for c, value in row.items()} for row in rows]
        assert [{c: row[c] for c in columns} for row in after[table]] == expected, table


def _in_the_one_time_form(value: object) -> object:
    """What 0011_iso_times makes of SQLAlchemy's former SQLite time text; other values unchanged."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", value):
        return value.replace(" ", "T") + "Z"
    return value


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


OLD_FORM = '{"iterations":300.0,"learning_rate":-0.0,"mode":"character","nested":[2.0,2.5]}'
NEW_FORM = '{"iterations":300,"learning_rate":0,"mode":"character","nested":[2,2.5]}'


def test_canonical_numbers_rewrites_old_form_details_so_a_resync_writes_no_version(db_path: Path) -> None:
    from click.testing import CliRunner
    from sync_support import KEY

    from bflsync.cli import cli
    from bflsync.extract import hash_canonical
    from bflsync.mock.server import MockBFL

    location = access.locate_store(str(db_path))
    access.upgrade_store(location, revision="0002_fts").engine.dispose()
    old_hash = hashlib.sha256(OLD_FORM.encode()).hexdigest()
    with sqlite3.connect(db_path) as connection:
        connection.execute(
            "INSERT INTO finetune (id, source, finetune_id, details, mode, iterations, learning_rate,"
            " content_hash, version, first_seen_at, last_seen_at, last_changed_at)"
            " VALUES (1, ?, 'ft', ?, 'character', 300, 0.0, ?, 1, '2026-01-01 00:00:00.000000',"
            " '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')",
            ("127.0.0.1", OLD_FORM, old_hash),
        )
        connection.execute(
            "INSERT INTO finetune_version (finetune_pk, version, change, details, content_hash, changed_keys,"
            " observed_at) VALUES (1, 1, 'created', ?, ?, '[]', '2026-01-01 00:00:00.000000')",
            (OLD_FORM, old_hash),
        )
    connection.close()

    access.open_store_for_write(location).engine.dispose()

    new_hash = hash_canonical(NEW_FORM)
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("SELECT details, content_hash FROM finetune").fetchall() == [
            (NEW_FORM, new_hash)
        ]
        assert connection.execute("SELECT details, content_hash FROM finetune_version").fetchall() == [
            (NEW_FORM, new_hash)
        ]
        assert connection.execute(
            "SELECT rowid FROM finetune_fts WHERE finetune_fts MATCH 'character'"
        ).fetchall() == [(1,)]
    connection.close()
    with MockBFL.serve({"ft": json.loads(OLD_FORM)}, api_key=KEY) as mock:
        source = mock.base_url.removeprefix("http://")
        with sqlite3.connect(db_path) as connection:
            connection.execute("UPDATE finetune SET source = ?", (source,))
        connection.close()
        result = CliRunner().invoke(
            cli,
            ["--db", str(db_path), "sync", "--base-url", mock.base_url, "--json"],
            env={"BFL_API_KEY": KEY},
            catch_exceptions=False,
        )
    assert result.exit_code == 0, result.output
    assert (json.loads(result.stdout)["unchanged"], json.loads(result.stdout)["updated"]) == (1, 0)
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("SELECT count(*) FROM finetune_version").fetchall() == [(1,)]
    connection.close()
