"""Read-side benchmark: whole ``bflsync`` processes against tools doing the same work, same run.

For stores of 300, 20,000 and 100,000 finetunes (built once through the real write path and
cached in the temp directory), each query form runs as ``bflsync query … --format ids`` and as
the equivalent SQL through ``sqlite-utils query`` (targets: <= 0.75x at 300 and 20,000, <= 1.0x at
100,000) and through a bare ``python -c`` with ``sqlite3`` (target at 100,000: <= 1.5x). Runs are
interleaved so both sides see the same noise; min and median over the repetitions are printed.
The ``python -c`` baseline runs exactly the statement bflsync runs (from :func:`bflsync.read.search.search_sql`,
registering the two helper functions it calls); every side runs without ``PYTHONDONTWRITEBYTECODE`` and
``PYTHONUNBUFFERED``, and bflsync's modules are compiled first, as an installed wheel's are.
Then ``bflsync show ID`` and ``bflsync --help`` against ``python -c "import click"`` (<= 1.5x),
the SQL each output format selects, and the query plans of ``--limit`` on an indexed sort.

Needs the ``bench`` extra (``pip install -e '.[bench]'``). Run: ``.venv/bin/python benchmarks/bench_read.py``
(``--sizes 300,20000`` for fewer stores, ``--rebuild`` to rebuild them).
"""

from __future__ import annotations

import compileall
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench_query import build_store

import bflsync
from bflsync.read import filters, search
from bflsync.read.reader import SqliteReader, open_reader
from bflsync.store.check import HEAD_REVISION

SIZES: tuple[int, ...] = (300, 20_000, 100_000)
# (label, bflsync arguments, equivalent SQL for the other tools)
ORDER = " AND deleted_at IS NULL ORDER BY finetune_id, source"
CASES: tuple[tuple[str, list[str], str], ...] = (
    (
        "extracted column",
        ["mode=character"],
        "SELECT finetune_id FROM finetune WHERE mode = 'character'" + ORDER,
    ),
    (
        "JSON-only key",
        ["extra.images>=50"],
        "SELECT finetune_id FROM finetune WHERE json_extract(details, '$.extra.images') >= 50" + ORDER,
    ),
    (
        "~ substring",
        ["finetune_comment~DRAGON"],
        "SELECT finetune_id FROM finetune WHERE instr(lower(finetune_comment), 'dragon') > 0" + ORDER,
    ),
    (
        "--text",
        ["--text", "watercolor dragon"],
        "SELECT finetune_id FROM finetune WHERE id IN (SELECT rowid FROM finetune_fts"
        ' WHERE finetune_fts MATCH \'"watercolor" "dragon"\')' + ORDER,
    ),
)
# The console script, as users run it (`python -m bflsync` adds runpy's start-up).
BFLSYNC = str(Path(sys.executable).with_name("bflsync"))
TARGETS = {300: (0.75, None), 20_000: (0.75, None), 100_000: (1.0, 1.5)}
STARTUP_TARGET = 1.5


def store_for(count: int, *, rebuild: bool) -> Path:
    # Named for the schema revision, so a store built by another tree's bflsync is not reused.
    path = Path(tempfile.gettempdir()) / f"bflsync-bench-read-{HEAD_REVISION}-{count}.db"
    if rebuild or not path.exists():
        path.unlink(missing_ok=True)
        seconds = build_store(path, count)
        print(f"built {count:,} finetunes in {seconds:.1f} s at {path}")
    return path


# What a user's shell does not usually set, but this machine's might: PYTHONDONTWRITEBYTECODE would
# make every bflsync process compile its modules (an installed wheel ships compiled bytecode, as
# sqlite-utils' does here), PYTHONUNBUFFERED would make every side write line by line.
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")}
# The helpers bflsync's SQLite statements call, defined as a bare script would (numeric text as a
# number, Python's case folding), so the baseline runs exactly bflsync's SQL.
BARE_FUNCTIONS = (
    "def number(v):\n"
    "    try:\n"
    "        n = float(v.strip()) if isinstance(v, str) else None\n"
    "    except ValueError:\n"
    "        return None\n"
    "    return n if n is not None and math.isfinite(n) else None\n"
    "c.create_function('bflsync_number', 1, number, deterministic=True)\n"
    "c.create_function('bflsync_casefold', 1, lambda v: v.casefold() if isinstance(v, str) else None,"
    " deterministic=True)\n"
)


def ours_sql(path: Path, args: Sequence[str]) -> tuple[str, tuple[object, ...]]:
    """The statement ``bflsync query ARGS --format ids`` runs, with its parameters."""
    words = args[1] if args[:1] == ["--text"] else None
    texts = [] if words is not None else list(args)
    with open_reader(str(path)) as reader:
        question = filters.Query(filters=[filters.parse_filter(text) for text in texts], text=words)
        statement = search.search_sql(reader, question, columns=("finetune_id",))
    return statement.text, tuple(statement.params)


def bare_script(path: Path, statement: tuple[str, tuple[object, ...]]) -> str:
    """A ``python -c`` program: open the file read-only with sqlite3, run the SQL, print the ids."""
    text, params = statement
    return (
        "import math, sqlite3, sys\n"
        f"c = sqlite3.connect({path.as_uri() + '?mode=ro'!r}, uri=True)\n"
        + BARE_FUNCTIONS
        + f"sys.stdout.writelines(r[0] + '\\n' for r in c.execute({text!r}, {params!r}))\n"
    )


def timings(commands: Sequence[Sequence[str]], repeat: int) -> list[list[float]]:
    """Seconds per run of each command, the commands interleaved within every repetition."""
    for command in commands:
        subprocess.run(command, capture_output=True, check=True, env=ENV)
    runs: list[list[float]] = [[] for _ in commands]
    for _ in range(repeat):
        for command, into in zip(commands, runs, strict=True):
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True, env=ENV)
            into.append(time.perf_counter() - started)
    return runs


def summary(values: list[float]) -> str:
    return f"min {min(values) * 1000:6.1f} ms  median {statistics.median(values) * 1000:6.1f} ms"


def ratio(ours: list[float], theirs: list[float]) -> tuple[float, float]:
    return min(ours) / min(theirs), statistics.median(ours) / statistics.median(theirs)


def verdict(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return f"(target <= {target}: {'ok' if value <= target else 'MISSED'})"


def bench_queries(path: Path, count: int, repeat: int) -> None:
    sqlite_utils = shutil.which("sqlite-utils", path=str(Path(sys.executable).parent))
    assert sqlite_utils, "install the bench extra: pip install -e '.[bench]'"
    target_utils, target_bare = TARGETS[count]
    print(f"\n== {count:,} finetunes ({path.stat().st_size / 1e6:.1f} MB), {repeat} runs each ==")
    for label, args, statement in CASES:
        ours = [BFLSYNC, "--db", str(path), "query", *args, "--format", "ids"]
        utils = [sqlite_utils, "query", str(path), statement, "--csv", "--no-headers"]
        bare = [sys.executable, "-c", bare_script(path, ours_sql(path, args))]
        answers = [
            subprocess.run(c, capture_output=True, text=True, check=True, env=ENV).stdout
            for c in (ours, utils, bare)
        ]
        assert answers[0] == answers[1].replace("\r\n", "\n") == answers[2], label
        mine, theirs, floor = timings([ours, utils, bare], repeat)
        by_min, by_median = ratio(mine, theirs)
        print(f"{label:<17} rows {answers[0].count(chr(10)):6d}")
        print(f"    bflsync      {summary(mine)}")
        print(
            f"    sqlite-utils {summary(theirs)}   bflsync/sqlite-utils min {by_min:.2f} median {by_median:.2f} "
            f"{verdict(by_median, target_utils)}"
        )
        by_min, by_median = ratio(mine, floor)
        print(
            f"    python -c    {summary(floor)}   bflsync/python-c     min {by_min:.2f} median {by_median:.2f} "
            f"{verdict(by_median, target_bare)}"
        )


def bench_startup(path: Path, repeat: int) -> None:
    print(f"\n== start-up, {repeat} runs each ==")
    click_only = [sys.executable, "-c", "import click"]
    show = [BFLSYNC, "--db", str(path), "show", "ft-000001"]
    help_ = [BFLSYNC, "--help"]
    base, shown, helped = timings([click_only, show, help_], repeat)
    print(f"python -c 'import click' {summary(base)}")
    for label, values in (("bflsync show ID", shown), ("bflsync --help", helped)):
        by_min, by_median = ratio(values, base)
        print(
            f"{label:<24} {summary(values)}   ratio min {by_min:.2f} median {by_median:.2f} {verdict(by_median, STARTUP_TARGET)}"
        )


def show_plans(path: Path) -> None:
    print("\n== SQL per output format, and plans of --limit on an indexed sort ==")
    with open_reader(str(path)) as reader:
        assert isinstance(reader, SqliteReader)
        question = filters.Query(filters=[filters.parse_filter("mode=character")])
        ids = search.search_sql(reader, question, columns=("finetune_id",))
        every = search.search_sql(reader, question)
        print(f"--format ids selects:  {ids.text.split(' FROM ')[0]}")
        print(f"--format json selects: {every.text.split(' FROM ')[0]}")
        # The tie-break (finetune_id, source, account) follows any --sort: an index on the sort
        # column gives the rows in order up to ties, so SQLite sorts only the first tie group
        # ("RIGHT PART OF ORDER BY"); the benchmark's columns have few distinct values, so that
        # group is large. A filter on an indexed column makes SQLite search that index and sort
        # every match ("TEMP B-TREE FOR ORDER BY"): it has no statistics to prefer the sort's index.
        for texts, sort in (([], None), ([], "-iterations"), (["mode=character"], None)):
            shown = f"query {' '.join(texts)} --limit 10{' --sort ' + sort if sort else ''}".replace(
                "  ", " "
            )
            print(f"{shown}:")
            for limit in (10, None):
                question = filters.Query(
                    filters=[filters.parse_filter(text) for text in texts],
                    sort=filters.parse_sort(sort) if sort else None,
                    limit=limit,
                )
                statement = search.search_sql(reader, question, columns=("finetune_id",))
                if limit is not None:
                    plan = reader.connection.execute(
                        "EXPLAIN QUERY PLAN " + statement.text, statement.params
                    ).fetchall()
                    for row in plan:
                        print(f"    {row[-1]}")
                started = time.perf_counter()
                reader.rows(statement.text, statement.params)
                elapsed = (time.perf_counter() - started) * 1000
                print(f"    {'runs in' if limit else 'without --limit:'} {elapsed:.1f} ms")


def main() -> None:
    sizes = SIZES
    if "--sizes" in sys.argv:
        sizes = tuple(int(size) for size in sys.argv[sys.argv.index("--sizes") + 1].split(","))
    rebuild = "--rebuild" in sys.argv
    print(f"SQLite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}")
    # As installing the wheel does: bflsync's modules compiled once, not on every run.
    compileall.compile_dir(Path(bflsync.__file__).parent, quiet=1)
    stores = {count: store_for(count, rebuild=rebuild) for count in sizes}
    for count, path in stores.items():
        bench_queries(path, count, repeat=11 if count < 100_000 else 7)
    biggest = stores[max(stores)]
    bench_startup(biggest, repeat=15)
    show_plans(biggest)


if __name__ == "__main__":
    main()
