"""Starting a private PostgreSQL cluster on 127.0.0.1: shared by the test fixture and the benchmark.

No pytest here, so ``benchmarks/bench_query_postgres.py`` can use it as it is.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# `~` folds case with lower() on PostgreSQL, which needs a UTF-8 character-type locale.
LOCALE = ("--encoding", "UTF8", "--locale", "C.UTF-8")


def postgres_bindir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return candidates[0].parent if candidates else None


def as_postgres_user(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; on CI machines the tests do."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def initdb(bindir: Path, data: Path) -> None:
    """A new cluster in ``data`` with a ``bfl`` superuser that needs no password on loopback."""
    subprocess.run(
        as_postgres_user(
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "bfl", "--no-sync", *LOCALE]
        ),
        check=True,
        capture_output=True,
    )


@contextmanager
def running(bindir: Path, home: Path, *, stop_mode: str) -> Iterator[int]:
    """The cluster in ``home/data`` serving 127.0.0.1 (and a socket in ``home``); yields its port."""
    port = free_port()
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {home} -c fsync=off"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(home / "data")]
    subprocess.run(
        as_postgres_user([*pg_ctl, "-o", options, "-l", str(home / "log"), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        yield port
    finally:
        subprocess.run(as_postgres_user([*pg_ctl, "-m", stop_mode, "-w", "stop"]), capture_output=True)
