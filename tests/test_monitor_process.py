"""The metrics file and pings of a ``bflsync sync`` process stopped by SIGTERM (systemctl stop, shutdown)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from monitor_support import samples, value
from ping_server import ping_receiver
from sync_support import ALPHA, BETA, KEY, process_env, sync_argv, wait_until_running

from bflsync.mock.server import MockBFL
from bflsync.store import access
from bflsync.store.lock import sync_lock_for

pytestmark = pytest.mark.slow


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": ALPHA, "beta": BETA}, api_key=KEY) as server:
        yield server


def test_a_sync_stopped_by_sigterm_is_reported_interrupted_with_exit_143(
    db_path: Path, mock: MockBFL, tmp_path: Path
) -> None:
    prom = tmp_path / "bflsync.prom"
    mock.hang("beta", seconds=30)  # the run cannot end before the signal
    with ping_receiver() as receiver:
        process = subprocess.Popen(
            sync_argv(db_path, mock.base_url, "--metrics-file", str(prom), "--ping-url", receiver.url),
            env=process_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_until_running(db_path, process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == 143, stderr
        assert [path.rsplit("/", 1)[1] for path in receiver.paths] == ["start", "143"]
        assert json.loads(receiver.pings[1].body)["status"] == "interrupted"
    found = samples(prom)
    labels = {"source": mock.base_url.removeprefix("http://"), "account": "default"}
    assert value(found, "bflsync_last_run_status", **labels, status="interrupted") == 1
    assert value(found, "bflsync_last_run_exit_code", **labels) == 143


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_sync_stopped_while_waiting_for_the_lock_is_reported_interrupted(
    db_path: Path, mock: MockBFL, tmp_path: Path, signum: int, exit_code: int
) -> None:
    prom = tmp_path / "bflsync.prom"
    location = access.locate_store(str(db_path))
    access.open_store_for_write(location).engine.dispose()
    with ping_receiver() as receiver, sync_lock_for(location):
        process = subprocess.Popen(
            sync_argv(
                db_path,
                mock.base_url,
                "--wait",
                "60",
                "--metrics-file",
                str(prom),
                "--ping-url",
                receiver.url,
            ),
            env=process_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while not receiver.paths and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)  # polls for the start ping: from then on the sync waits for the lock
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=20)
        assert process.returncode == exit_code, stderr
        assert [path.rsplit("/", 1)[1] for path in receiver.paths] == ["start", str(exit_code)]
        assert json.loads(receiver.pings[1].body)["status"] == "interrupted"
    found = samples(prom)
    labels = {"source": mock.base_url.removeprefix("http://"), "account": "default"}
    assert value(found, "bflsync_last_run_status", **labels, status="interrupted") == 1
    assert value(found, "bflsync_last_run_exit_code", **labels) == exit_code
