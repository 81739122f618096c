"""The API client's connections: httpx's own pool, bounded by --concurrency, over real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from hostile_server import answer, hostile_server

from bflsync.bfl.client import BflClient
from bflsync.bfl.retry import RetryPolicy
from bflsync.config import Secret
from bflsync.errors import ApiError, ConnectionFailedError

KEY = Secret("k" * 24)


@contextmanager
def counting_server(*, close_after_each: bool = False) -> Iterator[tuple[str, list[int]]]:
    """A keep-alive HTTP/1.1 server answering ``{"credits": N}``, N the connection's number (from 1)."""
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
                    body = b'{"credits": %d}' % number
                    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                    sock.sendall(head % len(body) + body)
                    if close_after_each:
                        return

    def accept() -> None:
        while not stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            connections.append(len(connections) + 1)
            threading.Thread(target=serve, args=(sock, len(connections)), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", connections
    finally:
        stopping.set()
        thread.join(2)
        listener.close()


def ask_credits(url: str, count: int, *, concurrency: int, pause_s: float = 0.0) -> list[float]:
    """``count`` credit requests, ``concurrency`` at a time; the connection number each was answered on."""

    async def main() -> list[float]:
        client = BflClient(
            api_key=KEY, base_url=url, concurrency=concurrency, retry=RetryPolicy(max_retries=0)
        )
        async with client:
            semaphore = asyncio.Semaphore(concurrency)

            async def one() -> float:
                async with semaphore:
                    number = await client.credits()
                    await asyncio.sleep(pause_s)
                    return number

            return await asyncio.gather(*(one() for _ in range(count)))

    return asyncio.run(main())


def test_connections_are_kept_alive_and_at_most_the_concurrency() -> None:
    with counting_server() as (url, connections):
        answers = ask_credits(url, 200, concurrency=4)
    assert len(answers) == 200
    assert 1 <= len(connections) <= 4
    assert set(answers) <= {1.0, 2.0, 3.0, 4.0}


def test_a_connection_the_server_closed_is_replaced_not_failed() -> None:
    with counting_server(close_after_each=True) as (url, connections):
        answers = ask_credits(url, 20, concurrency=1, pause_s=0.01)
    assert sorted(answers) == [float(number) for number in range(1, 21)]
    assert len(connections) == 20


def test_a_refused_connection_is_a_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionFailedError):
        ask_credits(f"http://127.0.0.1:{port}", 1, concurrency=1)


def test_a_proxy_from_the_environment_carries_remote_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    with hostile_server({}, default=answer(502, b"no")) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.base_url)

        async def main() -> None:
            client = BflClient(
                api_key=KEY, base_url="https://api.example.invalid", retry=RetryPolicy(max_retries=0)
            )
            async with client:
                await client.list_finetunes()

        with pytest.raises(ApiError):
            asyncio.run(main())
        assert proxy.requests == ["api.example.invalid:443"]  # the CONNECT line's target
