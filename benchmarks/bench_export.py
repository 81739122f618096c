"""Export and import at 100,000 versions against ``sqlite3 .dump`` of the same store, same run.

A SQLite store of 50,000 finetunes with two versions each (100,000 ``finetune_version`` rows, built
through the real write path and cached in the temp directory) is exported as whole processes:
``bflsync export`` (and ``--split``) against ``sqlite3 store.db .dump``; then imported,
``bflsync import`` into a new store against ``sqlite3 new.db < dump.sql``. Runs are interleaved so
both sides see the same noise on a shared machine; the median of each is printed with the ratio.

The dump is the floor, not a rival: it copies pages of SQL text with no checks, where the archive
decodes every row, writes sorted JSON with a SHA-256 per file, and import checks every line, keeps
the full-text index current and runs in one transaction.

Run: ``.venv/bin/python benchmarks/bench_export.py`` (``--finetunes 5000`` for a quick look,
``--repeat N``, ``--rebuild``).
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_query import payload
from sqlmodel import Session

from bflsync.store import access, writes

BATCH = 2000


def build_store(path: Path, finetunes: int) -> None:
    """Two syncs' worth of versions: every finetune created, then every one changed."""
    rng = random.Random(1)
    opened = access.open_store_for_write(access.locate_store(str(path)))
    try:
        for generation in range(2):
            now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=generation)
            for start in range(0, finetunes, BATCH):
                observations = [
                    writes.Observation(f"ft-{index:06d}", {**payload(rng, index), "generation": generation})
                    for index in range(start, min(start + BATCH, finetunes))
                ]
                with Session(opened.engine) as session, session.begin():
                    writes.record_observations(
                        session,
                        observations,
                        source="api.us1.bfl.ai",
                        account="default",
                        run_id=None,
                        now=now,
                    )
    finally:
        opened.engine.dispose()


def bflsync(*args: str) -> list[str]:
    return [sys.executable, "-m", "bflsync", "-q", *args]


def run(command: list[str], *, stdin: Path | None = None, stdout: Path | None = None) -> None:
    source = stdin.open("rb") if stdin else None
    sink = stdout.open("wb") if stdout else None
    try:
        subprocess.run(
            command, stdin=source or subprocess.DEVNULL, stdout=sink or subprocess.DEVNULL, check=True
        )
    finally:
        for handle in (source, sink):
            if handle is not None:
                handle.close()


def medians(
    ours: Callable[[], None], theirs: Callable[[], None], *, before: Callable[[], None], repeat: int
) -> tuple[float, float]:
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for action, into in ((ours, times[0]), (theirs, times[1])):
            before()
            started = time.perf_counter()
            action()
            into.append(time.perf_counter() - started)
    return statistics.median(times[0]), statistics.median(times[1])


def report(label: str, ours: float, theirs: float, baseline: str) -> None:
    print(f"{label:<34} bflsync {ours:7.2f} s   {baseline:<22} {theirs:7.2f} s   ratio {ours / theirs:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finetunes", type=int, default=50_000, help="finetunes (two versions each)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    options = parser.parse_args()
    if shutil.which("sqlite3") is None:
        sys.exit("the sqlite3 command-line shell is needed for the baseline")
    cache = Path(tempfile.gettempdir()) / f"bflsync-bench-export-{options.finetunes}.db"
    if options.rebuild or not cache.exists():
        cache.unlink(missing_ok=True)
        started = time.perf_counter()
        build_store(cache, options.finetunes)
        print(f"built {cache} in {time.perf_counter() - started:.1f} s")
    work = Path(tempfile.mkdtemp(prefix="bflsync-bench-export-"))
    archive, split, dump = work / "archive", work / "split", work / "dump.sql"
    target, dumped = work / "imported.db", work / "restored.db"

    def remove(*paths: Path) -> None:
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
            for suffix in ("", "-wal", "-shm", ".lock"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

    def clean() -> None:
        remove(archive, split, dump)

    try:
        print(
            f"store: {options.finetunes:,} finetunes, {2 * options.finetunes:,} versions; median of {options.repeat}"
        )
        ours, theirs = medians(
            lambda: run(bflsync("--db", str(cache), "export", str(archive))),
            lambda: run(["sqlite3", str(cache), ".dump"], stdout=dump),
            before=clean,
            repeat=options.repeat,
        )
        report("export", ours, theirs, "sqlite3 .dump")
        ours, theirs = medians(
            lambda: run(bflsync("--db", str(cache), "export", "--split", str(split))),
            lambda: run(["sqlite3", str(cache), ".dump"], stdout=dump),
            before=clean,
            repeat=options.repeat,
        )
        report("export --split", ours, theirs, "sqlite3 .dump")

        run(bflsync("--db", str(cache), "export", str(archive)))
        run(["sqlite3", str(cache), ".dump"], stdout=dump)
        ours, theirs = medians(
            lambda: run(bflsync("--db", str(target), "import", str(archive))),
            lambda: run(["sqlite3", str(dumped)], stdin=dump),
            before=lambda: remove(target, dumped),
            repeat=options.repeat,
        )
        report("import (new store, checked)", ours, theirs, "sqlite3 < dump.sql")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
