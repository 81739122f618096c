"""The BFL finetune API over httpx: auth, regions, timeouts, retries and typed errors.

Only idempotent GETs live here, so every transient failure (429, 500/502/503/504, connect errors,
timeouts, dropped connections) is retried; everything else becomes one error from
``bflsync.errors`` that a user can act on. The key lives in a ``Secret`` and reaches nothing but
the ``x-key`` header: not logs, not error messages, not reprs.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit

import httpx

from bflsync import __version__
from bflsync.config import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_MAX_RETRIES,
    DEFAULT_READ_TIMEOUT_S,
    DEFAULT_REGION,
    REGION_URLS,
    RETRY_AFTER_CAP_S,
    ApiSettings,
    Secret,
)
from bflsync.errors import (
    ApiError,
    ApiTimeoutError,
    AuthError,
    BadResponseError,
    CreditsError,
    InputError,
    InvalidRequestError,
    MissingApiKeyError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from bflsync.net import is_loopback_host

logger = logging.getLogger("bflsync.api")

LIST_PATH: Final = "/v1/my_finetunes"
DETAILS_PATH: Final = "/v1/finetune_details"
DEFAULT_MAX_TOTAL_SLEEP_S: Final = 120.0
RETRYABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
# Failures after which the server cannot have acted on a GET, or acting twice is harmless.
_RETRYABLE_TRANSPORT: Final = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_REQUEST_ID_HEADERS: Final = ("x-request-id", "cf-ray")
_DETAIL_MAX_CHARS: Final = 300
_HTML_TITLE = re.compile(rb"<title>\s*(.*?)\s*</title>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How hard one GET tries before its error reaches the caller."""

    max_retries: int = DEFAULT_MAX_RETRIES
    backoff_base_s: float = BACKOFF_BASE_S
    backoff_cap_s: float = BACKOFF_CAP_S
    retry_after_cap_s: float = RETRY_AFTER_CAP_S
    # Bounds a request's total waiting even when the server keeps asking for long Retry-After pauses.
    max_total_sleep_s: float = DEFAULT_MAX_TOTAL_SLEEP_S

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """Full jitter: a burst of failed requests spreads over the window instead of retrying in lockstep."""
        return rng.uniform(0.0, min(self.backoff_cap_s, self.backoff_base_s * 2 ** (retry - 1)))


def resolve_base_url(*, region: str | None, base_url: str | None) -> str:
    """The URL to talk to: an explicit base URL wins over the region (us1 unless told otherwise)."""
    if base_url:
        return validate_base_url(base_url)
    name = (region or DEFAULT_REGION).strip().lower()
    if name not in REGION_URLS:
        raise InputError(f"unknown region {region!r}: expected one of {', '.join(sorted(REGION_URLS))}")
    return REGION_URLS[name]


def validate_base_url(base_url: str) -> str:
    """Refuse URLs that would send the key in clear text (plain http off loopback) or that cannot work."""
    url = base_url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"invalid base URL {base_url!r}: expected https://host[:port][/prefix]")
    if parts.username is not None or parts.password is not None:
        raise InputError("invalid base URL: it must not contain credentials")
    if parts.query or parts.fragment:
        raise InputError(f"invalid base URL {base_url!r}: no query or fragment allowed")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise InputError(
            f"refusing plain http:// to {parts.hostname}: the API key would travel in clear text "
            "(use https://; http is allowed only on loopback)"
        )
    source_of(url)
    return url


def source_of(base_url: str) -> str:
    """Where finetunes come from: the host, its port unless the scheme's default, its path prefix if any.

    ``https://api.us1.bfl.ai`` -> ``api.us1.bfl.ai``, ``http://127.0.0.1:8123`` -> ``127.0.0.1:8123``,
    ``https://gw.example.com/us1/`` -> ``gw.example.com/us1``: two regions behind one gateway are
    two sources. Spellings of one URL agree (host case, default port, trailing slashes).
    """
    parts = urlsplit(base_url.strip())
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"invalid port in base URL {base_url!r}") from None
    host = parts.hostname
    if not host:
        raise InputError(f"invalid base URL {base_url!r}: no host")
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{port}"
    prefix = parts.path.strip("/")
    return f"{host}/{prefix}" if prefix else host


def load_api_key(*, env_value: str | None, key_file: Path | None) -> Secret:
    """The key from --api-key-file, else BFL_API_KEY: an explicit flag is this run's deliberate choice."""
    if key_file is not None:
        try:
            value = key_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(f"cannot read API key file {key_file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise InputError(f"API key file {key_file} is not UTF-8 text") from None
        if not value:
            raise MissingApiKeyError(
                f"API key file {key_file} is empty (put the key in it or set BFL_API_KEY)"
            )
        origin = f"file {key_file}"
    else:
        value = (env_value or "").strip()
        if not value:
            raise MissingApiKeyError("no API key: set BFL_API_KEY or pass --api-key-file PATH")
        origin = "BFL_API_KEY"
    _check_key(value, origin)
    return Secret(value)


def _check_key(value: str, origin: str) -> None:
    # httpx/h11 quote an illegal header value in their exception message: refuse it first.
    if not value or not all(0x21 <= ord(c) <= 0x7E for c in value):
        raise InputError(
            f"the API key from {origin} is empty or contains characters not allowed in an HTTP header "
            "(whitespace, control or non-ASCII characters)"
        )


@dataclass(frozen=True)
class _Answer:
    body: dict[str, Any]
    path: str
    request_id: str | None
    attempts: int


class BflClient:
    """Async client for the finetune endpoints; build one per command and close it (``async with``)."""

    def __init__(
        self,
        *,
        api_key: Secret,
        base_url: str = DEFAULT_BASE_URL,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        concurrency: int = DEFAULT_CONCURRENCY,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        """``clock`` is wall time (epoch seconds) because Retry-After may be an HTTP date."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        _check_key(api_key.reveal(), "the caller")
        self.base_url = validate_base_url(base_url)
        self.source = source_of(self.base_url)
        self._key = api_key
        self._retry = retry or RetryPolicy()
        self._read_timeout_s = read_timeout_s
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._semaphore = asyncio.Semaphore(concurrency)
        self._paused_until = 0.0
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                "x-key": api_key.reveal(),
                "user-agent": f"bflsync/{__version__}",
                "accept": "application/json",
            },
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            transport=transport,
            # A proxy from the environment must never carry a plain-http loopback request, and the key, away.
            trust_env=not is_loopback_host(urlsplit(self.base_url).hostname or ""),
        )

    @classmethod
    def from_settings(
        cls, settings: ApiSettings, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> Self:
        """The client a command builds from its resolved settings."""
        return cls(
            api_key=settings.api_key,
            base_url=settings.base_url,
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            concurrency=settings.concurrency,
            retry=RetryPolicy(max_retries=settings.max_retries),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"BflClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def list_finetunes(self) -> list[str]:
        """Every finetune id of the account, in the API's order, duplicates dropped."""
        answer = await self._get(LIST_PATH, params=None, subject="the finetune list")
        items = answer.body.get("finetunes")
        if not isinstance(items, list):
            raise self._bad(answer, f"expected a 'finetunes' list, got {_json_type(items)}")
        ids: list[str] = []
        for item in items:
            finetune_id = _listed_id(item)
            if finetune_id is None or not _is_utf8_text(finetune_id):
                raise self._bad(answer, f"unexpected item in 'finetunes': {_json_text(item)}")
            ids.append(finetune_id)
        return list(dict.fromkeys(ids))

    async def get_details(self, finetune_id: str) -> dict[str, Any]:
        """The ``finetune_details`` object exactly as parsed; a null or absent one means not found."""
        subject = f"finetune {finetune_id!r}"
        answer = await self._get(DETAILS_PATH, params={"finetune_id": finetune_id}, subject=subject)
        details = answer.body.get("finetune_details")
        if details is None:
            raise NotFoundError(
                f"{subject} not found (answer without finetune_details)",
                status=200,
                method="GET",
                path=answer.path,
                request_id=answer.request_id,
                attempts=answer.attempts,
            )
        if not isinstance(details, dict):
            raise self._bad(answer, f"finetune_details is {_json_type(details)}, not an object")
        if not _is_utf8_text(details):
            raise self._bad(
                answer, "finetune_details holds a string that is not valid Unicode (a lone surrogate)"
            )
        return details

    async def _get(self, path: str, *, params: dict[str, str] | None, subject: str) -> _Answer:
        request = self._http.build_request("GET", path, params=params)
        where = request.url.raw_path.decode("ascii")
        policy = self._retry
        slept = 0.0
        attempt = 0
        while True:
            attempt += 1
            async with self._semaphore:
                await self._wait_for_pause()
                started = time.perf_counter()
                try:
                    response = await self._http.send(request)
                except httpx.RequestError as exc:
                    elapsed_ms = (time.perf_counter() - started) * 1000
                    logger.info(
                        "GET %s -> %s (attempt %d, %.0f ms)", where, type(exc).__name__, attempt, elapsed_ms
                    )
                    error: ApiError = self._transport_error(exc, where, attempt)
                    retryable = isinstance(exc, _RETRYABLE_TRANSPORT)
                    status = None
                    delay = policy.backoff_s(attempt, self._rng)
                else:
                    elapsed_ms = (time.perf_counter() - started) * 1000
                    status = response.status_code
                    logger.info("GET %s -> %d (attempt %d, %.0f ms)", where, status, attempt, elapsed_ms)
                    if response.is_success:
                        return self._parse(response, where, attempt)
                    error = self._status_error(response, where, attempt, subject)
                    retryable = status in RETRYABLE_STATUSES
                    retry_after = _retry_after_s(response.headers.get("retry-after"), now=self._clock())
                    if retry_after is None:
                        delay = policy.backoff_s(attempt, self._rng)
                    else:
                        delay = min(retry_after, policy.retry_after_cap_s)
                    if status == 429:
                        self._pause_all(delay)
            if not retryable or attempt > policy.max_retries or slept + delay > policy.max_total_sleep_s:
                raise error
            logger.info("GET %s: retry %d of %d in %.2f s", where, attempt, policy.max_retries, delay)
            slept += delay
            # After a 429 the shared pause, waited for at the top of the loop, is this request's wait too.
            if status != 429:
                await self._sleep(delay)

    def _pause_all(self, delay: float) -> None:
        """The server says too many requests are in flight: every request of this client holds off."""
        until = self._clock() + delay
        if until > self._paused_until:
            self._paused_until = until
            logger.info("rate limited (429): pausing all requests for %.2f s", delay)

    async def _wait_for_pause(self) -> None:
        while (remaining := self._paused_until - self._clock()) > 0:
            await self._sleep(remaining)

    def _parse(self, response: httpx.Response, where: str, attempt: int) -> _Answer:
        answer = _Answer({}, where, self._request_id(response), attempt)
        try:
            body = _loads(response.content)
        except ValueError:
            raise self._bad(
                answer, "the response body is not valid JSON", status=response.status_code
            ) from None
        if not isinstance(body, dict):
            raise self._bad(
                answer, f"expected a JSON object, got {_json_type(body)}", status=response.status_code
            )
        return _Answer(body, where, answer.request_id, attempt)

    def _bad(self, answer: _Answer, message: str, *, status: int = 200) -> BadResponseError:
        return BadResponseError(
            _truncate(self._scrub(message)),
            status=status,
            method="GET",
            path=answer.path,
            request_id=answer.request_id,
            attempts=answer.attempts,
        )

    def _status_error(self, response: httpx.Response, where: str, attempt: int, subject: str) -> ApiError:
        status = response.status_code
        detail, shape = _detail_of(response)
        common: dict[str, Any] = {
            "status": status,
            "method": "GET",
            "path": where,
            "detail": _truncate(self._scrub(detail)) if detail else None,
            "request_id": self._request_id(response),
            "attempts": attempt,
        }
        if status in (401, 403):
            return AuthError("the BFL API refused the API key", **common)
        if status == 402:
            return CreditsError("the BFL account is out of credits", **common)
        if status == 404 or (status == 422 and shape == "string"):
            return NotFoundError(f"{subject} not found", **common)
        if status in (400, 422):
            return InvalidRequestError(f"the BFL API rejected the request for {subject}", **common)
        if status == 429:
            return RateLimitedError(f"rate limited by the BFL API after {attempt} attempt(s)", **common)
        if status >= 500:
            return ServerError(f"the BFL API failed after {attempt} attempt(s)", **common)
        return ApiError(f"unexpected HTTP status {status} for {subject}", **common)

    def _transport_error(self, exc: httpx.RequestError, where: str, attempt: int) -> ApiError:
        common: dict[str, Any] = {"method": "GET", "path": where, "attempts": attempt}
        if isinstance(exc, httpx.ConnectTimeout):
            return ApiTimeoutError(f"could not connect to {self.source} in time", **common)
        if isinstance(exc, httpx.TimeoutException):
            return ApiTimeoutError(
                f"no answer from {self.source} within {self._read_timeout_s:g} s", **common
            )
        reason = self._scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if isinstance(exc, httpx.DecodingError):
            # The server's Content-Encoding does not match its body: asking again will not help.
            return BadResponseError(f"cannot decode the answer from {self.source} ({reason})", **common)
        return TransportError(f"cannot talk to {self.source} ({reason})", **common)

    def _scrub(self, text: str) -> str:
        """A server or library may echo request headers back; the key must not travel on in our errors.

        Both spellings go: the key as sent, and as it reads inside a JSON string.
        """
        key = self._key.reveal()
        return text.replace(key, "***").replace(json.dumps(key)[1:-1], "***")

    def _request_id(self, response: httpx.Response) -> str | None:
        request_id = _request_id(response)
        return self._scrub(request_id) if request_id else None


def _listed_id(item: Any) -> str | None:
    if isinstance(item, dict):
        item = item.get("finetune_id") or item.get("id")
    return item if isinstance(item, str) and item else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} does not fit a double")
    return value


def _loads(content: bytes) -> Any:
    """Strict JSON: NaN, Infinity and numbers like 1e400 would be stored as text no JSON reader accepts."""
    try:
        return json.loads(content, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _is_utf8_text(value: Any) -> bool:
    """False when a string holds a lone surrogate (a JSON ``\\ud83d`` escape cut mid-emoji), which UTF-8 cannot carry."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _retry_after_s(value: str | None, *, now: float) -> float | None:
    """Seconds to wait per a Retry-After header (delta-seconds or HTTP date); None when absent or unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _request_id(response: httpx.Response) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        value: str | None = response.headers.get(name)
        if value:
            return value
    return None


def _detail_of(response: httpx.Response) -> tuple[str | None, str]:
    """BFL's ``detail`` as text, and its shape: "string", "validation" (FastAPI list) or "other".

    Not truncated here: the caller scrubs the key out first, so no cut can leave a prefix of it.
    """
    content = response.content
    try:
        body = _loads(content)
    except ValueError:
        if not content:
            return None, "other"
        title = _HTML_TITLE.search(content)
        if title:
            return f"non-JSON body: {title.group(1).decode('utf-8', 'replace')}", "other"
        content_type = response.headers.get("content-type", "unknown type").split(";")[0]
        return f"non-JSON body ({content_type}, {len(content)} bytes)", "other"
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str):
        return detail, "string"
    if isinstance(detail, list):
        return "; ".join(_render_validation_item(item) for item in detail), "validation"
    if detail is None:
        return None, "other"
    return _json_text(detail), "other"


def _render_validation_item(item: Any) -> str:
    if isinstance(item, dict) and "msg" in item:
        loc = item.get("loc")
        where = ".".join(str(part) for part in loc) if isinstance(loc, list) else ""
        return f"{where}: {item['msg']}" if where else str(item["msg"])
    return _json_text(item)


def _truncate(text: str) -> str:
    return text if len(text) <= _DETAIL_MAX_CHARS else text[: _DETAIL_MAX_CHARS - 1] + "…"


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number"
