"""Fixtures every test module may use: an isolated environment, real migrated stores on SQLite
and on a private PostgreSQL cluster, and a store fixture parametrized over both engines."""

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
from click.testing import CliRunner
from sqlalchemy.engine import Engine

from bflsync import db

# `~` folds case with lower() on PostgreSQL, which needs a UTF-8 character-type locale.
INITDB_LOCALE = ("--encoding", "UTF8", "--locale", "C.UTF-8")
SCRUBBED_ENV = ("BFL_API_KEY", "BFL_API_URL", "BFLSYNC_DB")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """No test sees the developer's key, API URL or store; the default store path points into tmp."""
    for name in SCRUBBED_ENV:
        monkeypatch.delenv(name, raising=False)
    data_home = tmp_path_factory.mktemp("xdg-data")
    monkeypatch.setenv("XDG_DATA_HOME", str(data_home))
    return data_home


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where a test's store lives; nothing is created until a command or fixture does."""
    return tmp_path / "store.db"


@pytest.fixture
def store_engine(db_path: Path) -> Iterator[Engine]:
    """A writable engine on a real SQLite store migrated to head."""
    opened = db.open_store_for_write(db.locate_store(str(db_path)))
    yield opened.engine
    opened.engine.dispose()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


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
    """Base URL of a private PostgreSQL cluster (UTF-8), stopped and removed after the session."""
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
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "bfl", "--no-sync", *INITDB_LOCALE]
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


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, db_path: Path) -> Iterator[tuple[str, Engine]]:
    """A writable store at head on each engine: the ``--db`` value and an engine to fill it with."""
    target = str(db_path) if request.param == "sqlite" else request.getfixturevalue("pg_url")
    opened = db.open_store_for_write(db.locate_store(target))
    yield target, opened.engine
    opened.engine.dispose()
