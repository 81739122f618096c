"""Fixtures every test module may use: an isolated environment, real migrated SQLite stores, and a
private PostgreSQL cluster for the tests that run on both engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from postgres_cluster import fresh_database, private_cluster
from sqlalchemy.engine import Engine

from bflsync import db

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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Base URL of a private PostgreSQL cluster shared by the whole run (one database per test)."""
    with private_cluster() as url:
        yield url


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, db_path: Path) -> str:
    """Where a test's store lives, once per engine: a SQLite file path or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return str(db_path)
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def any_store(store_url: str) -> Iterator[tuple[str, Engine]]:
    """A writable store at head on each engine: the ``--db`` value and an engine to fill it with."""
    opened = db.open_store_for_write(db.locate_store(store_url))
    yield store_url, opened.engine
    opened.engine.dispose()
