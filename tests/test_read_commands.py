"""The read commands through click and as real processes: formats, exit codes, imports."""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.engine import Engine
from storebuild import SOURCE, day, file_digest, write_sync

from bflsync import annotate
from bflsync.cli import cli
from bflsync.columns import RUN_FIELDS
from bflsync.extract import canonical_json
from bflsync.store.access import locate_store, open_store_for_read, upgrade_store
from bflsync.store.labels import Author

ALPHA = {
    "mode": "character",
    "learning_rate": 1e-5,
    "iterations": 300,
    "trigger_word": "ohwx",
    "finetune_comment": "Zoë's portrait, 100% real_deal\nline two",
    "extra": {"images": 12, "tags": ["a", "ü"], "empty": {}},
    "weird key": None,
}
BRAVO = {"mode": "style", "learning_rate": "2e-5", "iterations": "500", "captioning": False}
CHARLIE = {"mode": "character", "learning_rate": 3e-5, "finetune_type": "lora"}


def fill(engine: Engine) -> None:
    """Three finetunes; org/charlie is tombstoned by the second sync."""
    write_sync(engine, {"alpha": ALPHA, "bravo": BRAVO, "org/charlie": CHARLIE}, now=day(1))
    write_sync(engine, {"alpha": ALPHA, "bravo": BRAVO}, now=day(2))
    engine.dispose()


@pytest.fixture
def store(any_store: tuple[str, Engine]) -> str:
    """The three finetunes on each engine: the ``--db`` value."""
    target, engine = any_store
    fill(engine)
    return target


@pytest.fixture
def sqlite_store(store_engine: Engine, db_path: Path) -> Path:
    """The three finetunes in a SQLite file, for what only a file can show (bytes, processes)."""
    fill(store_engine)
    return db_path


@pytest.fixture
def labelled_sqlite_store(sqlite_store: Path, store_engine: Engine) -> Path:
    """The SQLite file with labels and a note on alpha, so label reads run too."""
    moment = day(3)
    edit = annotate.build_edit(["project=acme", "rank=2"], [])
    annotate.edit_labels(
        store_engine, "alpha", edit, source=None, account=None, actor=Author("tester"), now=moment
    )
    annotate.add_note(
        store_engine, "alpha", "approved", source=None, account=None, actor=Author("tester"), now=moment
    )
    store_engine.dispose()
    return sqlite_store


def run(db: str | Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False)


def run_process(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bflsync", *args], capture_output=True, text=True, env=env, timeout=60
    )


def assert_one_line_error(result: Result | subprocess.CompletedProcess[str], *fragments: str) -> None:
    code = result.exit_code if isinstance(result, Result) else result.returncode
    assert code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("bflsync: error: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def expected_record(
    finetune_id: str, details: dict[str, Any], *, version: int = 1, **times: str
) -> dict[str, Any]:
    from bflsync.extract import content_hash, extract_fields

    return {
        "finetune_id": finetune_id,
        "source": SOURCE,
        "account": "default",
        **extract_fields(details),
        "version": version,
        "content_hash": content_hash(details),
        "first_seen_at": "2026-01-01T00:00:00.000000Z",
        "last_seen_at": times.get("last_seen_at", "2026-01-02T00:00:00.000000Z"),
        "last_changed_at": times.get("last_changed_at", "2026-01-01T00:00:00.000000Z"),
        "deleted_at": times.get("deleted_at"),
        # This store was written without status checks: not checked yet.
        "status": None,
        "progress": None,
        "status_checked_at": None,
        "ready_at": None,
        "details": json.loads(json.dumps(details)),
        "labels": {},
    }


def test_query_json_is_an_array_of_whole_records(store: str) -> None:
    result = run(store, "query", "mode=character", "--include-deleted", "--format", "json")
    assert json.loads(result.stdout) == [
        expected_record("alpha", ALPHA),
        expected_record(
            "org/charlie",
            CHARLIE,
            version=2,
            last_seen_at="2026-01-01T00:00:00.000000Z",
            last_changed_at="2026-01-02T00:00:00.000000Z",
            deleted_at="2026-01-02T00:00:00.000000Z",
        ),
    ]


def test_query_hides_tombstoned_finetunes_by_default(store: str) -> None:
    assert run(store, "query", "--format", "ids").stdout == "alpha\nbravo\n"


def test_query_jsonl_is_one_record_per_line_with_exact_details(store: str) -> None:
    lines = run(store, "query", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line)["details"] for line in lines] == [ALPHA, BRAVO]


def test_query_csv_has_a_header_and_round_trips_details(store: str) -> None:
    rows = list(csv.DictReader(io.StringIO(run(store, "query", "--format", "csv").stdout)))
    assert [json.loads(row["details"]) for row in rows] == [ALPHA, BRAVO]
    assert rows[1] == {
        "finetune_id": "bravo",
        "source": SOURCE,
        "account": "default",
        "finetune_comment": "",
        "trigger_word": "",
        "mode": "style",
        "finetune_type": "",
        "priority": "",
        "iterations": "500",
        "lora_rank": "",
        "learning_rate": "2e-05",
        "captioning": "false",
        "remote_timestamp": "",
        "version": "1",
        "content_hash": rows[1]["content_hash"],
        "first_seen_at": "2026-01-01T00:00:00.000000Z",
        "last_seen_at": "2026-01-02T00:00:00.000000Z",
        "last_changed_at": "2026-01-01T00:00:00.000000Z",
        "deleted_at": "",
        "status": "",
        "progress": "",
        "status_checked_at": "",
        "ready_at": "",
        "details": canonical_json(BRAVO),
    }


def test_query_columns_pick_any_fields_including_nested_and_odd_keys(store: str) -> None:
    result = run(store, "query", "--columns", "mode,extra.images,`weird key`", "--format", "csv")
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["mode", "extra.images", "`weird key`"],
        ["character", "12", ""],
        ["style", "", ""],
    ]


def test_query_json_with_columns_keeps_ids_and_the_chosen_fields(store: str) -> None:
    result = run(store, "query", "--columns", "iterations,extra.tags", "--format", "json")
    assert json.loads(result.stdout) == [
        {
            "finetune_id": "alpha",
            "source": SOURCE,
            "account": "default",
            "iterations": 300,
            "extra.tags": ["a", "ü"],
        },
        {
            "finetune_id": "bravo",
            "source": SOURCE,
            "account": "default",
            "iterations": 500,
            "extra.tags": None,
        },
    ]


def test_query_table_is_plain_aligned_text_when_not_a_terminal(store: str) -> None:
    result = run(store, "query", "--columns", "finetune_id,learning_rate,finetune_comment")
    assert result.stdout.splitlines() == [
        "finetune_id  learning_rate  finetune_comment",
        "alpha        1e-05          Zoë's portrait, 100% real_deal\\nline two",
        "bravo        2e-05",
    ]


def test_query_sorts_descending_on_a_details_key_with_missing_values_last(store: str) -> None:
    result = run(store, "query", "--include-deleted", "--sort", "-extra.images", "--format", "ids")
    assert result.stdout == "alpha\nbravo\norg/charlie\n"
    result = run(store, "query", "--include-deleted", "--sort", "-learning_rate", "--format", "ids")
    assert result.stdout == "org/charlie\nbravo\nalpha\n"


def test_query_table_limit_cuts_rows_and_says_so_on_stderr(store: str) -> None:
    result = run(store, "query", "--limit", "1", "--columns", "finetune_id")
    assert (result.stdout, result.stderr) == (
        "finetune_id\nalpha\n",
        "(first 1 row shown; --limit 0 for all)\n",
    )


def test_query_text_finds_words_in_any_string_value(store: str) -> None:
    assert run(store, "query", "--text", "ZOE portrait", "--format", "ids").stdout == "alpha\n"
    assert run(store, "query", "--text", "ü", "--format", "ids").stdout == "alpha\n"
    assert run(store, "query", "--text", 'OR "NEAR(', "--format", "ids").stdout == ""


def test_query_source_option_filters_by_host(store: str) -> None:
    assert run(store, "query", "--source", "elsewhere", "--format", "ids").stdout == ""
    assert run(store, "query", "--source", SOURCE, "--format", "ids").stdout == "alpha\nbravo\n"


@pytest.mark.parametrize(("output_format", "empty"), [("json", "[]\n"), ("jsonl", ""), ("ids", "")])
def test_an_empty_result_is_valid_output_with_exit_0(store: str, output_format: str, empty: str) -> None:
    result = run(store, "query", "mode=nothing", "--format", output_format)
    assert (result.exit_code, result.stdout) == (0, empty)


def test_an_empty_csv_result_is_the_header_alone(store: str) -> None:
    result = run(store, "query", "mode=nothing", "--format", "csv", "--columns", "mode")
    assert (result.exit_code, result.stdout) == (0, "mode\n")


def test_facets_count_values_of_each_field_under_filters(store: str) -> None:
    result = run(
        store, "facets", "mode", "extra.images", "learning_rate<1", "--include-deleted", "--format", "json"
    )
    assert json.loads(result.stdout) == [
        {"field": "mode", "value": "character", "count": 2},
        {"field": "mode", "value": "style", "count": 1},
        {"field": "extra.images", "value": None, "count": 2},
        {"field": "extra.images", "value": 12, "count": 1},
    ]


def test_facets_count_missing_and_json_null_details_values_together(store: str) -> None:
    # ALPHA holds "weird key": null; BRAVO and CHARLIE lack the key.
    result = run(store, "facets", "`weird key`", "--include-deleted", "--format", "json")
    assert json.loads(result.stdout) == [{"field": "`weird key`", "value": None, "count": 3}]


FACET_VALUES = [True, 1, False, 0, "", "a", "a\x00b", 2**64 + 1, 2**64, -(2**63) - 1, [1, True], {"k": False}]


def test_facets_keep_booleans_big_integers_and_nul_strings_apart_on_both_engines(
    any_store: tuple[str, Engine],
) -> None:
    """Each distinct JSON value is its own group, shown as stored (PostgreSQL holds U+0000 as U+FFFD)."""
    target, engine = any_store
    write_sync(engine, {f"f{index}": {"v": value} for index, value in enumerate(FACET_VALUES)}, now=day(1))
    result = CliRunner().invoke(
        cli, ["--db", target, "facets", "v", "--format", "json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert [entry["count"] for entry in shown] == [1] * len(FACET_VALUES)
    nul_as = "\ufffd" if target.startswith("postgresql") else "\x00"
    expected = [value.replace("\x00", nul_as) if isinstance(value, str) else value for value in FACET_VALUES]
    assert sorted(map(canonical_json, (entry["value"] for entry in shown))) == sorted(
        map(canonical_json, expected)
    )


def test_facets_without_a_field_is_an_input_error(store: str) -> None:
    assert_one_line_error(
        CliRunner().invoke(cli, ["--db", str(store), "facets", "mode=x"]), "at least one FIELD"
    )


def test_show_json_prints_the_current_record(store: str) -> None:
    assert json.loads(run(store, "show", "alpha", "--format", "json").stdout) == {
        **expected_record("alpha", ALPHA),
        "notes": [],
        "status_timeline": [],
    }


def test_show_text_marks_a_tombstoned_finetune_and_pretty_prints_details(store: str) -> None:
    lines = run(store, "show", "org/charlie").stdout.splitlines()
    assert lines[0] == "status            DELETED (no longer listed since 2026-01-02T00:00:00.000000Z)"
    assert lines[lines.index("details:") :] == [
        "details:",
        *json.dumps(CHARLIE, indent=2, sort_keys=True).splitlines(),
    ]


def test_history_json_lists_versions_with_old_and_new_values(store_engine: Engine, db_path: Path) -> None:
    first = write_sync(store_engine, {"a": {"mode": "style", "lr": 1}}, now=day(1))
    second = write_sync(store_engine, {"a": {"mode": "character", "lr": 1, "new": None}}, now=day(2))
    third = write_sync(store_engine, {}, now=day(3))
    fourth = write_sync(store_engine, {"a": {"mode": "character"}}, now=day(4))
    versions = json.loads(run(db_path, "history", "a", "--format", "json").stdout)
    assert versions == [
        {
            "kind": "version",
            "finetune_id": "a",
            "source": SOURCE,
            "account": "default",
            "version": 1,
            "change": "created",
            "observed_at": "2026-01-01T00:00:00.000000Z",
            "sync_run_id": first,
            "changes": {"lr": {"new": 1}, "mode": {"new": "style"}},
            "details": {"mode": "style", "lr": 1},
        },
        {
            "kind": "version",
            "finetune_id": "a",
            "source": SOURCE,
            "account": "default",
            "version": 2,
            "change": "updated",
            "observed_at": "2026-01-02T00:00:00.000000Z",
            "sync_run_id": second,
            "changes": {"mode": {"old": "style", "new": "character"}, "new": {"new": None}},
            "details": {"mode": "character", "lr": 1, "new": None},
        },
        {
            "kind": "version",
            "finetune_id": "a",
            "source": SOURCE,
            "account": "default",
            "version": 3,
            "change": "deleted",
            "observed_at": "2026-01-03T00:00:00.000000Z",
            "sync_run_id": third,
            "changes": {"lr": {"old": 1}, "mode": {"old": "character"}, "new": {"old": None}},
            "details": None,
        },
        {
            "kind": "version",
            "finetune_id": "a",
            "source": SOURCE,
            "account": "default",
            "version": 4,
            "change": "restored",
            "observed_at": "2026-01-04T00:00:00.000000Z",
            "sync_run_id": fourth,
            "changes": {"lr": {"old": 1}, "new": {"old": None}},
            "details": {"mode": "character"},
        },
    ]


def test_history_text_shows_each_change_as_old_to_new(store_engine: Engine, db_path: Path) -> None:
    write_sync(store_engine, {"a": {"lr": 1}}, now=day(1))
    write_sync(store_engine, {"a": {"lr": 2, "odd key": "x"}}, now=day(2))
    assert run(db_path, "history", "a").stdout.splitlines() == [
        "v1 created  2026-01-01T00:00:00.000000Z  run 1",
        'v2 updated  2026-01-02T00:00:00.000000Z  lr: 1 → 2, `odd key`: (missing) → "x"  run 2',
    ]


def test_history_since_lists_account_wide_changes_oldest_first(store_engine: Engine, db_path: Path) -> None:
    write_sync(store_engine, {"a": {"lr": 1}, "b": {"lr": 1}}, now=day(1))
    write_sync(store_engine, {"a": {"lr": 2}, "b": {"lr": 1}}, now=day(2))
    write_sync(store_engine, {"a": {"lr": 2}}, now=day(3))
    result = run(db_path, "history", "--since", "2026-01-02", "--format", "json")
    assert [
        (v["finetune_id"], v["version"], v["change"], v["changes"]) for v in json.loads(result.stdout)
    ] == [
        ("a", 2, "updated", {"lr": {"old": 1, "new": 2}}),
        ("b", 2, "deleted", {"lr": {"old": 1}}),
    ]


def test_history_needs_an_id_or_since(store: str) -> None:
    assert_one_line_error(CliRunner().invoke(cli, ["--db", str(store), "history"]), "--since")


def test_runs_lists_runs_newest_first_with_counts_and_duration(store: str) -> None:
    runs = json.loads(run(store, "runs", "--format", "json").stdout)
    assert [
        (r["id"], r["status"], r["created"], r["unchanged"], r["deleted"], r["duration_s"]) for r in runs
    ] == [
        (2, "ok", 0, 2, 1, 3.0),
        (1, "ok", 3, 0, 0, 3.0),
    ]


def test_runs_with_an_id_shows_the_run_and_its_errors(store_engine: Engine, db_path: Path) -> None:
    from sqlmodel import Session

    from bflsync.store import writes

    with Session(store_engine) as session, session.begin():
        run_id = writes.start_run(session, source=SOURCE, account="default", pid=7, now=day(1))
        writes.record_failure(
            session, run_id=run_id, finetune_id="x", kind="http", message="boom", http_status=500, attempts=4
        )
        writes.finish_run(session, run_id=run_id, status="partial", counts={"failed": 1}, now=day(1, 1))
    shown = json.loads(run(db_path, "runs", str(run_id), "--format", "json").stdout)
    assert (shown["status"], shown["failed"], shown["duration_s"]) == ("partial", 1, 3600.0)
    assert shown["errors"] == [
        {
            "id": 1,
            "sync_run_id": run_id,
            "finetune_id": "x",
            "kind": "http",
            "http_status": 500,
            "message": "boom",
            "attempts": 4,
        }
    ]


def test_runs_with_an_unknown_id_exits_2(store: str) -> None:
    assert_one_line_error(CliRunner().invoke(cli, ["--db", str(store), "runs", "99"]), "no sync run 99")


def test_diff_compares_two_versions_key_by_key(store_engine: Engine, db_path: Path) -> None:
    write_sync(store_engine, {"org/x@y": {"lr": 1, "extra": {"n": 1, "same": 0}, "gone": "g"}}, now=day(1))
    write_sync(store_engine, {"org/x@y": {"lr": 2, "extra": {"n": 2, "same": 0}}}, now=day(2))
    result = run(db_path, "diff", "org/x@y@1", "org/x@y@2", "--format", "json")
    assert json.loads(result.stdout) == {
        "a": {"finetune_id": "org/x@y", "source": SOURCE, "account": "default", "version": 1},
        "b": {"finetune_id": "org/x@y", "source": SOURCE, "account": "default", "version": 2},
        "differences": [
            {"field": "extra.n", "a": 1, "b": 2},
            {"field": "gone", "a": "g"},
            {"field": "lr", "a": 1, "b": 2},
        ],
    }


def test_diff_text_puts_two_finetunes_side_by_side(store: str) -> None:
    assert run(store, "diff", "bravo", "org/charlie").stdout.splitlines() == [
        "field          bravo@1    org/charlie@2",
        "captioning     false      (missing)",
        'finetune_type  (missing)  "lora"',
        'iterations     "500"      (missing)',
        'learning_rate  "2e-5"     3e-05',
        'mode           "style"    "character"',
    ]


def test_show_of_an_unknown_id_exits_2(store: str) -> None:
    assert_one_line_error(CliRunner().invoke(cli, ["--db", str(store), "show", "nope"]), "no finetune 'nope'")


def test_an_id_stored_for_two_sources_is_ambiguous_without_source(
    store_engine: Engine, db_path: Path
) -> None:
    write_sync(store_engine, {"twin": {"mode": "a"}}, now=day(1), source="api.us1.bfl.ai")
    write_sync(store_engine, {"twin": {"mode": "b"}}, now=day(1), source="api.eu1.bfl.ai")
    result = CliRunner().invoke(cli, ["--db", str(db_path), "show", "twin"])
    assert_one_line_error(
        result,
        "api.eu1.bfl.ai (account default), api.us1.bfl.ai (account default)",
        "pick one with --source HOST",
    )
    shown = run(db_path, "show", "twin", "--source", "api.eu1.bfl.ai", "--format", "json")
    assert json.loads(shown.stdout)["details"] == {"mode": "b"}


def test_a_bad_filter_exits_2_pointing_at_the_bad_part(store: str) -> None:
    result = CliRunner().invoke(cli, ["--db", str(store), "query", "mode=x", "lr!1"])
    assert_one_line_error(result, "bad filter 'lr!1'", "position 3")


def test_a_missing_store_exits_2_and_is_not_created(db_path: Path) -> None:
    assert_one_line_error(CliRunner().invoke(cli, ["--db", str(db_path), "query"]), "no bflsync store")
    assert not db_path.exists()


def test_a_store_behind_head_exits_2_and_is_not_migrated(db_path: Path) -> None:
    upgrade_store(locate_store(str(db_path)), revision="0001_initial").engine.dispose()
    before = file_digest(db_path)
    result = CliRunner().invoke(cli, ["--db", str(db_path), "query"])
    assert_one_line_error(result, "0001_initial", "bflsync db upgrade")
    assert file_digest(db_path) == before


def test_a_file_that_is_not_a_database_exits_2(db_path: Path) -> None:
    db_path.write_text("just some notes\n")
    assert_one_line_error(
        CliRunner().invoke(cli, ["--db", str(db_path), "show", "x"]), "not a SQLite database"
    )


def test_a_real_process_prints_ids_for_a_pipeline(store: str) -> None:
    result = run_process("--db", str(store), "query", "mode=character", "--format", "ids")
    assert (result.returncode, result.stdout, result.stderr) == (0, "alpha\n", "")


def test_a_real_process_json_query_parses(store: str) -> None:
    result = run_process("--db", str(store), "query", "learning_rate>=2e-5", "--format", "json")
    assert json.loads(result.stdout) == [expected_record("bravo", BRAVO)]


def test_a_real_process_reports_a_bad_filter_in_one_line(store: str) -> None:
    assert_one_line_error(run_process("--db", str(store), "query", "`unclosed=1"), "never closed")


def test_a_real_process_reports_a_missing_store_in_one_line(db_path: Path) -> None:
    assert_one_line_error(
        run_process("--db", str(db_path), "history", "--since", "2026-01-01"), "no bflsync store"
    )


# The write side's libraries: a read on SQLite is mostly start-up, and these cost more than its query.
HEAVY_MODULES = ("sqlalchemy", "sqlmodel", "pydantic", "alembic", "httpx")
READ_COMMANDS = (
    ["query", "--help"],
    ["query", "mode=character", "--format", "ids"],
    ["query", "--format", "json"],
    ["query", "extra.images>1", "--text", "ohwx", "--sort", "-learning_rate", "--format", "csv"],
    ["query", "--as-of", "2026-01-01", "mode~CHAR"],
    ["query", "label.project=acme", "label.rank>1", "--columns", "label.project,mode", "--format", "csv"],
    ["facets", "mode", "extra.images"],
    ["show", "alpha"],
    ["show", "alpha", "--format", "json"],
    ["-q", "show", "alpha", "--format", "request", "--set", "iterations=400"],
    ["history", "alpha"],
    ["history", "--since", "2026-01-01", "--format", "json"],
    ["runs"],
    ["runs", "1", "--format", "json"],
    ["diff", "alpha@1", "bravo"],
    ["accounts"],
    ["credits"],
    ["compare", "alpha", "bravo", "--only-changed"],
    ["compare", "alpha@1", "bravo", "--format", "markdown"],
)


def test_read_commands_on_sqlite_import_none_of_the_write_sides_libraries(
    labelled_sqlite_store: Path,
) -> None:
    """Every read command in one process: what the union of their imports lacks, each one lacks."""
    script = (
        "import sys\n"
        "from bflsync.cli import cli\n"
        f"for args in {READ_COMMANDS!r}:\n"
        f"    try:\n        cli.main(['--db', {str(labelled_sqlite_store)!r}, *args], prog_name='bflsync')\n"
        "    except SystemExit as exc:\n        assert not exc.code, (args, exc.code)\n"
        f"print(sorted(m for m in {HEAVY_MODULES!r} if m in sys.modules), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.stdout
    assert result.stderr.splitlines()[-1] == "[]"  # after any summary line


def test_read_commands_make_no_network_call(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # On PostgreSQL the read commands talk to the store's own server, and to nothing else.
    server = sa.make_url(store) if "://" in store else None
    allowed = {(server.host, server.port)} if server is not None else set()
    connect = socket.socket.connect

    def refuse(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and tuple(address[:2]) in allowed:
            return connect(self, address)
        raise AssertionError(f"network call to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    for args in (
        ["query", "--text", "ohwx", "--format", "json"],
        ["facets", "mode"],
        ["show", "alpha"],
        ["history", "--since", "2026-01-01"],
        ["runs", "1"],
        ["diff", "alpha", "bravo"],
        ["compare", "alpha", "bravo", "--format", "markdown"],
        ["show", "alpha", "--format", "request"],
        ["label", "alpha", "project=acme"],
        ["note", "alpha", "offline"],
    ):
        assert run(store, *args).exit_code == 0


def test_read_commands_leave_the_store_file_byte_identical(sqlite_store: Path) -> None:
    before = file_digest(sqlite_store)
    for args in (
        ["query", "--as-of", "2026-01-01", "--format", "csv"],
        ["query", "--text", "ohwx"],
        ["facets", "mode", "iterations>1"],
        ["show", "org/charlie"],
        ["history", "alpha"],
        ["runs"],
        ["diff", "alpha@1", "bravo"],
        ["compare", "alpha@1", "bravo", "--format", "json"],
        ["show", "alpha", "--format", "request"],
    ):
        assert run(sqlite_store, *args).exit_code == 0
    assert file_digest(sqlite_store) == before


def test_the_read_engine_refuses_writes(sqlite_store: Path) -> None:
    engine = open_store_for_read(locate_store(str(sqlite_store)))
    try:
        with pytest.raises(sa.exc.OperationalError, match="readonly"), engine.begin() as connection:
            connection.exec_driver_sql("UPDATE finetune SET mode = 'hacked'")
    finally:
        engine.dispose()


def test_as_of_in_the_cli_reads_the_store_at_that_moment(store: str) -> None:
    before_deletion = run(store, "query", "--as-of", "2026-01-01T12:00:00", "--format", "ids")
    assert before_deletion.stdout == "alpha\nbravo\norg/charlie\n"
    before_first_sync = day(1) - timedelta(seconds=1)
    assert run(store, "query", "--as-of", before_first_sync.isoformat(), "--format", "json").stdout == "[]\n"


def assert_usage_error(result: Result, *fragments: str) -> None:
    """Click's own usage error: exit 2 with its usage lines, never an internal error."""
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "internal error" not in result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


@pytest.mark.parametrize(
    ("args", "timestamp"),
    [
        (["query", "--as-of", "9999-12-31T23:59:59-01:00"], "9999-12-31T23:59:59-01:00"),
        (["facets", "mode", "--as-of", "9999-12-31T23:59:59-01:00"], "9999-12-31T23:59:59-01:00"),
        (["history", "--since", "0001-01-01T00:00+01:00"], "0001-01-01T00:00+01:00"),
        (["query", "last_seen_at>9999-12-31T23:00-05:00"], "9999-12-31T23:00-05:00"),
    ],
)
def test_a_timestamp_beyond_the_calendar_in_utc_exits_2_naming_it(
    store: Path, args: list[str], timestamp: str
) -> None:
    result = CliRunner().invoke(cli, ["--db", str(store), *args])
    assert_one_line_error(result, "timestamp out of range", repr(timestamp))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["query", "--limit", "99999999999999999999999"], "is larger than the largest value bflsync takes"),
        (["runs", "99999999999999999999999"], "is not in the range"),
        (["runs", "--", "-99999999999999999999999"], "is not in the range"),
        (["runs", "--limit", "99999999999999999999999"], "is larger than the largest value bflsync takes"),
    ],
)
def test_an_integer_wider_than_64_bits_is_a_usage_error(store: str, args: list[str], says: str) -> None:
    assert_usage_error(CliRunner().invoke(cli, ["--db", str(store), *args]), says)


@pytest.mark.parametrize("args", [["--db", "", "query"], ["query", "--db", ""]], ids=["before", "after"])
def test_an_empty_db_option_is_a_usage_error_not_the_current_directory(args: list[str]) -> None:
    assert_usage_error(CliRunner().invoke(cli, args), "'--db': is empty")


def test_query_table_limit_at_the_64_bit_maximum_shows_every_row(store: str) -> None:
    result = run(store, "query", "--limit", str(2**63 - 1), "--columns", "finetune_id")
    assert (result.stdout, result.stderr) == ("finetune_id\nalpha\nbravo\n", "")


@pytest.fixture
def at_ids_store(store_engine: Engine, db_path: Path) -> Path:
    """Ids that end in @digits next to the id they would split into; two versions of each."""
    write_sync(store_engine, {"org/x@1": {"lr": 1}, "org/x": {"lr": 10}}, now=day(1))
    write_sync(store_engine, {"org/x@1": {"lr": 2}, "org/x": {"lr": 20}}, now=day(2))
    store_engine.dispose()
    return db_path


def diff_sides(db_path: Path, *args: str) -> list[tuple[str, int]]:
    result = json.loads(run(db_path, "diff", *args, "--format", "json").stdout)
    return [(result[side]["finetune_id"], result[side]["version"]) for side in ("a", "b")]


def test_diff_takes_a_whole_text_that_is_a_stored_id_as_its_current_record(at_ids_store: Path) -> None:
    assert diff_sides(at_ids_store, "org/x@1", "org/x") == [("org/x@1", 2), ("org/x", 2)]


def test_diff_splits_a_trailing_at_version_off_text_that_is_not_a_stored_id(at_ids_store: Path) -> None:
    assert diff_sides(at_ids_store, "org/x@1@1", "org/x@2") == [("org/x@1", 1), ("org/x", 2)]


def test_diff_with_a_version_wider_than_64_bits_exits_2(store: str) -> None:
    result = CliRunner().invoke(cli, ["--db", str(store), "diff", "alpha@99999999999999999999999", "alpha"])
    assert_one_line_error(result, "version 99999999999999999999999 is out of range")


def test_diff_does_not_read_non_ascii_digits_as_a_version(store: str) -> None:
    result = CliRunner().invoke(cli, ["--db", str(store), "diff", "alpha@\u0661", "alpha"])
    assert_one_line_error(result, "no finetune 'alpha@\u0661'")


def test_as_of_with_a_last_seen_at_filter_exits_2_explaining_why(store: str) -> None:
    result = CliRunner().invoke(
        cli, ["--db", str(store), "query", "last_seen_at>=2026-01-01", "--as-of", "2026-01-03"]
    )
    assert_one_line_error(result, "last_seen_at cannot be filtered", "--as-of", "records changes")


EVIL_ID = "org/e\x1b[2Jvil"
EVIL_V1 = {"finetune_comment": "set title \x1b]0;pwned\x07 bell", "k\x1bey": 1}
EVIL_V2 = {"finetune_comment": "blink \x1b[5m\nline two", "k\x1bey": "csi \u009b2J del \x7f"}


@pytest.fixture
def evil_store(store_engine: Engine, db_path: Path) -> Path:
    """An id, a details key and values carrying terminal escape sequences, as an API could send them."""
    write_sync(store_engine, {EVIL_ID: EVIL_V1}, now=day(1))
    write_sync(store_engine, {EVIL_ID: EVIL_V2}, now=day(2))
    store_engine.dispose()
    return db_path


def assert_no_control_characters(text: str) -> None:
    lines = text.splitlines()
    assert not [line for line in lines if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line)]


def test_show_text_escapes_control_characters_in_values(evil_store: Path) -> None:
    lines = run(evil_store, "show", EVIL_ID).stdout.splitlines()
    assert "finetune_id       org/e\\x1b[2Jvil" in lines
    assert "finetune_comment  blink \\x1b[5m\\nline two" in lines


def test_show_text_escapes_del_and_c1_controls_in_the_details_json(evil_store: Path) -> None:
    output = run(evil_store, "show", EVIL_ID).stdout
    assert_no_control_characters(output)
    details = output[output.index("details:\n") + len("details:\n") :]
    assert json.loads(details) == EVIL_V2


def test_show_json_keeps_control_characters_as_json_escapes(evil_store: Path) -> None:
    output = run(evil_store, "show", EVIL_ID, "--format", "json").stdout
    assert "\x1b" not in output
    assert json.loads(output)["details"] == EVIL_V2


def test_history_text_escapes_control_characters(evil_store: Path) -> None:
    output = run(evil_store, "history", "--since", "2026-01-01").stdout
    assert_no_control_characters(output)
    assert output.splitlines()[1:] == [
        "org/e\\x1b[2Jvil  v2 updated  2026-01-02T00:00:00.000000Z  "
        'finetune_comment: "set title \\u001b]0;pwned\\u0007 bell" → "blink \\u001b[5m\\nline two", '
        '`k\\x1bey`: 1 → "csi \\u009b2J del \\u007f"  run 2',
    ]


def test_diff_text_escapes_control_characters_in_headers_and_values(evil_store: Path) -> None:
    output = run(evil_store, "diff", EVIL_ID + "@1", EVIL_ID).stdout
    assert_no_control_characters(output)
    assert [line.split("  ")[-1] for line in output.splitlines()] == [
        "org/e\\x1b[2Jvil@2",
        '"blink \\u001b[5m\\nline two"',
        '"csi \\u009b2J del \\u007f"',
    ]


def test_query_table_escapes_control_characters(evil_store: Path) -> None:
    result = run(evil_store, "query", "--columns", "finetune_id,finetune_comment")
    assert result.stdout.splitlines() == [
        "finetune_id      finetune_comment",
        "org/e\\x1b[2Jvil  blink \\x1b[5m\\nline two",
    ]


BIDI_ID = "org/invoice\u202egpj.exe"
BIDI_DETAILS = {"finetune_comment": "isolated \u2066right\u2069 and\u2028split", "mode": "style"}
REORDERING = ("\u202e", "\u2066", "\u2069", "\u2028")


@pytest.fixture
def bidi_store(store_engine: Engine, db_path: Path) -> Path:
    """An id and a comment with bidi overrides, isolates and a line separator, as an API could send them."""
    write_sync(store_engine, {BIDI_ID: BIDI_DETAILS}, now=day(1))
    store_engine.dispose()
    return db_path


@pytest.mark.parametrize(
    "command",
    [
        ["query", "--columns", "finetune_id,finetune_comment"],
        ["show", BIDI_ID],
        ["history", "--since", "2026-01-01", "--format", "table"],
        ["history", "--since", "2026-01-01"],
    ],
    ids=" ".join,
)
def test_text_output_escapes_bidi_overrides_and_line_separators(bidi_store: Path, command: list[str]) -> None:
    output = run(bidi_store, *command).stdout
    assert not [char for char in REORDERING if char in output]
    assert any(f"\\u{ord(char):04x}" in output for char in REORDERING)


def test_show_details_with_bidi_escaped_are_still_the_same_json(bidi_store: Path) -> None:
    output = run(bidi_store, "show", BIDI_ID).stdout
    assert json.loads(output[output.index("details:\n") + len("details:\n") :]) == BIDI_DETAILS


def test_history_since_lists_more_finetunes_than_sqlite_binds_in_one_statement(
    store_engine: Engine, db_path: Path
) -> None:
    ids = [f"ft{number:04d}" for number in range(1200)]
    write_sync(store_engine, {finetune_id: {"lr": 1} for finetune_id in ids}, now=day(1))
    result = run(db_path, "history", "--since", "2026-01-01", "--format", "json")
    assert [entry["finetune_id"] for entry in json.loads(result.stdout)] == ids


def test_the_audit_reader_does_not_import_the_write_side() -> None:
    script = "import sys, bflsync.read.audit_trail; print('bflsync.store.writes' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout == "False\n"


@pytest.fixture
def nan_store(sqlite_store: Path) -> Path:
    """alpha's details rewritten by another tool with a NaN, which Python writes and JSON forbids."""
    connection = sqlite3.connect(sqlite_store)
    with connection:
        connection.execute(
            "UPDATE finetune SET details = ? WHERE finetune_id = 'alpha'",
            ('{"extra":{"images":12},"learning_rate":NaN,"mode":"character"}',),
        )
    connection.close()
    return sqlite_store


def test_a_details_key_filter_over_a_nan_row_names_it_and_answers(nan_store: Path) -> None:
    result = run(nan_store, "query", "extra.images>1", "--format", "json")
    assert json.loads(result.stdout) == []
    assert result.stderr == (
        "bflsync: warning: finetune 'alpha' has stored details that are not valid JSON (NaN or Infinity, "
        "written by another tool?): left out of this answer\n"
    )


def test_query_json_shows_a_nan_as_null_and_says_so(nan_store: Path) -> None:
    result = run(nan_store, "query", "mode=character", "--format", "json")
    [item] = json.loads(result.stdout)
    assert item["details"] == {"extra": {"images": 12}, "learning_rate": None, "mode": "character"}
    assert "finetune 'alpha' stores NaN or Infinity in its details" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["facets", "learning_rate", "extra.images"],
        ["show", "alpha", "--format", "json"],
        ["history", "alpha"],
    ],
)
def test_other_read_commands_answer_over_a_nan_row(nan_store: Path, args: list[str]) -> None:
    result = run(nan_store, *args)
    assert result.exit_code == 0
    if "json" in args:
        json.loads(result.stdout)


def test_a_filter_on_a_key_no_finetune_has_warns_with_a_close_match_and_exits_0(store: str) -> None:
    result = run(store, "query", "learning_rte>=1e-5", "--format", "ids")
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == (
        "bflsync: warning: no stored finetune has a key 'learning_rte' (did you mean learning_rate?)\n"
    )


def test_a_field_typed_in_another_case_suggests_the_stored_spelling(store: str) -> None:
    result = run(store, "query", "MODE=style", "--format", "ids")
    assert result.stderr == "bflsync: warning: no stored finetune has a key 'MODE' (did you mean mode?)\n"


def test_a_nested_filter_key_is_matched_against_the_keys_beside_it(store: str) -> None:
    result = run(store, "query", "extra.imags>1", "--format", "ids")
    assert result.stderr == (
        "bflsync: warning: no stored finetune has a key 'extra.imags' (did you mean extra.images?)\n"
    )


def test_a_key_without_any_close_name_warns_without_a_guess(store: str) -> None:
    result = run(store, "facets", "zzzz")
    assert result.exit_code == 0
    assert result.stderr == "bflsync: warning: no stored finetune has a key 'zzzz'\n"


def test_a_known_key_and_quiet_mode_print_no_warning(store: str) -> None:
    assert run(store, "query", "extra.images>1", "`weird key`=null", "--format", "ids").stderr == ""
    assert run(store, "-q", "query", "learning_rte=1", "--format", "ids").stderr == ""


def test_a_filter_that_missing_keys_match_still_warns_when_finetunes_matched(store: str) -> None:
    # A matched `!=` or `=null` proves nothing about the key: a finetune without it matches too.
    for text in ("learning_rte!=1", "learning_rte=null"):
        result = run(store, "query", text, "--format", "ids")
        assert result.stdout.split() == ["alpha", "bravo"]
        assert result.stderr == (
            "bflsync: warning: no stored finetune has a key 'learning_rte' (did you mean learning_rate?)\n"
        )


def test_format_ids_writes_every_id_once_in_the_answers_order(store_engine: Engine, db_path: Path) -> None:
    ids = [f"ft-{index:05d}" for index in range(5000)]
    write_sync(
        store_engine,
        {finetune_id: {"mode": "style", "n": len(finetune_id)} for finetune_id in ids},
        now=day(1),
    )
    store_engine.dispose()
    # Unbuffered, as some shells' environments are: the ids still leave in one write.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "bflsync",
        "--db",
        str(db_path),
        "query",
        "n>1",
        "--sort",
        "-finetune_id",
    ]
    lines = subprocess.run([*command, "--format", "ids"], capture_output=True, text=True, env=env, check=True)
    nul = subprocess.run([*command, "--format", "ids0"], capture_output=True, text=True, env=env, check=True)
    assert lines.stdout == "".join(f"{finetune_id}\n" for finetune_id in reversed(ids))
    assert nul.stdout == "".join(f"{finetune_id}\0" for finetune_id in reversed(ids))
    assert lines.stderr == nul.stderr == ""


def test_format_ids_of_no_match_writes_nothing(store: str) -> None:
    for output_format in ("ids", "ids0"):
        assert run(store, "query", "mode=nobody", "--format", output_format).stdout == ""


@pytest.mark.parametrize(
    ("option", "name", "guess"),
    [("--sort", "-itertions", "iterations"), ("--columns", "mode,extra.tgs", "extra.tags")],
)
def test_sorting_or_showing_a_key_no_finetune_has_exits_2(
    store: str, option: str, name: str, guess: str
) -> None:
    result = CliRunner().invoke(cli, ["--db", store, "query", option, name])
    wrong = name.lstrip("-").split(",")[-1]
    assert_one_line_error(result, f"no stored finetune has a key '{wrong}' (did you mean {guess}?)")


def test_runs_json_and_csv_keep_the_model_order_of_columns(store: str) -> None:
    expected = [*RUN_FIELDS, "duration_s", "credits_change"]
    [listed] = json.loads(run(store, "runs", "--format", "json").stdout)[:1]
    assert list(listed) == expected
    header = run(store, "runs", "1", "--format", "csv").stdout.splitlines()[0]
    assert header.split(",") == [*expected, "errors"]


@pytest.mark.parametrize("home", ["/home/ana", "/home/ana/", "/home//ana", "relative", "/", ""])
@pytest.mark.parametrize("xdg", [None, "", "/data/xdg"])
def test_the_read_side_default_path_is_the_write_sides(
    monkeypatch: pytest.MonkeyPatch, home: str, xdg: str | None
) -> None:
    from bflsync.config import default_db_path
    from bflsync.read.reader import default_sqlite_path

    monkeypatch.setenv("HOME", home)
    if xdg is None:
        monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_DATA_HOME", xdg)
    try:
        expected = str(default_db_path())
    except RuntimeError:  # platformdirs cannot place a store under this HOME: nor can the read side
        with pytest.raises(RuntimeError):
            default_sqlite_path()
        return
    assert default_sqlite_path() == expected


def test_a_read_without_db_on_linux_needs_no_platformdirs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_DATA_HOME", "BFLSYNC_DB")}
    env["HOME"] = str(tmp_path)
    script = (
        "import sys\n"
        "from bflsync.cli import cli\n"
        "sys.argv = ['bflsync', 'query', '--format', 'ids']\n"
        "try:\n    cli(prog_name='bflsync')\nexcept SystemExit as exc:\n    assert exc.code == 2, exc.code\n"
        "print('platformdirs' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    if sys.platform == "linux":
        assert result.stdout == "False\n"
    assert f"no bflsync store at {tmp_path}/.local/share/bflsync/bflsync.db" in result.stderr


@pytest.mark.parametrize("name", ["plain.db", "a b%20?x#y.db", "zoë;&=+$,.db", "caf\udce9.db", "~tilde-_.db"])
def test_the_sqlite_uri_is_the_one_pathlib_writes(tmp_path: Path, name: str) -> None:
    from bflsync.read.reader import file_uri

    path = f"{tmp_path}/{name}"
    assert file_uri(path) == Path(path).as_uri()


def test_a_store_whose_path_needs_escaping_is_read(store_engine: Engine, db_path: Path) -> None:
    fill(store_engine)
    odd = db_path.parent / "odd dir?#%20" / "my store.db"
    odd.parent.mkdir()
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{db_path}{suffix}").exists():
            Path(f"{db_path}{suffix}").rename(f"{odd}{suffix}")
    assert run(odd, "query", "--format", "ids").stdout == "alpha\nbravo\n"
