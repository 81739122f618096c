"""Network-bound efficiency: syncs of 2,000 finetunes against a mock answering in 50 ms, status checks on.

With C requests in flight the ideal wall time is (requests that must be made) x latency / C; the
target is a sync within 1.3 x of it. Two syncs run as ``bflsync sync`` processes on one store:

1. a first sync into an empty store: every finetune is new, so each takes a details and a status
   request (2N requests);
2. a re-sync of that store, where a quarter of the finetunes are still Pending (the mock's
   generated statuses need 3 to 8 polls to become Ready): N details requests plus one status
   request per finetune not settled yet, as the run's own ``status_checked`` counts them.

The listing and the credits request, made once and concurrently at the start, are not in the
ideal. Each sync's own ``duration_s`` (listing, fetching, storing) is compared; the whole process,
interpreter start-up included, is shown beside it.

Usage: python benchmarks/bench_network.py [--count N] [--latency-ms MS] [--concurrency C]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from mock_process import mock_api, sync_command, sync_env

TARGET = 1.3


def timed_sync(db_path: Path, base_url: str, concurrency: int) -> tuple[dict[str, Any], float]:
    command = sync_command(db_path, base_url, "--concurrency", str(concurrency), "--json")
    started = time.perf_counter()
    done = subprocess.run(command, env=sync_env(), capture_output=True, text=True, check=True)
    return json.loads(done.stdout), time.perf_counter() - started


def report(
    label: str, result: dict[str, Any], process_s: float, *, latency_ms: float, concurrency: int
) -> None:
    requests = result["fetched"] + result["failed"] + result["status_checked"] + result["status_failed"]
    ideal_s = requests * latency_ms / 1000 / concurrency
    sync_s = result["duration_s"]
    ratio = sync_s / ideal_s
    print(
        f"{label}: {result['fetched']:,} details + {result['status_checked']:,} status requests, "
        f"{latency_ms:g} ms latency, concurrency {concurrency}: ideal {ideal_s:.2f} s  sync {sync_s:.2f} s  "
        f"ratio {ratio:.2f} (target <= {TARGET}) {'ok' if ratio <= TARGET else 'MISSED'}  "
        f"[whole process {process_s:.2f} s, ratio {process_s / ideal_s:.2f}]"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=16)
    arguments = parser.parse_args()
    if arguments.latency_ms <= 0:
        parser.error("--latency-ms must be positive: the ideal time is measured in latencies")
    shape = {"latency_ms": arguments.latency_ms, "concurrency": arguments.concurrency}
    with (
        mock_api(count=arguments.count, latency_ms=arguments.latency_ms) as base_url,
        tempfile.TemporaryDirectory() as d,
    ):
        store = Path(d) / "bench.db"
        first, first_s = timed_sync(store, base_url, arguments.concurrency)
        report("first sync (all new)", first, first_s, **shape)
        again, again_s = timed_sync(store, base_url, arguments.concurrency)
        pending = again["status_checked"] / max(again["fetched"], 1)
        report(f"re-sync ({pending:.0%} still training)", again, again_s, **shape)


if __name__ == "__main__":
    main()
