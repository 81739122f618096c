"""A private PostgreSQL cluster for the tests: started once per session on 127.0.0.1, removed after.

Where the machine has no PostgreSQL server binaries the tests that need it are skipped,
except in CI (``CI=true``), where that is a failure. conftest.py makes the fixtures
available to every test module.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Base URL of a private PostgreSQL cluster, stopped and removed after the session."""
    bindir = postgres_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL server binaries are missing on a CI machine")
        pytest.skip("no PostgreSQL server binaries under /usr/lib/postgresql")
    home = Path(tempfile.mkdtemp(prefix="bflsync-pg-"))
    if os.geteuid() == 0:
        shutil.chown(home, user="postgres")
    data, port = home / "data", free_port()
    subprocess.run(
        as_postgres_user(
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "bfl", "--no-sync", *LOCALE]
        ),
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {home} -c fsync=off"
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        as_postgres_user([*pg_ctl, "-o", options, "-l", str(home / "log"), "-w", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://bfl@127.0.0.1:{port}"
    finally:
        subprocess.run(as_postgres_user([*pg_ctl, "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"{postgres_server}/{name}"
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()
