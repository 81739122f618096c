"""What the trigram index (``0007_fts_discoverable``) costs: storage, writes, and ``--text`` speed.

Builds a store of N finetunes (default 20,000; a fifth with Japanese or Chinese comments)
through ``writes.record_observations`` twice in the same run: once at head (word + trigram
index) and once at head with the trigram index and its trigger statements removed (the word
index alone, as before). Prints:

* the pages each index takes (``dbstat``), and the file sizes of both stores;
* the time to persist the N new finetunes into each store (the triggers' cost);
* median ``--text`` times at head through ``search.search``: a word (word index), a three-character
  CJK substring (trigram index), a two-character one (scan of the details), and the word query
  on the word-only store baseline.

Run: ``.venv/bin/python benchmarks/bench_text_search.py [N]``
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session

from bflsync.config import DEFAULT_ACCOUNT
from bflsync.read import search
from bflsync.read.filters import Query
from bflsync.read.reader import open_reader
from bflsync.read.records import FinetuneRecord
from bflsync.store import access, writes

BATCH = 2_000
REPEAT = 9
SOURCE = "api.us1.bfl.ai"
WORDS = ["portrait", "product", "anime", "watercolor", "studio", "neon", "forest", "ocean", "castle"]
CJK = [
    "日本の風景写真",
    "桜と富士山",
    "夕暮れの柔らかい光",
    "产品照片",
    "东京夜景",
    "人物ポートレート",
    "水彩画風",
]


def payload(rng: random.Random, index: int) -> dict[str, Any]:
    comment = (
        "、".join(rng.choices(CJK, k=3)) if index % 5 == 0 else " ".join(rng.choices(WORDS, k=4))
    ) + f" run {index}"
    return {
        "finetune_comment": comment,
        "trigger_word": f"tok{index % 997}",
        "mode": rng.choice(["character", "product", "style", "general"]),
        "iterations": rng.choice([100, 300, 1000]),
    }


def build(path: Path, count: int, *, trigram: bool) -> float:
    """A fresh store of ``count`` finetunes; returns the seconds spent persisting them."""
    for leftover in path.parent.glob(path.name + "*"):
        leftover.unlink()
    opened = access.open_store_for_write(access.locate_store(str(path)))
    engine = opened.engine
    if not trigram:
        with engine.begin() as connection:
            for name, sql in connection.exec_driver_sql(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'finetune_fts_%'"
            ).all():
                kept = "\n".join(line for line in sql.splitlines() if "finetune_fts_trigram" not in line)
                connection.exec_driver_sql(f"DROP TRIGGER {name}")
                connection.exec_driver_sql(kept)
            connection.exec_driver_sql("DROP TABLE finetune_fts_trigram")
    rng = random.Random(7)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    for first in range(0, count, BATCH):
        observations = [
            writes.Observation(f"ft-{index:06d}", payload(rng, index))
            for index in range(first, min(first + BATCH, count))
        ]
        with Session(engine) as session, session.begin():
            run_id = writes.start_run(session, source=SOURCE, account=DEFAULT_ACCOUNT, pid=1, now=now)
            writes.record_observations(
                session, observations, source=SOURCE, account=DEFAULT_ACCOUNT, run_id=run_id, now=now
            )
    elapsed = time.perf_counter() - started
    engine.dispose()  # the last connection to close checkpoints the WAL into the file
    return elapsed


def index_bytes(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as connection:
        try:
            rows = connection.execute(
                "SELECT name, SUM(pgsize) FROM dbstat WHERE name LIKE 'finetune_fts%' GROUP BY name"
            ).fetchall()
        except sqlite3.OperationalError:  # dbstat not compiled in
            rows = []
    connection.close()
    totals: dict[str, int] = {}
    for name, size in rows:
        index = "finetune_fts_trigram" if name.startswith("finetune_fts_trigram") else "finetune_fts"
        totals[index] = totals.get(index, 0) + int(size)
    return totals


def median_ms(run: Callable[[], object]) -> tuple[float, int]:
    times, found = [], 0
    for _ in range(REPEAT):
        started = time.perf_counter()
        found = len(run())  # type: ignore[arg-type]
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), found


def text_search(path: Path, words: str) -> Callable[[], list[FinetuneRecord]]:
    def run() -> list[FinetuneRecord]:
        with open_reader(str(path)) as reader:
            return search.search(reader, Query(text=words)).records

    return run


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    directory = Path(tempfile.mkdtemp(prefix="bflsync-bench-text-"))
    both, words_only = directory / "both.db", directory / "words.db"
    persist_both = build(both, count, trigram=True)
    persist_words = build(words_only, count, trigram=False)
    sizes = index_bytes(both)
    mib = 1024 * 1024
    print(f"{count} finetunes ({count // 5} with CJK comments)")
    print(
        f"index size: word {sizes.get('finetune_fts', 0) / mib:.2f} MiB, "
        f"trigram {sizes.get('finetune_fts_trigram', 0) / mib:.2f} MiB"
    )
    print(
        f"file size: with trigram {both.stat().st_size / mib:.2f} MiB, "
        f"word index only {words_only.stat().st_size / mib:.2f} MiB, "
        f"ratio {both.stat().st_size / words_only.stat().st_size:.2f}"
    )
    print(
        f"persist {count} new: with trigram {persist_both:.2f} s, word index only {persist_words:.2f} s, "
        f"ratio {persist_both / persist_words:.2f}"
    )
    baseline, baseline_found = median_ms(text_search(words_only, "portrait"))
    print(f"--text portrait, word index only (baseline): {baseline:.1f} ms, {baseline_found} found")
    for label, words in (
        ("word index", "portrait"),
        ("trigram, 3 chars", "富士山"),
        ("scan, 2 chars", "日本"),
        ("word + trigram", "run 富士山"),
    ):
        ms, found = median_ms(text_search(both, words))
        print(
            f"--text {words!r} ({label}): {ms:.1f} ms, {found} found, ratio to baseline {ms / baseline:.2f}"
        )


if __name__ == "__main__":
    main()
