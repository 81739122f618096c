"""The built wheel is self-contained: migrations ship inside it and the CLI runs them anywhere."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from bflsync import db

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_creates_a_store_from_another_directory(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    build = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = dist.glob("bflsync-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "bflsync/migrations/env.py" in names
    assert {f"bflsync/migrations/versions/{rev}.py" for rev in db.KNOWN_REVISIONS} <= set(names)
    assert "bflsync/py.typed" in names

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    install = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-2000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    store_path = tmp_path / "x.db"
    upgrade = subprocess.run(
        [str(env_dir / "bin" / "bflsync"), "--db", str(store_path), "db", "upgrade"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    assert upgrade.stdout == f"{store_path}: at revision {db.HEAD_REVISION}\n"
    check = subprocess.run(
        [str(env_dir / "bin" / "bflsync"), "--db", str(store_path), "db", "check"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
    )
    assert check.returncode == 0, check.stderr
