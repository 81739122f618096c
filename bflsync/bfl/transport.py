"""An httpx transport with a lean HTTP/1.1 keep-alive pool, for the many small GETs of a sync.

httpcore's pool re-examines every connection it holds on each request, twice, and the check of an
idle connection polls its socket through anyio: at concurrency 16 that was a sixth of the client's
CPU. Here an idle connection is checked once, when it is taken for a request, and handed back when
its response is closed. Connections are httpcore's own, so HTTP handling, TLS and timeouts are
exactly httpx's; httpcore's errors are mapped to httpx's as httpx's own transport maps them.
Proxies are not handled here: httpx mounts its own transports for proxies from the environment.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Final

import httpcore
import httpx

DEFAULT_KEEPALIVE_EXPIRY_S: Final = 5.0

_ERRORS: Final[dict[type[Exception], type[httpx.TransportError]]] = {
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
}


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """httpcore's exceptions as the httpx ones callers catch (the most specific match)."""
    try:
        yield
    except Exception as exc:
        for kind in type(exc).__mro__:
            mapped = _ERRORS.get(kind)
            if mapped is not None:
                raise mapped(str(exc)) from exc
        raise


class PooledTransport(httpx.AsyncBaseTransport):
    """At most ``max_connections`` HTTP/1.1 connections, kept alive and reused last-in first-out."""

    def __init__(
        self,
        *,
        max_connections: int,
        keepalive_expiry_s: float = DEFAULT_KEEPALIVE_EXPIRY_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[tuple[bytes, bytes, int], list[httpcore.AsyncHTTPConnection]] = {}
        self._keepalive_expiry_s = keepalive_expiry_s
        self._ssl_context = ssl_context or httpx.create_ssl_context()
        self._backend = httpcore.AnyIOBackend()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = httpcore.Origin(
            url.raw_scheme, url.raw_host, url.port or (443 if url.scheme == "https" else 80)
        )
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        await self._slots.acquire()
        try:
            connection = await self._take(origin)
        except BaseException:
            self._slots.release()
            raise
        try:
            with _httpx_errors():
                response = await connection.handle_async_request(core_request)
        except BaseException:
            self._slots.release()
            await connection.aclose()
            raise
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(self, origin, connection, response),
            extensions=response.extensions,
        )

    async def _take(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        idle = self._idle.get(_key(origin))
        while idle:
            connection = idle.pop()
            # The one health check: an idle socket that is readable means the server hung up.
            if connection.is_available() and not connection.has_expired():
                return connection
            await connection.aclose()
        return httpcore.AsyncHTTPConnection(
            origin,
            ssl_context=self._ssl_context,
            keepalive_expiry=self._keepalive_expiry_s,
            network_backend=self._backend,
        )

    def _give_back(self, origin: httpcore.Origin, connection: httpcore.AsyncHTTPConnection) -> None:
        if connection.is_idle():
            self._idle.setdefault(_key(origin), []).append(connection)
        self._slots.release()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                await connection.aclose()

    async def __aenter__(self) -> PooledTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc: BaseException | None = None,
        tb: TracebackType | None = None,
    ) -> None:
        await self.aclose()


def _key(origin: httpcore.Origin) -> tuple[bytes, bytes, int]:
    """httpcore's Origin compares equal but does not hash."""
    return origin.scheme, origin.host, origin.port


class _ResponseStream(httpx.AsyncByteStream):
    """The body of one response; closing it returns its connection to the pool, exactly once."""

    def __init__(
        self,
        pool: PooledTransport,
        origin: httpcore.Origin,
        connection: httpcore.AsyncHTTPConnection,
        response: httpcore.Response,
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._connection: httpcore.AsyncHTTPConnection | None = connection
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._response.aiter_stream():
                yield part

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            with _httpx_errors():
                await self._response.aclose()
        finally:
            self._pool._give_back(self._origin, connection)
