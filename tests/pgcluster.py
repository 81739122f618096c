"""A private PostgreSQL cluster for the tests: started once per session on 127.0.0.1, removed after.

Where the machine has no PostgreSQL server binaries the tests that need it are skipped,
except in CI (``CI=true``), where that is a failure. conftest.py makes the fixtures
available to every test module.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from pglaunch import initdb, postgres_bindir, running
from storebuild import with_alpha


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
    initdb(bindir, home / "data")
    try:
        with running(bindir, home, stop_mode="immediate") as port:
            yield f"postgresql+psycopg://bfl@127.0.0.1:{port}"
    finally:
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


@pytest.fixture
def pg_alpha_store(pg_url: str) -> str:
    """conftest's ``alpha_store`` on PostgreSQL alone, for what only a server has (roles, locks, limits)."""
    return with_alpha(pg_url)
