"""``bflsync audit verify`` at 100,000 versions, against baselines over the same store in the same run.

The store is built through the real write path (20,000 finetunes, each changed in five syncs: 100,000
versions, every one chained as a sync chains it). Then, on the same file:

* ``audit verify`` as a user runs it (a subprocess: start-up, the chain walk, the current-table check);
* ``sqlite3 .dump``-equivalent: Python's ``iterdump`` of the whole store to /dev/null, a lower bound
  for anything that reads every row once;
* a plain hashlib loop: SHA-256 over every version row's stored text as ``sqlite3`` returns it,
  chained, with no canonical form and no checks: the floor for a hash chain in Python.

Also prints how long each building sync took (20,000 changed finetunes, chain appended as ``sync`` does).

Usage: python benchmarks/bench_audit_verify.py [--finetunes N] [--syncs K]
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session

from bflsync.mock.server import generate_finetunes
from bflsync.store import access, writes
from bflsync.sync.run import DEFAULT_BATCH_SIZE

SOURCE = "api.us1.bfl.ai"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def build(path: Path, payloads: dict[str, dict[str, Any]], *, syncs: int) -> list[float]:
    """Sync every finetune ``syncs`` times, each with changed details; seconds per sync."""
    engine = access.open_store_for_write(access.locate_store(str(path))).engine
    seconds = []
    try:
        with Session(engine) as session:
            for number in range(syncs):
                now = T0 + timedelta(days=number)
                observations = [
                    writes.Observation(finetune_id, {**details, "iterations": 100 + number})
                    for finetune_id, details in payloads.items()
                ]
                started = time.perf_counter()
                with session.begin():
                    run_id = writes.start_run(session, source=SOURCE, account="default", pid=1, now=now)
                for batch in writes.chunked(observations, DEFAULT_BATCH_SIZE):
                    with session.begin():
                        writes.record_observations(
                            session, batch, source=SOURCE, account="default", run_id=run_id, now=now
                        )
                with session.begin():
                    writes.finish_run(session, run_id=run_id, status="ok", counts={}, now=now)
                seconds.append(time.perf_counter() - started)
    finally:
        engine.dispose()
    return seconds


def timed(action: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = action()
    return time.perf_counter() - started, value


def verify(path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bflsync", "--db", str(path), "audit", "verify"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def dump(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return sum(len(line) for line in connection.iterdump())
    finally:
        connection.close()


def plain_hash_loop(path: Path) -> int:
    connection = sqlite3.connect(path)
    previous = bytes(32)
    count = 0
    try:
        for row in connection.execute("SELECT * FROM finetune_version ORDER BY id"):
            previous = hashlib.sha256(previous + repr(row).encode("utf-8")).digest()
            count += 1
    finally:
        connection.close()
    return count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--finetunes", type=int, default=20_000)
    parser.add_argument("--syncs", type=int, default=5)
    args = parser.parse_args()
    payloads = generate_finetunes(args.finetunes, seed=1)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "store.db"
        sync_seconds = build(path, payloads, syncs=args.syncs)
        versions = sqlite3.connect(path).execute("SELECT count(*) FROM finetune_version").fetchone()[0]
        size_mb = path.stat().st_size / 1e6
        print(f"store: {versions:,} versions of {args.finetunes:,} finetunes, {size_mb:.0f} MB")
        print(
            f"syncs of {args.finetunes:,} changed finetunes, chain appended: "
            + ", ".join(f"{s:.2f} s" for s in sync_seconds)
        )
        verify_s, summary = timed(lambda: verify(path))
        dump_s, _ = timed(lambda: dump(path))
        loop_s, _ = timed(lambda: plain_hash_loop(path))
        print(f"audit verify (subprocess):      {verify_s:6.2f} s   {summary}")
        print(f"sqlite3 iterdump of the store:  {dump_s:6.2f} s   ratio verify/dump {verify_s / dump_s:.2f}")
        print(f"plain hashlib loop (versions):  {loop_s:6.2f} s   ratio verify/loop {verify_s / loop_s:.2f}")


if __name__ == "__main__":
    main()
