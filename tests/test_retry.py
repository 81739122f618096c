"""The retry piece on its own and through the client: run deadline, circuit breaker, sleep budget.

Time is fake (it moves only when the client sleeps), so minutes of backoff take no time.
"""

from __future__ import annotations

import asyncio
import random
import tracemalloc
from typing import Any

import httpx
import pytest
from hostile_server import gzip_bomb
from test_api_client import KEY, FakeTime, Script, make_client, run

from bflsync.bfl.client import BflClient
from bflsync.bfl.retry import AttemptFailed, Retrier, RetryPolicy
from bflsync.config import Secret
from bflsync.errors import (
    ApiError,
    CircuitOpenError,
    NotFoundError,
    ResponseTooLargeError,
    RunDeadlineError,
    ServerError,
)

BASE = "https://api.test"


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def failing(error: ApiError | None = None, **options: Any) -> AttemptFailed:
    return AttemptFailed(error=error or ServerError("boom", status=503), retryable=True, **options)


def retrier(fake_time: FakeTime, **policy: Any) -> Retrier:
    return Retrier(
        RetryPolicy(**policy),
        concurrency=4,
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        monotonic=fake_time.clock,
        rng=random.Random(3),
    )


def call(r: Retrier, outcomes: list[Any]) -> tuple[Any, list[float]]:
    """Run one request whose attempts answer ``outcomes`` in turn; return its result and timeouts given."""
    timeouts: list[float] = []

    async def attempt(number: int, timeout_s: float) -> Any:
        timeouts.append(timeout_s)
        return outcomes[min(number, len(outcomes)) - 1]

    return asyncio.run(r.call(attempt, where="/v1/x", timeout_s=30.0)), timeouts


def test_each_attempt_gets_at_most_the_time_left_before_the_deadline(fake_time: FakeTime) -> None:
    r = retrier(fake_time, max_duration_s=100.0, backoff_base_s=10.0, backoff_cap_s=10.0)
    fake_time.now += 80
    result, timeouts = call(r, ["done"])
    assert (result, timeouts) == ("done", [20.0])


def test_a_wait_that_would_end_past_the_deadline_is_not_begun(fake_time: FakeTime) -> None:
    r = retrier(fake_time, max_duration_s=30.0, max_retries=10)
    with pytest.raises(RunDeadlineError, match=r"time limit \(--max-duration 30 s\); the last attempt: boom"):
        call(r, [failing(retry_after_s=45.0)])
    assert fake_time.sleeps == []


def test_no_attempt_starts_after_the_deadline(fake_time: FakeTime) -> None:
    r = retrier(fake_time, max_duration_s=5.0)
    fake_time.now += 5
    with pytest.raises(RunDeadlineError) as info:
        call(r, ["never"])
    assert (info.value.exit_code, info.value.kind) == (3, "deadline")


def test_a_shared_pause_past_the_deadline_fails_at_once(fake_time: FakeTime) -> None:
    script = Script(httpx.Response(429, headers={"retry-after": "99999"}))
    client = make_client(script, fake_time, retry=RetryPolicy(max_duration_s=10.0), monotonic=fake_time.clock)

    async def both(c: BflClient) -> list[Any]:
        return await asyncio.gather(c.get_details("a"), c.get_details("b"), return_exceptions=True)

    results = run(client, both)
    assert all(isinstance(error, RunDeadlineError) for error in results)
    assert fake_time.sleeps == []  # nobody sat out a 60 s pause that could not end in time


def test_the_circuit_opens_after_k_failed_requests_in_a_row_and_stays_open(fake_time: FakeTime) -> None:
    r = retrier(fake_time, max_retries=1, max_consecutive_failures=3)
    for _ in range(2):
        with pytest.raises(ServerError):
            call(r, [failing()])
    with pytest.raises(CircuitOpenError, match="3 requests in a row failed after their retries"):
        call(r, [failing()])
    with pytest.raises(CircuitOpenError, match="not sent"):
        call(r, ["would succeed"])


def test_a_success_resets_the_count_and_final_answers_do_not_count(fake_time: FakeTime) -> None:
    r = retrier(fake_time, max_retries=0, max_consecutive_failures=2)
    not_found = AttemptFailed(error=NotFoundError("gone", status=404), retryable=False)
    with pytest.raises(ServerError):
        call(r, [failing()])
    assert call(r, ["ok"])[0] == "ok"
    with pytest.raises(ServerError):
        call(r, [failing()])
    for _ in range(2):
        with pytest.raises(NotFoundError):
            call(r, [not_found])
    assert call(r, ["still open for business"])[0] == "still open for business"


def test_zero_disables_the_circuit_breaker(fake_time: FakeTime) -> None:
    r = retrier(fake_time, max_retries=0, max_consecutive_failures=0)
    for _ in range(50):
        with pytest.raises(ServerError):
            call(r, [failing()])


def test_the_sleep_budget_bounds_one_request(fake_time: FakeTime) -> None:
    r = retrier(fake_time, max_retries=100, max_total_sleep_s=120.0)
    with pytest.raises(ServerError):
        call(r, [failing(retry_after_s=50.0)])
    assert fake_time.sleeps == [50.0, 50.0]


# --- size caps: memory stays bounded -----------------------------------------------------------


class _GzipBombTransport(httpx.AsyncBaseTransport):
    """Streams a gzip body chunk by chunk, the way a socket would, so nothing arrives pre-read."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = self.body

        class Stream(httpx.AsyncByteStream):
            async def __aiter__(self) -> Any:
                for i in range(0, len(body), 65536):
                    yield body[i : i + 65536]

        return httpx.Response(200, headers={"content-encoding": "gzip"}, stream=Stream())


def test_a_gzip_bomb_is_refused_without_holding_it_in_memory() -> None:
    decoded = 64 * 2**20
    body = gzip_bomb(b'{"finetune_details": {"x": "', b"a", decoded, b'"}}')
    assert len(body) < decoded // 500
    client = BflClient(
        api_key=Secret(KEY),
        base_url=BASE,
        transport=_GzipBombTransport(body),
        max_answer_bytes=2**20,
    )
    tracemalloc.start()
    try:
        with pytest.raises(
            ResponseTooLargeError, match="larger than 1,048,576 bytes once decompressed"
        ) as info:
            run(client, lambda c: c.get_details("bomb"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.kind == "bad_response"
    assert info.value.attempts == 1  # a body too large is not retried
    assert peak < 8 * 2**20
