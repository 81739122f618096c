"""``bflsync sync`` as a real process: kill -9, overlap, readers, signals and disk trouble."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from readonly_fs import read_only_argv
from sync_support import (
    KEY,
    file_bytes,
    integrity,
    process_env,
    rows,
    rows_out_of_step,
    run_sync_process,
    sync_argv,
    wait_until_running,
)

from bflsync.mock.server import MockBFL, generate_finetunes
from bflsync.store import access

pytestmark = pytest.mark.slow


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve(generate_finetunes(300, seed=11), api_key=KEY) as server:
        yield server


def start_sync(db_path: Path, base_url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        sync_argv(db_path, base_url, *args),
        env=process_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sync_process_exits_0_and_prints_the_json_result(db_path: Path, mock: MockBFL) -> None:
    done = run_sync_process(db_path, mock.base_url, "--json", quiet=True)

    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout)["created"] == 300


def test_kill_9_at_random_moments_leaves_a_consistent_store(db_path: Path, mock: MockBFL) -> None:
    assert run_sync_process(db_path, mock.base_url).returncode == 0
    rng = random.Random(20261125)
    removed: list[tuple[str, dict[str, object]]] = []
    for round_ in range(4):
        served = mock.finetunes
        for finetune_id in rng.sample(sorted(served), 15):
            mock.put(finetune_id, {**served[finetune_id], "finetune_comment": f"edit {round_}"})
        for finetune_id in rng.sample(sorted(served), 5):
            removed.append((finetune_id, served[finetune_id]))
            mock.remove(finetune_id)
        if round_ % 2:
            for finetune_id, details in removed:
                mock.put(finetune_id, details)
            removed.clear()
        mock.latency_ms = 15
        process = start_sync(db_path, mock.base_url, "--concurrency", "4")
        time.sleep(rng.uniform(0.3, 1.6))
        process.kill()
        process.communicate()
        mock.latency_ms = 0
        killed = rows(db_path, "SELECT status FROM sync_run WHERE pid = ?", process.pid)

        assert integrity(db_path) == "ok"
        assert rows_out_of_step(db_path) == []
        after = run_sync_process(db_path, mock.base_url, quiet=True)
        assert after.returncode == 0, after.stderr
        marked = rows(db_path, "SELECT status FROM sync_run WHERE pid = ?", process.pid)
        # Killed before its run row was committed, it left nothing to mark.
        assert marked == ([{"status": "interrupted"}] if killed == [{"status": "running"}] else killed)
        assert rows_out_of_step(db_path) == []


def test_second_sync_exits_4_within_a_second_while_one_runs(db_path: Path, mock: MockBFL) -> None:
    mock.latency_ms = 50  # the first sync outlasts both measurements below
    first = start_sync(db_path, mock.base_url, "--concurrency", "2")
    try:
        wait_until_running(db_path, first)
        started = time.monotonic()
        second = run_sync_process(db_path, mock.base_url)
        elapsed = time.monotonic() - started
        # The baseline is measured while the first sync still runs, competing for the CPU as it
        # did during the second's start: measured after it, a loaded machine failed the test.
        start_up = _interpreter_start_s()
    finally:
        first.kill()
        first.communicate()

    assert (second.returncode, second.stderr) == (
        4,
        f"bflsync: error: another sync is running (pid {first.pid})\n",
    )
    assert elapsed < 1.0 + start_up


def test_readers_are_answered_promptly_during_a_sync(db_path: Path, mock: MockBFL) -> None:
    mock.latency_ms = 10
    process = start_sync(db_path, mock.base_url, "--concurrency", "4")
    slowest = 0.0
    try:
        wait_until_running(db_path, process)
        engine = access.open_store_for_read(access.locate_store(str(db_path)))
        try:
            while process.poll() is None:
                started = time.monotonic()
                rows(db_path, "SELECT count(*) FROM finetune")
                with engine.connect() as connection:
                    connection.exec_driver_sql("SELECT count(*) FROM finetune_version").scalar()
                slowest = max(slowest, time.monotonic() - started)
                time.sleep(0.01)
        finally:
            engine.dispose()
    finally:
        process.kill()
        process.communicate()

    assert process.returncode == 0
    assert slowest < 0.5


def test_bflsync_query_answers_while_a_sync_writes(db_path: Path, mock: MockBFL) -> None:
    assert run_sync_process(db_path, mock.base_url).returncode == 0
    for finetune_id in list(mock.finetunes)[:150]:
        mock.put(finetune_id, {"mode": "style", "finetune_comment": "second pass"})
    mock.latency_ms = 40  # about 6 s of fetching: the query runs well inside it
    process = start_sync(db_path, mock.base_url, "--concurrency", "2")
    try:
        wait_until_running(db_path, process)
        query = subprocess.run(
            [sys.executable, "-m", "bflsync", "--db", str(db_path), "query", "--format", "ids"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        still_syncing = process.poll() is None
    finally:
        process.kill()
        process.communicate()

    assert (query.returncode, query.stderr) == (0, "")
    assert sorted(query.stdout.split()) == sorted(mock.finetunes)
    assert still_syncing


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_marks_the_run_interrupted_and_keeps_what_was_stored(
    db_path: Path, mock: MockBFL, signum: int, exit_code: int
) -> None:
    mock.latency_ms = 20
    process = start_sync(db_path, mock.base_url, "--concurrency", "2", "--json")
    wait_until_running(db_path, process)
    time.sleep(1.2)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=10)

    result = json.loads(stdout)
    assert process.returncode == exit_code
    assert "Traceback" not in stderr
    assert rows(db_path, "SELECT status, created FROM sync_run") == [
        {"status": "interrupted", "created": result["created"]}
    ]
    assert 0 < result["created"] == rows(db_path, "SELECT count(*) AS n FROM finetune")[0]["n"] < 300


def test_a_signal_after_fetching_ended_exits_by_the_run_status(db_path: Path, mock: MockBFL) -> None:
    assert run_sync_process(db_path, mock.base_url).returncode == 0
    mock.remove(sorted(mock.finetunes)[0])
    mock.clear_requests()
    mock.latency_ms = 5
    process = start_sync(db_path, mock.base_url, "--json")
    wait_until_running(db_path, process)
    # Holding the store's write lock keeps the sync from storing or finishing until released.
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        deadline = time.monotonic() + 8
        while len([r for r in mock.requests if r.finetune_id and r.status == 200]) < 299:
            assert time.monotonic() < deadline, "the sync never fetched every finetune"
            time.sleep(0.02)
        time.sleep(0.3)  # the last answers are read and fetching ends
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
    finally:
        holder.close()
    stdout, stderr = process.communicate(timeout=20)

    assert (process.returncode, json.loads(stdout)["status"]) == (0, "ok"), stderr
    assert rows(
        db_path, "SELECT status, listed, deleted, error FROM sync_run WHERE pid = ?", process.pid
    ) == [{"status": "ok", "listed": 299, "deleted": 1, "error": None}]


# --- disk trouble --------------------------------------------------------------------------------


def test_read_only_store_file_gives_one_line_error_and_stays_unchanged(db_path: Path, mock: MockBFL) -> None:
    assert run_sync_process(db_path, mock.base_url).returncode == 0
    mock.put("new-one", {"mode": "general"})
    before = file_bytes(db_path)

    done = subprocess.run(
        read_only_argv(db_path, sync_argv(db_path, mock.base_url)),
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 3
    assert done.stderr == (
        f"bflsync: error: the store at {db_path} is read-only (attempt to write a readonly database)\n"
    )
    assert file_bytes(db_path) == before


def test_read_only_directory_gives_one_line_error_and_creates_nothing(tmp_path: Path, mock: MockBFL) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    db_path = directory / "store.db"

    done = subprocess.run(
        read_only_argv(directory, sync_argv(db_path, mock.base_url)),
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 3
    assert done.stderr == (
        f"bflsync: error: cannot create the store at {db_path}: Read-only file system\n"
        if os.geteuid() == 0
        else f"bflsync: error: cannot create the store at {db_path}: Permission denied\n"
    )
    assert list(directory.iterdir()) == []


def test_full_disk_gives_one_line_error_and_a_consistent_store(db_path: Path, mock: MockBFL) -> None:
    assert run_sync_process(db_path, mock.base_url).returncode == 0
    for i in range(300):
        mock.put(f"big-{i}", {"mode": "general", "finetune_comment": "x" * 2000 + str(i)})
    # Files may not grow past 32 KiB: the WAL fills up while the first batch is written.
    limit = "import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (32768, 32768)); "
    limit += "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
    argv = sync_argv(db_path, mock.base_url)

    done = subprocess.run(
        [sys.executable, "-c", limit, *argv[1:]],
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    [line] = done.stderr.splitlines()
    assert done.returncode == 3
    # SQLite reports the refused write as "disk I/O error" or "database or disk is full".
    assert line.startswith(f"bflsync: error: cannot use the store at {db_path} (")
    assert integrity(db_path) == "ok"
    assert rows_out_of_step(db_path) == []
    again = run_sync_process(db_path, mock.base_url, "--json")
    assert (again.returncode, json.loads(again.stdout)["created"]) == (0, 300)


def _interpreter_start_s() -> float:
    """How long starting ``bflsync sync`` (interpreter and imports) takes here, so '4 within 1 s'
    measures the lock check, not a loaded CI machine's start-up."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "bflsync", "sync", "--help"], capture_output=True, check=True)
    return time.monotonic() - started


# --- hard links, the db commands and backups under kill -9 ---------------------------------


def test_two_syncs_through_hard_links_to_one_store_exclude_each_other(
    db_path: Path, tmp_path: Path, mock: MockBFL
) -> None:
    assert run_sync_process(db_path, mock.base_url).returncode == 0
    other_name = tmp_path / "other" / "b.db"
    other_name.parent.mkdir()
    os.link(db_path, other_name)
    for finetune_id in sorted(mock.finetunes)[:100]:
        mock.put(finetune_id, {**mock.finetunes[finetune_id], "finetune_comment": "edited"})
    mock.latency_ms = 20
    first = start_sync(db_path, mock.base_url, "--concurrency", "2")
    try:
        wait_until_running(db_path, first)
        second = run_sync_process(other_name, mock.base_url)
    finally:
        mock.latency_ms = 0
        _, first_err = first.communicate(timeout=60)

    assert (second.returncode, second.stderr) == (
        4,
        f"bflsync: error: another sync is running (pid {first.pid})\n",
    )
    assert first.returncode == 0, first_err
    assert integrity(other_name) == "ok"
    assert rows(other_name, "SELECT count(*) AS n FROM finetune WHERE finetune_comment = 'edited'") == [
        {"n": 100}
    ]


def test_db_downgrade_during_a_sync_exits_4_and_the_sync_finishes(db_path: Path, mock: MockBFL) -> None:
    mock.latency_ms = 10
    first = start_sync(db_path, mock.base_url, "--concurrency", "2")
    try:
        wait_until_running(db_path, first)
        downgrade = subprocess.run(
            [sys.executable, "-m", "bflsync", "--db", str(db_path), "db", "downgrade", "base"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    finally:
        mock.latency_ms = 0
        _, first_err = first.communicate(timeout=60)

    assert (downgrade.returncode, downgrade.stderr) == (
        4,
        f"bflsync: error: another sync is running (pid {first.pid})\n",
    )
    assert first.returncode == 0, first_err
    assert rows(db_path, "SELECT count(*) AS n FROM finetune") == [{"n": 300}]


def big_store_at_the_first_revision(db_path: Path, megabytes: int) -> None:
    """A store at the oldest revision, made large with run errors so a backup of it takes a while."""
    access.upgrade_store(
        access.locate_store(str(db_path)), revision=access.KNOWN_REVISIONS[0]
    ).engine.dispose()
    connection = sqlite3.connect(db_path)
    connection.executescript(
        f"""
        INSERT INTO sync_run (id, started_at, status, source, pid, bflsync_version, listed, fetched,
            created, updated, unchanged, deleted, restored, failed)
        VALUES (1, '2026-01-01 00:00:00.000000', 'ok', 'h', 1, 'x', 0, 0, 0, 0, 0, 0, 0, 0);
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {megabytes})
        INSERT INTO sync_error (sync_run_id, finetune_id, kind, message, attempts)
        SELECT 1, 'ft-' || i, 'http', hex(randomblob(500000)), 1 FROM n;
        """
    )
    connection.close()


def is_sqlite_store_at(path: Path, revision: str) -> bool:
    try:
        connection = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            ok = connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            return ok and connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
                (revision,)
            ]
        finally:
            connection.close()
    except sqlite3.Error:
        return False


def test_kill_9_during_the_backup_of_db_upgrade_leaves_no_torn_backup(db_path: Path) -> None:
    oldest = access.KNOWN_REVISIONS[0]
    big_store_at_the_first_revision(db_path, megabytes=200)
    upgrade = [sys.executable, "-m", "bflsync", "--db", str(db_path), "db", "upgrade"]
    process = subprocess.Popen(upgrade, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Kill it the moment anything named like a backup appears: the copy has only just begun.
    deadline = time.monotonic() + 60
    seen: list[str] = []
    try:
        while not seen and process.poll() is None and time.monotonic() < deadline:
            seen = [p.name for p in db_path.parent.iterdir() if p.name.startswith("store.db.bak-")]
            time.sleep(0.001)
    finally:
        process.kill()
        process.communicate()
    assert seen, "the upgrade ended before its backup was seen"

    final_names = [p for p in db_path.parent.iterdir() if p.name.startswith(f"store.db.bak-{oldest}")]
    assert all(is_sqlite_store_at(path, oldest) for path in final_names), [p.name for p in final_names]
    assert is_sqlite_store_at(db_path, oldest)

    again = subprocess.run(upgrade, capture_output=True, text=True, timeout=120, check=False)

    assert again.returncode == 0, again.stderr
    assert "a partial backup left by an interrupted run" in again.stderr
    backups = sorted(p.name for p in db_path.parent.iterdir() if p.name.startswith("store.db.bak-"))
    assert backups == [f"store.db.bak-{oldest}"] if not final_names else len(backups) == 2
    assert is_sqlite_store_at(db_path.with_name(f"store.db.bak-{oldest}"), oldest)


def test_a_run_killed_with_kill_9_gets_counters_recomputed_from_what_it_stored(
    db_path: Path, mock: MockBFL
) -> None:
    assert run_sync_process(db_path, mock.base_url).returncode == 0
    for finetune_id in sorted(mock.finetunes)[:200]:
        mock.put(finetune_id, {**mock.finetunes[finetune_id], "finetune_comment": "edited"})
    mock.latency_ms = 10
    process = start_sync(db_path, mock.base_url, "--concurrency", "2")
    try:
        wait_until_running(db_path, process)
        [run] = rows(db_path, "SELECT id, started_at FROM sync_run WHERE pid = ?", process.pid)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stored = rows(
                db_path, "SELECT count(*) AS n FROM finetune_version WHERE sync_run_id = ?", run["id"]
            )
            if stored[0]["n"] >= 20:
                break
            time.sleep(0.05)
    finally:
        process.kill()
        process.communicate()
        mock.latency_ms = 0
    updated = rows(db_path, "SELECT count(*) AS n FROM finetune_version WHERE sync_run_id = ?", run["id"])[0][
        "n"
    ]
    seen = rows(db_path, "SELECT count(*) AS n FROM finetune WHERE last_seen_at >= ?", run["started_at"])[0][
        "n"
    ]
    assert updated >= 20

    assert run_sync_process(db_path, mock.base_url, quiet=True).returncode == 0

    [killed] = rows(
        db_path,
        "SELECT status, listed, fetched, created, updated, unchanged, deleted, restored, failed"
        " FROM sync_run WHERE id = ?",
        run["id"],
    )
    assert killed == {
        "status": "interrupted",
        "listed": 300,
        "fetched": seen,
        "created": 0,
        "updated": updated,
        "unchanged": seen - updated,
        "deleted": 0,
        "restored": 0,
        "failed": 0,
    }
