"""``bflsync sync`` against loopback servers that misbehave on purpose; every test ends in seconds.

Each test would fail on the client as it was before this hardening: a trickle held the run for
as long as the server liked, a gzip bomb took gigabytes, encoded echoes of the key reached
stderr and the store, and server text could drive the terminal.
"""

from __future__ import annotations

import base64
import html
import json
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from click.testing import CliRunner, Result
from hostile_server import (
    Connection,
    HostileServer,
    answer,
    gzip_bomb,
    gzipped,
    head,
    hostile_server,
    trickled_body,
    trickled_headers,
)

from bflsync.cli import cli
from bflsync.config import MAX_ANSWER_BYTES, MAX_LISTING_BYTES

KEY = "sk-Test_k3y/with+special=chars&<more>"
LIST = "/v1/my_finetunes"
DETAILS = "/v1/finetune_details"


def sync(runner: CliRunner, db_path: Path, server: HostileServer, *args: str) -> Result:
    """A sync of the listing and details only: these servers know no status or credits endpoint."""
    return runner.invoke(
        cli,
        ["--db", str(db_path), "sync", "--base-url", server.base_url, "--no-status", "--no-credits", *args],
        env={"BFL_API_KEY": KEY},
        catch_exceptions=False,
    )


def rows(db_path: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db_path) as connection:
        return connection.execute(query).fetchall()


def details_of(conn: Connection) -> None:
    finetune_id = conn.path.split("finetune_id=", 1)[1]
    answer(200, {"finetune_details": {"mode": "style", "comment": finetune_id}})(conn)


# --- 8: --timeout bounds the whole answer ------------------------------------------------------


@pytest.mark.parametrize("trickle", [trickled_body, trickled_headers], ids=["body", "headers"])
def test_a_trickled_listing_is_cut_off_by_the_timeout(runner: CliRunner, db_path: Path, trickle: Any) -> None:
    # 0.05 s between bytes never trips a per-read timeout; the whole answer would take over 10 s.
    listing = {"finetunes": ["a" * 60, "b" * 60, "c" * 60]}
    with hostile_server({LIST: trickle(listing, 0.05)}) as server:
        started = time.monotonic()
        result = sync(runner, db_path, server, "--timeout", "1", "--max-retries", "0")
        elapsed = time.monotonic() - started

    assert result.exit_code == 3, result.output
    assert "no complete answer from 127.0.0.1" in result.stderr
    assert "within 1 s" in result.stderr
    assert elapsed < 5.0  # store creation included, on a loaded machine
    assert rows(db_path, "SELECT status FROM sync_run") == [("failed",)]


def test_a_detail_trickled_forever_is_a_per_finetune_timeout(runner: CliRunner, db_path: Path) -> None:
    def forever(conn: Connection) -> None:
        conn.send(head(200, length=10_000))
        conn.trickle(b" " * 10_000, 0.05)

    routes = {LIST: answer(200, {"finetunes": ["slow", "fast"]})}
    with hostile_server(routes, default=details_of) as server:
        server.routes[DETAILS] = lambda conn: (forever if "slow" in conn.path else details_of)(conn)
        started = time.monotonic()
        result = sync(runner, db_path, server, "--timeout", "0.5", "--max-retries", "1")
        elapsed = time.monotonic() - started

    assert result.exit_code == 1, result.output
    assert rows(db_path, "SELECT finetune_id FROM finetune") == [("fast",)]
    assert rows(db_path, "SELECT finetune_id, kind, attempts FROM sync_error") == [("slow", "timeout", 2)]
    assert elapsed < 6.0


# --- 9: a run has a bound ----------------------------------------------------------------------


def test_retry_after_99999_stops_at_the_run_deadline_keeping_what_was_stored(
    runner: CliRunner, db_path: Path
) -> None:
    def details(conn: Connection) -> None:
        if "limited" in conn.path:
            answer(429, {"detail": "slow down"}, {"retry-after": "99999"})(conn)
        else:
            details_of(conn)

    listing = {"finetunes": ["first", "second", *(f"limited-{i}" for i in range(16))]}
    with hostile_server({LIST: answer(200, listing), DETAILS: details}) as server:
        started = time.monotonic()
        result = sync(runner, db_path, server, "--concurrency", "1", "--max-duration", "2", "--json")
        elapsed = time.monotonic() - started

    assert result.exit_code == 3, result.output
    assert elapsed < 6.0  # without the deadline: 120 s per finetune
    assert json.loads(result.stdout)["status"] == "failed"
    assert "time limit (--max-duration 2 s)" in result.stderr
    assert sorted(rows(db_path, "SELECT finetune_id FROM finetune")) == [("first",), ("second",)]
    ((status, error),) = rows(db_path, "SELECT status, error FROM sync_run")
    assert status == "failed"
    assert "--max-duration" in error
    assert rows(db_path, "SELECT deleted_at FROM finetune WHERE deleted_at IS NOT NULL") == []


def test_503_forever_opens_the_circuit_after_k_failed_requests(runner: CliRunner, db_path: Path) -> None:
    listing = {"finetunes": [f"ft-{i}" for i in range(64)]}
    routes = {LIST: answer(200, listing), DETAILS: answer(503, {"detail": "unavailable"})}
    with hostile_server(routes) as server:
        started = time.monotonic()
        result = sync(
            runner,
            db_path,
            server,
            "--max-retries",
            "1",
            "--max-consecutive-failures",
            "5",
            "--concurrency",
            "2",
        )
        elapsed = time.monotonic() - started
        detail_requests = server.count(DETAILS)

    assert result.exit_code == 3, result.output
    assert "5 requests in a row failed after their retries" in result.stderr
    assert detail_requests < 64  # without the breaker: 128, every finetune tried twice
    assert elapsed < 8.0
    assert rows(db_path, "SELECT status FROM sync_run") == [("failed",)]


def test_the_default_run_bounds_are_documented_in_help(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["sync", "--help"], catch_exceptions=False)
    text = " ".join(result.output.split())
    assert "--max-duration S Run deadline" in text
    assert "[default: 3600.0; x>0]" in text
    assert "--max-consecutive-failures K" in text
    assert "[default: 10; x>=0]" in text


# --- 10: response size is capped after decompression -------------------------------------------


def test_a_gzip_bomb_detail_is_a_per_finetune_bad_response(runner: CliRunner, db_path: Path) -> None:
    bomb = gzip_bomb(b'{"finetune_details": {"x": "', b"a", MAX_ANSWER_BYTES + 2**20, b'"}}')
    assert len(bomb) < 100_000

    def details(conn: Connection) -> None:
        (gzipped(200, bomb) if "bomb" in conn.path else details_of)(conn)

    routes = {LIST: answer(200, {"finetunes": ["bomb", "fine"]}), DETAILS: details}
    with hostile_server(routes) as server:
        result = sync(runner, db_path, server)

    assert result.exit_code == 1, result.output
    assert rows(db_path, "SELECT finetune_id FROM finetune") == [("fine",)]
    ((finetune_id, kind, message),) = rows(db_path, "SELECT finetune_id, kind, message FROM sync_error")
    assert (finetune_id, kind) == ("bomb", "bad_response")
    assert f"larger than {MAX_ANSWER_BYTES:,} bytes once decompressed" in message


def test_a_listing_over_its_cap_fails_the_run(runner: CliRunner, db_path: Path) -> None:
    bomb = gzip_bomb(b'{"finetunes": ["', b"a", MAX_LISTING_BYTES + 2**20, b'"]}')
    with hostile_server({LIST: gzipped(200, bomb)}) as server:
        result = sync(runner, db_path, server)

    assert result.exit_code == 3, result.output
    assert f"larger than {MAX_LISTING_BYTES:,} bytes once decompressed" in result.stderr
    assert rows(db_path, "SELECT status FROM sync_run") == [("failed",)]


# --- 11: the key is scrubbed in every form an error body can echo ------------------------------


def key_echoes() -> list[str]:
    return [
        KEY,
        KEY.upper(),
        KEY.lower(),
        quote(KEY, safe=""),
        html.escape(KEY),
        base64.b64encode(KEY.encode()).decode(),
        base64.b64encode(f"user:{KEY}".encode()).decode(),
        base64.urlsafe_b64encode(f"ab{KEY}".encode()).decode(),
    ]


def test_encoded_echoes_of_the_key_reach_neither_stderr_nor_the_store(
    runner: CliRunner, db_path: Path
) -> None:
    echo = {"detail": " | ".join(key_echoes())}
    routes = {
        LIST: answer(200, {"finetunes": ["x"]}),
        DETAILS: answer(500, echo, {"x-request-id": quote(KEY)}),
    }
    with hostile_server(routes) as server:
        failed_detail = sync(runner, db_path, server, "--max-retries", "0")
        server.routes[LIST] = answer(401, echo)
        refused = sync(runner, db_path, server, "--max-retries", "0")

    assert (failed_detail.exit_code, refused.exit_code) == (1, 3)
    stored = json.dumps(
        rows(db_path, "SELECT message FROM sync_error") + rows(db_path, "SELECT error FROM sync_run")
    )
    for text in (failed_detail.stderr, refused.stderr, stored):
        assert "***" in text
        for form in key_echoes():
            core = form.rstrip("=")[4:-4]  # whatever the alignment, the middle of an echo must be gone
            assert core not in text, form
            assert core.lower() not in text.lower(), form


@pytest.mark.parametrize("echo", key_echoes(), ids=lambda form: f"echo{key_echoes().index(form)}")
def test_a_listing_that_echoes_the_key_as_an_id_fails_the_run_and_stores_no_trace(
    runner: CliRunner, db_path: Path, echo: str
) -> None:
    """An id is printed in warnings and stored in sync_error and finetune: it must not carry the key."""
    routes = {
        LIST: answer(200, {"finetunes": ["ok-1", f"id-{echo}"]}),
        DETAILS: answer(404, {"detail": "gone"}),
    }
    with hostile_server(routes) as server:
        result = sync(runner, db_path, server, "--max-retries", "0")
        asked = list(server.requests)

    assert result.exit_code == 3, result.output
    assert result.stderr.endswith(
        "unexpected item in 'finetunes': it holds the API key; GET /v1/my_finetunes -> 200\n"
    )
    assert asked == [LIST]
    stored = json.dumps(
        [rows(db_path, f"SELECT * FROM {table}") for table in ("sync_run", "sync_error", "finetune")]
    )
    core = echo.rstrip("=")[4:-4]
    for text in (result.stderr, stored):
        assert core.lower() not in text.lower()


# --- 12: server text never drives the terminal -------------------------------------------------

HOSTILE_ID = "evil\x1b[2J\x1b]0;pwned\x07\u202etxt.exe"
HOSTILE_DETAIL = "gone\nbflsync: error: forged line\x1b[31m\u2066red\u2069"


def test_hostile_ids_and_details_are_escaped_in_warning_and_error_lines(
    runner: CliRunner, db_path: Path
) -> None:
    routes = {
        LIST: answer(200, {"finetunes": [HOSTILE_ID]}),
        DETAILS: answer(404, {"detail": HOSTILE_DETAIL}),
    }
    with hostile_server(routes) as server:
        partial = sync(runner, db_path, server)
        server.routes[LIST] = answer(500, {"detail": HOSTILE_DETAIL})
        failed = sync(runner, db_path, server, "--max-retries", "0")

    assert (partial.exit_code, failed.exit_code) == (1, 3)
    for stderr in (partial.stderr, failed.stderr):
        for forbidden in ("\x1b", "\x07", "\u202e", "\u2066", "\u2069"):
            assert forbidden not in stderr
    warning = [line for line in partial.stderr.splitlines() if "not stored" in line]
    assert len(warning) == 1
    assert "\\x1b[2J" in warning[0] and "\\u202e" in warning[0] and "gone\\nbflsync" in warning[0]
    assert failed.stderr.count("\n") == 1
    assert failed.stderr.startswith("bflsync: error: cannot list finetunes")
    assert "\\u2066red\\u2069" in failed.stderr
    (message,) = rows(db_path, "SELECT message FROM sync_error")[0]
    assert "\n" not in message and "\x1b" not in message


def test_format_ids_refuses_an_id_with_a_newline_and_ids0_carries_it(
    runner: CliRunner, db_path: Path
) -> None:
    routes = {LIST: answer(200, {"finetunes": ["plain", "two\nlines"]}), DETAILS: details_of}
    with hostile_server(routes) as server:
        assert sync(runner, db_path, server).exit_code == 0

    ids = runner.invoke(cli, ["--db", str(db_path), "query", "--format", "ids"])
    ids0 = runner.invoke(cli, ["--db", str(db_path), "query", "--format", "ids0"], catch_exceptions=False)

    assert ids.exit_code == 2
    assert ids.stdout == ""
    assert ids.stderr == (
        "bflsync: error: finetune id 'two\\nlines' contains a newline; "
        "--format ids0 separates ids with NUL bytes instead\n"
    )
    assert ids0.exit_code == 0
    assert sorted(ids0.stdout.split("\0")) == ["", "plain", "two\nlines"]


# --- 14: options and environment ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "infinity"])
@pytest.mark.parametrize("option", ["--timeout", "--max-duration", "--wait"])
def test_non_finite_seconds_exit_2_in_one_line(
    runner: CliRunner, db_path: Path, option: str, value: str
) -> None:
    result = runner.invoke(
        cli, ["--db", str(db_path), "sync", option, value], env={"BFL_API_KEY": KEY}, catch_exceptions=False
    )
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"bflsync: error: Invalid value for '{option}'")
    assert not db_path.exists()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("HTTPS_PROXY", "socks5://127.0.0.1:1080", "socksio"),
        ("HTTPS_PROXY", "::::", "Invalid port"),
        ("all_proxy", "ftp://proxy.example", "Unknown scheme"),
    ],
)
def test_an_unusable_proxy_variable_exits_2_naming_it(
    runner: CliRunner, db_path: Path, name: str, value: str, message: str
) -> None:
    result = runner.invoke(
        cli,
        ["--db", str(db_path), "sync", "--base-url", "https://api.example.invalid"],
        env={"BFL_API_KEY": KEY, name: value},
        catch_exceptions=False,
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(f"bflsync: error: {name} is set to a proxy bflsync cannot use: ")
    assert message in result.stderr
    assert result.stderr.count("\n") == 1
    assert not db_path.exists()


@pytest.mark.parametrize(
    ("argv", "start"),
    [
        (["query", "--limit", "-1"], "bflsync: error: Invalid value for '--limit'"),
        (["--bogus"], "bflsync: error: No such option '--bogus'"),
        (["nocommand"], "bflsync: error: No such command 'nocommand'"),
        (["db", "upgrade", "a", "b"], "bflsync: error: Got unexpected extra argument"),
    ],
)
def test_usage_errors_print_one_line(runner: CliRunner, argv: list[str], start: str) -> None:
    result = runner.invoke(cli, argv)
    assert result.exit_code == 2
    assert result.stderr.startswith(start)
    assert result.stderr.count("\n") == 1
    assert "--help')" in result.stderr


# --- ids too long for a request URL -------------------------------------------------------------

LONG_ID = "x" * 100_000


@pytest.mark.parametrize("how", ["listed", "--id"])
def test_an_id_too_long_to_request_fails_that_finetune_alone(
    runner: CliRunner, db_path: Path, how: str
) -> None:
    listing = answer(200, {"finetunes": [LONG_ID, "plain"]})
    with hostile_server({LIST: listing}, default=details_of) as server:
        ids = ["--id", LONG_ID, "--id", "plain"] if how == "--id" else []
        result = sync(runner, db_path, server, *ids)

    assert result.exit_code == 1, result.output
    assert rows(db_path, "SELECT finetune_id FROM finetune") == [("plain",)]
    assert rows(db_path, "SELECT length(finetune_id), kind FROM sync_error") == [(100_000, "invalid_request")]
    assert "the id is too long to send in a request URL" in result.stderr
    assert "internal error" not in result.stderr


def test_a_long_id_is_capped_in_the_warning_that_its_answer_held_the_key(
    runner: CliRunner, db_path: Path
) -> None:
    listing = answer(200, {"finetunes": ["y" * 60_000]})
    echoing = answer(200, {"finetune_details": {"finetune_comment": f"key was {KEY}"}})
    with hostile_server({LIST: listing}, default=echoing) as server:
        result = sync(runner, db_path, server)

    assert result.exit_code == 0, result.output
    (warning,) = [line for line in result.stderr.splitlines() if "API key was in the answer" in line]
    assert warning.startswith("bflsync: warning: finetune yyy")
    assert len(warning) < 4 * 300


def test_a_long_id_is_capped_in_warning_lines(runner: CliRunner, db_path: Path) -> None:
    def long_ones_unknown(conn: Connection) -> None:
        too_long = len(conn.path) > 1_000
        (answer(404, {"detail": "Not found"}) if too_long else details_of)(conn)

    listing = answer(200, {"finetunes": ["y" * 60_000, "plain"]})
    with hostile_server({LIST: listing}, default=long_ones_unknown) as server:
        result = sync(runner, db_path, server)

    assert result.exit_code == 1, result.output
    (warning,) = [line for line in result.stderr.splitlines() if "not stored" in line]
    assert warning.startswith("bflsync: warning: finetune yyy")
    assert len(warning) < 4 * 300
