"""Network-bound efficiency: a sync of 2,000 finetunes against a mock answering in 50 ms.

With 16 requests in flight the ideal is N x latency / concurrency = 6.25 s; the target is a
wall time within 1.3 x of it. The sync runs as ``bflsync sync`` in its own process with a fresh
store; its own ``duration_s`` (listing, fetching, storing) is compared, and the whole process
including interpreter start-up is shown beside it.

Usage: python benchmarks/bench_network.py [--count N] [--latency-ms MS] [--concurrency C]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from mock_process import mock_api, sync_command, sync_env


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
    ideal_s = arguments.count * arguments.latency_ms / 1000 / arguments.concurrency
    with (
        mock_api(count=arguments.count, latency_ms=arguments.latency_ms) as base_url,
        tempfile.TemporaryDirectory() as d,
    ):
        command = sync_command(
            Path(d) / "bench.db", base_url, "--concurrency", str(arguments.concurrency), "--json"
        )
        started = time.perf_counter()
        done = subprocess.run(command, env=sync_env(), capture_output=True, text=True, check=True)
        process_s = time.perf_counter() - started
    result = json.loads(done.stdout)
    sync_s = result["duration_s"]
    print(
        f"sync {result['fetched']:,} finetunes, {arguments.latency_ms:g} ms latency, concurrency "
        f"{arguments.concurrency}: ideal {ideal_s:.2f} s  sync {sync_s:.2f} s  ratio {sync_s / ideal_s:.2f} "
        f"(target <= 1.3) {'ok' if sync_s / ideal_s <= 1.3 else 'MISSED'}  "
        f"[whole process {process_s:.2f} s, ratio {process_s / ideal_s:.2f}]"
    )


if __name__ == "__main__":
    main()
