"""Healthcheck pings of ``sync --ping-url``: ``URL/start`` when a run starts, ``URL/<exit code>`` when it ends.

The protocol of healthchecks.io (and of its self-hosted clones and compatible services): a
``/start`` ping opens a run, ``/0`` closes it as a success and any other number as a failure,
and the request body is kept as the run's log, here the run's JSON summary. A ping is advice:
whatever happens to it, the run's outcome and exit code stay the same, and a ping that fails
after its retries is one warning line. The ping URL usually holds the check's secret (a UUID or
ping key), so a warning names only its host.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import httpx

from bflsync.bfl.net import is_loopback_host
from bflsync.errors import InputError

PING_TIMEOUT_S: Final = 5.0
PING_RETRIES: Final = 2
RETRY_BACKOFF_S: Final = 0.5
START: Final = "start"


def validate_ping_url(url: str, *, option: str = "--ping-url") -> str:
    """``url`` without a trailing slash, if a ping may go there: ``https://``, or ``http://`` on loopback."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{option}: expected https://host/path (a healthchecks.io-style ping URL)")
    if parts.username is not None or parts.password is not None:
        raise InputError(f"{option}: the URL must not contain credentials")
    if parts.fragment:
        raise InputError(f"{option}: the URL must not have a #fragment")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise InputError(
            f"{option}: refusing plain http:// to {parts.hostname}: use https:// (http only on loopback)"
        )
    return urlunsplit(parts._replace(path=parts.path.rstrip("/")))


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
        self._timeout_s = timeout_s
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
                timeout=self._timeout_s,
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
                response = self._http().post(
                    target, content=body, headers={"Content-Type": "application/json"} if body else {}
                )
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
                continue
            if response.is_success:
                return None
            problem = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                break  # the service will not take this ping, however often it is sent
        return f"healthcheck ping /{suffix} to {where} failed ({problem}); the run's outcome is unchanged"
