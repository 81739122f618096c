"""Store write cost against plain ``sqlite3`` doing the same job, measured in the same run.

1. Persist 20,000 finetunes (rows + version 1) into a fresh store from in-memory payloads, in
   sync-sized batches, versus one ``executemany`` of the same, already built, rows into the same
   tables (same indexes, same pragmas). Target: ratio <= 3.
2. Re-store the same 20,000 unchanged payloads (a no-op re-sync), versus a plain pass that hashes
   the payloads, reads the stored hashes and updates ``last_seen_at``. Target: ratio <= 1.5.

Usage: python benchmarks/bench_store.py [--count N]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session

from bflsync.extract import canonical_json, changed_keys, content_hash, extract_fields
from bflsync.mock.server import generate_finetunes
from bflsync.store import access, writes
from bflsync.sync.run import DEFAULT_BATCH_SIZE

T1 = datetime(2026, 1, 1, tzinfo=UTC)
T2 = T1 + timedelta(days=1)
SOURCE = "api.us1.bfl.ai"


def store_path(directory: Path, name: str) -> Path:
    path = directory / name
    access.open_store_for_write(access.locate_store(str(path))).engine.dispose()
    return path


def bflsync_store(path: Path, payloads: dict[str, dict[str, Any]], *, now: datetime) -> float:
    """Seconds to store every payload the way ``sync`` does: one transaction per batch."""
    observations = [writes.Observation(finetune_id, details) for finetune_id, details in payloads.items()]
    engine = access.create_store_engine(access.locate_store(str(path)), read_only=False)
    try:
        with Session(engine) as session:
            with session.begin():
                run_id = writes.start_run(session, source=SOURCE, account="default", pid=1, now=now)
            started = time.perf_counter()
            for batch in writes.chunked(observations, DEFAULT_BATCH_SIZE):
                with session.begin():
                    writes.record_observations(
                        session, batch, source=SOURCE, account="default", run_id=run_id, now=now
                    )
            return time.perf_counter() - started
    finally:
        engine.dispose()


def plain_connection(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("PRAGMA foreign_keys = ON")
    return connection


def plain_insert(path: Path, payloads: dict[str, dict[str, Any]]) -> float:
    """Seconds for one executemany per table of the finished rows (built before the clock starts)."""
    stamp = T1.replace(tzinfo=None).isoformat(sep=" ")
    finetunes = []
    versions = []
    for pk, (finetune_id, details) in enumerate(payloads.items(), start=1):
        text, digest = canonical_json(details), content_hash(details)
        fields = extract_fields(details)
        finetunes.append((pk, SOURCE, finetune_id, text, *fields.values(), digest, 1, stamp, stamp, stamp))
        keys = canonical_json(changed_keys(None, details))
        versions.append((pk, 1, "created", text, digest, keys, stamp, 1))
    columns = ", ".join(fields)
    marks = ", ".join("?" * len(fields))
    connection = plain_connection(path)
    try:
        connection.execute(
            "INSERT INTO sync_run (id, started_at, status, source, pid, bflsync_version, listed, fetched,"
            " created, updated, unchanged, deleted, restored, failed) VALUES (1, ?, 'running', ?, 1, '0',"
            " 0, 0, 0, 0, 0, 0, 0, 0)",
            (stamp, SOURCE),
        )
        started = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            f"INSERT INTO finetune (id, source, finetune_id, details, {columns}, content_hash, version,"
            f" first_seen_at, last_seen_at, last_changed_at) VALUES (?, ?, ?, ?, {marks}, ?, ?, ?, ?, ?)",
            finetunes,
        )
        connection.executemany(
            "INSERT INTO finetune_version (finetune_pk, version, change, details, content_hash,"
            " changed_keys, observed_at, sync_run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            versions,
        )
        connection.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        connection.close()


def plain_touch(path: Path, payloads: dict[str, dict[str, Any]]) -> float:
    """Seconds to hash the payloads, read the stored hashes and move ``last_seen_at`` of unchanged rows."""
    stamp = T2.replace(tzinfo=None).isoformat(sep=" ")
    connection = plain_connection(path)
    try:
        started = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        stored = dict(
            connection.execute(
                "SELECT finetune_id, content_hash || ' ' || id FROM finetune WHERE source = ?", (SOURCE,)
            )
        )
        touched = []
        for finetune_id, details in payloads.items():
            digest, pk = stored[finetune_id].split(" ")
            if digest == content_hash(details):
                touched.append((stamp, int(pk)))
        connection.executemany("UPDATE finetune SET last_seen_at = ? WHERE id = ?", touched)
        connection.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs of each side")
    arguments = parser.parse_args()
    count, repeat = arguments.count, arguments.repeat
    payloads = generate_finetunes(count, seed=1)
    insert_ours, insert_plain, touch_ours, touch_plain = [], [], [], []
    with tempfile.TemporaryDirectory() as directory:
        for attempt in range(repeat):
            ours_path = store_path(Path(directory), f"bflsync-{attempt}.db")
            plain_path = store_path(Path(directory), f"plain-{attempt}.db")
            insert_plain.append(plain_insert(plain_path, payloads))
            insert_ours.append(bflsync_store(ours_path, payloads, now=T1))
            touch_plain.append(plain_touch(plain_path, payloads))
            touch_ours.append(bflsync_store(ours_path, payloads, now=T2))
    report(f"store {count:,} new finetunes", min(insert_ours), "plain executemany", min(insert_plain), 3.0)
    report(f"re-store {count:,} unchanged", min(touch_ours), "plain hash+update", min(touch_plain), 1.5)


def report(what: str, ours_s: float, baseline: str, baseline_s: float, target: float) -> None:
    ratio = ours_s / baseline_s
    verdict = "ok" if ratio <= target else "MISSED"
    print(
        f"{what:<32} bflsync {ours_s:6.3f} s  {baseline} {baseline_s:6.3f} s  "
        f"ratio {ratio:4.2f} (target <= {target}) {verdict}"
    )


if __name__ == "__main__":
    main()
