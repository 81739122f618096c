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

from bflsync.bfl.body import ACCEPT_ENCODING, BodyDecodeError, BodyTooLargeError, read_capped
from bflsync.bfl.endpoints import CREDITS_PATH, DETAILS_PATH, LIST_PATH, RESULT_PATH, TASK_NOT_FOUND
from bflsync.bfl.key_forms import Scrubber
from bflsync.bfl.net import is_loopback_host
from bflsync.bfl.retry import AttemptFailed, Retrier, RetryPolicy
from bflsync.bfl.server_text import printable, truncate
from bflsync.config import (
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_READ_TIMEOUT_S,
    DEFAULT_REGION,
    MAX_ANSWER_BYTES,
    MAX_API_KEY_CHARS,
    MAX_LISTING_BYTES,
    REGION_URLS,
    ApiSettings,
    Secret,
)
from bflsync.errors import (
    ApiError,
    ApiTimeoutError,
    AuthError,
    BadResponseError,
    ConnectionFailedError,
    CreditsError,
    InputError,
    InvalidRequestError,
    MissingApiKeyError,
    NotFoundError,
    ProxyConfigError,
    RateLimitedError,
    ResponseTooLargeError,
    ServerError,
    UpstreamGoneError,
)
from bflsync.version import __version__

__all__ = [
    "PROXY_ENV_VARS",
    "BflClient",
    "RetryPolicy",
    "check_proxy",
    "load_api_key",
    "resolve_base_url",
    "source_of",
    "validate_base_url",
]

logger = logging.getLogger("bflsync.bfl.client")

RETRYABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
# Failures after which the server cannot have acted on a GET, or acting twice is harmless.
_RETRYABLE_TRANSPORT: Final = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_REQUEST_ID_HEADERS: Final = ("x-request-id", "cf-ray")
_HTML_TITLE = re.compile(rb"<title>\s*(.*?)\s*</title>", re.IGNORECASE | re.DOTALL)


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
    _refuse_folded_host(url)
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


def _refuse_folded_host(url: str) -> None:
    """Refuse a host that IDNA's NFKC step would turn into other characters (U+FF0F into ``/``).

    What the user typed would not be the server the key goes to, and Python's URL parser
    raises a bare ValueError for some of them.
    """
    import unicodedata

    netloc = re.split(r"[/?#]", url.partition("://")[2], maxsplit=1)[0]
    if unicodedata.normalize("NFKC", netloc) != netloc:
        raise InputError(
            f"invalid host in base URL {printable(url)!r}: it holds characters that IDNA would fold into "
            "others (full-width or compatibility forms); type the host as plain letters"
        )


def source_of(base_url: str) -> str:
    """Where finetunes come from: the host, its port unless the scheme's default, its path prefix if any.

    ``https://api.us1.bfl.ai`` -> ``api.us1.bfl.ai``, ``http://127.0.0.1:8123`` -> ``127.0.0.1:8123``,
    ``https://gw.example.com/us1/`` -> ``gw.example.com/us1``: two regions behind one gateway are
    two sources. Spellings of one server agree, because the source is half of every finetune's
    identity and a second spelling would start a second, empty history: host case, a trailing dot
    on the host, a Unicode host and its ``xn--`` form (as httpx connects to it), the default port,
    trailing slashes and percent-escapes of unreserved characters in the prefix.
    """
    _refuse_folded_host(base_url.strip())
    parts = urlsplit(base_url.strip())
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"invalid port in base URL {printable(base_url)!r}") from None
    try:
        url = httpx.URL(base_url.strip())
        url.host  # noqa: B018 - decoding the host is how httpx refuses a malformed xn-- label
        host = url.raw_host.decode("ascii").lower().rstrip(".")
    except (httpx.InvalidURL, UnicodeError):  # idna's errors are UnicodeErrors
        host = "?"
    if not host:
        raise InputError(f"invalid base URL {printable(base_url)!r}: no host")
    if not _HOST_NAME.fullmatch(host) and ":" not in host:
        raise InputError(f"invalid host in base URL {printable(base_url)!r}")
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{port}"
    prefix = _PERCENT_ESCAPE.sub(_normal_escape, parts.path).strip("/")
    return f"{host}/{prefix}" if prefix else host


_HOST_NAME: Final = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_PERCENT_ESCAPE: Final = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _normal_escape(match: re.Match[str]) -> str:
    """RFC 3986 6.2.2: an escaped unreserved character is that character; other escapes in upper case."""
    character = chr(int(match.group(1), 16))
    return character if character in _UNRESERVED else match.group(0).upper()


def load_api_key(*, env_value: str | None, key_file: Path | None) -> Secret:
    """The key from --api-key-file, else BFL_API_KEY: an explicit flag is this run's deliberate choice."""
    if key_file is not None:
        try:
            value = _read_key_file(key_file).decode("utf-8").strip()
        except _KeyFileTooLongError:
            raise InputError(_too_long(f"file {key_file}")) from None
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


PROXY_ENV_VARS: Final = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
"""The variables httpx reads a proxy from when it trusts the environment."""


def check_proxy(name: str, value: str) -> None:
    """Refuse a proxy URL the client could not use (a SOCKS proxy without socksio, a broken URL)."""
    url = value if "://" in value else f"http://{value}"  # as httpx reads a bare host:port
    try:
        httpx.AsyncHTTPTransport(proxy=url)
    except (ImportError, ValueError, httpx.InvalidURL) as exc:
        raise ProxyConfigError(
            f"{name} is set to a proxy bflsync cannot use: {printable(str(exc))}"
        ) from None


class _KeyFileTooLongError(Exception):
    """The key file holds more bytes than any key (UTF-8, surrounding whitespace included) could."""


def _read_key_file(key_file: Path) -> bytes:
    """The file's bytes, read no further than a key could reach: a wrong file (/dev/zero) is never read whole.

    A plain bounded read, so a pipe (``--api-key-file <(pass show bfl)``) works as a file does.
    """
    most = 4 * MAX_API_KEY_CHARS + 2  # every character in four UTF-8 bytes, and a CRLF
    with key_file.open("rb") as stream:
        content = stream.read(most + 1)
    if len(content) > most:
        raise _KeyFileTooLongError
    return content


def _too_long(origin: str) -> str:
    return f"the API key from {origin} is longer than {MAX_API_KEY_CHARS:,} characters: is it the key?"


def _check_key(value: str, origin: str) -> None:
    if len(value) > MAX_API_KEY_CHARS:
        raise InputError(_too_long(origin))
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
    """Async client for the finetune endpoints; build one per command and close it (``async with``).

    Every endpoint makes its requests through one ``Retrier`` (retries, pauses, the run's deadline
    and circuit breaker); this class only shapes requests and maps answers to results or errors.
    """

    def __init__(
        self,
        *,
        api_key: Secret,
        base_url: str = DEFAULT_BASE_URL,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
        read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
        concurrency: int = DEFAULT_CONCURRENCY,
        retry: RetryPolicy | None = None,
        max_listing_bytes: int = MAX_LISTING_BYTES,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """``read_timeout_s`` bounds each whole answer (connecting, headers and body), not each read.

        ``clock`` is wall time (epoch seconds) because Retry-After may be an HTTP date.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        _check_key(api_key.reveal(), "the caller")
        self.base_url = validate_base_url(base_url)
        self.source = source_of(self.base_url)
        self._key = api_key
        self._scrub = Scrubber(api_key.reveal())
        self._read_timeout_s = read_timeout_s
        self._max_listing_bytes = max_listing_bytes
        self._max_answer_bytes = max_answer_bytes
        self._retrier = Retrier(
            retry or RetryPolicy(),
            concurrency=concurrency,
            sleep=sleep,
            clock=clock,
            monotonic=monotonic,
            rng=rng,
        )
        trust_env = not is_loopback_host(urlsplit(self.base_url).hostname or "")
        try:
            self._http = httpx.AsyncClient(
                base_url=self.base_url,
                headers={
                    "x-key": api_key.reveal(),
                    "user-agent": f"bflsync/{__version__}",
                    "accept": "application/json",
                    "accept-encoding": ACCEPT_ENCODING,
                },
                timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
                # One kept-alive connection per worker: a sync's GETs never wait for a connection
                # nor open one after the first round. httpx's default keep-alive expiry (5 s) stays.
                limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
                transport=transport,
                # A proxy from the environment must never carry a plain-http loopback request, and the key, away.
                trust_env=trust_env,
            )
        except (ImportError, ValueError, httpx.InvalidURL) as exc:
            raise ProxyConfigError(f"the proxy settings cannot be used: {printable(str(exc))}") from None

    @property
    def api_key(self) -> Secret:
        """The key requests carry (a Secret: it never shows itself), for the store's key fingerprint."""
        return self._key

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
            retry=RetryPolicy(
                max_retries=settings.max_retries,
                max_duration_s=settings.max_duration_s,
                max_consecutive_failures=settings.max_consecutive_failures,
            ),
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
        answer = await self._get(
            LIST_PATH, params=None, subject="the finetune list", max_bytes=self._max_listing_bytes
        )
        items = answer.body.get("finetunes")
        if not isinstance(items, list):
            raise self._not_a_listing(answer, f"expected a 'finetunes' list, got {_json_type(items)}")
        ids: list[str] = []
        for item in items:
            finetune_id = _listed_id(item)
            if finetune_id is None or not _is_utf8_text(finetune_id):
                raise self._bad(answer, f"unexpected item in 'finetunes': {_json_text(item)}")
            if self._scrub(finetune_id) != finetune_id:
                # Ids are printed and stored as they are: one that echoes the key would leak it.
                raise self._bad(answer, "unexpected item in 'finetunes': it holds the API key")
            ids.append(finetune_id)
        return list(dict.fromkeys(ids))

    async def get_details(self, finetune_id: str) -> dict[str, Any]:
        """The ``finetune_details`` object exactly as parsed; a null or absent one means not found."""
        subject = f"finetune {truncate(printable(repr(finetune_id)))}"
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

    async def get_result(self, finetune_id: str) -> dict[str, Any]:
        """BFL's task answer for a finetune (its id doubles as the task id), as parsed.

        A 404 and a ``"status": "Task not found"`` body are answers, not errors: BFL forgets tasks
        after a while. A 404 comes back as ``{"id": finetune_id, "status": "Task not found"}``.
        """
        subject = f"the status of finetune {truncate(printable(repr(finetune_id)))}"
        try:
            answer = await self._get(RESULT_PATH, params={"id": finetune_id}, subject=subject)
        except NotFoundError as exc:
            if exc.status != 404:
                raise
            return {"id": finetune_id, "status": TASK_NOT_FOUND}
        if not _is_utf8_text(answer.body):
            raise self._bad(answer, "the answer holds a string that is not valid Unicode (a lone surrogate)")
        return answer.body

    async def credits(self) -> float:
        """The account's credit balance, ``{"credits": <number>}``."""
        answer = await self._get(CREDITS_PATH, params=None, subject="the credit balance")
        value = answer.body.get("credits")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(answer, f"expected a number in 'credits', got {_json_type(value)}")
        return float(value)

    async def _get(
        self, path: str, *, params: dict[str, str] | None, subject: str, max_bytes: int | None = None
    ) -> _Answer:
        try:
            request = self._http.build_request("GET", path, params=params)
        except httpx.InvalidURL:
            # A listed id (or --id) longer than a URL may be: no request can ask for it.
            raise InvalidRequestError(
                f"{subject}: the id is too long to send in a request URL", method="GET", path=path
            ) from None
        # The path carries the id, which a listing may make as long as it likes: capped where printed.
        where = truncate(request.url.raw_path.decode("ascii"))
        cap = self._max_answer_bytes if max_bytes is None else max_bytes

        async def attempt(number: int, timeout_s: float) -> _Answer | AttemptFailed:
            return await self._attempt(
                request, where=where, subject=subject, cap=cap, number=number, timeout_s=timeout_s
            )

        return await self._retrier.call(attempt, where=where, timeout_s=self._read_timeout_s)

    async def _attempt(
        self, request: httpx.Request, *, where: str, subject: str, cap: int, number: int, timeout_s: float
    ) -> _Answer | AttemptFailed:
        """One GET, answered in full within ``timeout_s`` (a trickling server cannot stretch it)."""
        started = time.perf_counter()
        error: ApiError
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._http.send(request, stream=True)
                try:
                    content: bytes | None = await read_capped(response, cap=cap)
                except BodyTooLargeError:
                    content = None
                finally:
                    await response.aclose()
        except TimeoutError:
            self._log(where, "timeout", number, started)
            error = ApiTimeoutError(
                f"no complete answer from {self.source} within {timeout_s:g} s",
                method="GET",
                path=where,
                attempts=number,
            )
            return AttemptFailed(error=error, retryable=True)
        except httpx.RequestError as exc:
            self._log(where, type(exc).__name__, number, started)
            retryable = isinstance(exc, _RETRYABLE_TRANSPORT)
            return AttemptFailed(error=self._transport_error(exc, where, number), retryable=retryable)
        except BodyDecodeError as exc:
            self._log(where, "undecodable body", number, started)
            error = BadResponseError(
                f"cannot decode the answer from {self.source} ({self._scrub.clean(str(exc))})",
                status=response.status_code,
                method="GET",
                path=where,
                attempts=number,
            )
            return AttemptFailed(error=error, retryable=False)
        status = response.status_code
        self._log(where, str(status), number, started)
        if content is None and response.is_success:
            error = ResponseTooLargeError(
                f"the answer for {subject} is larger than {cap:,} bytes once decompressed",
                status=status,
                method="GET",
                path=where,
                request_id=self._request_id(response),
                attempts=number,
            )
            return AttemptFailed(error=error, retryable=False)
        if response.is_success:
            assert content is not None
            return self._parse(content, response, where, number)
        return AttemptFailed(
            error=self._status_error(response, content, where, number, subject, cap=cap),
            retryable=status in RETRYABLE_STATUSES,
            retry_after_s=_retry_after_s(response.headers.get("retry-after"), now=self._retrier.now()),
            rate_limited=status == 429,
        )

    @staticmethod
    def _log(where: str, outcome: str, number: int, started: float) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info("GET %s -> %s (attempt %d, %.0f ms)", where, outcome, number, elapsed_ms)

    def _parse(self, content: bytes, response: httpx.Response, where: str, attempt: int) -> _Answer:
        answer = _Answer({}, where, self._request_id(response), attempt)
        # A listing that is no listing at all is how a retired endpoint behind a catch-all looks.
        bad = self._not_a_listing if _is_listing(where) else self._bad
        try:
            body = _loads(content)
        except ValueError as exc:
            raise bad(answer, _json_refusal(exc), status=response.status_code) from None
        if not isinstance(body, dict):
            raise bad(answer, f"expected a JSON object, got {_json_type(body)}", status=response.status_code)
        return _Answer(body, where, answer.request_id, attempt)

    def _not_a_listing(self, answer: _Answer, message: str, *, status: int = 200) -> UpstreamGoneError:
        return UpstreamGoneError(
            self._scrub.clean(
                f"the answer is not a finetune listing ({message}): the endpoint looks retired"
            ),
            status=status,
            method="GET",
            path=answer.path,
            request_id=answer.request_id,
            attempts=answer.attempts,
        )

    def _bad(self, answer: _Answer, message: str, *, status: int = 200) -> BadResponseError:
        return BadResponseError(
            self._scrub.clean(message),
            status=status,
            method="GET",
            path=answer.path,
            request_id=answer.request_id,
            attempts=answer.attempts,
        )

    def _status_error(
        self,
        response: httpx.Response,
        content: bytes | None,
        where: str,
        attempt: int,
        subject: str,
        *,
        cap: int,
    ) -> ApiError:
        status = response.status_code
        if content is None:
            detail: str | None = f"a body larger than {cap:,} bytes"
            shape = "other"
        else:
            detail, shape = _detail_of(content, response.headers.get("content-type"))
        common: dict[str, Any] = {
            "status": status,
            "method": "GET",
            "path": where,
            "detail": self._scrub.clean(detail) if detail else None,
            "request_id": self._request_id(response),
            "attempts": attempt,
        }
        if status in (401, 403):
            return AuthError("the BFL API refused the API key", **common)
        if status == 402:
            return CreditsError("the BFL account is out of credits", **common)
        if status == 410 or (status == 404 and _is_listing(where)):
            # A listing has no id that could be missing: a 404 there means the endpoint is.
            return UpstreamGoneError(f"{subject} is gone ({status}): the endpoint looks retired", **common)
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
        reason = self._scrub.clean(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if isinstance(exc, httpx.DecodingError):
            # The server's Content-Encoding does not match its body: asking again will not help.
            return BadResponseError(f"cannot decode the answer from {self.source} ({reason})", **common)
        return ConnectionFailedError(f"cannot talk to {self.source} ({reason})", **common)

    def _request_id(self, response: httpx.Response) -> str | None:
        request_id = _request_id(response)
        return self._scrub.clean(request_id) if request_id else None


def _is_listing(where: str) -> bool:
    """Whether a request path (a gateway's prefix allowed) is the listing's."""
    return where.partition("?")[0].endswith(LIST_PATH)


def _listed_id(item: Any) -> str | None:
    if isinstance(item, dict):
        item = item.get("finetune_id") or item.get("id")
    return item if isinstance(item, str) and item else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    """A double that is the number written: overflow to infinity and underflow to zero are refused."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} does not fit a double")
    if value == 0.0 and _MANTISSA_NOT_ZERO.search(text.partition("e")[0].partition("E")[0]):
        raise ValueError(f"{text} is too small for a double")
    return value


_MANTISSA_NOT_ZERO = re.compile(r"[1-9]")


def _loads(content: bytes) -> Any:
    """Strict JSON: NaN, Infinity and numbers like 1e400 would be stored as text no JSON reader accepts."""
    try:
        return json.loads(content, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise _TooDeepError from None


class _TooDeepError(ValueError):
    """Valid JSON nested deeper than the parser's recursion can follow."""


def _json_refusal(exc: ValueError) -> str:
    """Why a body was refused, in words that do not call valid JSON invalid (one finetune's sync_error)."""
    if isinstance(exc, _TooDeepError):
        return "the response body is JSON nested too deeply to read"
    if isinstance(exc, UnicodeDecodeError):
        return "the response body is not UTF-8"
    if isinstance(exc, json.JSONDecodeError):
        return "the response body is not valid JSON"
    return f"the response body is not JSON bflsync can store ({exc})"


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


def _detail_of(content: bytes, content_type: str | None) -> tuple[str | None, str]:
    """BFL's ``detail`` as text, and its shape: "string", "validation" (FastAPI list) or "other".

    Not truncated here: the caller scrubs the key out first, so no cut can leave a prefix of it.
    """
    try:
        body = _loads(content)
    except ValueError:
        if not content:
            return None, "other"
        title = _HTML_TITLE.search(content)
        if title:
            return f"non-JSON body: {title.group(1).decode('utf-8', 'replace')}", "other"
        media_type = (content_type or "unknown type").split(";")[0]
        return f"non-JSON body ({media_type}, {len(content)} bytes)", "other"
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
