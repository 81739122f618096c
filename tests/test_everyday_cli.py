"""Issue 19: the everyday command line answers never silently mislead.

Each test is one bullet of the issue's "Why", run through click's CliRunner and as a real
process (:func:`both`), which must agree on exit code, stdout and stderr.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.engine import Engine
from sqlmodel import Session
from storebuild import SOURCE, day, write_sync
from sync_support import KEY

from bflsync.bfl.status import parse_answer
from bflsync.cli import cli
from bflsync.mock.server import MockBFL
from bflsync.store import status_writes

UUID_A = "00b09f63-1111-4a4a-8a8a-aaaaaaaaaaaa"
UUID_B = "00b09f64-2222-4b4b-8b8b-bbbbbbbbbbbb"
UUID_C = "7f3e2d1c-3333-4c4c-8c8c-cccccccccccc"
A1 = {"mode": "character", "learning_rate": 1e-5, "iterations": 300, "finetune_comment": "猫の写真"}
A2 = {"mode": "character", "learning_rate": 2e-5, "iterations": 600, "finetune_comment": "猫の写真"}
B1 = {"mode": "style", "iterations": 100, "finetune_comment": "plain"}
C1 = {"mode": "product", "iterations": 100, "finetune_comment": "new"}


def both(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``bflsync ARGS`` through CliRunner and as a process: the same exit code, stdout and stderr."""
    extra = env or {}
    inline = CliRunner().invoke(cli, list(args), env=extra, prog_name="bflsync")
    process = subprocess.run(
        [sys.executable, "-m", "bflsync", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **extra},
        timeout=60,
        check=False,
    )
    assert (inline.exit_code, inline.stdout, inline.stderr) == (
        process.returncode,
        process.stdout,
        process.stderr,
    )
    return process


@pytest.fixture
def store(store_engine: Engine, db_path: Path) -> str:
    """Day 1: A and B created. Day 2: A updated (two keys), B deleted, C created."""
    write_sync(store_engine, {UUID_A: A1, UUID_B: B1}, now=day(1))
    write_sync(store_engine, {UUID_A: A2, UUID_C: C1}, now=day(2))
    return str(db_path)


# --- 1. no silent wrong answers ---------------------------------------------------------------------


def test_double_equals_means_equals(store: str) -> None:
    done = both("--db", store, "query", "mode==character", "--format", "ids")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{UUID_A}\n", "")


def test_an_operator_slip_is_a_one_line_error(store: str) -> None:
    done = both("--db", store, "query", "mode!==character")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("bflsync: error: bad filter 'mode!==character': '!==' is not an operator")
    assert done.stderr.count("\n") == 1


def test_an_unmatched_value_of_a_small_set_warns_with_the_close_match_and_the_values(store: str) -> None:
    done = both("--db", store, "query", "mode=Character", "--format", "ids")
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr == (
        "bflsync: warning: no finetune has mode 'Character'; did you mean character? "
        "values: character, product (= compares text exactly, case included)\n"
    )


def test_an_unmatched_value_with_no_close_match_lists_the_values_in_a_separate_clause(store: str) -> None:
    done = both("--db", store, "query", "mode=zzz", "--format", "ids")
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr == (
        "bflsync: warning: no finetune has mode 'zzz'; "
        "values: character, product (= compares text exactly, case included)\n"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["query"],
        ["facets", "mode"],
        ["runs"],
        ["credits"],
        ["history", "--since", "2026-01-01"],
    ],
    ids=" ".join,
)
def test_an_account_or_source_nothing_is_stored_for_warns_with_the_ones_there_are(
    alpha_store: str, command: list[str]
) -> None:
    by_account = both("--db", alpha_store, *command, "--account", "defualt", "--format", "json")
    assert (by_account.returncode, by_account.stderr) == (
        0,
        "bflsync: warning: nothing is stored for account 'defualt'; did you mean default? accounts: default\n",
    )
    if command[0] in ("runs", "history"):
        return  # no --source option
    by_source = both("--db", alpha_store, *command, "--source", "api.us1.bfl.ia", "--format", "json")
    assert (by_source.returncode, by_source.stderr) == (
        0,
        f"bflsync: warning: nothing is stored for source 'api.us1.bfl.ia'; did you mean {SOURCE}? "
        f"sources: {SOURCE}\n",
    )


def test_as_of_before_the_first_sync_says_when_the_record_starts(alpha_store: str) -> None:
    done = both("--db", alpha_store, "query", "--as-of", "2025-06-01", "--format", "ids")
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        "",
        "bflsync: warning: the store's record starts at 2026-01-01T00:00:00.000000Z; "
        "nothing was stored as of 2025-06-01T00:00:00.000000Z\n",
    )


def test_a_filter_the_shell_cut_at_a_redirection_says_so(store: str) -> None:
    # What `bflsync query learning_rate>1e-4` hands over: the shell took `>1e-4` as a redirection.
    done = both("--db", store, "query", "learning_rate")
    assert done.returncode == 2
    assert "an unquoted > or < is a shell redirection" in done.stderr
    assert "'learning_rate>1e-4'" in done.stderr


# --- 2. one time form -------------------------------------------------------------------------------


def test_a_printed_time_pasted_into_sql_finds_the_same_rows(any_store: tuple[str, Engine]) -> None:
    target, engine = any_store
    write_sync(engine, {UUID_A: A1, UUID_B: B1}, now=day(1, 9))
    write_sync(engine, {UUID_A: A2, UUID_B: B1}, now=day(2, 9))
    printed = json.loads(both("--db", target, "show", UUID_A, "--format", "json").stdout)["last_changed_at"]
    assert printed == "2026-01-02T09:00:00.000000Z"
    found = sql_rows(target, engine, f"SELECT finetune_id FROM finetune WHERE last_changed_at >= '{printed}'")
    assert found == [(UUID_A,)]
    assert sql_rows(target, engine, f"SELECT count(*) FROM finetune WHERE last_changed_at = '{printed}'") == [
        (1,)
    ]


def test_every_stored_time_is_in_the_printed_form(store: str) -> None:
    with sqlite3.connect(store) as connection:
        texts = [
            row[0]
            for row in connection.execute(
                "SELECT first_seen_at FROM finetune UNION ALL SELECT observed_at FROM finetune_version"
                " UNION ALL SELECT started_at FROM sync_run UNION ALL SELECT finished_at FROM sync_run"
            )
        ]
    connection.close()
    assert texts and all(len(text) == 27 and text[10] == "T" and text.endswith("Z") for text in texts)


def test_the_remote_timestamp_bfl_sent_in_any_form_is_stored_and_printed_in_the_one_form(
    any_store: tuple[str, Engine],
) -> None:
    target, engine = any_store
    sent = {
        UUID_A: {**A1, "timestamp": "2026-12-04T13:18:17.637556"},  # naive: UTC
        UUID_B: {**B1, "timestamp": "2026-12-04T15:18:17.637556+02:00"},
        UUID_C: {**C1, "timestamp": 1796390297.637556},  # epoch seconds
    }
    write_sync(engine, sent, now=day(1))
    printed = {
        finetune: json.loads(both("--db", target, "show", finetune, "--format", "json").stdout)[
            "remote_timestamp"
        ]
        for finetune in sent
    }
    assert set(printed.values()) == {"2026-12-04T13:18:17.637556Z"}
    stored = sql_rows(
        target, engine, f"SELECT finetune_id FROM finetune WHERE remote_timestamp = '{printed[UUID_A]}'"
    )
    assert sorted(stored) == sorted((finetune,) for finetune in sent)


def test_a_label_value_is_plain_text_in_sql(any_store: tuple[str, Engine]) -> None:
    target, engine = any_store
    write_sync(engine, {UUID_A: A1}, now=day(1))
    labelled = CliRunner().invoke(cli, ["--db", target, "label", UUID_A, "project=acme", "rank=3"])
    assert labelled.exit_code == 0, labelled.output
    found = sql_rows(target, engine, "SELECT key, value FROM finetune_label WHERE value = 'acme'")
    assert found == [("project", "acme")]
    answer = both("--db", target, "query", "label.project=acme", "label.rank=3", "--format", "ids").stdout
    assert answer == f"{UUID_A}\n"


def test_a_time_filter_takes_relative_forms(store: str) -> None:
    done = both("--db", store, "query", "last_changed_at<=7d", "--format", "ids")
    assert (done.returncode, sorted(done.stdout.split())) == (0, [UUID_A, UUID_C])
    assert both("--db", store, "query", "last_changed_at>=yesterday", "--format", "ids").stdout == ""


# --- 3. what changed is short ----------------------------------------------------------------------


def test_history_since_prints_one_line_per_change_and_a_summary(store: str) -> None:
    done = both("--db", store, "history", "--since", "2026-01-02")
    assert done.stdout.splitlines() == [
        f"{UUID_A}  v2 updated  2026-01-02T00:00:00.000000Z  "
        "iterations: 300 → 600, learning_rate: 1e-05 → 2e-05  run 2",
        f"{UUID_B}  v2 deleted  2026-01-02T00:00:00.000000Z  run 2",
        f"{UUID_C}  v1 created  2026-01-02T00:00:00.000000Z  run 2",
    ]
    assert done.stderr == "1 created, 1 deleted, 1 updated since 2026-01-02T00:00:00.000000Z\n"


def test_history_shows_a_status_only_when_it_changed(store_engine: Engine, db_path: Path) -> None:
    write_sync(store_engine, {UUID_A: A1}, now=day(1))
    polls = [("Pending", 0.1), ("Pending", 0.5), ("Pending", 0.9), ("Ready", 1.0)]
    for number, (status, progress) in enumerate(polls, start=2):
        with Session(store_engine) as session, session.begin():
            answer = parse_answer({"id": UUID_A, "status": status, "progress": progress})
            status_writes.record_statuses(
                session,
                [status_writes.StatusObservation(UUID_A, answer)],
                source=SOURCE,
                account="default",
                run_id=None,
                now=day(number),
            )
    done = both("--db", str(db_path), "history", UUID_A, "--kind", "status")
    assert done.stdout.splitlines() == [
        "status  2026-01-02T00:00:00.000000Z  Pending",
        "status  2026-01-05T00:00:00.000000Z  Pending → Ready",
    ]
    assert done.stderr == "2 status changes\n"
    every_poll = both("--db", str(db_path), "history", UUID_A, "--kind", "status", "--format", "jsonl")
    assert len(every_poll.stdout.splitlines()) == 4


def test_history_change_filter_keeps_only_those_versions(store: str) -> None:
    done = both("--db", store, "history", "--since", "2026-01-01", "--change", "created", "-q")
    assert [line.split("  ")[:2] for line in done.stdout.splitlines()] == [
        [UUID_A, "v1 created"],
        [UUID_B, "v1 created"],
        [UUID_C, "v1 created"],
    ]


def test_history_of_one_finetune_has_a_table_format(store: str) -> None:
    done = both("--db", store, "history", UUID_A, "--format", "csv")
    assert done.stdout.splitlines()[0].split(",")[:3] == [
        "kind",
        "finetune_id",
        "source",
    ]
    table = both("--db", store, "history", UUID_A, "--format", "table", "-q").stdout.splitlines()
    assert table[0].split() == ["observed_at", "finetune_id", "change", "what"]
    assert len(table) == 3


def test_diff_with_one_id_compares_the_previous_version_with_the_current(store: str) -> None:
    done = both("--db", store, "diff", UUID_A, "--format", "jsonl")
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"field": "iterations", "a": 300, "b": 600},
        {"field": "learning_rate", "a": 1e-5, "b": 2e-5},
    ]


def test_compare_has_jsonl_like_every_listing(store: str) -> None:
    done = both("--db", store, "compare", UUID_A, UUID_C, "--only-changed", "--format", "jsonl")
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {"field": "mode", "changed": True, "values": {UUID_A: "character", UUID_C: "product"}} in rows


V1 = {"mode": "style", "extra": {"lr": 1, "same": 0}, "gone": "g", "timestamp": "2026-01-01T00:00:00.000000Z"}
V2 = {"mode": "character", "extra": {"lr": 2, "same": 0}, "timestamp": "2026-01-02T00:00:00.000000Z"}
# One change, printed one way: a leaf's dotted path, named as the column where one reads it
# (remote_timestamp, not timestamp), values as compact JSON, (missing) for a side without one.
SAME_CHANGE = {
    "extra.lr": ("1", "2"),
    "gone": ('"g"', "(missing)"),
    "mode": ('"style"', '"character"'),
    "remote_timestamp": ('"2026-01-01T00:00:00.000000Z"', '"2026-01-02T00:00:00.000000Z"'),
}


@pytest.fixture
def changed(store_engine: Engine, db_path: Path) -> str:
    write_sync(store_engine, {UUID_A: V1}, now=day(1))
    write_sync(store_engine, {UUID_A: V2}, now=day(2))
    return str(db_path)


def side_by_side(stdout: str) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """A two-column table's header and its rows as ``{field: (left, right)}``."""
    header, *rows = (re.split(r"\s{2,}", line.strip()) for line in stdout.splitlines())
    return header, {field: (left, right) for field, left, right in rows}


def test_diff_compare_and_history_print_a_change_with_the_same_field_and_values(changed: str) -> None:
    header, diffed = side_by_side(both("--db", changed, "diff", UUID_A).stdout)
    assert (header[0], diffed) == ("field", SAME_CHANGE)
    header, compared = side_by_side(
        both("--db", changed, "compare", f"{UUID_A}@1", UUID_A, "--only-changed").stdout
    )
    assert (header[0], compared) == ("field", SAME_CHANGE)
    [_, updated] = both("--db", changed, "history", UUID_A).stdout.splitlines()
    assert (
        updated
        == "v2 updated  2026-01-02T00:00:00.000000Z  "
        + ", ".join(f"{field}: {old} → {new}" for field, (old, new) in SAME_CHANGE.items())
        + "  run 2"
    )


def test_diff_and_compare_name_the_field_column_field_in_every_format(changed: str) -> None:
    for command in (["diff", UUID_A], ["compare", f"{UUID_A}@1", UUID_A]):
        assert both("--db", changed, *command, "--format", "csv").stdout.startswith("field,")
        first = json.loads(both("--db", changed, *command, "--format", "jsonl").stdout.splitlines()[0])
        assert "field" in first and "key" not in first


# --- 4. finding things ------------------------------------------------------------------------------


def test_a_unique_id_prefix_works_where_an_id_does(store: str) -> None:
    shown = json.loads(both("--db", store, "show", "7f3e2d", "--format", "json").stdout)
    assert shown["finetune_id"] == UUID_C


def test_an_ambiguous_prefix_lists_the_candidates(store: str) -> None:
    done = both("--db", store, "show", "00b09f6")
    assert (done.returncode, done.stderr) == (
        2,
        f"bflsync: error: id prefix '00b09f6' starts several finetunes: {UUID_A}, {UUID_B}; give more of the id\n",
    )


def test_not_found_suggests_close_ids(store: str) -> None:
    done = both("--db", store, "show", "7f3e")
    assert done.returncode == 2
    assert done.stderr == f"bflsync: error: no finetune '7f3e' in the store; did you mean {UUID_C}?\n"


def test_piped_listings_have_every_row_and_limit_0_is_no_limit(store_engine: Engine, db_path: Path) -> None:
    write_sync(store_engine, {f"ft-{n:03}": {"mode": "style"} for n in range(60)}, now=day(1))
    for n in range(55):
        write_sync(store_engine, {"ft-000": {"mode": "style", "n": n}}, now=day(2), tombstone=False)
    piped = both("--db", str(db_path), "query")
    assert (len(piped.stdout.splitlines()), piped.stderr) == (61, "")
    assert len(both("--db", str(db_path), "runs").stdout.splitlines()) == 57
    assert len(both("--db", str(db_path), "runs", "--limit", "0").stdout.splitlines()) == 57
    limited = both("--db", str(db_path), "runs", "--limit", "5")
    assert (len(limited.stdout.splitlines()), limited.stderr) == (
        6,
        "(first 5 rows shown; --limit 0 for all)\n",
    )


@pytest.fixture
def two_accounts(store_engine: Engine, db_path: Path) -> str:
    """Three runs over two accounts, each reading a balance: 7 live finetunes, 4 values of n."""
    write_sync(store_engine, {f"ft-{n}": {"mode": "style", "n": n} for n in range(3)}, now=day(1))
    write_sync(
        store_engine, {f"ot-{n}": {"mode": "style", "n": n} for n in range(3)}, now=day(2), account="other"
    )
    write_sync(store_engine, {f"ft-{n}": {"mode": "style", "n": n} for n in range(4)}, now=day(3))
    with sqlite3.connect(db_path) as connection:
        connection.execute("UPDATE sync_run SET credits = 100 - id")
    connection.close()
    return str(db_path)


LISTING_ROWS = [
    (["query"], 7),
    (["history", "--since", "2026-01-01"], 7),
    (["runs"], 3),
    (["facets", "n"], 4),
    (["accounts"], 2),
    (["credits"], 3),
]


@pytest.mark.parametrize(
    ("command", "rows"),
    LISTING_ROWS,
    ids=lambda value: " ".join(value) if isinstance(value, list) else str(value),
)
def test_limit_0_is_no_limit_and_limit_n_keeps_n_rows_on_every_listing(
    two_accounts: str, command: list[str], rows: int
) -> None:
    every = both("--db", two_accounts, *command, "--limit", "0", "--format", "jsonl")
    assert (every.returncode, len(every.stdout.splitlines())) == (0, rows)
    one = both("--db", two_accounts, *command, "--limit", "1", "--format", "jsonl")
    assert (one.returncode, len(one.stdout.splitlines())) == (0, 1)
    assert "(first 1 row shown; --limit 0 for all)\n" in one.stderr


def test_columns_accept_details_and_labels(store: str) -> None:
    done = both(
        "--db",
        store,
        "query",
        "mode=style",
        "--include-deleted",
        "--columns",
        "details,labels",
        "--format",
        "json",
    )
    assert json.loads(done.stdout) == [
        {"finetune_id": UUID_B, "source": "api.us1.bfl.ai", "account": "default", "details": B1, "labels": {}}
    ]


def test_credits_tables_count_new_finetunes(store: str) -> None:
    with sqlite3.connect(store) as connection:
        connection.execute("UPDATE sync_run SET credits = CASE id WHEN 1 THEN 100 ELSE 90 END")
    connection.close()
    table = both("--db", store, "credits", "--format", "markdown").stdout.splitlines()
    assert table[-1].endswith("| `1` |")
    listed = json.loads(both("--db", store, "credits", "--format", "json").stdout)
    assert listed[-1]["new_finetunes"] == [UUID_C]


# --- 5. cron mail that means something --------------------------------------------------------------


NO_RETRY = ("--max-retries", "0", "--no-status")


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": {"mode": "style"}, "beta": {"mode": "style"}}, api_key=KEY) as server:
        yield server


def test_quiet_sync_prints_nothing_when_ok_and_one_line_when_partial(db_path: Path, mock: MockBFL) -> None:
    args = (
        "--db",
        str(db_path),
        "-q",
        "sync",
        "--base-url",
        mock.base_url,
        "--max-retries",
        "0",
        "--no-status",
    )
    ok = both(*args, env={"BFL_API_KEY": KEY})
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, "", "")
    mock.fail("beta", status=500)
    partial = subprocess.run(
        [sys.executable, "-m", "bflsync", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "BFL_API_KEY": KEY},
        timeout=60,
        check=False,
    )
    assert (partial.returncode, partial.stdout) == (1, "")
    # Runs 1 and 2 were the ok ones (in-process, then as a process).
    assert partial.stderr == "bflsync: run 3 partial: 2 listed, 1 failed; see bflsync runs 3\n"


def test_per_finetune_failures_use_the_bflsync_message_style(db_path: Path, mock: MockBFL) -> None:
    mock.fail("beta", status=500)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bflsync",
            "--db",
            str(db_path),
            "sync",
            "--base-url",
            mock.base_url,
            *NO_RETRY,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BFL_API_KEY": KEY},
        timeout=60,
        check=False,
    )
    lines = done.stderr.splitlines()
    assert any(line.startswith("bflsync: warning: finetune beta not stored: ") for line in lines), lines
    assert not any(" WARNING " in line for line in lines)


# --- 6. conventions ---------------------------------------------------------------------------------


def test_bare_bflsync_prints_help_on_stdout_and_exits_0() -> None:
    # Not `both`: CliRunner wraps help at its own width.
    inline = CliRunner().invoke(cli, [], prog_name="bflsync")
    done = subprocess.run(
        [sys.executable, "-m", "bflsync"], capture_output=True, text=True, timeout=60, check=False
    )
    for code, out, err in (
        (inline.exit_code, inline.stdout, inline.stderr),
        (done.returncode, done.stdout, done.stderr),
    ):
        assert (code, err) == (0, "")
        assert out.startswith("Usage: bflsync") and "Commands:" in out


def test_an_unknown_command_suggests_the_nearest() -> None:
    done = both("shwo")
    assert (done.returncode, done.stderr) == (
        2,
        "bflsync: error: no such command 'shwo'; did you mean 'show'? (see 'bflsync --help')\n",
    )


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script(shell: str) -> None:
    done = both("completion", shell)
    assert done.returncode == 0
    assert {"bash": "complete -o nosort -F", "zsh": "#compdef bflsync", "fish": "complete --no-files"}[
        shell
    ] in done.stdout
    # The README's line (eval "$(_BFLSYNC_COMPLETE=bash_source bflsync)") prints the same script.
    assert both(env={"_BFLSYNC_COMPLETE": f"{shell}_source"}).stdout == done.stdout


def test_piped_tables_pad_by_display_width(store: str) -> None:
    lines = both("--db", store, "query", "--columns", "finetune_comment,iterations").stdout.splitlines()
    # 猫の写真 is four characters, eight cells: `iterations` starts in the same cell on every line.
    starts = [cells_before(line, line.rindex(" ") + 1) for line in lines]
    assert len(set(starts)) == 1, lines


def cells_before(line: str, index: int) -> int:
    from bflsync.cli.table import cells

    return cells(line[:index])


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"TERM": "dumb"}])
def test_no_color_and_dumb_terminals_get_no_escapes(store: str, env: dict[str, str]) -> None:
    import fcntl
    import pty
    import struct
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "bflsync", "--db", store, "query"],
        stdout=terminal,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert process.wait(timeout=30) == 0
    assert UUID_A.encode() in shown
    assert b"\x1b" not in shown


def sql_rows(target: str, engine: Engine, statement: str) -> list[tuple[Any, ...]]:
    """A statement as a user would paste it: literal SQL, through the engine's own driver."""
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(sa.text(statement))]


def test_version_says_where_the_default_store_is_as_a_process(isolated_env: Path) -> None:
    done = both("--version")
    assert done.returncode == 0
    assert done.stdout.splitlines()[1] == f"default store: {isolated_env / 'bflsync' / 'bflsync.db'}"
