"""Healthcheck pings of ``sync --ping-url``: ``URL/start`` when a run starts, ``URL/<exit code>`` when it ends.

The protocol of healthchecks.io (and of its self-hosted clones and compatible services): a
``/start`` ping opens a run, ``/0`` closes it as a success and any other number as a failure,
and the request body is kept as the run's log, here the run's JSON summary. A ping is advice:
whatever happens to it, the run's outcome and exit code stay the same, and a ping that fails
after its retries is one warning line. The ping URL usually holds the check's secret (a UUID or
ping key), so a warning names only its host.

httpx's timeouts are per phase (connect, each read), so a server that trickles its answer a byte
at a time would hold a run for as long as it likes. Each attempt therefore has a deadline for the
whole exchange: when it passes, a timer shuts the attempt's socket down, which ends any read in
progress. Only the status line and headers are read, never the body (the status is the answer),
and no connection is kept for a second ping, so every attempt opens (and times) its own.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import httpx

from bflsync.bfl.net import is_loopback_host
from bflsync.errors import InputError

PING_TIMEOUT_S: Final = 5.0
"""The deadline of one attempt, from connecting to the last header of the answer."""
PING_RETRIES: Final = 2
RETRY_BACKOFF_S: Final = 0.5
START: Final = "start"
# A DNS name (letters, digits, hyphens, underscores, dots) or an IP literal, as httpx hands it over.
_HOST = re.compile(r"[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]")


class _DeadlinePassed(Exception):
    """An attempt was cut off at its deadline."""


def validate_ping_url(url: str, *, option: str = "--ping-url") -> str:
    """``url`` without a trailing slash, if a ping may go there: ``https://``, or ``http://`` on loopback."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        if "Port" in str(exc):
            raise InputError(f"{option}: the port must be a number from 1 to 65535") from None
        raise InputError(f"{option}: not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{option}: expected https://host/path (a healthchecks.io-style ping URL)")
    if port == 0:
        raise InputError(f"{option}: the port must be a number from 1 to 65535")
    _check_host(parts.hostname, option=option)
    if parts.username is not None or parts.password is not None:
        raise InputError(f"{option}: the URL must not contain credentials")
    if parts.fragment:
        raise InputError(f"{option}: the URL must not have a #fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise InputError(
            f"{option}: refusing plain http:// to {parts.hostname}: use https:// (http only on loopback)"
        )
    return urlunsplit(parts._replace(path=parts.path.rstrip("/")))


def _check_host(hostname: str, *, option: str) -> None:
    """Refuse a host httpx (through idna) would reject at the first ping, after the run had started."""
    try:
        parsed = httpx.URL(f"https://{hostname if ':' not in hostname else f'[{hostname}]'}/")
        # .host decodes an xn-- label, as building a request does: a bad one raises here, not mid-run.
        raw_host = parsed.raw_host if parsed.host else b""
    except (httpx.InvalidURL, UnicodeError):
        raw_host = b""
    if not _HOST.fullmatch(raw_host.decode("ascii", "replace")):
        raise InputError(f"{option}: {hostname!a} is not a valid host name")


def ping_url(base: str, suffix: str) -> str:
    """``base`` with ``/suffix`` appended to its path; a query string (``?create=1``) stays at the end."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"{parts.path}/{suffix}"))


class Pinger:
    """Sends the pings of one run; ``transport`` lets tests and callers choose how requests travel."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = PING_TIMEOUT_S,
        retries: int = PING_RETRIES,
        backoff_s: float = RETRY_BACKOFF_S,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = validate_ping_url(url)
        self._retries = retries
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._deadline_s = timeout_s
        self._transport = transport
        self._client: httpx.Client | None = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _http(self) -> httpx.Client:
        """The client, made at the first ping: a Pinger that never pings (a dry run) opens nothing."""
        if self._client is None:
            self._client = httpx.Client(
                timeout=self._deadline_s,
                limits=httpx.Limits(max_keepalive_connections=0),
                transport=self._transport,
                trust_env=not is_loopback_host(urlsplit(self.url).hostname or ""),
                follow_redirects=False,
                headers={"User-Agent": "bflsync"},
            )
        return self._client

    def ping(self, suffix: str, body: bytes = b"") -> str | None:
        """POST ``body`` to ``URL/suffix``; None when it was taken, else why not (for one warning line)."""
        target = ping_url(self.url, suffix)
        where = urlsplit(self.url).hostname
        problem = ""
        for attempt in range(self._retries + 1):
            if attempt:
                self._sleep(self._backoff_s * attempt)
            try:
                status = self._attempt(target, body)
            except (_DeadlinePassed, httpx.TimeoutException):
                problem = f"no answer within {self._deadline_s:g} s"
                continue
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
                continue
            if 200 <= status < 300:
                return None
            problem = f"HTTP {status}"
            if status < 500 and status != 429:
                break  # the service will not take this ping, however often it is sent
        return f"healthcheck ping /{suffix} to {where} failed ({problem}); the run's outcome is unchanged"

    def _attempt(self, target: str, body: bytes) -> int:
        """POST once and return the answer's status, cut off at the deadline; the body is never read."""
        guard = _Deadline()
        timer = threading.Timer(self._deadline_s, guard.expire)
        timer.daemon = True
        timer.start()
        try:
            with self._http().stream(
                "POST",
                target,
                content=body,
                headers={"Content-Type": "application/json"} if body else {},
                extensions={"trace": guard.trace},
            ) as response:
                return response.status_code
        except httpx.HTTPError:
            if guard.expired:
                raise _DeadlinePassed from None
            raise
        finally:
            timer.cancel()


class _Deadline:
    """The sockets of one attempt, shut down (so a blocked read returns) when its deadline passes."""

    def __init__(self) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: note the socket once connected (and once TLS wraps it)."""
        if event not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        sock = info["return_value"].get_extra_info("socket")
        if sock is None:
            return
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:  # connected just as the deadline passed
            _shut(sock)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed, or detached when TLS wrapped it
        sock.shutdown(socket.SHUT_RDWR)
