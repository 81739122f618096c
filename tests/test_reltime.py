"""Relative times for --since and --as-of: 7d, 12h, yesterday, as well as ISO dates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine
from storebuild import write_sync

from bflsync.cli import cli
from bflsync.read.reltime import parse_relative

NOW = datetime(2026, 12, 1, 10, 30, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", NOW - timedelta(days=7)),
        ("12h", NOW - timedelta(hours=12)),
        ("90m", NOW - timedelta(minutes=90)),
        ("90min", NOW - timedelta(minutes=90)),
        ("30s", NOW - timedelta(seconds=30)),
        ("2w", NOW - timedelta(weeks=2)),
        ("3 days ago", NOW - timedelta(days=3)),
        (" 1D ", NOW - timedelta(days=1)),
        ("now", NOW),
        ("today", datetime(2026, 12, 1, tzinfo=UTC)),
        ("Yesterday", datetime(2026, 11, 30, tzinfo=UTC)),
        ("2026-11-01", None),
        ("7", None),
        ("7x", None),
        ("-7d", None),
        ("", None),
    ],
)
def test_relative_forms_count_back_from_now(text: str, expected: datetime | None) -> None:
    assert parse_relative(text, now=NOW) == expected


@pytest.fixture
def recent_store(store_engine: Engine, db_path: Path) -> Path:
    now = datetime.now(UTC)
    write_sync(store_engine, {"old": {"mode": "style"}}, now=now - timedelta(days=10))
    write_sync(
        store_engine, {"old": {"mode": "character"}, "new": {"mode": "style"}}, now=now - timedelta(hours=2)
    )
    store_engine.dispose()
    return db_path


def run(db_path: Path, *args: str) -> list[dict[str, object]]:
    result = CliRunner().invoke(
        cli, ["--db", str(db_path), *args, "--format", "json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    parsed = json.loads(result.stdout)
    assert isinstance(parsed, list)
    return parsed


def test_history_since_accepts_relative_times(recent_store: Path) -> None:
    def changes(since: str) -> list[tuple[object, object]]:
        return sorted(
            (entry["finetune_id"], entry["version"])
            for entry in run(recent_store, "history", "--since", since)
        )

    assert changes("7d") == changes("3h") == [("new", 1), ("old", 2)]
    assert changes("11d") == changes("2w") == [("new", 1), ("old", 1), ("old", 2)]
    assert changes("1h") == changes("now") == []
    assert changes("yesterday") == changes((datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d"))


def test_as_of_accepts_relative_times(recent_store: Path) -> None:
    as_of_week = {(r["finetune_id"], r["mode"]) for r in run(recent_store, "query", "--as-of", "7d")}
    as_of_now = {(r["finetune_id"], r["mode"]) for r in run(recent_store, "query", "--as-of", "now")}
    assert as_of_week == {("old", "style")}
    assert as_of_now == {("old", "character"), ("new", "style")}


@pytest.mark.parametrize("bad", ["7x", "yesterdays", "99999999d"])
def test_a_bad_time_is_one_line_naming_the_forms(recent_store: Path, bad: str) -> None:
    result = CliRunner().invoke(cli, ["--db", str(recent_store), "history", "--since", bad])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("bflsync: error: ")
    assert "7d" in result.stderr or "out of range" in result.stderr
