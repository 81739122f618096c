"""``sync --ping-url``: healthchecks.io-style pings to a real loopback receiver, which never change a run's outcome."""

from __future__ import annotations

import base64
import json
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from monitor_support import sync
from ping_server import PingReceiver, ping_receiver
from sync_support import ALPHA, BETA, KEY

from bflsync.errors import ExitCode
from bflsync.mock.server import MockBFL
from bflsync.monitor.ping import Pinger, ping_url
from bflsync.store import access
from bflsync.store.lock import sync_lock_for


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": ALPHA, "beta": BETA}, api_key=KEY) as server:
        yield server


@pytest.fixture
def receiver() -> Iterator[PingReceiver]:
    with ping_receiver() as server:
        yield server


def test_a_run_pings_start_then_its_exit_code_with_its_json_summary(
    store_db: str, mock: MockBFL, receiver: PingReceiver
) -> None:
    result = sync(store_db, mock, "--ping-url", receiver.url)
    assert result.exit_code == 0
    start, end = receiver.pings
    assert (start.method, start.path, start.body) == ("POST", "/ping/abc-123/start", b"")
    assert (end.method, end.path, end.headers["Content-Type"]) == (
        "POST",
        "/ping/abc-123/0",
        "application/json",
    )
    summary = json.loads(end.body)
    assert summary == {
        **{key: summary[key] for key in ("run_id", "credits", "duration_s")},
        "status": "ok",
        "source": mock.base_url.removeprefix("http://"),
        "account": "default",
        "listed": 2,
        "fetched": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "restored": 0,
        "failed": 0,
        "status_failed": 0,
        "status_checked": 2,
        "status_changed": 2,
        "key_changed": False,
        "exit_code": 0,
        "error": None,
    }


def test_a_failed_run_pings_its_exit_code_with_the_error(
    db_path: Path, mock: MockBFL, receiver: PingReceiver
) -> None:
    result = sync(str(db_path), mock, "--ping-url", receiver.url, key="revoked")
    assert result.exit_code == ExitCode.CANNOT_RUN
    assert receiver.paths == ["/ping/abc-123/start", "/ping/abc-123/3"]
    summary = json.loads(receiver.pings[1].body)
    assert (summary["status"], summary["exit_code"]) == ("failed", 3)
    assert "refused" in summary["error"]


def test_a_sync_refused_by_the_lock_pings_exit_4(
    store_db: str, mock: MockBFL, receiver: PingReceiver
) -> None:
    access.open_store_for_write(access.locate_store(store_db)).engine.dispose()
    with sync_lock_for(access.locate_store(store_db)):
        result = sync(store_db, mock, "--ping-url", receiver.url)
    assert result.exit_code == ExitCode.LOCKED
    assert receiver.paths == ["/ping/abc-123/start", "/ping/abc-123/4"]
    summary = json.loads(receiver.pings[1].body)
    assert summary["status"] == "locked"
    assert summary["error"].startswith("another sync is running")


def test_a_sync_stopped_before_its_run_pings_a_body_with_its_exit_code_like_any_run(
    tmp_path: Path, mock: MockBFL, receiver: PingReceiver
) -> None:
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("not a database\n")
    result = sync(str(not_a_store), mock, "--ping-url", receiver.url)
    assert result.exit_code == ExitCode.INPUT
    assert receiver.paths == ["/ping/abc-123/start", "/ping/abc-123/2"]
    summary = json.loads(receiver.pings[1].body)
    assert (summary["status"], summary["exit_code"]) == ("failed", 2)
    assert "not a SQLite database" in summary["error"]


def test_a_ping_answered_500_is_retried_twice_then_one_warning_and_the_run_goes_on(
    db_path: Path, mock: MockBFL, receiver: PingReceiver
) -> None:
    receiver.statuses.extend([500, 500, 500])
    result = sync(str(db_path), mock, "--ping-url", receiver.url)
    assert result.exit_code == 0
    assert receiver.paths == ["/ping/abc-123/start"] * 3 + ["/ping/abc-123/0"]
    assert [line for line in result.stderr.splitlines() if "warning" in line] == [
        "bflsync: warning: healthcheck ping /start to 127.0.0.1 failed (HTTP 500); the run's outcome is unchanged"
    ]


def test_a_ping_refused_with_404_is_not_retried(db_path: Path, mock: MockBFL, receiver: PingReceiver) -> None:
    receiver.statuses.extend([404])
    assert sync(str(db_path), mock, "--ping-url", receiver.url).exit_code == 0
    assert receiver.paths == ["/ping/abc-123/start", "/ping/abc-123/0"]


def test_an_unreachable_ping_service_changes_neither_the_run_nor_its_exit_code(
    db_path: Path, mock: MockBFL
) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    result = sync(str(db_path), mock, "--ping-url", f"http://127.0.0.1:{port}/ping/x", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["status"] == "ok"
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [
        f"bflsync: warning: healthcheck ping /{suffix} to 127.0.0.1 failed (ConnectError); the run's outcome is unchanged"
        for suffix in ("start", "0")
    ]


def test_ping_warnings_are_silent_under_quiet(db_path: Path, mock: MockBFL) -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    result = sync(str(db_path), mock, "-q", "--ping-url", f"http://127.0.0.1:{port}/x")
    assert (result.exit_code, result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://hc-ping.example.com/uuid",
            "refusing plain http:// to hc-ping.example.com: use https:// (http only on loopback)",
        ),
        ("ftp://127.0.0.1/x", "expected https://host/path (a healthchecks.io-style ping URL)"),
        ("https://user:pw@hc-ping.com/x", "the URL must not contain credentials"),
    ],
)
def test_a_ping_url_that_is_not_https_or_loopback_http_is_refused_before_the_run(
    db_path: Path, mock: MockBFL, url: str, message: str
) -> None:
    result = sync(str(db_path), mock, "--ping-url", url)
    assert (result.exit_code, result.stderr) == (ExitCode.INPUT, f"bflsync: error: --ping-url: {message}\n")
    assert not db_path.exists()


def test_the_ping_url_can_come_from_bflsync_ping_url(
    db_path: Path, mock: MockBFL, receiver: PingReceiver
) -> None:
    assert sync(str(db_path), mock, env={"BFLSYNC_PING_URL": receiver.url}).exit_code == 0
    assert receiver.paths == ["/ping/abc-123/start", "/ping/abc-123/0"]


def test_no_ping_carries_the_api_key_in_any_encoding(
    store_db: str, mock: MockBFL, receiver: PingReceiver
) -> None:
    assert sync(store_db, mock, "--ping-url", receiver.url).exit_code == 0
    assert sync(store_db, mock, "--ping-url", receiver.url, key="another-secret-key-9").exit_code == 3
    raw = b"".join(
        ping.method.encode() + ping.path.encode() + repr(sorted(ping.headers.items())).encode() + ping.body
        for ping in receiver.pings
    )
    assert len(receiver.pings) == 4
    for key in (KEY, "another-secret-key-9"):
        for encoded in (
            key,
            base64.b64encode(key.encode()).decode(),
            base64.urlsafe_b64encode(key.encode()).decode().rstrip("="),
            key.encode().hex(),
            urllib.parse.quote(key),
            json.dumps(key)[1:-1],
        ):
            assert encoded.encode() not in raw


def test_a_ping_that_gets_no_answer_times_out_after_its_retries() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections are queued and never answered
        pinger = Pinger(f"http://127.0.0.1:{silent.getsockname()[1]}/p", timeout_s=0.2, backoff_s=0)
        try:
            problem = pinger.ping("start")
        finally:
            pinger.close()
    assert (
        problem
        == "healthcheck ping /start to 127.0.0.1 failed (no answer within 0.2 s); the run's outcome is unchanged"
    )


def test_the_suffix_goes_on_the_path_and_a_query_string_stays_last() -> None:
    assert (
        ping_url("https://hc-ping.com/key/slug?create=1", "start")
        == "https://hc-ping.com/key/slug/start?create=1"
    )


def test_a_dry_run_sends_no_ping_but_checks_the_url(
    db_path: Path, mock: MockBFL, receiver: PingReceiver
) -> None:
    assert sync(str(db_path), mock, "--dry-run", "--ping-url", receiver.url).exit_code == 0
    assert receiver.paths == []
    refused = sync(str(db_path), mock, "--dry-run", "--ping-url", "http://hc.example.com/x")
    assert refused.exit_code == ExitCode.INPUT
