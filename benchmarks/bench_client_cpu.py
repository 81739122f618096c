"""Client CPU per request at zero latency, and a no-op re-sync against a raw httpx + sqlite3 script.

The mock runs in its own process with 0 ms latency, so what is measured is the client's own work.
Every contender runs in a fresh child process of its own and reports the CPU time (user + system,
``time.process_time``) and wall time of its work alone, imports and store creation excluded:

1. ``sync``: ``bflsync sync`` (the real command, through click) of N finetunes into a fresh store
   at concurrency 16, against ``httpx``: a minimal loop with one ``httpx.AsyncClient``, 16 workers
   fetching and parsing the same N details. Reported, with no target of its own: the 1.0 ms
   target of earlier releases was met with a hand-written connection pool, which issue 17 replaced
   by httpx's own.
   Beside it, ``client``: the same loop through bflsync's own client (``BflClient``: retrier,
   capped streaming bodies, strict JSON, server-text checks) and nothing else, so that the HTTP
   client's CPU per request is compared with the minimal httpx loop on its own (issue 17's
   target: <= 1.3x); the rest of ``sync``'s CPU is the store's (rows, full-text triggers, the chain).
2. ``resync``: a second ``bflsync sync`` of the same unchanged N finetunes, against ``raw``: plain
   ``httpx`` + ``sqlite3`` doing the same requests and writes (list; fetch each at concurrency 16;
   canonical JSON, SHA-256, compare with the stored hash; update ``last_seen_at`` per batch; a
   ``sync_run`` row). Target: wall time ratio <= 1.1.

3. ``status``: ``bflsync sync`` as users run it, status checks and credits on, of N finetunes
   into a fresh store (so every finetune is asked its status: one details and one ``get_result``
   request each, and one credits request), against ``httpx-status``: the minimal loop making the
   same requests in the same order, per request-equivalent (a finetune's two requests count two).
   Reported, as for 1.

Each pair is run ``--repeat`` times, interleaved; min and median ratios are printed.

Pairs 1 and 2 run the sync with ``--no-status --no-credits`` so that both sides make the same
requests (the listing and one details request per finetune); what status checks cost on the
network is ``bench_network.py``'s to measure.

Usage: python benchmarks/bench_client_cpu.py [--count N] [--resync-count N] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from mock_process import MOCK_KEY, mock_api

CONCURRENCY = 16
BATCH = 2000


def child(kind: str, base_url: str, db_path: str) -> dict[str, float]:
    """Run one contender in this (fresh) process; return its CPU and wall seconds."""
    import time

    if kind in ("sync", "resync", "status"):
        import bflsync.bfl.client
        import bflsync.cli.sync_command
        import bflsync.sync.run  # noqa: F401 - imported before the clock starts
        from bflsync.cli import cli
        from bflsync.store import access

        access.open_store_for_write(access.locate_store(db_path)).engine.dispose()
        argv = ["--db", db_path, "--quiet", "sync", "--base-url", base_url, "--concurrency", str(CONCURRENCY)]
        if kind != "status":
            argv += ["--no-status", "--no-credits"]  # the same requests as the baselines make
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            cli.main(argv, prog_name="bflsync", standalone_mode=False)
        except SystemExit as exit_:
            assert not exit_.code, exit_.code
        return {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}
    import asyncio
    import hashlib
    import sqlite3
    from datetime import UTC, datetime

    import httpx

    if kind == "client":
        from bflsync.bfl.client import BflClient
        from bflsync.config import Secret

        async def through_client() -> None:
            async with BflClient(
                api_key=Secret(MOCK_KEY), base_url=base_url, concurrency=CONCURRENCY
            ) as client:
                ids = iter(await client.list_finetunes())

                async def worker() -> None:
                    for finetune_id in ids:
                        await client.get_details(finetune_id)

                await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

        cpu, wall = time.process_time(), time.perf_counter()
        asyncio.run(through_client())
        return {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}

    async def fetch_all(on_details: Any, *, status: bool = False) -> None:
        async with httpx.AsyncClient(
            base_url=base_url,
            headers={"x-key": MOCK_KEY},
            limits=httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY),
        ) as client:
            credits = asyncio.ensure_future(client.get("/v1/credits")) if status else None
            listing = (await client.get("/v1/my_finetunes")).json()["finetunes"]
            ids = iter([item if isinstance(item, str) else item["finetune_id"] for item in listing])

            async def worker() -> None:
                for finetune_id in ids:
                    response = await client.get("/v1/finetune_details", params={"finetune_id": finetune_id})
                    on_details(finetune_id, json.loads(response.content)["finetune_details"])
                    if status:
                        answer = await client.get("/v1/get_result", params={"id": finetune_id})
                        json.loads(answer.content)["status"]

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            if credits is not None:
                json.loads((await credits).content)["credits"]

    if kind in ("httpx", "httpx-status"):
        cpu, wall = time.process_time(), time.perf_counter()
        asyncio.run(fetch_all(lambda finetune_id, details: None, status=kind == "httpx-status"))
        return {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}

    assert kind == "raw"
    connection = sqlite3.connect(db_path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")
    cpu, wall = time.process_time(), time.perf_counter()
    now = datetime.now(UTC).isoformat(" ")
    connection.execute("BEGIN IMMEDIATE")
    run_id = connection.execute(
        "INSERT INTO sync_run (started_at, status, source, listed, fetched, created, updated, unchanged,"
        " deleted, restored, failed, pid, bflsync_version) VALUES (?, 'running', 'raw', 0, 0, 0, 0, 0, 0, 0, 0, 1, 'raw')",
        (now,),
    ).lastrowid
    connection.execute("COMMIT")
    batch: list[tuple[str, str]] = []

    def flush() -> None:
        connection.execute("BEGIN IMMEDIATE")
        marks = ",".join("?" * len(batch))
        stored = dict(
            connection.execute(
                f"SELECT finetune_id, content_hash FROM finetune WHERE finetune_id IN ({marks})",
                [finetune_id for finetune_id, _ in batch],
            ).fetchall()
        )
        same = [finetune_id for finetune_id, digest in batch if stored.get(finetune_id) == digest]
        connection.execute(
            f"UPDATE finetune SET last_seen_at = ? WHERE finetune_id IN ({','.join('?' * len(same))})",
            [now, *same],
        )
        connection.execute("COMMIT")
        batch.clear()

    def on_details(finetune_id: str, details: Any) -> None:
        canonical = json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        batch.append((finetune_id, hashlib.sha256(canonical.encode()).hexdigest()))
        if len(batch) >= BATCH:
            flush()

    asyncio.run(fetch_all(on_details))
    if batch:
        flush()
    connection.execute("UPDATE sync_run SET status = 'ok', finished_at = ? WHERE id = ?", (now, run_id))
    connection.close()
    return {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall}


def run_child(kind: str, base_url: str, db_path: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", kind, base_url, str(db_path)],
        env={"BFL_API_KEY": MOCK_KEY, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def ratios(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    values = [ours / theirs for ours, theirs in pairs]
    return min(values), statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--resync-count", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("KIND", "BASE_URL", "DB"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        print(json.dumps(child(*arguments.child)))
        return

    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        with mock_api(count=arguments.count) as base_url:
            sync_cpu, httpx_cpu, client_cpu = [], [], []
            for i in range(arguments.repeat):
                ours = run_child("sync", base_url, directory / f"cpu-{i}.db")
                theirs = run_child("httpx", base_url, directory / "unused.db")
                client = run_child("client", base_url, directory / "unused.db")
                sync_cpu.append(ours["cpu"] * 1000 / arguments.count)
                httpx_cpu.append(theirs["cpu"] * 1000 / arguments.count)
                client_cpu.append(client["cpu"] * 1000 / arguments.count)
        best, median = min(sync_cpu), statistics.median(sync_cpu)
        print(
            f"CPU per finetune, {arguments.count:,} finetunes, 0 ms latency, concurrency {CONCURRENCY}: "
            f"sync min {best:.3f} ms median {median:.3f} ms  minimal httpx loop min {min(httpx_cpu):.3f} ms "
            f"median {statistics.median(httpx_cpu):.3f} ms  ratio min {best / min(httpx_cpu):.2f} "
            f"median {median / statistics.median(httpx_cpu):.2f}  (the store's writes included)"
        )
        client_ratio = statistics.median(client_cpu) / statistics.median(httpx_cpu)
        print(
            f"the BFL client alone (BflClient, no store), same requests: min {min(client_cpu):.3f} ms "
            f"median {statistics.median(client_cpu):.3f} ms per request  ratio to the minimal httpx loop "
            f"min {min(client_cpu) / min(httpx_cpu):.2f} median {client_ratio:.2f}  (target <= 1.3) "
            f"{'ok' if client_ratio <= 1.3 else 'MISSED'}"
        )

        with mock_api(count=arguments.count) as base_url:
            status_cpu, httpx_status_cpu = [], []
            for i in range(arguments.repeat):
                ours = run_child("status", base_url, directory / f"status-{i}.db")
                theirs = run_child("httpx-status", base_url, directory / "unused.db")
                # Per request-equivalent: a finetune's details and status requests count two.
                status_cpu.append(ours["cpu"] * 1000 / (2 * arguments.count))
                httpx_status_cpu.append(theirs["cpu"] * 1000 / (2 * arguments.count))
        best, median = min(status_cpu), statistics.median(status_cpu)
        baseline = statistics.median(httpx_status_cpu)
        print(
            f"CPU per request with status checks (details + get_result per finetune, and credits), "
            f"{arguments.count:,} finetunes: sync min {best:.3f} ms median {median:.3f} ms "
            f"({2 * median:.3f} ms per finetune)  minimal httpx loop, same requests, min "
            f"{min(httpx_status_cpu):.3f} ms median {baseline:.3f} ms  ratio min {best / min(httpx_status_cpu):.2f} "
            f"median {median / baseline:.2f}  (the store's writes included)"
        )

        with mock_api(count=arguments.resync_count) as base_url:
            seeded = directory / "seeded.db"
            run_child("sync", base_url, seeded)
            pairs, cpu_pairs = [], []
            for i in range(arguments.repeat):
                ours_db, raw_db = directory / f"ours-{i}.db", directory / f"raw-{i}.db"
                shutil.copy(seeded, ours_db)
                shutil.copy(seeded, raw_db)
                ours = run_child("resync", base_url, ours_db)
                theirs = run_child("raw", base_url, raw_db)
                pairs.append((ours["wall"], theirs["wall"]))
                cpu_pairs.append((ours["cpu"], theirs["cpu"]))
        best, median = ratios(pairs)
        cpu_best, cpu_median = ratios(cpu_pairs)
        print(
            f"no-op re-sync of {arguments.resync_count:,}: bflsync median {statistics.median(p[0] for p in pairs):.2f} s"
            f"  raw httpx + sqlite3 median {statistics.median(p[1] for p in pairs):.2f} s  wall ratio min "
            f"{best:.2f} median {median:.2f} (target <= 1.1) {'ok' if median <= 1.1 else 'MISSED'}  "
            f"[CPU ratio min {cpu_best:.2f} median {cpu_median:.2f}]"
        )


if __name__ == "__main__":
    main()
