"""Query-side benchmark: bflsync's read path against the same SQL run directly, in the same run.

Builds (once, cached in /tmp) a store of 100,000 finetunes through ``writes.record_observations``
and prints medians and ratios:

* extracted-column filter, in process, vs the hand-written SQL through ``sqlite3`` (target <= 1.5x);
* a details-only key filter, in process (target <= 250 ms), and its ratio to plain ``json_extract``;
* ``--text`` vs the direct FTS5 query (target <= 1.5x);
* ``bflsync query ... --format ids`` as a process vs a ``python -c`` script importing sqlmodel and
  click and running the same SQL (target <= 2x);
* the cost of the FTS triggers on inserts (store at head vs at 0001_initial);
* ``python -X importtime`` for ``bflsync query --help``, top cumulative entries.

Run: ``.venv/bin/python benchmarks/bench_query.py [--rebuild]``
"""

from __future__ import annotations

import random
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session

from bflsync.read import filters, search
from bflsync.read.reader import open_reader
from bflsync.store import access, writes

STORE = Path(tempfile.gettempdir()) / "bflsync-bench-100k.db"
COUNT = 100_000
BATCH = 5_000
REPEAT = 11
WORDS = [
    "portrait",
    "product",
    "anime",
    "watercolor",
    "studio",
    "neon",
    "vintage",
    "forest",
    "ocean",
    "castle",
    "robot",
    "dragon",
]

COLUMNS = (
    "finetune_id, source, finetune_comment, trigger_word, mode, finetune_type, priority, iterations, "
    "lora_rank, learning_rate, captioning, remote_timestamp, version, content_hash, first_seen_at, "
    "last_seen_at, last_changed_at, deleted_at, details"
)
ORDER = "ORDER BY finetune_id, source"
EXTRACTED_SQL = (
    f"SELECT {COLUMNS} FROM finetune WHERE mode = ? AND learning_rate >= ? AND deleted_at IS NULL {ORDER}"
)
JSON_SQL = (
    f"SELECT {COLUMNS} FROM finetune WHERE json_extract(details, '$.extra.images') >= ? "
    f"AND deleted_at IS NULL {ORDER}"
)
TEXT_SQL = (
    f"SELECT {COLUMNS} FROM finetune WHERE id IN "
    "(SELECT rowid FROM finetune_fts WHERE finetune_fts MATCH ?) AND deleted_at IS NULL " + ORDER
)


def payload(rng: random.Random, index: int) -> dict[str, Any]:
    rate = rng.choice([1e-6, 5e-6, 1e-5, 2e-5, 4e-5, 1e-4])
    return {
        "finetune_comment": " ".join(rng.choices(WORDS, k=4)) + f" run {index}",
        "trigger_word": f"tok{index % 997}",
        "mode": rng.choice(["character", "product", "style", "general"]),
        "finetune_type": rng.choice(["lora", "full"]),
        "priority": rng.choice(["speed", "quality", "high_res_only"]),
        "iterations": rng.choice([100, 300, 500, 1000]),
        "lora_rank": rng.choice([16, 32]),
        "learning_rate": str(rate) if index % 10 == 0 else rate,
        "captioning": rng.random() < 0.5,
        "timestamp": (datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=index)).isoformat(),
        "extra": {"images": rng.randint(5, 60), "resolution": rng.choice(["512", "1024"])},
    }


def build_store(path: Path, count: int) -> float:
    """Write ``count`` finetunes in batches like a sync; return the seconds it took."""
    rng = random.Random(1)
    opened = access.open_store_for_write(access.locate_store(str(path)))
    started = time.perf_counter()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for start in range(0, count, BATCH):
        observations = [
            writes.Observation(f"ft-{index:06d}", payload(rng, index))
            for index in range(start, min(start + BATCH, count))
        ]
        with Session(opened.engine) as session, session.begin():
            writes.record_observations(
                session, observations, source="api.us1.bfl.ai", account="default", run_id=None, now=now
            )
    elapsed = time.perf_counter() - started
    opened.engine.dispose()
    return elapsed


def medians(
    ours: Callable[[], object], baseline: Callable[[], object], repeat: int = REPEAT
) -> tuple[float, float]:
    """Median seconds of each, runs interleaved so both sides see the same noise on a shared machine."""
    ours()
    baseline()
    timings: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for action, into in ((ours, timings[0]), (baseline, timings[1])):
            started = time.perf_counter()
            action()
            into.append(time.perf_counter() - started)
    return statistics.median(timings[0]), statistics.median(timings[1])


def report(label: str, ours: float, baseline: float, rows: int, target: str) -> None:
    print(
        f"{label:<34} bflsync {ours * 1000:8.1f} ms   direct {baseline * 1000:8.1f} ms   "
        f"ratio {ours / baseline:5.2f}   rows {rows:6d}   target {target}"
    )


def bench_searches() -> None:
    """Both sides on an open connection: this times the query, not opening the store."""
    raw = sqlite3.connect(f"{STORE.as_uri()}?mode=ro", uri=True)
    cases = [
        (
            "filter on extracted columns",
            ["mode=character", "learning_rate>=1e-5"],
            None,
            EXTRACTED_SQL,
            ("character", 1e-5),
            "<= 1.5x",
        ),
        ("filter on a details-only key", ["extra.images>=50"], None, JSON_SQL, (50,), "<= 250 ms"),
        ("--text search", [], "watercolor dragon", TEXT_SQL, ('"watercolor" "dragon"',), "<= 1.5x"),
    ]
    try:
        with open_reader(str(STORE)) as reader:
            for label, texts, words, sql, params, target in cases:
                question = filters.Query(filters=[filters.parse_filter(text) for text in texts], text=words)

                def ours(question: filters.Query = question) -> int:
                    return len(search.search(reader, question).records)

                def direct(sql: str = sql, params: tuple[Any, ...] = params) -> int:
                    return len(raw.execute(sql, params).fetchall())

                rows = ours()
                assert rows == direct(), label
                report(label, *medians(ours, direct), rows, target)
    finally:
        raw.close()


def bench_process() -> None:
    command = [sys.executable, "-m", "bflsync", "--db", str(STORE), "query"]
    command += ["mode=character", "learning_rate>=1e-5", "--format", "ids"]
    script = (
        "import sqlite3, sys, click, sqlmodel\n"
        f"c = sqlite3.connect({STORE.as_uri() + '?mode=ro'!r}, uri=True)\n"
        f"rows = c.execute({EXTRACTED_SQL!r}, ('character', 1e-5)).fetchall()\n"
        "sys.stdout.writelines(row[0] + '\\n' for row in rows)\n"
    )
    baseline = [sys.executable, "-c", script]
    ours_out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert ours_out == subprocess.run(baseline, capture_output=True, text=True, check=True).stdout

    def run(args: list[str]) -> Callable[[], object]:
        return lambda: subprocess.run(args, capture_output=True, check=True)

    ours, base = medians(run(command), run(baseline))
    report("end to end, --format ids (process)", ours, base, ours_out.count("\n"), "<= 2x")


def bench_trigger_cost() -> None:
    """Inserting 20,000 finetunes into a store at head with its full-text triggers and without them."""
    with tempfile.TemporaryDirectory() as scratch:
        timings = {}
        for kind in ("without", "with"):
            path = Path(scratch) / f"{kind}.db"
            access.upgrade_store(access.locate_store(str(path)), revision="head").engine.dispose()
            if kind == "without":
                with sqlite3.connect(path) as connection:
                    triggers = connection.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND sql LIKE '%finetune_fts%'"
                    ).fetchall()
                    for (name,) in triggers:
                        connection.execute(f'DROP TRIGGER "{name}"')
            engine = access.create_store_engine(access.locate_store(str(path)), read_only=False)
            timings[kind] = _timed_writes(engine)
            engine.dispose()
    print(
        f"{'store writes, 20,000 new finetunes':<34} with FTS {timings['with']:6.2f} s   "
        f"without {timings['without']:6.2f} s   ratio {timings['with'] / timings['without']:5.2f}"
    )


def _timed_writes(engine: Any) -> float:
    rng = random.Random(1)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    for start in range(0, 20_000, BATCH):
        observations = [
            writes.Observation(f"ft-{index:06d}", payload(rng, index))
            for index in range(start, start + BATCH)
        ]
        with Session(engine) as session, session.begin():
            writes.record_observations(
                session, observations, source="api.us1.bfl.ai", account="default", run_id=None, now=now
            )
    return time.perf_counter() - started


def importtime_report() -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bflsync", "query", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    entries = []
    for line in result.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match and not match.group(3).strip(" "):
            entries.append((int(match.group(2)), len(match.group(3)), match.group(4)))
    top_level = [(us, name) for us, indent, name in entries if indent <= 2]
    total = sum(us for us, _ in top_level)
    print(f"python -X importtime -m bflsync query --help: {total / 1000:.1f} ms in top-level imports; top 8:")
    for us, name in sorted(top_level, reverse=True)[:8]:
        print(f"    {us / 1000:7.1f} ms  {name}")
    loaded = {name for _, _, name in entries}
    print(f"    alembic/httpx/rich imported: {sorted(loaded & {'alembic', 'httpx', 'rich'}) or 'none'}")


def cached_store_is_current() -> bool:
    """A store cached by an older bflsync has an older schema: build it again."""
    if not STORE.exists():
        return False
    with sqlite3.connect(f"{STORE.as_uri()}?mode=ro", uri=True) as connection:
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return revision == (access.HEAD_REVISION,)


def main() -> None:
    if "--rebuild" in sys.argv or not cached_store_is_current():
        STORE.unlink(missing_ok=True)
        seconds = build_store(STORE, COUNT)
        print(f"built {COUNT:,} finetunes in {seconds:.1f} s at {STORE}")
    print(f"store: {STORE} ({STORE.stat().st_size / 1e6:.0f} MB), median of {REPEAT} runs")
    bench_searches()
    bench_process()
    bench_trigger_cost()
    importtime_report()


if __name__ == "__main__":
    main()
