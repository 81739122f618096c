"""Read-side benchmark on PostgreSQL: ``bflsync query … --format ids`` against a bare psycopg script, same run.

A private cluster is started from the machine's PostgreSQL binaries on 127.0.0.1 (its data
directory is kept in the temp directory, so the 100,000-finetune store is built once through
the real write path, ``bflsync.store.writes``, and reused; ``--rebuild`` builds it again). Each query
form (an extracted column, a JSON-only key, ``~`` and ``--text``) runs as a whole ``bflsync``
process and as a ``python -c`` that imports click and psycopg, connects and runs the very statement
bflsync runs (rendered by ``bflsync.read.search``, with the same bound parameters; printed), target
<= 1.3x. ``psql`` running the statement with its parameters written as literals is shown beside
it, as is ``python -c "import click"``; all are interleaved so they see the same noise; min and
median over the repetitions are printed. Then ``EXPLAIN ANALYZE`` of the JSON-key filter, which
must use the GIN index on ``details_jsonb``.

Run: ``.venv/bin/python benchmarks/bench_query_postgres.py`` (``--count N``, ``--repeat N``).
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench_query import payload
from sqlmodel import Session

import bflsync
from bflsync.read import filters, search
from bflsync.read.reader import open_reader
from bflsync.store import access, writes

# The cluster launcher the test fixture uses (tests/pglaunch.py, no pytest in it).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pglaunch import initdb, postgres_bindir, running

BATCH = 2000
DATABASE = "bench"
TARGET = 1.3
# The console script, as users run it (`python -m bflsync` adds runpy's start-up).
BFLSYNC = str(Path(sys.executable).with_name("bflsync"))
# A JSON-only key with a string value: its equality filter is containment (@>), served by GIN.
DATASETS = 1000
# (label, bflsync query arguments); psql runs the very statement bflsync runs for them.
CASES: tuple[tuple[str, list[str]], ...] = (
    ("extracted column", ["mode=character"]),
    ("JSON-only key", ["dataset=ds-42"]),
    ("~ substring", ["finetune_comment~DRAGON"]),
    ("--text", ["--text", "watercolor dragon"]),
    ("--text CJK substring (3+ chars)", ["--text", "風景写"]),
    ("--text CJK substring (2 chars)", ["--text", "富士"]),
)
# Comments in a script without spaces, so --text has substrings to find (search_text, 0009_search_text).
JAPANESE = (
    "日本の風景写真",
    "富士山と桜",
    "東京の夜景",
    "猫のポートレート",
    "水彩画の練習",
    "製品写真の背景",
)


def bindir_or_exit() -> Path:
    bindir = postgres_bindir()
    if bindir is None:
        sys.exit("no PostgreSQL server binaries under /usr/lib/postgresql")
    return bindir


@contextmanager
def cluster(home: Path) -> Iterator[str]:
    """A cluster whose data lives under ``home`` (created on first use); yields its base URL."""
    bindir = bindir_or_exit()
    if not (home / "data").exists():
        home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(home, user="postgres")
        initdb(bindir, home / "data")
    with running(bindir, home, stop_mode="fast") as port:
        yield f"bfl@127.0.0.1:{port}"


def bench_payload(rng: random.Random, index: int) -> dict[str, Any]:
    return {
        **payload(rng, index),
        "dataset": f"ds-{rng.randrange(DATASETS)}",
        "caption": f"{rng.choice(JAPANESE)}、{index}番",
    }


def build(server: str, count: int) -> float:
    """A fresh ``bench`` database holding ``count`` finetunes, written in batches like a sync."""
    admin = sa.create_engine(f"postgresql+psycopg://{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        connection.exec_driver_sql(f"CREATE DATABASE {DATABASE}")
    admin.dispose()
    rng = random.Random(1)
    opened = access.open_store_for_write(access.locate_store(f"postgresql+psycopg://{server}/{DATABASE}"))
    started = time.perf_counter()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for start in range(0, count, BATCH):
        observations = [
            writes.Observation(f"ft-{index:06d}", bench_payload(rng, index))
            for index in range(start, min(start + BATCH, count))
        ]
        with Session(opened.engine) as session, session.begin():
            writes.record_observations(
                session, observations, source="api.us1.bfl.ai", account="default", run_id=None, now=now
            )
    elapsed = time.perf_counter() - started
    with opened.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    opened.engine.dispose()
    return elapsed


def timings(commands: Sequence[Sequence[str]], repeat: int) -> list[list[float]]:
    """Seconds per run of each command, the commands interleaved within every repetition."""
    for command in commands:
        subprocess.run(command, capture_output=True, check=True)
    runs: list[list[float]] = [[] for _ in commands]
    for _ in range(repeat):
        for command, into in zip(commands, runs, strict=True):
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True)
            into.append(time.perf_counter() - started)
    return runs


def summary(values: list[float]) -> str:
    return f"min {min(values) * 1000:6.1f} ms  median {statistics.median(values) * 1000:6.1f} ms"


def question(args: Sequence[str]) -> filters.Query:
    """The query ``bflsync query ARGS`` asks (the CASES use filters and ``--text`` only)."""
    if args[0] == "--text":
        return filters.Query(filters=[], text=args[1])
    return filters.Query(filters=[filters.parse_filter(item) for item in args])


def literal(value: Any) -> str:
    """A bound parameter as an SQL literal of the type it is bound as (text as ``unknown``)."""
    if isinstance(value, list):
        return "CAST('{" + ",".join('"' + item + '"' for item in value) + "}' AS text[])"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def bflsync_statement(url: str, args: Sequence[str]) -> tuple[str, list[Any], str]:
    """The SQL (with ``?``) bflsync runs for ``--format ids``, its parameters, and the SQL with literals."""
    with open_reader(url) as reader:
        statement = search.search_sql(reader, question(args), columns=("finetune_id",))
    pieces = statement.text.split("?")
    inlined = pieces[0] + "".join(
        literal(value) + piece for value, piece in zip(statement.params, pieces[1:], strict=True)
    )
    return statement.text, list(statement.params), inlined


def bare_script(url: str, text: str, params: list[Any]) -> str:
    """A ``python -c`` program: click and psycopg imported, one connection, the statement, the ids."""
    libpq = "postgresql://" + url.partition("://")[2]
    statement = text.replace("%", "%%").replace("?", "%s")
    return (
        "import sys\nimport click, psycopg\n"
        f"with psycopg.connect({libpq!r}) as c:\n"
        f"    sys.stdout.writelines(r[0] + '\\n' for r in c.execute({statement!r}, {params!r}))\n"
    )


def short(text: str, width: int = 400) -> str:
    return text if len(text) <= width else f"{text[:width]} … ({len(text):,} characters)"


def bench_queries(server: str, count: int, repeat: int) -> None:
    url = f"postgresql+psycopg://{server}/{DATABASE}"
    psql = [
        str(bindir_or_exit() / "psql"),
        "-X",
        "-q",
        "-A",
        "-t",
        "-d",
        f"postgresql://{server}/{DATABASE}",
    ]
    floor = [sys.executable, "-c", "import click"]
    print(f"\n== {count:,} finetunes on PostgreSQL, {repeat} runs each ==")
    for label, args in CASES:
        ours = [BFLSYNC, "--db", url, "query", *args, "--format", "ids"]
        bound, params, inlined = bflsync_statement(url, args)
        bare = [sys.executable, "-c", bare_script(url, bound, params)]
        answers = [
            subprocess.run(c, capture_output=True, text=True, check=True).stdout
            for c in (ours, bare, [*psql, "-c", inlined])
        ]
        assert answers[0] == answers[1] == answers[2], f"{label}: bflsync, psycopg and psql disagree"
        mine, base, psql_s, click_only = timings([ours, bare, [*psql, "-c", inlined], floor], repeat)
        by_min = min(mine) / min(base)
        by_median = statistics.median(mine) / statistics.median(base)
        verdict = "ok" if by_median <= TARGET else "MISSED"
        print(f"{label:<17} rows {answers[0].count(chr(10)):6d}")
        print(f"    bflsync runs: {short(bound)}  {params!r}")
        print(f"    bflsync          {summary(mine)}")
        print(
            f"    python -c psycopg {summary(base)}   (imports click and psycopg, connects, runs the same SQL)"
        )
        print(f"    psql             {summary(psql_s)}")
        print(f"    import click     {summary(click_only)}   (the floor of any click CLI)")
        print(f"    bflsync/psycopg min {by_min:.2f} median {by_median:.2f} (target <= {TARGET}: {verdict})")


def explain_json_key(server: str) -> None:
    """EXPLAIN ANALYZE of exactly the statement bflsync runs for the JSON-key filter."""
    print("\n== EXPLAIN ANALYZE of bflsync's SQL for dataset=ds-42 ==")
    with open_reader(f"postgresql+psycopg://{server}/{DATABASE}") as reader:
        statement = search.search_sql(reader, question(["dataset=ds-42"]), columns=("finetune_id",))
        print(statement.text)
        plan = [row[0] for row in reader.rows("EXPLAIN ANALYZE " + statement.text, statement.params)]
    print("\n".join(plan))
    uses_gin = any("ix_finetune_details_jsonb" in line for line in plan)
    print(f"uses the GIN index ix_finetune_details_jsonb: {'yes' if uses_gin else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--rebuild", action="store_true")
    options = parser.parse_args()
    # An installed wheel has its bytecode compiled; with PYTHONDONTWRITEBYTECODE set, an editable
    # install would otherwise compile every bflsync module in every timed process.
    compileall.compile_dir(Path(bflsync.__file__).parent, quiet=1)
    home = Path(tempfile.gettempdir()) / f"bflsync-bench-pg-{options.count}"
    marker = home / "built"
    if options.rebuild:
        shutil.rmtree(home, ignore_errors=True)
    with cluster(home) as server:
        if not marker.exists():
            seconds = build(server, options.count)
            marker.write_text(f"{options.count}\n")
            print(f"built {options.count:,} finetunes on PostgreSQL in {seconds:.1f} s (kept under {home})")
        bench_queries(server, options.count, options.repeat)
        explain_json_key(server)


if __name__ == "__main__":
    main()
