"""A PostgreSQL server that accepts the connection and then stops answering ends a command (exit 3).

Between bflsync and the test cluster sits a loopback proxy (tests/stall_proxy.py) that stops
forwarding, either way, once the command sends a given piece of SQL: the connection stays open
and silent. With ``?read_timeout=1`` every command must give up within seconds, in one line that
names the host and the limit, on both ways in (psycopg directly for reads, SQLAlchemy for writes).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from stall_proxy import StallProxy, stall_proxy

from bflsync.cli import cli
from bflsync.mock.server import MockBFL

KEY = "stall-test-key"
# Far below the 60 s default, far above what the proxy adds to a healthy round trip.
READ_TIMEOUT_S = 1
BOUND_S = 15


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve(finetunes={"alpha": {"mode": "style"}}, api_key=KEY) as server:
        yield server


def stalled_run(pg_alpha_store: str, stall_on: bytes, *args: str) -> tuple[int, str, float, StallProxy]:
    """Run the CLI through a proxy that stalls at ``stall_on``: exit code, stderr, seconds taken."""
    with stall_proxy(pg_alpha_store, stall_on=stall_on) as proxy:
        url = f"{proxy.url(pg_alpha_store)}?read_timeout={READ_TIMEOUT_S}"
        started = time.monotonic()
        result = CliRunner().invoke(cli, ["--db", url, *args], env={"BFL_API_KEY": KEY})
        return result.exit_code, result.stderr, time.monotonic() - started, proxy


@pytest.mark.parametrize(
    ("stall_on", "command"),
    [
        (b"FROM finetune", ["query"]),
        (b"FROM finetune", ["show", "alpha"]),
        (b"INSERT INTO finetune_label", ["label", "alpha", "team=ml"]),
    ],
    ids=["query", "show", "label"],
)
def test_a_server_that_stalls_mid_command_ends_it_with_exit_3_naming_host_and_seconds(
    pg_alpha_store: str, stall_on: bytes, command: list[str]
) -> None:
    code, stderr, seconds, proxy = stalled_run(pg_alpha_store, stall_on, *command)
    assert proxy.stalled.is_set()
    assert (code, stderr.count("\n")) == (3, 1), stderr
    assert stderr.startswith("bflsync: error: ")
    assert f"127.0.0.1:{proxy.port} sent nothing for {READ_TIMEOUT_S} s" in stderr
    assert seconds < BOUND_S


def test_a_server_that_stalls_mid_sync_ends_the_sync_with_exit_3(pg_alpha_store: str, mock: MockBFL) -> None:
    code, stderr, seconds, proxy = stalled_run(
        pg_alpha_store, b"INSERT INTO finetune_version", "sync", "--base-url", mock.base_url
    )
    assert proxy.stalled.is_set()
    assert (code, stderr.count("\n")) == (3, 1), stderr
    assert f"127.0.0.1:{proxy.port} sent nothing for {READ_TIMEOUT_S} s" in stderr
    assert seconds < BOUND_S


def test_a_query_process_ends_with_exit_3_when_the_server_stalls(pg_alpha_store: str) -> None:
    # As cron runs it: a real process, whose exit status and stderr are what a monitor sees.
    with stall_proxy(pg_alpha_store, stall_on=b"FROM finetune") as proxy:
        url = f"{proxy.url(pg_alpha_store)}?read_timeout={READ_TIMEOUT_S}"
        done = subprocess.run(
            [sys.executable, "-m", "bflsync", "--db", url, "query"],
            capture_output=True,
            text=True,
            timeout=BOUND_S,
            check=False,
        )
    assert (done.returncode, done.stdout, done.stderr.count("\n")) == (3, "", 1), done.stderr
    assert f"127.0.0.1:{proxy.port} sent nothing for {READ_TIMEOUT_S} s" in done.stderr


def test_tab_completion_through_a_stalled_server_gives_up_and_offers_nothing(pg_alpha_store: str) -> None:
    with stall_proxy(pg_alpha_store, stall_on=b"finetune_id") as proxy:
        line = ["bflsync", "--db", f"{proxy.url(pg_alpha_store)}?read_timeout={READ_TIMEOUT_S}", "show", "al"]
        started = time.monotonic()
        result = CliRunner().invoke(
            cli,
            [],
            prog_name="bflsync",
            env={"_BFLSYNC_COMPLETE": "bash_complete", "COMP_WORDS": " ".join(line), "COMP_CWORD": "4"},
        )
        seconds = time.monotonic() - started
    assert proxy.stalled.is_set()
    assert (result.exit_code, result.stdout.split()) == (0, [])
    assert seconds < BOUND_S


def test_read_timeout_zero_waits_as_long_as_the_server_takes(pg_alpha_store: str) -> None:
    result = CliRunner().invoke(
        cli, ["--db", f"{pg_alpha_store}?read_timeout=0", "query", "--format", "json"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.stderr
    assert '"alpha"' in result.stdout


@pytest.mark.parametrize("command", [["query"], ["label", "alpha", "team=ml"]], ids=["read", "write"])
@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_read_timeout_that_is_not_seconds_exits_2(
    pg_alpha_store: str, command: list[str], value: str
) -> None:
    result = CliRunner().invoke(cli, ["--db", f"{pg_alpha_store}?read_timeout={value}", *command])
    assert (result.exit_code, result.stderr.count("\n")) == (2, 1), result.stderr
    assert "read_timeout=" in result.stderr
