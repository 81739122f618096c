"""Is the mock API fast enough not to be the bottleneck of the sync benchmark?

Measures, with bflsync's own client and in the same run:
  1. capacity: detail requests per second at 0 ms latency and concurrency 16 (and, for reference,
     with 16 threads of blocking stdlib keep-alive connections, which shows the mock's own ceiling
     apart from the client's);
  2. latency-bound wall time: N detail requests at 50 ms latency and concurrency 16, against the
     ideal N * latency / concurrency (6.25 s for 2,000). Budget: 1.3x the ideal.

The mock runs both as a separate process (``bflsync mock-api``, its own GIL, as the demo and the
subprocess tests use it) and in-process in a thread (as pytest fixtures use it, sharing the GIL
with the client). Exits 1 when a latency run misses the budget.

    python benchmarks/bench_mock_api.py [--count 2000] [--latency-ms 50] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

from mock_process import mock_api

from bflsync.bfl.client import BflClient, RetryPolicy
from bflsync.config import Secret
from bflsync.mock.server import DEFAULT_MOCK_API_KEY, MockBFL

BUDGET = 1.3


@contextlib.contextmanager
def mock_process(count: int, latency_ms: float) -> Iterator[str]:
    with mock_api(count=count, latency_ms=latency_ms, max_in_flight=64) as base_url:
        yield base_url


@contextlib.contextmanager
def mock_thread(count: int, latency_ms: float) -> Iterator[str]:
    with MockBFL.serve(count=count, latency_ms=latency_ms, max_in_flight=64) as mock:
        yield mock.base_url


async def fetch_details(base_url: str, *, requests: int, concurrency: int) -> tuple[float, int]:
    """Wall time of ``requests`` detail fetches (ids cycled), after listing and a warm-up."""
    async with BflClient(
        api_key=Secret(DEFAULT_MOCK_API_KEY),
        base_url=base_url,
        concurrency=concurrency,
        retry=RetryPolicy(max_retries=0),
    ) as client:
        ids = await client.list_finetunes()
        await asyncio.gather(*(client.get_details(i) for i in ids[:concurrency]))
        targets = [ids[n % len(ids)] for n in range(requests)]
        started = time.perf_counter()
        results = await asyncio.gather(*(client.get_details(i) for i in targets))
        return time.perf_counter() - started, len(results)


def stdlib_capacity(base_url: str, *, requests: int, threads: int) -> float:
    """Requests per second from blocking keep-alive connections: a much cheaper client than httpx."""
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    host, port = parts.hostname, parts.port
    connection = http.client.HTTPConnection(host, port)
    connection.request("GET", "/v1/my_finetunes", headers={"x-key": DEFAULT_MOCK_API_KEY})
    listing = connection.getresponse().read()
    connection.close()
    first_id = listing.split(b'"')[3].decode()
    path = f"/v1/finetune_details?finetune_id={quote(first_id, safe='')}"

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port)
        for _ in range(requests // threads):
            conn.request("GET", path, headers={"x-key": DEFAULT_MOCK_API_KEY})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        conn.close()

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    return (requests // threads) * threads / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=2000, help="detail requests in the latency run")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--capacity-requests", type=int, default=3000, help="requests in the capacity run")
    parser.add_argument("--mode", choices=("process", "thread", "both"), default="both")
    args = parser.parse_args()

    modes = {"process": mock_process, "thread": mock_thread}
    chosen = list(modes) if args.mode == "both" else [args.mode]
    ideal = args.count * args.latency_ms / 1000 / args.concurrency
    failed = False
    for name in chosen:
        start_mock = modes[name]
        with start_mock(200, 0.0) as base_url:
            wall, done = asyncio.run(
                fetch_details(base_url, requests=args.capacity_requests, concurrency=args.concurrency)
            )
        capacity = done / wall
        with start_mock(200, 0.0) as base_url:
            raw_capacity = stdlib_capacity(
                base_url, requests=args.capacity_requests, threads=args.concurrency
            )
        with start_mock(args.count, args.latency_ms) as base_url:
            wall, done = asyncio.run(
                fetch_details(base_url, requests=args.count, concurrency=args.concurrency)
            )
        ratio = wall / ideal
        failed |= ratio > BUDGET
        print(f"[mock in a {name}]")
        print(
            f"  capacity: {capacity:,.0f} req/s at 0 ms latency, concurrency {args.concurrency} "
            f"({args.capacity_requests} requests); stdlib client: {raw_capacity:,.0f} req/s"
        )
        print(
            f"  latency run: {done} requests at {args.latency_ms:g} ms, concurrency {args.concurrency}: "
            f"{wall:.2f} s vs ideal {ideal:.2f} s -> {ratio:.3f}x "
            f"(budget {BUDGET}x: {'PASS' if ratio <= BUDGET else 'FAIL'})"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
