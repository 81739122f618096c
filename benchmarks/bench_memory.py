"""Memory does not grow with the account: peak RSS of a sync of 50,000 finetunes vs 5,000.

Each sync runs as ``bflsync sync`` in a fresh process with a fresh store, against a mock in a
process of its own; the peak RSS is the kernel's ``ru_maxrss`` for that one child (``wait4``).
Target: ratio <= 1.5.

Usage: python benchmarks/bench_memory.py [--small N] [--large N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path

from mock_process import mock_api, sync_command, sync_env


def peak_rss_mib(count: int) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one sync of ``count`` finetunes into a fresh store."""
    with mock_api(count=count) as base_url, tempfile.TemporaryDirectory() as directory:
        command = sync_command(Path(directory) / "bench.db", base_url, "--concurrency", "16")
        started = time.perf_counter()
        process = subprocess.Popen(command, env=sync_env())
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"sync of {count} finetunes exited {process.returncode}")
    return usage.ru_maxrss / 1024, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", type=int, default=5_000)
    parser.add_argument("--large", type=int, default=50_000)
    arguments = parser.parse_args()
    small_mib, small_s = peak_rss_mib(arguments.small)
    large_mib, large_s = peak_rss_mib(arguments.large)
    ratio = large_mib / small_mib
    print(
        f"peak RSS: {arguments.small:,} finetunes {small_mib:.1f} MiB ({small_s:.1f} s)  "
        f"{arguments.large:,} finetunes {large_mib:.1f} MiB ({large_s:.1f} s)  "
        f"ratio {ratio:.2f} (target <= 1.5) {'ok' if ratio <= 1.5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
