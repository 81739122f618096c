"""The progress bar: on stderr when it is a terminal, never under --quiet, never when piped."""

from __future__ import annotations

import os
import pty
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sync_support import KEY, process_env, sync_argv
from terminal import read_until_closed

from bflsync.mock.server import MockBFL


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    finetunes = {f"ft-{i:03d}": {"mode": "style", "iterations": i} for i in range(120)}
    with MockBFL.serve(finetunes=finetunes, api_key=KEY, latency_ms=20) as server:
        yield server


def stderr_on_a_terminal(argv: list[str]) -> tuple[int, str, str]:
    """Run argv with stderr on a pseudo-terminal; return exit code, stdout and what the terminal showed."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(argv, env=process_env(COLUMNS="100"), stdout=subprocess.PIPE, stderr=terminal)
    os.close(terminal)
    shown = read_until_closed(controller)
    assert process.stdout is not None
    stdout = process.stdout.read().decode()
    return process.wait(timeout=30), stdout, shown.decode(errors="replace")


def test_a_terminal_shows_the_progress_bar(db_path: Path, mock: MockBFL) -> None:
    code, _, shown = stderr_on_a_terminal(sync_argv(db_path, mock.base_url, "--concurrency", "4"))
    assert code == 0
    assert "fetching details" in shown
    assert "/120" in shown
    assert "sync ok: 120 listed, 120 created" in shown


def test_quiet_shows_nothing_on_a_terminal(db_path: Path, mock: MockBFL) -> None:
    code, stdout, shown = stderr_on_a_terminal(sync_argv(db_path, mock.base_url, quiet=True))
    assert (code, stdout, shown) == (0, "", "")


def test_a_pipe_gets_only_the_summary_line(db_path: Path, mock: MockBFL) -> None:
    done = subprocess.run(
        sync_argv(db_path, mock.base_url), env=process_env(), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0
    created, summary = done.stderr.splitlines()
    assert created == f"created a new bflsync store at {db_path}"
    assert summary.startswith("sync ok: 120 listed, 120 created")
