"""The one piece every API request goes through: concurrency, retries and the run's limits.

``RetryPolicy`` says how hard to try; a ``Retrier`` (one per client) applies it. An endpoint hands
``Retrier.call`` a function that makes one attempt and returns either its result or an
``AttemptFailed`` saying whether trying again can help. Everything about waiting lives here:

- the semaphore that caps requests in flight;
- the shared pause after a 429 (the server speaks of the whole client, not one request);
- ``Retry-After`` (capped) or else exponential backoff with full jitter;
- the per-request sleep budget (``max_total_sleep_s``);
- the run deadline: no attempt starts, and no wait is begun, that would end past it, and each
  attempt's time limit is cut to what is left;
- the circuit breaker: after ``max_consecutive_failures`` requests in a row failed after their
  retries, every request of the client fails at once (``CircuitOpenError``).

Nothing here knows HTTP: the attempt function maps responses to errors.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

from bflsync.config import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MAX_TOTAL_SLEEP_S,
    RETRY_AFTER_CAP_S,
)
from bflsync.errors import ApiError, CircuitOpenError, RunDeadlineError

logger = logging.getLogger("bflsync.bfl.client")
T = TypeVar("T")

_NO_DEADLINE: Final = math.inf


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard one GET tries before its error reaches the caller, and the limits of a whole run."""

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_base_s: float = BACKOFF_BASE_S
    backoff_cap_s: float = BACKOFF_CAP_S
    retry_after_cap_s: float = RETRY_AFTER_CAP_S
    # Bounds a request's total waiting even when the server keeps asking for long Retry-After pauses.
    max_total_sleep_s: float = DEFAULT_MAX_TOTAL_SLEEP_S
    # Seconds from the retrier's creation after which no request starts or waits; None: no deadline.
    max_duration_s: float | None = None
    # Requests in a row that failed after their retries before every request fails at once; 0: never.
    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """Full jitter: a burst of failed requests spreads over the window instead of retrying in lockstep."""
        return rng.uniform(0.0, min(self.backoff_cap_s, self.backoff_base_s * 2 ** (retry - 1)))


@dataclass(frozen=True, kw_only=True)
class AttemptFailed:
    """One attempt's failure: the error to raise if it is the last, and what the server asked for."""

    error: ApiError
    retryable: bool
    retry_after_s: float | None = None
    rate_limited: bool = False


Attempt = Callable[[int, float], Awaitable[T | AttemptFailed]]
"""Makes attempt number n (1-based) within the given seconds; returns the result or the failure."""


class Retrier:
    """Applies a ``RetryPolicy`` to every request of one client; its state spans the whole run."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        concurrency: int,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """``clock`` is wall time (Retry-After may be an HTTP date); the deadline runs on ``monotonic``."""
        self.policy = policy
        self._sleep = sleep
        self._clock = clock
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._paused_until = 0.0
        self._deadline = (
            _NO_DEADLINE if policy.max_duration_s is None else monotonic() + policy.max_duration_s
        )
        self._failures_in_a_row = 0
        self._open_because: str | None = None

    def now(self) -> float:
        """Wall time, for Retry-After dates."""
        return self._clock()

    async def call(self, attempt: Attempt[T], *, where: str, timeout_s: float) -> T:
        """``attempt`` until it succeeds, fails for good, or a limit of the run is reached."""
        policy = self.policy
        slept = 0.0
        number = 0
        while True:
            number += 1
            async with self._semaphore:
                await self._wait_for_pause(where, number)
                self._check_open(where, number)
                left = self._time_left(where, number)
                outcome = await attempt(number, min(timeout_s, left))
            if not isinstance(outcome, AttemptFailed):
                self._failures_in_a_row = 0
                return outcome
            if not outcome.retryable:
                raise outcome.error  # an answer, even at the deadline: the next request stops the run
            if self._monotonic() >= self._deadline:
                raise self._deadline_error(where, number, outcome.error)
            if outcome.retry_after_s is None:
                delay = policy.backoff_s(number, self._rng)
            else:
                delay = min(outcome.retry_after_s, policy.retry_after_cap_s)
            if outcome.rate_limited:
                self._pause_all(delay)
            if number > policy.max_retries or slept + delay > policy.max_total_sleep_s:
                self._count_failure(outcome.error)
                raise outcome.error
            if self._monotonic() + delay >= self._deadline:
                # Waiting would only hold the lock longer: the retry could not start in time.
                raise self._deadline_error(where, number, outcome.error)
            logger.info("GET %s: retry %d of %d in %.2f s", where, number, policy.max_retries, delay)
            slept += delay
            # After a 429 the shared pause, waited for before the next attempt, is this request's wait too.
            if not outcome.rate_limited:
                await self._sleep(delay)

    def _pause_all(self, delay: float) -> None:
        """The server says too many requests are in flight: every request of this client holds off."""
        until = self._clock() + delay
        if until > self._paused_until:
            self._paused_until = until
            logger.info("rate limited (429): pausing all requests for %.2f s", delay)

    async def _wait_for_pause(self, where: str, number: int) -> None:
        while (remaining := self._paused_until - self._clock()) > 0:
            if self._monotonic() + remaining >= self._deadline:
                raise self._deadline_error(where, number, None)
            await self._sleep(remaining)

    def _time_left(self, where: str, number: int) -> float:
        left = self._deadline - self._monotonic()
        if left <= 0:
            raise self._deadline_error(where, number, None)
        return left

    def _check_open(self, where: str, number: int) -> None:
        if self._open_because is not None:
            raise CircuitOpenError(
                f"not sent: {self._open_because}", method="GET", path=where, attempts=number - 1
            )

    def _count_failure(self, error: ApiError) -> None:
        """One more request failed after its retries; enough in a row and the circuit opens."""
        self._failures_in_a_row += 1
        limit = self.policy.max_consecutive_failures
        if limit and self._failures_in_a_row >= limit and self._open_because is None:
            self._open_because = f"{limit} requests in a row failed after their retries"
            # The last error's text names the request already.
            raise CircuitOpenError(
                f"stopping: {self._open_because}, the last with: {error}", attempts=error.attempts
            )

    def _deadline_error(self, where: str, number: int, last: ApiError | None) -> RunDeadlineError:
        limit = self.policy.max_duration_s
        message = f"the run reached its time limit (--max-duration {limit:g} s)"
        if last is not None:
            return RunDeadlineError(f"{message}; the last attempt: {last}", attempts=number)
        return RunDeadlineError(message, method="GET", path=where, attempts=number)
