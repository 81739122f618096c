"""``bflsync sync`` in-process (CliRunner and the library) against the mock API on a loopback socket."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sync_support import ALPHA, ANY_ROW_HASH, ANY_TIME, BETA, GAMMA, KEY, rows

from bflsync import __version__
from bflsync.bfl.client import BflClient
from bflsync.cli import cli
from bflsync.config import MAX_API_KEY_CHARS, Secret
from bflsync.errors import ExitCode, RunFailedError
from bflsync.extract import canonical_json, content_hash
from bflsync.mock.server import LISTING, MockBFL
from bflsync.store import access
from bflsync.store.lock import sync_lock_for
from bflsync.sync.run import ProgressCallback, SyncOptions, SyncResult, run_sync
from bflsync.timeform import iso_utc

T1 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
T2 = datetime(2026, 1, 2, 9, 0, tzinfo=UTC)
T3 = datetime(2026, 1, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": ALPHA, "beta": BETA, "gamma": GAMMA}, api_key=KEY) as server:
        yield server


@pytest.fixture
def source(mock: MockBFL) -> str:
    return mock.base_url.removeprefix("http://")


def invoke(runner: CliRunner, db_path: Path, mock: MockBFL, *args: str, key: str = KEY) -> Result:
    return runner.invoke(
        cli,
        ["--db", str(db_path), "sync", "--base-url", mock.base_url, *args],
        env={"BFL_API_KEY": key},
        catch_exceptions=False,
    )


def sync_at(engine: Engine | None, mock: MockBFL, at: datetime, **options: Any) -> SyncResult:
    """One sync through the library with a fixed clock, so timestamps can be asserted exactly."""

    async def go() -> SyncResult:
        async with BflClient(api_key=Secret(KEY), base_url=mock.base_url) as client:
            return await run_sync(
                engine=engine, client=client, options=SyncOptions(**options), now=lambda: at, pid=4242
            )

    return asyncio.run(go())


def text(moment: datetime) -> str:
    return iso_utc(moment)


def version_row(
    finetune_id: str,
    version: int,
    change: str,
    details: dict[str, Any] | None,
    keys: list[str],
    at: datetime,
    run: int,
) -> dict[str, Any]:
    return {
        "finetune_id": finetune_id,
        "version": version,
        "change": change,
        "details": None if details is None else canonical_json(details),
        "content_hash": None if details is None else content_hash(details),
        "changed_keys": json.dumps(keys, separators=(",", ":")),
        "observed_at": text(at),
        "sync_run_id": run,
    }


def versions(db_path: Path) -> list[dict[str, Any]]:
    """Every version row, with its finetune's id in place of the key (fetches finish in any order)."""
    return rows(
        db_path,
        "SELECT f.finetune_id, v.version, v.change, v.details, v.content_hash, v.changed_keys, v.observed_at,"
        " v.sync_run_id FROM finetune_version AS v JOIN finetune AS f ON f.id = v.finetune_pk"
        " ORDER BY f.finetune_id, v.version",
    )


def finetunes(db_path: Path) -> list[dict[str, Any]]:
    return rows(db_path, "SELECT * FROM finetune ORDER BY finetune_id")


def store_dump(db_path: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        table: rows(db_path, f"SELECT * FROM {table} ORDER BY id")
        for table in ("finetune", "finetune_version", "sync_error")
    }


# --- what a sync stores -------------------------------------------------------------------------


def test_first_sync_stores_each_finetune_with_version_1(
    runner: CliRunner, db_path: Path, mock: MockBFL, source: str
) -> None:
    result = invoke(runner, db_path, mock)

    stored = finetunes(db_path)
    assert result.exit_code == 0, result.output
    assert sorted(row.pop("id") for row in stored) == [1, 2, 3]
    assert stored == [
        {
            "source": source,
            "account": "default",
            "finetune_id": "alpha",
            "details": canonical_json(ALPHA),
            "finetune_comment": "portrait",
            "trigger_word": "TOK",
            "mode": "character",
            "finetune_type": "lora",
            "priority": "quality",
            "iterations": 300,
            "lora_rank": 32,
            "learning_rate": 1e-05,
            "captioning": 1,
            "remote_timestamp": "2024-09-01T10:00:00.000000Z",
            "content_hash": content_hash(ALPHA),
            "version": 1,
            "first_seen_at": ANY_TIME,
            "last_seen_at": ANY_TIME,
            "last_changed_at": ANY_TIME,
            "deleted_at": None,
            "status": "Ready",
            "progress": 1.0,
            "status_checked_at": ANY_TIME,
            "ready_at": ANY_TIME,
        },
        {
            "source": source,
            "account": "default",
            "finetune_id": "beta",
            "details": canonical_json(BETA),
            "finetune_comment": None,
            "trigger_word": "SKS",
            "mode": "style",
            "finetune_type": "full",
            "priority": None,
            "iterations": 500,
            "lora_rank": None,
            "learning_rate": None,
            "captioning": None,
            "remote_timestamp": None,
            "content_hash": content_hash(BETA),
            "version": 1,
            "first_seen_at": ANY_TIME,
            "last_seen_at": ANY_TIME,
            "last_changed_at": ANY_TIME,
            "deleted_at": None,
            "status": "Ready",
            "progress": 1.0,
            "status_checked_at": ANY_TIME,
            "ready_at": ANY_TIME,
        },
        {
            "source": source,
            "account": "default",
            "finetune_id": "gamma",
            "details": canonical_json(GAMMA),
            "finetune_comment": None,
            "trigger_word": None,
            "mode": "product",
            "finetune_type": None,
            "priority": None,
            "iterations": None,
            "lora_rank": None,
            "learning_rate": None,
            "captioning": 0,
            "remote_timestamp": None,
            "content_hash": content_hash(GAMMA),
            "version": 1,
            "first_seen_at": ANY_TIME,
            "last_seen_at": ANY_TIME,
            "last_changed_at": ANY_TIME,
            "deleted_at": None,
            "status": "Ready",
            "progress": 1.0,
            "status_checked_at": ANY_TIME,
            "ready_at": ANY_TIME,
        },
    ]


def test_three_syncs_record_updated_deleted_and_restored_versions(
    store_engine: Engine, db_path: Path, mock: MockBFL
) -> None:
    sync_at(store_engine, mock, T1)
    alpha_v2 = {**ALPHA, "iterations": 400, "lora_rank": 16}
    mock.put("alpha", alpha_v2)
    mock.remove("gamma")
    sync_at(store_engine, mock, T2)
    mock.put("gamma", GAMMA)
    third = sync_at(store_engine, mock, T3)

    assert versions(db_path) == [
        version_row("alpha", 1, "created", ALPHA, sorted(ALPHA), T1, 1),
        version_row("alpha", 2, "updated", alpha_v2, ["iterations", "lora_rank"], T2, 2),
        version_row("beta", 1, "created", BETA, sorted(BETA), T1, 1),
        version_row("gamma", 1, "created", GAMMA, sorted(GAMMA), T1, 1),
        version_row("gamma", 2, "deleted", None, sorted(GAMMA), T2, 2),
        version_row("gamma", 3, "restored", GAMMA, [], T3, 3),
    ]
    assert third.restored == 1 and third.unchanged == 2


def test_restored_finetune_row_is_live_again_at_its_latest_version(
    store_engine: Engine, db_path: Path, mock: MockBFL
) -> None:
    sync_at(store_engine, mock, T1)
    mock.remove("gamma")
    sync_at(store_engine, mock, T2)
    deleted_row = rows(db_path, "SELECT version, deleted_at FROM finetune WHERE finetune_id = 'gamma'")
    mock.put("gamma", GAMMA)
    sync_at(store_engine, mock, T3)

    assert deleted_row == [{"version": 2, "deleted_at": text(T2)}]
    assert rows(
        db_path,
        "SELECT version, deleted_at, first_seen_at, last_seen_at, last_changed_at FROM finetune "
        "WHERE finetune_id = 'gamma'",
    ) == [
        {
            "version": 3,
            "deleted_at": None,
            "first_seen_at": text(T1),
            "last_seen_at": text(T3),
            "last_changed_at": text(T3),
        }
    ]


def test_second_sync_of_unchanged_data_writes_no_version_rows(
    store_engine: Engine, db_path: Path, mock: MockBFL
) -> None:
    sync_at(store_engine, mock, T1)
    before = versions(db_path)
    second = sync_at(store_engine, mock, T2)

    assert versions(db_path) == before
    assert rows(db_path, "SELECT DISTINCT last_seen_at, last_changed_at FROM finetune") == [
        {"last_seen_at": text(T2), "last_changed_at": text(T1)}
    ]
    assert (second.status, second.unchanged, second.created, second.updated) == ("ok", 3, 0, 0)


def test_the_same_numbers_spelled_as_floats_write_no_new_version(
    store_engine: Engine, db_path: Path, mock: MockBFL
) -> None:
    mock.put("alpha", {**ALPHA, "iterations": 300, "learning_rate": 0.0})
    sync_at(store_engine, mock, T1)
    before = versions(db_path)
    mock.put("alpha", {**ALPHA, "iterations": 300.0, "learning_rate": -0.0})

    second = sync_at(store_engine, mock, T2)

    assert versions(db_path) == before
    assert (second.unchanged, second.updated) == (3, 0)
    [stored] = rows(db_path, "SELECT details, iterations FROM finetune WHERE finetune_id = 'alpha'")
    assert stored["iterations"] == 300
    assert json.loads(stored["details"])["learning_rate"] == 0


def test_run_row_records_source_pid_counts_and_times(
    store_engine: Engine, db_path: Path, mock: MockBFL, source: str
) -> None:
    sync_at(store_engine, mock, T1)
    mock.remove("beta")
    sync_at(store_engine, mock, T2)

    assert rows(db_path, "SELECT * FROM sync_run WHERE id = 2") == [
        {
            "id": 2,
            "started_at": text(T2),
            "finished_at": text(T2),
            "status": "ok",
            "source": source,
            "account": "default",
            "key_changed": 0,
            "pid": 4242,
            "bflsync_version": __version__,
            "listed": 2,
            "fetched": 2,
            "created": 0,
            "updated": 0,
            "unchanged": 2,
            "deleted": 1,
            "restored": 0,
            "failed": 0,
            "error": None,
            "status_failed": 0,
            "credits": 9989.0,
            # The run is the chain's newest row: after every version and status of both syncs.
            "chain_seq": rows(
                db_path,
                "SELECT count(*) AS n FROM (SELECT id FROM finetune_version UNION ALL"
                " SELECT id FROM finetune_status UNION ALL SELECT id FROM sync_run)",
            )[0]["n"],
            "row_hash": ANY_ROW_HASH,
        }
    ]


def test_json_output_has_the_documented_keys(
    runner: CliRunner, db_path: Path, mock: MockBFL, source: str
) -> None:
    result = invoke(runner, db_path, mock, "--json")

    payload = json.loads(result.stdout)
    assert isinstance(payload.pop("duration_s"), float)
    assert payload == {
        "run_id": 1,
        "status": "ok",
        "source": source,
        "account": "default",
        "listed": 3,
        "fetched": 3,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "restored": 0,
        "failed": 0,
        "status_failed": 0,
        "status_checked": 3,
        "status_changed": 3,
        "credits": 9989.0,
        "key_changed": False,
    }


def test_without_json_stdout_is_empty_and_stderr_has_one_summary_line(
    runner: CliRunner, db_path: Path, mock: MockBFL, store_engine: Engine
) -> None:
    result = invoke(runner, db_path, mock)

    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"sync ok: 3 listed, 3 created, 0 updated, 0 deleted, 0 restored, 0 unchanged, 0 failed; "
        f"status: 3 checked, 3 changed; credits 9989 in "
        f"{result.stderr.split(' in ')[1].split(' s ')[0]} s (run 1, {mock.base_url.removeprefix('http://')})"
    ]


def test_quiet_prints_nothing_on_success(runner: CliRunner, db_path: Path, mock: MockBFL) -> None:
    result = runner.invoke(
        cli,
        ["--db", str(db_path), "-q", "sync", "--base-url", mock.base_url],
        env={"BFL_API_KEY": KEY},
        catch_exceptions=False,
    )

    assert (result.exit_code, result.output) == (0, "")


def test_verbose_logs_each_request_without_the_key(
    runner: CliRunner, db_path: Path, mock: MockBFL, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bflsync"):
        result = runner.invoke(
            cli,
            ["--db", str(db_path), "-v", "sync", "--base-url", mock.base_url],
            env={"BFL_API_KEY": KEY},
            catch_exceptions=False,
        )

    requests = [r.getMessage() for r in caplog.records if r.name == "bflsync.bfl.client"]
    assert result.exit_code == 0
    assert "GET /v1/finetune_details?finetune_id=beta -> 200 (attempt 1," in "\n".join(requests)
    # The credits, the listing, and per finetune its details and (new to the store) its status.
    assert len(requests) == 8
    assert KEY not in caplog.text + result.output


# --- partial failure, listing failure, auth -------------------------------------------------------


def test_failed_finetunes_are_logged_and_the_rest_stored(
    runner: CliRunner, db_path: Path, mock: MockBFL, store_engine: Engine
) -> None:
    for finetune_id in ("p500", "pbad", "pnon", "t429", "t500", "thang"):
        mock.put(finetune_id, {"mode": "general", "finetune_comment": finetune_id})
    assert invoke(runner, db_path, mock).exit_code == 0
    before = {r["finetune_id"]: r for r in finetunes(db_path)}
    for finetune_id in ("p500", "pbad", "pnon", "t429", "t500", "thang", "alpha"):
        mock.put(finetune_id, {"mode": "style", "finetune_comment": f"{finetune_id} v2"})
    mock.fail("p500", status=500)
    mock.bad_json("pbad")
    mock.non_object("pnon")
    mock.fail("t429", status=429, times=1, headers={"retry-after": "0"})
    mock.fail("t500", status=500, times=1)
    mock.hang("thang", seconds=1.5, times=1)

    result = invoke(runner, db_path, mock, "--max-retries", "1", "--timeout", "0.5", "--json")

    after = {r["finetune_id"]: r for r in finetunes(db_path)}
    assert result.exit_code == 1, result.output
    assert json.loads(result.stdout)["failed"] == 3
    assert rows(
        db_path,
        "SELECT sync_run_id, finetune_id, kind, http_status, attempts FROM sync_error ORDER BY finetune_id",
    ) == [
        {"sync_run_id": 2, "finetune_id": "p500", "kind": "http", "http_status": 500, "attempts": 2},
        {"sync_run_id": 2, "finetune_id": "pbad", "kind": "bad_json", "http_status": 200, "attempts": 1},
        {"sync_run_id": 2, "finetune_id": "pnon", "kind": "bad_json", "http_status": 200, "attempts": 1},
    ]
    assert {finetune_id: after[finetune_id] for finetune_id in ("p500", "pbad", "pnon")} == {
        finetune_id: before[finetune_id] for finetune_id in ("p500", "pbad", "pnon")
    }
    assert {
        finetune_id: after[finetune_id]["version"] for finetune_id in ("t429", "t500", "thang", "alpha")
    } == {
        "t429": 2,
        "t500": 2,
        "thang": 2,
        "alpha": 2,
    }
    assert rows(db_path, "SELECT count(*) AS n FROM finetune WHERE deleted_at IS NOT NULL") == [{"n": 0}]


def test_failure_messages_name_the_request_and_the_status(
    runner: CliRunner, db_path: Path, mock: MockBFL
) -> None:
    mock.fail("beta", status=500)

    result = invoke(runner, db_path, mock, "--max-retries", "0")

    assert result.exit_code == 1
    [error] = rows(db_path, "SELECT message FROM sync_error")
    assert error["message"].startswith(
        "the BFL API failed after 1 attempt(s); GET /v1/finetune_details?finetune_id=beta -> 500"
    )
    assert "finetune beta not stored: the BFL API failed" in result.stderr


def test_partial_run_row_is_partial_with_counts(
    runner: CliRunner, db_path: Path, mock: MockBFL, source: str
) -> None:
    mock.fail("beta", status=500)

    invoke(runner, db_path, mock, "--max-retries", "0")

    [run] = rows(db_path, "SELECT status, listed, fetched, created, failed, error FROM sync_run")
    assert run == {"status": "partial", "listed": 3, "fetched": 2, "created": 2, "failed": 1, "error": None}


def test_refused_key_exits_3_naming_the_host_and_leaves_the_store_untouched(
    runner: CliRunner, db_path: Path, mock: MockBFL, source: str
) -> None:
    invoke(runner, db_path, mock)
    before = store_dump(db_path)

    result = invoke(runner, db_path, mock, key="wrong-key-0xdeadbeef")

    assert result.exit_code == 3
    assert result.stderr.startswith(
        f"bflsync: error: the API key was refused by {source} (GET /v1/my_finetunes"
    )
    assert store_dump(db_path) == before
    assert "wrong-key-0xdeadbeef" not in result.output


def test_refused_key_marks_the_run_failed_without_the_key(
    runner: CliRunner, db_path: Path, mock: MockBFL, source: str
) -> None:
    invoke(runner, db_path, mock, key="wrong-key-0xdeadbeef")

    [run] = rows(db_path, "SELECT status, listed, fetched, finished_at, error FROM sync_run")
    assert run == {
        "status": "failed",
        "listed": 0,
        "fetched": 0,
        "finished_at": ANY_TIME,
        "error": run["error"],
    }
    assert run["error"].startswith(f"the API key was refused by {source} (GET /v1/my_finetunes -> 401")
    assert "wrong-key" not in db_path.read_bytes().decode("latin-1")


def test_listing_failure_exits_3_and_writes_only_the_failed_run(
    runner: CliRunner, db_path: Path, mock: MockBFL, source: str
) -> None:
    invoke(runner, db_path, mock)
    before = store_dump(db_path)
    mock.fail(LISTING, status=503)

    result = invoke(runner, db_path, mock, "--max-retries", "0", "--json")

    assert result.exit_code == 3
    assert json.loads(result.stdout)["status"] == "failed"
    assert store_dump(db_path) == before
    [run] = rows(db_path, "SELECT status, error FROM sync_run WHERE id = 2")
    assert run["status"] == "failed"
    assert run["error"].startswith(
        f"cannot list finetunes at {source}: the BFL API failed after 1 attempt(s); "
        "GET /v1/my_finetunes -> 503"
    )


# --- input errors ------------------------------------------------------------------------------


def test_missing_key_exits_2_naming_BFL_API_KEY(runner: CliRunner, db_path: Path, mock: MockBFL) -> None:
    result = runner.invoke(cli, ["--db", str(db_path), "sync", "--base-url", mock.base_url])

    assert result.exit_code == 2
    assert "BFL_API_KEY" in result.stderr
    assert not db_path.exists()


def test_plain_http_to_a_remote_host_exits_2(runner: CliRunner, db_path: Path) -> None:
    result = runner.invoke(
        cli,
        ["--db", str(db_path), "sync", "--base-url", "http://api.example.com"],
        env={"BFL_API_KEY": KEY},
    )

    assert result.exit_code == 2
    assert "refusing plain http:// to api.example.com" in result.stderr
    assert not db_path.exists()


def test_region_and_base_url_together_exit_2(runner: CliRunner, db_path: Path, mock: MockBFL) -> None:
    result = runner.invoke(
        cli,
        ["--db", str(db_path), "sync", "--region", "eu1", "--base-url", mock.base_url],
        env={"BFL_API_KEY": KEY},
    )

    assert (result.exit_code, result.stderr) == (
        2,
        "bflsync: error: give either --region or --base-url, not both\n",
    )


def test_new_only_with_id_exits_2(runner: CliRunner, db_path: Path, mock: MockBFL) -> None:
    result = runner.invoke(
        cli,
        ["--db", str(db_path), "sync", "--base-url", mock.base_url, "--new-only", "--id", "alpha"],
        env={"BFL_API_KEY": KEY},
    )

    assert result.exit_code == 2
    assert "--new-only" in result.stderr


def test_BFL_API_URL_gives_the_base_url(runner: CliRunner, db_path: Path, mock: MockBFL, source: str) -> None:
    result = runner.invoke(
        cli,
        ["--db", str(db_path), "sync", "--json"],
        env={"BFL_API_KEY": KEY, "BFL_API_URL": mock.base_url},
        catch_exceptions=False,
    )

    assert json.loads(result.stdout)["source"] == source


def test_api_key_file_is_used_instead_of_the_environment(
    runner: CliRunner, db_path: Path, mock: MockBFL, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")

    result = runner.invoke(
        cli,
        ["--db", str(db_path), "sync", "--base-url", mock.base_url, "--api-key-file", str(key_file)],
        env={"BFL_API_KEY": "not-the-key"},
        catch_exceptions=False,
    )

    assert result.exit_code == 0


@pytest.mark.parametrize("source", ["file", "environment", "endless file"])
def test_an_api_key_longer_than_any_real_key_is_refused_before_anything_runs(
    runner: CliRunner, db_path: Path, mock: MockBFL, tmp_path: Path, source: str
) -> None:
    key = "k" * 100_000
    key_file = tmp_path / "key"
    key_file.write_text(key)
    key_file.chmod(0o600)
    options = {"file": ["--api-key-file", str(key_file)], "environment": []}
    endless = ["--api-key-file", "/dev/zero"]

    result = runner.invoke(
        cli,
        ["--db", str(db_path), "sync", "--base-url", mock.base_url, *options.get(source, endless)],
        env={"BFL_API_KEY": key},
    )

    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith("bflsync: error: the API key from ")
    assert result.stderr.endswith(f"is longer than {MAX_API_KEY_CHARS:,} characters: is it the key?\n")
    assert not db_path.exists()


@pytest.mark.parametrize(
    ("mode", "quiet", "warned"),
    [(0o644, False, True), (0o640, True, True), (0o604, False, True), (0o600, False, False)],
)
def test_an_api_key_file_others_can_read_gets_one_warning_line(
    runner: CliRunner, db_path: Path, mock: MockBFL, tmp_path: Path, mode: int, quiet: bool, warned: bool
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(mode)

    result = runner.invoke(
        cli,
        [
            "--db",
            str(db_path),
            *(["--quiet"] if quiet else []),
            "sync",
            "--base-url",
            mock.base_url,
            "--api-key-file",
            str(key_file),
        ],
        catch_exceptions=False,
    )

    assert result.exit_code == 0
    warnings = [line for line in result.stderr.splitlines() if line.startswith("bflsync: warning:")]
    assert warnings == (
        [
            f"bflsync: warning: the API key file {key_file} can be read by others (mode {mode:04o}); "
            f"make it private: chmod 600 {key_file}"
        ]
        if warned
        else []
    )
    assert KEY not in result.stderr


# --- dry run, --new-only, --id ---------------------------------------------------------------


def test_dry_run_does_not_create_a_missing_store(runner: CliRunner, db_path: Path, mock: MockBFL) -> None:
    result = invoke(runner, db_path, mock, "--dry-run", "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout)["created"] == 3
    assert list(db_path.parent.iterdir()) == []


def test_dry_run_reports_changes_and_leaves_the_store_bytes_unchanged(
    runner: CliRunner, db_path: Path, mock: MockBFL, store_engine: Engine
) -> None:
    invoke(runner, db_path, mock)
    store_engine.dispose()
    before = db_path.read_bytes()
    mock.put("alpha", {**ALPHA, "iterations": 1})
    mock.remove("beta")
    mock.put("delta", GAMMA)

    result = invoke(runner, db_path, mock, "--dry-run", "--json")

    payload = json.loads(result.stdout)
    assert db_path.read_bytes() == before
    assert {key: payload[key] for key in ("run_id", "created", "updated", "unchanged", "deleted")} == {
        "run_id": None,
        "created": 1,
        "updated": 1,
        "unchanged": 1,
        "deleted": 1,
    }
    assert result.stderr.startswith("dry run, nothing written; would be 1 created, 1 updated, 1 deleted")


def test_new_only_fetches_only_finetunes_not_stored(
    store_engine: Engine, db_path: Path, mock: MockBFL
) -> None:
    sync_at(store_engine, mock, T1)
    mock.put("alpha", {**ALPHA, "iterations": 1})
    mock.put("delta", GAMMA)
    mock.clear_requests()

    result = sync_at(store_engine, mock, T2, new_only=True)

    assert [r.finetune_id for r in mock.requests if r.finetune_id] == ["delta"]
    assert (result.listed, result.fetched, result.created, result.updated) == (4, 1, 1, 0)


def test_new_only_still_marks_unlisted_finetunes_deleted(
    store_engine: Engine, db_path: Path, mock: MockBFL
) -> None:
    sync_at(store_engine, mock, T1)
    mock.remove("beta")

    result = sync_at(store_engine, mock, T2, new_only=True)

    assert result.deleted == 1
    assert rows(db_path, "SELECT finetune_id, deleted_at FROM finetune WHERE deleted_at IS NOT NULL") == [
        {"finetune_id": "beta", "deleted_at": text(T2)}
    ]


def test_new_only_restores_a_deleted_finetune_listed_again(
    store_engine: Engine, db_path: Path, mock: MockBFL
) -> None:
    sync_at(store_engine, mock, T1)
    mock.remove("beta")
    sync_at(store_engine, mock, T2)
    mock.put("beta", BETA)

    result = sync_at(store_engine, mock, T3, new_only=True)

    assert (result.fetched, result.restored) == (1, 1)


def test_id_syncs_only_the_given_finetunes_without_listing(
    store_engine: Engine, db_path: Path, mock: MockBFL
) -> None:
    sync_at(store_engine, mock, T1)
    mock.remove("gamma")
    mock.put("alpha", {**ALPHA, "iterations": 1})
    mock.put("beta", {**BETA, "iterations": 1})
    mock.clear_requests()

    result = sync_at(store_engine, mock, T2, only_ids=("alpha", "alpha"))

    assert sorted(r.path for r in mock.requests) == ["/v1/credits", "/v1/finetune_details"]
    assert (result.listed, result.fetched, result.updated, result.deleted) == (0, 1, 1, 0)
    assert rows(db_path, "SELECT finetune_id, version, deleted_at FROM finetune ORDER BY finetune_id") == [
        {"finetune_id": "alpha", "version": 2, "deleted_at": None},
        {"finetune_id": "beta", "version": 1, "deleted_at": None},
        {"finetune_id": "gamma", "version": 1, "deleted_at": None},
    ]


def test_id_of_an_unknown_finetune_is_a_not_found_failure(
    runner: CliRunner, db_path: Path, mock: MockBFL
) -> None:
    result = invoke(runner, db_path, mock, "--id", "nope")

    assert result.exit_code == 1
    assert rows(db_path, "SELECT finetune_id, kind, http_status FROM sync_error") == [
        {"finetune_id": "nope", "kind": "not_found", "http_status": 404}
    ]


# --- lock and stop -------------------------------------------------------------------------------


def test_locked_store_exits_4_and_leaves_the_store_as_the_holder_has_it(
    runner: CliRunner, db_path: Path, mock: MockBFL
) -> None:
    with sync_lock_for(access.locate_store(str(db_path))):
        result = runner.invoke(
            cli, ["--db", str(db_path), "sync", "--base-url", mock.base_url], env={"BFL_API_KEY": KEY}
        )
        assert (result.exit_code, result.stderr) == (
            4,
            f"bflsync: error: another sync is running (pid {os.getpid()})\n",
        )
        # The holder created the store file to lock it; the refused sync added nothing.
        assert [(p.name, p.stat().st_size) for p in db_path.parent.iterdir()] == [("store.db", 0)]


def test_wait_takes_the_lock_once_the_holder_releases_it(
    runner: CliRunner, db_path: Path, mock: MockBFL
) -> None:
    holder = sync_lock_for(access.locate_store(str(db_path)))
    holder.acquire()
    threading.Timer(0.3, holder.release).start()

    result = invoke(runner, db_path, mock, "--wait", "5")

    assert result.exit_code == 0


def test_stop_event_stores_what_was_fetched_and_marks_the_run_interrupted(
    store_engine: Engine, db_path: Path
) -> None:
    finetunes_ = {f"ft-{i:03d}": {"mode": "general", "iterations": i} for i in range(200)}
    with MockBFL.serve(finetunes_, api_key=KEY, latency_ms=20) as slow:

        async def go() -> SyncResult:
            stop = asyncio.Event()

            def stop_after_twenty(finished: int, total: int) -> None:
                # Stopping on progress, not on a timer, keeps the test independent of machine load.
                if finished >= 20:
                    stop.set()

            async with BflClient(api_key=Secret(KEY), base_url=slow.base_url, concurrency=4) as client:
                return await run_sync(
                    engine=store_engine,
                    client=client,
                    options=SyncOptions(flush_interval_s=0.1),
                    now=lambda: T1,
                    pid=1,
                    progress=stop_after_twenty,
                    stop=stop,
                )

        result = asyncio.run(go())

    stored = rows(db_path, "SELECT count(*) AS n FROM finetune")[0]["n"]
    assert result.status == "interrupted"
    assert 20 <= stored == result.created < 200
    assert rows(db_path, "SELECT status, created, deleted FROM sync_run") == [
        {"status": "interrupted", "created": stored, "deleted": 0}
    ]


def test_runs_left_running_are_marked_interrupted_by_the_next_sync(
    store_engine: Engine, db_path: Path, mock: MockBFL
) -> None:
    with store_engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO sync_run (started_at, status, source, pid, bflsync_version, listed, fetched,"
            " created, updated, unchanged, deleted, restored, failed) VALUES ('2026-01-01 00:00:00',"
            " 'running', 'x', 1, '0', 0, 0, 0, 0, 0, 0, 0, 0)"
        )

    sync_at(store_engine, mock, T1)

    assert rows(db_path, "SELECT id, status, error FROM sync_run ORDER BY id") == [
        {"id": 1, "status": "interrupted", "error": "the process ended before finishing the run"},
        {"id": 2, "status": "ok", "error": None},
    ]


# --- a run that cannot finish: writer failures, crashes, a refused key -----------------------------


def sync_bounded(
    engine: Engine,
    server: MockBFL,
    *,
    progress: ProgressCallback | None = None,
    stop: asyncio.Event | None = None,
    timeout_s: float = 15.0,
    **options: Any,
) -> SyncResult:
    """One sync through the library that must end within ``timeout_s``: a hang fails the test."""

    async def go() -> SyncResult:
        async with BflClient(api_key=Secret(KEY), base_url=server.base_url) as client:
            return await asyncio.wait_for(
                run_sync(
                    engine=engine,
                    client=client,
                    options=SyncOptions(**options),
                    now=lambda: T1,
                    pid=4242,
                    progress=progress,
                    stop=stop,
                ),
                timeout_s,
            )

    return asyncio.run(go())


def give_up_on_locks_quickly(engine: Engine) -> None:
    """Writes wait 0.3 s for a locked store instead of the real busy timeout, so failures come fast."""
    engine.dispose()  # connections opened from now on get the pragma below after bflsync's own

    @event.listens_for(engine, "connect")
    def _short_busy_timeout(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA busy_timeout = 300")


class WriteLockTaker:
    """A progress callback: at the first finished fetch another connection takes the store's write
    lock and keeps it, so the sync's next batch fails with "database is locked"; optionally sets
    ``stop`` once ``stop_at`` fetches are done."""

    def __init__(self, db_path: Path, *, stop: asyncio.Event | None = None, stop_at: int = 0) -> None:
        self.db_path = db_path
        self.stop = stop
        self.stop_at = stop_at
        self.holder: sqlite3.Connection | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.holder is None:
            self.holder = sqlite3.connect(self.db_path, isolation_level=None)
            self.holder.execute("BEGIN IMMEDIATE")
        if self.stop is not None and done == self.stop_at:
            self.stop.set()

    def release(self) -> None:
        if self.holder is not None:
            self.holder.close()


def many(count: int) -> dict[str, dict[str, Any]]:
    return {f"ft-{i:03d}": {"mode": "general", "iterations": i} for i in range(count)}


def test_a_writer_failing_after_the_last_fetch_ends_the_run_with_its_error(
    store_engine: Engine, db_path: Path
) -> None:
    give_up_on_locks_quickly(store_engine)
    # Batches of 5 and a queue of 10: the first batch waits for the lock while the other ten
    # fetches fill the queue exactly, then the batch fails.
    taker = WriteLockTaker(db_path)
    with MockBFL.serve(many(15), api_key=KEY) as server:
        started = time.monotonic()
        try:
            result = sync_bounded(store_engine, server, progress=taker, batch_size=5)
        finally:
            taker.release()

    assert result.status == "failed"
    assert isinstance(result.failure, OperationalError)
    assert "database is locked" in str(result.failure)
    assert time.monotonic() - started < 5


def test_a_writer_failing_after_a_stop_ends_the_run_with_its_error(
    store_engine: Engine, db_path: Path
) -> None:
    give_up_on_locks_quickly(store_engine)
    stop = asyncio.Event()
    # Stopped when the batch being written (5) and the queue (10) hold everything fetched.
    taker = WriteLockTaker(db_path, stop=stop, stop_at=15)
    with MockBFL.serve(many(60), api_key=KEY) as server:
        started = time.monotonic()
        try:
            result = sync_bounded(store_engine, server, progress=taker, stop=stop, batch_size=5)
        finally:
            taker.release()

    assert result.status == "failed"
    assert isinstance(result.failure, OperationalError)
    assert "database is locked" in str(result.failure)
    assert time.monotonic() - started < 5


class BrokenProgress:
    """A progress display that raises once ``at`` fetches have finished."""

    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self, done: int, total: int) -> None:
        if done == self.at:
            raise RuntimeError("the progress display broke")


def test_an_unexpected_error_while_fetching_surfaces_as_that_one_error(
    store_engine: Engine, db_path: Path
) -> None:
    with MockBFL.serve(many(40), api_key=KEY) as server:
        result = sync_bounded(store_engine, server, progress=BrokenProgress(at=30), batch_size=5)

    assert repr(result.failure) == "RuntimeError('the progress display broke')"
    assert (result.status, result.error) == ("failed", "RuntimeError: the progress display broke")


def test_an_aborted_run_reports_its_real_duration(store_engine: Engine) -> None:
    with MockBFL.serve(many(40), api_key=KEY, latency_ms=50) as server:
        started = time.monotonic()
        result = sync_bounded(store_engine, server, progress=BrokenProgress(at=10), batch_size=5)
    elapsed = time.monotonic() - started

    assert result.status == "failed"
    # At least the listing and one round of detail requests, each 50 ms.
    assert 0.1 <= result.duration_s <= elapsed


def test_an_unexpected_error_while_fetching_keeps_and_counts_what_was_fetched(
    store_engine: Engine, db_path: Path
) -> None:
    with MockBFL.serve(many(40), api_key=KEY) as server:
        server_source = server.base_url.removeprefix("http://")
        # One request per finetune, as this test was written for: with a status request after each
        # details request, workers that were already running finish a finetune after the error.
        result = sync_bounded(
            store_engine, server, progress=BrokenProgress(at=30), batch_size=5, status=False, credits=False
        )

    assert (result.status, result.fetched, result.created, result.listed) == ("failed", 30, 30, 40)

    assert rows(db_path, "SELECT count(*) AS n FROM finetune_version WHERE change = 'created'") == [{"n": 30}]
    assert rows(db_path, "SELECT * FROM sync_run") == [
        {
            "id": 1,
            "started_at": text(T1),
            "finished_at": text(T1),
            "status": "failed",
            "source": server_source,
            "account": "default",
            "key_changed": 0,
            "pid": 4242,
            "bflsync_version": __version__,
            "listed": 40,
            "fetched": 30,
            "created": 30,
            "updated": 0,
            "unchanged": 0,
            "deleted": 0,
            "restored": 0,
            "failed": 0,
            "error": "RuntimeError: the progress display broke",
            "status_failed": 0,
            "credits": None,
            "chain_seq": 31,
            "row_hash": ANY_ROW_HASH,
        }
    ]


# --- the outcome: however a started run ends, run_sync returns it --------------------------------


def test_a_run_that_did_its_job_returns_an_ok_outcome_without_an_error(
    store_engine: Engine, mock: MockBFL
) -> None:
    result = sync_at(store_engine, mock, T1)

    assert (result.status, result.error, result.failure, result.exit_code()) == ("ok", None, None, 0)
    assert (result.listed, result.fetched, result.created, result.failed) == (3, 3, 3, 0)


def test_a_key_refused_while_fetching_returns_the_failure_and_the_counts_of_what_was_stored(
    store_engine: Engine, db_path: Path, mock: MockBFL, source: str
) -> None:
    mock.fail("beta", status=402)

    result = sync_at(store_engine, mock, T1)

    assert result.status == "failed"
    assert isinstance(result.failure, RunFailedError)
    assert result.failure.exit_code == ExitCode.CANNOT_RUN == result.exit_code()
    assert str(result.failure) == result.error
    assert result.error.startswith(f"stopped fetching from {source}: the BFL account is out of credits")
    stored = rows(db_path, "SELECT count(*) AS n FROM finetune")[0]["n"]
    assert (result.listed, result.failed, result.fetched, result.created) == (3, 1, stored, stored)
    [run] = rows(db_path, f"SELECT status, error, {', '.join(result.counts())} FROM sync_run")
    assert run == {"status": "failed", "error": result.error, **result.counts()}


def test_a_refused_listing_returns_a_failed_outcome_that_stored_nothing(
    store_engine: Engine, db_path: Path, mock: MockBFL, source: str
) -> None:
    mock.fail(LISTING, status=401)

    result = sync_at(store_engine, mock, T1)

    assert (result.status, result.listed, result.fetched, result.exit_code()) == ("failed", 0, 0, 3)
    assert isinstance(result.failure, RunFailedError)
    assert result.error is not None
    assert result.error.startswith(f"the API key was refused by {source} (GET /v1/my_finetunes -> 401")
    assert rows(db_path, "SELECT count(*) AS n FROM finetune") == [{"n": 0}]


def test_a_key_listing_none_of_the_stored_finetunes_returns_a_failed_outcome_exiting_2(
    store_engine: Engine, db_path: Path, mock: MockBFL
) -> None:
    sync_at(store_engine, mock, T1)
    mock.api_key = "another-accounts-key"
    for finetune_id in sorted(mock.finetunes):
        mock.remove(finetune_id)
    mock.put("other", ALPHA)

    async def go() -> SyncResult:
        async with BflClient(api_key=Secret("another-accounts-key"), base_url=mock.base_url) as client:
            return await run_sync(
                engine=store_engine, client=client, options=SyncOptions(), now=lambda: T2, pid=1
            )

    result = asyncio.run(go())

    assert (result.status, result.listed, result.fetched, result.exit_code()) == ("failed", 1, 0, 2)
    assert isinstance(result.failure, RunFailedError)
    assert result.error is not None
    assert result.error.startswith("this key lists none of the 3 finetunes stored for account 'default'")
    assert rows(db_path, "SELECT status, deleted FROM sync_run WHERE id = 2") == [
        {"status": "failed", "deleted": 0}
    ]


def test_a_stopped_run_returns_an_interrupted_outcome_exiting_by_the_signal(
    store_engine: Engine, db_path: Path, mock: MockBFL
) -> None:
    stop = asyncio.Event()
    stop.set()

    result = sync_bounded(store_engine, mock, stop=stop)

    assert (result.status, result.failure, result.listed) == ("interrupted", None, 0)
    assert result.exit_code(signum=signal.SIGTERM) == 143
    assert rows(db_path, "SELECT status, error FROM sync_run") == [
        {"status": "interrupted", "error": "stopped before finishing (interrupted by a signal)"}
    ]


@pytest.mark.parametrize(
    ("status", "kind", "message"),
    [
        (
            401,
            "auth",
            "the API key was refused by {source} (GET /v1/finetune_details?finetune_id=beta -> 401",
        ),
        (
            403,
            "auth",
            "the API key was refused by {source} (GET /v1/finetune_details?finetune_id=beta -> 403",
        ),
        (
            402,
            "credits",
            "stopped fetching from {source}: the BFL account is out of credits; "
            "GET /v1/finetune_details?finetune_id=beta -> 402",
        ),
    ],
    ids=["401", "403", "402"],
)
def test_key_refused_while_fetching_exits_3_with_the_run_failed(
    runner: CliRunner, db_path: Path, mock: MockBFL, source: str, status: int, kind: str, message: str
) -> None:
    mock.fail("beta", status=status)

    result = invoke(runner, db_path, mock, "--concurrency", "1", "--json")

    [run] = rows(db_path, "SELECT status, error FROM sync_run")
    assert result.exit_code == 3
    assert result.stderr.splitlines()[-1].startswith(f"bflsync: error: {message.format(source=source)}")
    assert json.loads(result.stdout)["status"] == "failed"
    assert run == {"status": "failed", "error": run["error"]}
    assert run["error"].startswith(message.format(source=source))
    assert rows(db_path, "SELECT finetune_id, kind, http_status FROM sync_error") == [
        {"finetune_id": "beta", "kind": kind, "http_status": status}
    ]


def test_key_refused_while_fetching_stops_fetching_and_marks_nothing_deleted(
    runner: CliRunner, db_path: Path, mock: MockBFL
) -> None:
    mock.put("delta", GAMMA)
    invoke(runner, db_path, mock)
    mock.remove("delta")
    mock.fail("beta", status=401)
    mock.clear_requests()

    invoke(runner, db_path, mock, "--concurrency", "1")

    assert [r.finetune_id for r in mock.requests if r.finetune_id] == ["alpha", "beta"]
    assert rows(
        db_path,
        "SELECT status, listed, fetched, created, updated, unchanged, deleted, restored, failed FROM sync_run"
        " WHERE id = 2",
    ) == [
        {
            "status": "failed",
            "listed": 3,
            "fetched": 1,
            "created": 0,
            "updated": 0,
            "unchanged": 1,
            "deleted": 0,
            "restored": 0,
            "failed": 1,
        }
    ]
    assert rows(db_path, "SELECT finetune_id, deleted_at FROM finetune WHERE deleted_at IS NOT NULL") == []


def test_id_that_is_not_utf8_exits_2_before_a_run_starts(
    runner: CliRunner, db_path: Path, mock: MockBFL
) -> None:
    # An argument with the byte 0xff arrives in Python as the surrogate U+DCFF.
    result = runner.invoke(
        cli,
        ["--db", str(db_path), "sync", "--base-url", mock.base_url, "--id", "alpha", "--id", "\udcff"],
        env={"BFL_API_KEY": KEY},
    )

    assert (result.exit_code, result.stderr) == (2, "bflsync: error: --id \\xff is not valid UTF-8 text\n")
    assert not db_path.exists()
    assert mock.requests == []


def refuse_new_finetunes(db_path: Path) -> None:
    """A trigger that makes every batch with a new finetune fail inside the store."""
    with sqlite3.connect(db_path) as connection:
        connection.execute(
            "CREATE TRIGGER refuse_finetunes BEFORE INSERT ON finetune"
            " BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END"
        )


def test_json_is_printed_with_status_failed_when_the_run_crashes(
    runner: CliRunner, db_path: Path, mock: MockBFL, store_engine: Engine, source: str
) -> None:
    refuse_new_finetunes(db_path)

    result = runner.invoke(
        cli, ["--db", str(db_path), "sync", "--base-url", mock.base_url, "--json"], env={"BFL_API_KEY": KEY}
    )

    payload = json.loads(result.stdout)
    assert isinstance(payload.pop("duration_s"), float)
    assert result.exit_code == 70
    assert payload == {
        "run_id": 1,
        "status": "failed",
        "source": source,
        "account": "default",
        "listed": 3,
        "fetched": 0,
        "created": 0,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "restored": 0,
        "failed": 0,
        "status_failed": 0,
        "status_checked": 0,
        "status_changed": 0,
        "credits": None,
        "key_changed": False,
    }
    [line] = result.stderr.splitlines()
    assert line.startswith("bflsync: error: internal error: IntegrityError: ")


def test_crashed_run_row_is_failed_with_its_listing_count_and_error(
    runner: CliRunner, db_path: Path, mock: MockBFL, store_engine: Engine
) -> None:
    refuse_new_finetunes(db_path)

    runner.invoke(cli, ["--db", str(db_path), "sync", "--base-url", mock.base_url], env={"BFL_API_KEY": KEY})

    [run] = rows(db_path, "SELECT status, listed, fetched, created, finished_at, error FROM sync_run")
    assert run == {
        "status": "failed",
        "listed": 3,
        "fetched": 0,
        "created": 0,
        "finished_at": ANY_TIME,
        "error": run["error"],
    }
    assert run["error"].startswith("IntegrityError: (sqlite3.IntegrityError) refused by a test trigger")


# --- an empty listing ----------------------------------------------------------------------------


def test_an_empty_listing_with_finetunes_stored_fails_the_run_and_deletes_nothing(
    runner: CliRunner, db_path: Path, mock: MockBFL, source: str
) -> None:
    invoke(runner, db_path, mock)
    before = store_dump(db_path)
    for finetune_id in ("alpha", "beta", "gamma"):
        mock.remove(finetune_id)

    result = runner.invoke(
        cli, ["--db", str(db_path), "sync", "--base-url", mock.base_url], env={"BFL_API_KEY": KEY}
    )

    assert result.exit_code == 3
    assert result.stderr == (
        f"bflsync: error: cannot list finetunes at {source}: the API listed no finetunes while 3 are stored;"
        " nothing was marked deleted (pass --allow-empty-listing if the account really has none left);"
        " GET /v1/my_finetunes\n"
    )
    assert store_dump(db_path) == before
    assert rows(db_path, "SELECT status, listed, deleted FROM sync_run ORDER BY id") == [
        {"status": "ok", "listed": 3, "deleted": 0},
        {"status": "failed", "listed": 0, "deleted": 0},
    ]


def test_allow_empty_listing_marks_every_stored_finetune_deleted(
    runner: CliRunner, db_path: Path, mock: MockBFL
) -> None:
    invoke(runner, db_path, mock)
    for finetune_id in ("alpha", "beta", "gamma"):
        mock.remove(finetune_id)

    result = invoke(runner, db_path, mock, "--allow-empty-listing", "--json")

    assert (result.exit_code, json.loads(result.stdout)["deleted"]) == (0, 3)
    assert rows(db_path, "SELECT finetune_id FROM finetune WHERE deleted_at IS NOT NULL ORDER BY 1") == [
        {"finetune_id": "alpha"},
        {"finetune_id": "beta"},
        {"finetune_id": "gamma"},
    ]


def test_an_empty_listing_into_an_empty_store_is_fine(runner: CliRunner, db_path: Path) -> None:
    with MockBFL.serve(finetunes={}, api_key=KEY) as empty:
        result = invoke(runner, db_path, empty, "--json")
    assert (result.exit_code, json.loads(result.stdout)["status"]) == (0, "ok")
