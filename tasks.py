"""Set up the virtualenvs and run the project's jobs with nothing but python3.

    python3 tasks.py demo   # demo venv (bflsync alone), local mock BFL API, sync into demo/bflsync.db, queries
    python3 tasks.py test   # test venv, ruff, mypy, the whole pytest suite; then, under every other
                            # python3.X >= 3.11 found, the tests that depend on Python's Unicode and sqlite3
    python3 tasks.py lock   # rewrite constraints/*.txt from fresh venvs (after changing dependencies)
    python3 tasks.py docs   # regenerate docs/commands.md (every --help) and docs/README.md

Installs are reproducible: every venv is installed under ``constraints/test.txt`` or
``constraints/demo.txt``, the exact versions a green run used (``pip freeze`` of a fresh venv,
written by ``lock``). Venvs are reused and reinstalled only when pyproject.toml or their
constraints file changes.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
CONSTRAINTS = ROOT / "constraints"
TEST_VENV = ROOT / ".venv"
DEMO_VENV = ROOT / ".venv-demo"
DEMO_DIR = ROOT / "demo"
DEMO_KEY = "demo-key"
MIN_PYTHON = (3, 11)
# What the suite under the other Pythons runs: the tests whose answers depend on the interpreter's
# Unicode data (casefold tables, --text tokens, `~` on both engines) and on its sqlite3 (the store,
# its migrations, reading it). The whole suite runs once, under the Python running tasks.py.
VERSION_DEPENDENT_TESTS = (
    "tests/test_casefold.py",
    "tests/test_text_engines.py",
    "tests/test_fulltext.py",
    "tests/test_store.py",
    "tests/test_migrations.py",
    "tests/test_storage_values.py",
)
# requirement -> which constraints file pins it; the extras are pyproject.toml's.
ENVIRONMENTS = {"test": ".[test]", "demo": "."}


def run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT, env=env)


def ensure_venv(where: Path, environment: str, *, python: str = sys.executable) -> Path:
    """The venv at ``where`` with bflsync (editable) and ``environment``'s pinned dependencies; its bin/."""
    bin_dir = where / "bin"
    constraints = CONSTRAINTS / f"{environment}.txt"
    stamp = where / ".installed"
    inputs = (ROOT / "pyproject.toml", constraints)
    if stamp.exists() and all(stamp.stat().st_mtime >= made.stat().st_mtime for made in inputs):
        return bin_dir
    if not (bin_dir / "python").exists():
        run(python, "-m", "venv", where)
    run(bin_dir / "python", "-m", "pip", "install", "-q", "-c", constraints, "-e", ENVIRONMENTS[environment])
    stamp.touch()
    return bin_dir


def ensure_browser() -> None:
    """Debian's Chromium (and a CJK font for its screenshots) for tests/test_serve_browser.py.

    Installed with apt-get when missing and we are root; elsewhere the browser tests skip with
    the reason, and fail under CI=true. Playwright drives this Chromium: it downloads no browser.
    """
    if shutil.which("chromium") or shutil.which("chromium-browser"):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print("no Chromium and no root apt-get: the browser tests will be skipped", flush=True)
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        run("apt-get", "update", "-qq", env=env)
        run("apt-get", "install", "-y", "-qq", "chromium", "fonts-wqy-zenhei", env=env)
    except subprocess.CalledProcessError:
        print("Chromium could not be installed: the browser tests will be skipped", flush=True)


def test() -> None:
    bin_dir = ensure_venv(TEST_VENV, "test")
    ensure_browser()
    run(bin_dir / "ruff", "check", ".")
    run(bin_dir / "ruff", "format", "--check", ".")
    run(bin_dir / "mypy")
    run(bin_dir / "python", "-m", "pytest", "-n", "2", "--durations=10")
    ran = [f"Python {version_of(bin_dir / 'python')}: the whole suite"]
    for version, python in other_pythons():
        extra = ensure_venv(ROOT / f".venv-py{version}", "test", python=python)
        run(extra / "python", "-m", "pytest", "-n", "2", "-q", "-p", "no:randomly", *VERSION_DEPENDENT_TESTS)
        ran.append(f"Python {version} ({python}): {' '.join(VERSION_DEPENDENT_TESTS)}")
    print("\nRan:\n  " + "\n  ".join(ran), flush=True)


def version_of(python: str | Path) -> str:
    done = subprocess.run(
        [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def other_pythons() -> list[tuple[str, str]]:
    """(version, interpreter) of each python3.X >= 3.11 on PATH or under ~/.pyenv, bar this one's X."""
    own = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [
        found for minor in range(MIN_PYTHON[1], 20) if (found := shutil.which(f"python3.{minor}")) is not None
    ]
    candidates += [str(path) for path in sorted(Path.home().glob(".pyenv/versions/3.*/bin/python3"))]
    chosen: dict[str, str] = {}
    for candidate in candidates:
        try:
            version = version_of(candidate)
        except (OSError, subprocess.CalledProcessError):
            continue  # a pyenv shim for a version not installed, say
        major, minor = (int(part) for part in version.split("."))
        if (major, minor) >= MIN_PYTHON and version != own:
            chosen.setdefault(version, candidate)
    return sorted(chosen.items(), key=lambda item: tuple(int(part) for part in item[0].split(".")))


def lock() -> None:
    """Write constraints/<environment>.txt: ``pip freeze`` of a fresh venv installed from pyproject.toml."""
    CONSTRAINTS.mkdir(exist_ok=True)
    for environment, requirement in ENVIRONMENTS.items():
        with tempfile.TemporaryDirectory() as scratch:
            python = Path(scratch) / "bin" / "python"
            venv.create(scratch, with_pip=True)
            run(python, "-m", "pip", "install", "-q", "-e", requirement)
            frozen = subprocess.run(
                [str(python), "-m", "pip", "freeze", "--exclude-editable"],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            ).stdout
        pins = sorted(
            (line for line in frozen.splitlines() if re.match(r"^[A-Za-z0-9]", line)), key=str.lower
        )
        header = (
            f"# The {environment} environment's exact versions ({requirement} of pyproject.toml), for\n"
            f"# `pip install -c constraints/{environment}.txt`. Written by `python3 tasks.py lock` with\n"
            f"# Python {version_of(sys.executable)}; do not edit by hand.\n"
        )
        (CONSTRAINTS / f"{environment}.txt").write_text(header + "\n".join(pins) + "\n")
        print(f"wrote constraints/{environment}.txt ({len(pins)} pins)", flush=True)


def docs() -> None:
    bin_dir = ensure_venv(TEST_VENV, "test")
    run(bin_dir / "python", "docs/generate.py")


def demo() -> None:
    bin_dir = ensure_venv(DEMO_VENV, "demo")
    DEMO_DIR.mkdir(mode=0o700, exist_ok=True)
    DEMO_DIR.chmod(0o700)
    store = DEMO_DIR / "bflsync.db"
    # The mock listens on a new free port each time, and a store keys finetunes by host:port:
    # start from an empty store so every demo run shows the same thing.
    for leftover in DEMO_DIR.glob("bflsync.db*"):
        leftover.unlink()
    bflsync = str(bin_dir / "bflsync")
    mock = subprocess.Popen(
        [bflsync, "mock-api", "--port", "0", "--count", "250", "--seed", "7", "--api-key", DEMO_KEY],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert mock.stdout is not None
        base_url = mock.stdout.readline().strip()
        print(f"mock BFL API at {base_url}", flush=True)
        env = {**os.environ, "BFL_API_KEY": DEMO_KEY}
        run(bflsync, "--db", store, "sync", "--base-url", base_url, env=env)
        run(bflsync, "--db", store, "sync", "--base-url", base_url, "--json", env=env)  # nothing changed
        run(bflsync, "--db", store, "query", "mode=character", "learning_rate>=2e-5", "--limit", "10")
        run(bflsync, "--db", store, "facets", "mode", "finetune_type")
        run(bflsync, "--db", store, "label", "acme-labs/portrait-lora-3", "project=acme", "approved=true")
        run(bflsync, "--db", store, "note", "acme-labs/portrait-lora-3", "approved for the spring catalogue")
        run(bflsync, "--db", store, "show", "acme-labs/portrait-lora-3")
        run(
            bflsync,
            "--db",
            store,
            "compare",
            "acme-labs/portrait-lora-3",
            "studio-nord/portrait-lora-20",
            "--only-changed",
        )
        run(
            bflsync,
            "--db",
            store,
            "show",
            "acme-labs/portrait-lora-3",
            "--format",
            "request",
            "--set",
            "learning_rate=2e-5",
        )
        run(bflsync, "--db", store, "runs", "--limit", "3")
    finally:
        mock.terminate()
        mock.wait(timeout=10)
    print(f"\nThe store is at {store}; try: {bin_dir / 'bflsync'} --db {store} query --help")


if __name__ == "__main__":
    jobs = {"demo": demo, "test": test, "docs": docs, "lock": lock}
    if len(sys.argv) != 2 or sys.argv[1] not in jobs:
        sys.exit(f"usage: python3 tasks.py {{{'|'.join(jobs)}}}")
    try:
        jobs[sys.argv[1]]()
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
