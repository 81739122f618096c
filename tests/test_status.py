"""``bflsync status``: per (source, account) the last run and last success, finetunes, lock holder, schema; --max-age."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from monitor_support import sync
from sqlalchemy.engine import Engine
from sync_support import ALPHA, BETA, GAMMA, KEY

from bflsync.cli import cli
from bflsync.errors import ExitCode
from bflsync.mock.server import MockBFL
from bflsync.store import access
from bflsync.store.check import HEAD_REVISION
from bflsync.store.lock import sync_lock_for
from bflsync.store.schema import SyncRun


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    statuses = {"gamma": ["Pending"]}
    with MockBFL.serve(
        {"alpha": ALPHA, "beta": BETA, "gamma": GAMMA}, api_key=KEY, statuses=statuses
    ) as server:
        yield server


def status(db: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db, "status", *args])


def two_accounts_one_failing(db: str, mock: MockBFL) -> None:
    assert sync(db, mock, "--account", "team").exit_code == 0
    assert sync(db, mock, "--account", "solo", key="revoked-key").exit_code == ExitCode.CANNOT_RUN


def test_status_json_shows_each_account_last_run_last_success_and_finetunes(
    any_store: tuple[str, Engine], mock: MockBFL
) -> None:
    db, _ = any_store
    two_accounts_one_failing(db, mock)
    result = status(db, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    source = mock.base_url.removeprefix("http://")
    assert (report["engine"], report["schema_revision"], report["lock"]) == (
        "sqlite" if "://" not in db else "postgresql",
        HEAD_REVISION,
        {"held": False, "pid": None},
    )
    assert report["max_age_s"] is None
    solo, team = report["accounts"]
    assert (solo["source"], solo["account"], solo["last_success"]) == (source, "solo", None)
    assert (solo["last_run"]["id"], solo["last_run"]["status"], solo["last_run"]["listed"]) == (
        2,
        "failed",
        0,
    )
    assert "refused" in solo["last_run"]["error"]
    assert solo["finetunes"] == {"live": 0, "deleted": 0, "training": 0}
    assert (team["account"], team["last_run"]["status"], team["last_success"]["id"]) == ("team", "ok", 1)
    assert team["last_success"] == team["last_run"]
    assert team["finetunes"] == {"live": 3, "deleted": 0, "training": 1}
    assert team["credits"] is not None
    assert datetime.fromisoformat(team["last_run"]["finished_at"]).tzinfo is not None


def test_status_text_names_the_store_lock_and_each_account(
    any_store: tuple[str, Engine], mock: MockBFL
) -> None:
    db, _ = any_store
    two_accounts_one_failing(db, mock)
    result = status(db)
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].endswith(f"schema {HEAD_REVISION})")
    assert lines[1] == "lock: free"
    source = mock.base_url.removeprefix("http://")
    assert f"{source}, account solo" in lines
    assert f"{source}, account team" in lines
    assert "  last success:  never" in lines
    assert "  finetunes:     3 live, 0 deleted, 1 training" in lines


def test_status_text_prints_times_in_the_one_form_json_prints(
    any_store: tuple[str, Engine], mock: MockBFL
) -> None:
    db, _ = any_store
    assert sync(db, mock).exit_code == 0
    finished = json.loads(status(db, "--format", "json").stdout)["accounts"][0]["last_run"]["finished_at"]
    assert finished.endswith("Z")
    assert f"  last success:  run 1 ok, ended {finished} (" in status(db).stdout


def test_status_of_an_account_nobody_synced_names_it_instead_of_an_empty_store(
    any_store: tuple[str, Engine], mock: MockBFL
) -> None:
    db, _ = any_store
    assert sync(db, mock).exit_code == 0
    result = status(db, "--account", "nope")
    assert (result.exit_code, result.stdout.splitlines()[2:]) == (
        0,
        ["no sync of account 'nope' in the store"],
    )


def test_max_age_passes_when_every_account_succeeded_recently(
    any_store: tuple[str, Engine], mock: MockBFL
) -> None:
    db, _ = any_store
    assert sync(db, mock).exit_code == 0
    result = status(db, "--max-age", "2h", "--format", "json")
    assert result.exit_code == 0
    [account] = json.loads(result.stdout)["accounts"]
    assert account["stale"] is False
    assert json.loads(result.stdout)["max_age_s"] == 7200


def test_max_age_exits_5_when_the_last_success_is_older(any_store: tuple[str, Engine], mock: MockBFL) -> None:
    db, engine = any_store
    assert sync(db, mock).exit_code == 0
    with engine.begin() as connection:
        connection.execute(sa.update(SyncRun).values(finished_at=datetime.now(UTC) - timedelta(hours=3)))
    result = status(db, "--max-age", "2h")
    assert result.exit_code == ExitCode.STALE == 5
    source = mock.base_url.removeprefix("http://")
    assert result.stderr == (
        f"bflsync: error: stale: {source} account default last synced successfully 3h ago (--max-age 2h)\n"
    )
    assert "account default" in result.stdout  # the report is still printed


def test_control_characters_in_a_stored_source_or_account_are_shown_escaped(
    any_store: tuple[str, Engine], mock: MockBFL
) -> None:
    db, engine = any_store
    assert sync(db, mock).exit_code == 0
    with engine.begin() as connection:  # as another tool, or another role of a team store, could
        connection.execute(
            sa.update(SyncRun).values(
                source="evil\x1b[2J\nfake line",
                account="acc\x1b]0;title\x07",
                finished_at=datetime.now(UTC) - timedelta(hours=3),
            )
        )
    result = status(db, "--max-age", "2h")
    assert result.exit_code == ExitCode.STALE
    assert "evil\\x1b[2J\\nfake line, account acc\\x1b]0;title\\x07\n" in result.stdout
    [error] = result.stderr.splitlines()
    assert error.endswith(
        "; evil\\x1b[2J\\nfake line account acc\\x1b]0;title\\x07 last synced successfully 3h ago (--max-age 2h)"
    )


def test_max_age_counts_an_account_that_never_succeeded_as_stale(
    any_store: tuple[str, Engine], mock: MockBFL
) -> None:
    db, _ = any_store
    two_accounts_one_failing(db, mock)
    result = status(db, "--max-age", "1d", "--format", "json")
    assert result.exit_code == ExitCode.STALE
    assert [a["stale"] for a in json.loads(result.stdout)["accounts"]] == [True, False]
    assert result.stderr.endswith("account solo never synced successfully (--max-age 1d)\n")
    assert status(db, "--max-age", "1d", "--account", "team").exit_code == 0


def test_max_age_on_a_store_without_runs_is_stale(any_store: tuple[str, Engine]) -> None:
    db, _ = any_store
    result = status(db, "--max-age", "1h")
    assert (result.exit_code, result.stderr) == (
        ExitCode.STALE,
        "bflsync: error: stale: no sync of any account in the store (--max-age 1h)\n",
    )


def test_a_max_age_that_is_not_a_duration_is_refused(db_path: Path) -> None:
    result = status(str(db_path), "--max-age", "soon")
    assert result.exit_code == ExitCode.INPUT
    assert result.stderr.startswith(
        "bflsync: error: --max-age 'soon': expected a duration such as 90s, 15m, 2h"
    )


def test_a_max_age_too_long_to_count_is_refused_as_input(db_path: Path) -> None:
    too_long = "9999999w" * 15
    result = status(str(db_path), "--max-age", too_long)
    assert (result.exit_code, result.stderr) == (
        ExitCode.INPUT,
        f"bflsync: error: --max-age '{too_long}': too long a duration\n",
    )


def test_a_run_left_running_by_a_killed_sync_is_shown_as_abandoned(
    any_store: tuple[str, Engine], mock: MockBFL
) -> None:
    db, engine = any_store
    assert sync(db, mock).exit_code == 0
    with engine.begin() as connection:  # what a sync killed with SIGKILL leaves behind
        connection.execute(sa.update(SyncRun).values(status="running", finished_at=None))
    result = status(db)
    [last_run] = [line for line in result.stdout.splitlines() if "last run:" in line]
    assert " running, started " in last_run
    assert last_run.endswith("; abandoned: no sync holds the lock")


def test_status_names_the_sync_holding_the_lock(any_store: tuple[str, Engine]) -> None:
    db, _ = any_store
    with sync_lock_for(access.locate_store(db)):
        result = status(db, "--format", "json")
    lock = json.loads(result.stdout)["lock"]
    # SQLite: the flock's holder, exactly; PostgreSQL: held, the pid from a running run row (none here).
    assert lock == {"held": True, "pid": os.getpid() if "://" not in db else None}


def test_status_of_a_missing_store_is_exit_2(db_path: Path) -> None:
    result = status(str(db_path))
    assert result.exit_code == ExitCode.INPUT
    assert not db_path.exists()


def test_status_on_sqlite_imports_no_heavy_module(db_path: Path, mock: MockBFL) -> None:
    assert sync(str(db_path), mock).exit_code == 0
    script = (
        "import sys\n"
        "from bflsync.cli import cli\n"
        f"sys.argv = ['bflsync', '--db', {str(db_path)!r}, 'status', '--max-age', '1h']\n"
        "try:\n    cli(prog_name='bflsync')\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "heavy = ('sqlalchemy', 'sqlmodel', 'pydantic', 'alembic', 'httpx', 'rich')\n"
        "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "account default" in result.stdout
    assert result.stderr == "[]\n"


def test_status_exit_code_as_a_process(db_path: Path, mock: MockBFL) -> None:
    assert sync(str(db_path), mock, key="revoked").exit_code == ExitCode.CANNOT_RUN
    result = subprocess.run(
        [sys.executable, "-m", "bflsync", "--db", str(db_path), "status", "--max-age", "30m"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 5
    assert result.stderr.splitlines()[-1].endswith("never synced successfully (--max-age 30m)")
