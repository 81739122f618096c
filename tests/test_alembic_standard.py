"""pytest-alembic's four built-in tests, set up as its documentation says: an Engine in the config.

The plugin itself is off (pyproject.toml says why), so its tests and ``alembic_runner`` fixture are
imported here.

``alembic_config`` is the configuration ``bflsync db …`` uses (the shipped migrations directory);
pytest-alembic puts ``alembic_engine`` into ``config.attributes["connection"]``, so this is also
the check that ``migrations/env.py`` accepts an Engine as well as a Connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from pytest_alembic.plugin.fixtures import alembic_runner
from pytest_alembic.tests import (
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)

from bflsync.store import access

__all__ = [
    "alembic_runner",
    "test_model_definitions_match_ddl",
    "test_single_head_revision",
    "test_up_down_consistency",
    "test_upgrade",
]


@pytest.fixture
def alembic_config() -> Config:
    return access.alembic_config()


@pytest.fixture
def alembic_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'alembic.db'}")
    try:
        yield engine
    finally:
        engine.dispose()
