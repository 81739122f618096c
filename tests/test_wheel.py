"""The built wheel is self-contained: migrations ship inside it and the CLI runs them anywhere.

The wheel is built once per test session (per xdist worker) and installed once, with the
``postgres`` extra as the README's Install section says, into an isolated virtualenv (no system
site-packages): installing is most of these tests' time, so one test uses that venv.
"""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from bflsync import __version__
from bflsync.store import access

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (built,) = dist.glob("bflsync-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a fresh venv (no system site-packages) holding the wheel and its postgres extra."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True, clear=True)
    install = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[postgres]"],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    return env_dir / "bin"


def test_wheel_ships_migrations_and_type_marker(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "bflsync/migrations/env.py" in names
    assert {f"bflsync/migrations/versions/{rev}.py" for rev in access.KNOWN_REVISIONS} <= set(names)
    assert "bflsync/py.typed" in names


def test_installed_wheel_with_postgres_extra_reports_its_version_has_the_driver_and_creates_a_store(
    installed: Path, tmp_path: Path
) -> None:
    """One test for the installed venv: installing is the slow part, and it must happen once."""
    version = subprocess.run(
        [str(installed / "bflsync"), "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.splitlines()[0] == f"bflsync, version {__version__}"
    driver = subprocess.run(
        [str(installed / "python"), "-c", "import psycopg; print(psycopg.__name__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert driver.returncode == 0, driver.stderr
    assert driver.stdout == "psycopg\n"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    store_path = tmp_path / "x.db"
    upgrade = subprocess.run(
        [str(installed / "bflsync"), "--db", str(store_path), "db", "upgrade"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout == f"{store_path}: at revision {access.HEAD_REVISION}\n"
    check = subprocess.run(
        [str(installed / "bflsync"), "--db", str(store_path), "db", "check"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
    )
    assert check.returncode == 0, check.stderr
