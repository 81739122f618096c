"""Values the JSON may hold but a database refuses: stored in a documented form, or failed per finetune.

Every test runs on SQLite and PostgreSQL through the real ``bflsync sync`` against the loopback mock.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import string
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine

from bflsync.bfl.client import BflClient
from bflsync.cli import cli
from bflsync.config import Secret
from bflsync.extract import content_hash
from bflsync.mock.server import MockBFL
from bflsync.store import access
from bflsync.sync.run import SyncOptions, SyncResult, run_sync

KEY = "storage-test-key"
NUL_COMMENT = {"finetune_comment": "before\u0000after", "mode": "character", "trigger_word": "T\u0000K"}
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PLAIN = {"finetune_comment": "plain", "mode": "style"}


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve(
        {"nul": NUL_COMMENT, "plain": PLAIN, "other": {"mode": "product"}}, api_key=KEY
    ) as server:
        yield server


def sync(store_db: str, mock: MockBFL, *args: str) -> Result:
    return CliRunner().invoke(
        cli,
        ["--db", store_db, "sync", "--base-url", mock.base_url, "--json", *args],
        env={"BFL_API_KEY": KEY},
        catch_exceptions=False,
    )


def fetch(store_db: str, query: str) -> list[dict[str, Any]]:
    engine = sa.create_engine(store_db if "://" in store_db else f"sqlite:///{store_db}")
    try:
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(sa.text(query))]
    finally:
        engine.dispose()


def test_a_nul_in_a_comment_is_stored_with_the_rest_of_its_batch(store_db: str, mock: MockBFL) -> None:
    result = sync(store_db, mock)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["created"] == 3
    [row] = fetch(
        store_db,
        "SELECT details, finetune_comment, trigger_word, content_hash FROM finetune WHERE finetune_id = 'nul'",
    )
    # The details text keeps JSON's escape, so it parses back to exactly what the API sent.
    assert "before\\u0000after" in row["details"]
    assert json.loads(row["details"]) == NUL_COMMENT
    assert row["content_hash"] == content_hash(NUL_COMMENT)
    assert (row["finetune_comment"], row["trigger_word"]) == ("before\ufffdafter", "T\ufffdK")
    assert sorted(r["finetune_id"] for r in fetch(store_db, "SELECT finetune_id FROM finetune")) == [
        "nul",
        "other",
        "plain",
    ]


def refusing_engine(store_db: str) -> Engine:
    """A store at head whose database refuses one value of :data:`REFUSED`: SQLite's length limit
    lowered on every connection; on PostgreSQL, a B-tree index entry over a third of a page."""
    engine = access.open_store_for_write(access.locate_store(store_db)).engine
    if engine.dialect.name == "sqlite":
        sa.event.listen(
            engine, "connect", lambda dbapi, _: dbapi.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 50_000)
        )
        engine.dispose()
    return engine


# Random letters do not compress, so PostgreSQL cannot shrink the indexed trigger word under its limit.
REFUSED = {
    "finetune_comment": "x" * 60_000,
    "trigger_word": "".join(random.Random(9).choices(string.ascii_letters, k=12_000)),
}


def sync_library(engine: Engine, mock: MockBFL) -> SyncResult:
    async def go() -> SyncResult:
        async with BflClient(api_key=Secret(KEY), base_url=mock.base_url) as client:
            return await run_sync(
                engine=engine, client=client, options=SyncOptions(), now=lambda: NOW, pid=4242
            )

    return asyncio.run(go())


def test_a_value_the_store_refuses_fails_only_its_finetune(store_db: str, mock: MockBFL) -> None:
    mock.put("huge", REFUSED)
    engine = refusing_engine(store_db)
    try:
        result = sync_library(engine, mock)
    finally:
        engine.dispose()
    assert (result.status, result.listed, result.fetched, result.created, result.failed) == (
        "partial",
        4,
        3,
        3,
        1,
    )
    assert sorted(r["finetune_id"] for r in fetch(store_db, "SELECT finetune_id FROM finetune")) == [
        "nul",
        "other",
        "plain",
    ]
    [error] = fetch(
        store_db, "SELECT sync_run_id, finetune_id, kind, http_status, message, attempts FROM sync_error"
    )
    assert error == {
        "sync_run_id": result.run_id,
        "finetune_id": "huge",
        "kind": "storage",
        "http_status": None,
        "message": error["message"],
        "attempts": 1,
    }
    assert error["message"].startswith("cannot store finetune 'huge': ")
    assert "\n" not in error["message"] and "xxxx" not in error["message"]
    [run] = fetch(store_db, "SELECT status, fetched, created, failed FROM sync_run")
    assert run == {"status": "partial", "fetched": 3, "created": 3, "failed": 1}


def test_a_refused_finetune_is_stored_by_a_later_run_once_it_fits(store_db: str, mock: MockBFL) -> None:
    mock.put("huge", REFUSED)
    engine = refusing_engine(store_db)
    try:
        assert sync_library(engine, mock).status == "partial"
        mock.put("huge", {"finetune_comment": "smaller now"})
        result = sync_library(engine, mock)
    finally:
        engine.dispose()
    assert (result.status, result.created, result.unchanged, result.failed) == ("ok", 1, 3, 0)
    assert fetch(store_db, "SELECT finetune_comment FROM finetune WHERE finetune_id = 'huge'") == [
        {"finetune_comment": "smaller now"}
    ]


def test_postgresql_refusing_values_makes_the_sync_command_exit_1_not_70(pg_url: str, mock: MockBFL) -> None:
    mock.put("huge", REFUSED)
    # A NUL cannot be in a PostgreSQL text column at all, and an id is never rewritten: it names the finetune.
    mock.put("nul\u0000id", PLAIN)
    result = CliRunner().invoke(
        cli,
        ["--db", pg_url, "sync", "--base-url", mock.base_url, "--json"],
        env={"BFL_API_KEY": KEY},
    )
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert (summary["status"], summary["created"], summary["failed"]) == ("partial", 3, 2)
    errors = fetch(pg_url, "SELECT finetune_id, kind FROM sync_error ORDER BY finetune_id")
    assert errors == [
        {"finetune_id": "huge", "kind": "storage"},
        {"finetune_id": "nul\ufffdid", "kind": "storage"},
    ]
    assert "cannot store finetune 'huge'" in result.stderr
    assert "Traceback" not in result.output


def test_a_sqlite_store_written_with_nul_columns_gets_no_new_version_from_the_change(
    db_path: Path, mock: MockBFL
) -> None:
    """Stores from before U+FFFD kept NUL in extracted columns; the hash is of the raw details, so nothing changes."""
    assert sync(str(db_path), mock).exit_code == 0
    with sqlite3.connect(db_path) as connection:
        connection.execute(
            "UPDATE finetune SET finetune_comment = 'before' || char(0) || 'after' WHERE finetune_id = 'nul'"
        )
    connection.close()
    summary = json.loads(sync(str(db_path), mock).stdout)
    assert (summary["unchanged"], summary["updated"]) == (3, 0)
    assert fetch(str(db_path), "SELECT count(*) AS n FROM finetune_version") == [{"n": 3}]
    reextracted = CliRunner().invoke(cli, ["--db", str(db_path), "db", "reextract"], catch_exceptions=False)
    assert reextracted.exit_code == 0, reextracted.output
    assert fetch(str(db_path), "SELECT finetune_comment FROM finetune WHERE finetune_id = 'nul'") == [
        {"finetune_comment": "before\ufffdafter"}
    ]
