"""Healthcheck pings against a hostile loopback server: each attempt has a deadline, no answer body is read.

A ping is advice: a server that trickles, never answers, sends an endless body or redirects in a
loop costs at most the attempts' deadlines and one warning line, never the run's outcome.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_server import Behaviour, Connection, head, hostile_server
from monitor_support import sync
from sync_support import ALPHA, KEY

from bflsync.errors import ExitCode
from bflsync.mock.server import MockBFL
from bflsync.monitor.ping import Pinger

DEADLINE_S = 0.5
# Three attempts of DEADLINE_S each, and room for a loaded machine; far below any trickle here.
GIVEN_UP_WITHIN_S = 3 * DEADLINE_S + 2.5


def trickled_headers(conn: Connection) -> None:
    """A 200 whose status line and headers arrive a byte every 50 ms: about 20 s in all."""
    conn.drain_body()
    conn.trickle(head(200, {"x-padding": "p" * 300}, length=0), 0.05)


def silent(conn: Connection) -> None:
    """Takes the request and never answers."""
    conn.drain_body()
    conn.stopping.wait(60)


def endless_body(conn: Connection) -> None:
    """A prompt 200 followed by a body that claims a terabyte and keeps coming until the client leaves."""
    conn.drain_body()
    conn.send(head(200, length=10**12))
    block = b"x" * 65536
    while not conn.stopping.is_set():
        conn.send(block)


def trickled_body(conn: Connection) -> None:
    """A prompt 200, then a body a byte every 50 ms: the status is all a ping needs."""
    conn.drain_body()
    conn.send(head(200, length=400))
    conn.trickle(b"y" * 400, 0.05)


def redirect_loop(conn: Connection) -> None:
    """A 302 back to the same path, forever, for a client that follows it."""
    conn.drain_body()
    conn.send(head(302, {"location": conn.path}, length=0))


def timed_ping(behaviour: Behaviour, suffix: str = "start") -> tuple[str | None, float, int]:
    """(the ping's problem, seconds it took, requests the server saw) for one ping to ``behaviour``."""
    with hostile_server({}, default=behaviour) as server:
        pinger = Pinger(f"{server.base_url}/ping/abc", timeout_s=DEADLINE_S, backoff_s=0)
        started = time.monotonic()
        try:
            problem = pinger.ping(suffix)
        finally:
            pinger.close()
        elapsed = time.monotonic() - started
        return problem, elapsed, len(server.requests)


def test_headers_trickled_past_the_deadline_are_given_up_at_the_deadline_of_each_attempt() -> None:
    problem, elapsed, requests = timed_ping(trickled_headers)
    assert problem == (
        "healthcheck ping /start to 127.0.0.1 failed (no answer within 0.5 s); the run's outcome is unchanged"
    )
    assert requests == 3
    assert elapsed < GIVEN_UP_WITHIN_S


def test_a_server_that_never_answers_costs_three_deadlines_and_one_problem() -> None:
    problem, elapsed, requests = timed_ping(silent)
    assert problem == (
        "healthcheck ping /start to 127.0.0.1 failed (no answer within 0.5 s); the run's outcome is unchanged"
    )
    assert requests == 3
    assert elapsed < GIVEN_UP_WITHIN_S


def test_an_endless_answer_body_is_never_read_the_status_is_enough() -> None:
    problem, elapsed, requests = timed_ping(endless_body)
    assert (problem, requests) == (None, 1)
    assert elapsed < GIVEN_UP_WITHIN_S


def test_a_trickled_answer_body_does_not_hold_the_ping() -> None:
    problem, elapsed, requests = timed_ping(trickled_body)
    assert (problem, requests) == (None, 1)
    assert elapsed < 400 * 0.05 / 4


def test_a_redirect_is_not_followed_and_not_retried() -> None:
    problem, _, requests = timed_ping(redirect_loop)
    assert problem == (
        "healthcheck ping /start to 127.0.0.1 failed (HTTP 302); the run's outcome is unchanged"
    )
    assert requests == 1


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": ALPHA}, api_key=KEY) as server:
        yield server


def test_hostile_ping_answers_leave_the_run_ok_with_one_warning_line_per_failed_ping(
    db_path: Path, mock: MockBFL
) -> None:
    with hostile_server({"/ping/abc/start": endless_body}, default=redirect_loop) as server:
        result = sync(str(db_path), mock, "--ping-url", f"{server.base_url}/ping/abc")
        requests = sorted(server.requests)
    assert result.exit_code == 0
    assert requests == ["/ping/abc/0", "/ping/abc/start"]
    assert [line for line in result.stderr.splitlines() if line.startswith("bflsync: warning:")] == [
        "bflsync: warning: healthcheck ping /0 to 127.0.0.1 failed (HTTP 302); the run's outcome is unchanged"
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://xn--a.example/x", "'xn--a.example' is not a valid host name"),
        ("https://exa mple.com/x", "'exa mple.com' is not a valid host name"),
        ("https://h:99999/x", "the port must be a number from 1 to 65535"),
        ("https://h:0/x", "the port must be a number from 1 to 65535"),
        ("http://[::1/x", "not a valid URL"),
        ("https:///x", "expected https://host/path (a healthchecks.io-style ping URL)"),
        ("https://:80/x", "expected https://host/path (a healthchecks.io-style ping URL)"),
    ],
)
def test_a_ping_url_httpx_cannot_use_is_refused_with_exit_2_before_the_run(
    db_path: Path, mock: MockBFL, url: str, message: str
) -> None:
    result = sync(str(db_path), mock, "--ping-url", url)
    assert (result.exit_code, result.stderr) == (ExitCode.INPUT, f"bflsync: error: --ping-url: {message}\n")
    assert not db_path.exists()


def test_a_bad_ping_url_from_bflsync_ping_url_is_refused_the_same_way(db_path: Path, mock: MockBFL) -> None:
    result = sync(str(db_path), mock, env={"BFLSYNC_PING_URL": "https://xn--a.example/x"})
    assert (result.exit_code, result.stderr) == (
        ExitCode.INPUT,
        "bflsync: error: --ping-url: 'xn--a.example' is not a valid host name\n",
    )
    assert not db_path.exists()


@pytest.mark.parametrize(
    ("name", "proxy"), [("HTTPS_PROXY", "socks5://127.0.0.1:1080"), ("ALL_PROXY", "ftp://x")]
)
def test_a_proxy_the_ping_cannot_use_is_refused_with_exit_2_before_the_run(
    db_path: Path, mock: MockBFL, monkeypatch: pytest.MonkeyPatch, name: str, proxy: str
) -> None:
    monkeypatch.setenv(name, proxy)  # the API is on loopback, which never uses a proxy; the ping would
    result = sync(str(db_path), mock, "--ping-url", "https://hc-ping.invalid/abc")
    assert result.exit_code == ExitCode.INPUT
    assert result.stderr.startswith(f"bflsync: error: {name} is set to a proxy bflsync cannot use: ")
    assert not db_path.exists()
