"""The lean keep-alive pool over real loopback sockets: reuse, stale connections, errors, bounds."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from bflsync.bfl.transport import PooledTransport


@contextmanager
def counting_server(*, close_after_each: bool = False) -> Iterator[tuple[str, list[int]]]:
    """A keep-alive HTTP/1.1 server answering ``{}``; yields its URL and a list of connection numbers."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    connections: list[int] = []
    stopping = threading.Event()

    def serve(sock: socket.socket, number: int) -> None:
        with sock:
            sock.settimeout(2)
            buffer = b""
            while not stopping.is_set():
                try:
                    chunk = sock.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                while b"\r\n\r\n" in buffer:
                    _, buffer = buffer.split(b"\r\n\r\n", 1)
                    body = b'{"connection": %d}' % number
                    sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                    if close_after_each:
                        return

    def accept() -> None:
        while not stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            connections.append(len(connections))
            threading.Thread(target=serve, args=(sock, len(connections)), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", connections
    finally:
        stopping.set()
        thread.join(2)
        listener.close()


def fetch(url: str, count: int, *, concurrency: int, pause_s: float = 0.0) -> list[int]:
    async def main() -> list[int]:
        async with httpx.AsyncClient(transport=PooledTransport(max_connections=concurrency)) as client:
            semaphore = asyncio.Semaphore(concurrency)

            async def one() -> int:
                async with semaphore:
                    number: int = (await client.get(url)).json()["connection"]
                    await asyncio.sleep(pause_s)
                    return number

            return await asyncio.gather(*(one() for _ in range(count)))

    return asyncio.run(main())


def test_connections_are_kept_alive_and_reused() -> None:
    with counting_server() as (url, connections):
        answers = fetch(url, 200, concurrency=4)
    assert len(answers) == 200
    assert 1 <= len(connections) <= 4


def test_a_connection_the_server_closed_is_replaced_not_failed() -> None:
    with counting_server(close_after_each=True) as (url, connections):
        answers = fetch(url, 20, concurrency=1, pause_s=0.01)
    assert sorted(answers) == list(range(1, 21))
    assert len(connections) == 20


def test_connect_errors_are_httpx_errors() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        fetch(f"http://127.0.0.1:{port}", 1, concurrency=1)


def test_a_cancelled_request_gives_its_slot_back() -> None:
    async def main() -> int:
        with counting_server() as (url, _):
            transport = PooledTransport(max_connections=1)
            async with httpx.AsyncClient(transport=transport) as client:
                for _ in range(3):
                    with pytest.raises(TimeoutError):
                        async with asyncio.timeout(0):
                            await client.get(url)
                return (await client.get(url)).status_code

    assert asyncio.run(main()) == 200


def test_a_proxy_from_the_environment_still_carries_remote_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """The client passes its own transport; httpx must still route through the environment's proxy."""
    from hostile_server import answer, hostile_server

    from bflsync.bfl.client import BflClient
    from bflsync.bfl.retry import RetryPolicy
    from bflsync.config import Secret
    from bflsync.errors import ApiError

    with hostile_server({}, default=answer(502, b"no")) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.base_url)

        async def main() -> None:
            client = BflClient(
                api_key=Secret("k" * 20),
                base_url="https://api.example.invalid",
                retry=RetryPolicy(max_retries=0),
            )
            async with client:
                await client.list_finetunes()

        with pytest.raises(ApiError):
            asyncio.run(main())
        assert proxy.requests == ["api.example.invalid:443"]  # the CONNECT line's target
