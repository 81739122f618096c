"""Set up the virtualenv and run the project's jobs with nothing but python3.

    python3 tasks.py demo   # venv + install, local mock BFL API, sync into demo/bflsync.db, example queries
    python3 tasks.py test   # venv + install, ruff, mypy, the whole pytest suite (what .ci/run runs)
    python3 tasks.py docs   # venv + install, regenerate docs/commands.md (every --help) and docs/README.md

Both are idempotent: the virtualenv in .venv is reused and reinstalled only when
pyproject.toml changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".installed-from-pyproject"
DEMO_DIR = ROOT / "demo"
DEMO_KEY = "demo-key"


def run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True, cwd=ROOT, env=env)


def ensure_venv() -> None:
    pyproject = ROOT / "pyproject.toml"
    if STAMP.exists() and STAMP.stat().st_mtime >= pyproject.stat().st_mtime:
        return
    if not (BIN / "python").exists():
        venv.create(VENV, with_pip=True)
    run(BIN / "python", "-m", "pip", "install", "-q", "--upgrade", "pip")
    run(BIN / "python", "-m", "pip", "install", "-q", "-e", ".[test]")
    STAMP.touch()


def test() -> None:
    ensure_venv()
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "mypy")
    run(BIN / "python", "-m", "pytest", "-n", "2", "--durations=10")


def docs() -> None:
    ensure_venv()
    run(BIN / "python", "docs/generate.py")


def demo() -> None:
    ensure_venv()
    DEMO_DIR.mkdir(mode=0o700, exist_ok=True)
    DEMO_DIR.chmod(0o700)
    store = DEMO_DIR / "bflsync.db"
    # The mock listens on a new free port each time, and a store keys finetunes by host:port:
    # start from an empty store so every demo run shows the same thing.
    for leftover in DEMO_DIR.glob("bflsync.db*"):
        leftover.unlink()
    bflsync = str(BIN / "bflsync")
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
    print(f"\nThe store is at {store}; try: {BIN / 'bflsync'} --db {store} query --help")


if __name__ == "__main__":
    jobs = {"demo": demo, "test": test, "docs": docs}
    if len(sys.argv) != 2 or sys.argv[1] not in jobs:
        sys.exit(f"usage: python3 tasks.py {{{'|'.join(jobs)}}}")
    try:
        jobs[sys.argv[1]]()
    except subprocess.CalledProcessError as exc:
        sys.exit(exc.returncode)
