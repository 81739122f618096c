"""Fixtures every test module may use: an isolated environment and real, migrated SQLite stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

# Shared fixtures of the private PostgreSQL cluster.
from pgcluster import pg_alpha_store, pg_url, postgres_server  # noqa: F401
from sqlalchemy.engine import Engine
from storebuild import with_alpha

from bflsync.store import access

SCRUBBED_ENV = (
    "BFL_API_KEY",
    "BFL_API_URL",
    "BFLSYNC_DB",
    "BFLSYNC_ACCOUNT",
    "BFLSYNC_METRICS_FILE",
    "BFLSYNC_PING_URL",
)


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
    opened = access.open_store_for_write(access.locate_store(str(db_path)))
    yield opened.engine
    opened.engine.dispose()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_db(request: pytest.FixtureRequest, db_path: Path) -> str:
    """A store location for ``--db``, empty, on each engine bflsync supports: a behaviour test runs twice."""
    if request.param == "sqlite":
        return str(db_path)
    url = request.getfixturevalue("pg_url")
    assert isinstance(url, str)
    return url


@pytest.fixture
def any_store(store_db: str) -> Iterator[tuple[str, Engine]]:
    """A writable store at head on each engine: the ``--db`` value and an engine to fill it with."""
    opened = access.open_store_for_write(access.locate_store(store_db))
    yield store_db, opened.engine
    opened.engine.dispose()


@pytest.fixture
def alpha_store(store_db: str) -> str:
    """A store at head holding finetune ``alpha``, on each engine: the ``--db`` value."""
    return with_alpha(store_db)
