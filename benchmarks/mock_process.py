"""Run ``bflsync mock-api`` in its own process, so the mock never competes with the sync for the GIL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MOCK_KEY = "mock-key"


@contextmanager
def mock_api(
    *, count: int, latency_ms: float = 0.0, seed: int = 1, max_in_flight: int | None = None
) -> Iterator[str]:
    """A mock serving ``count`` generated finetunes; yields its base URL."""
    command = [sys.executable, "-m", "bflsync", "mock-api", "--count", str(count), "--seed", str(seed)]
    if max_in_flight is not None:
        command += ["--max-in-flight", str(max_in_flight)]
    process = subprocess.Popen(
        [*command, "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def sync_command(db_path: Path, base_url: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bflsync",
        "--db",
        str(db_path),
        "--quiet",
        "sync",
        "--base-url",
        base_url,
        *args,
    ]


def sync_env() -> dict[str, str]:
    return {**os.environ, "BFL_API_KEY": MOCK_KEY}
