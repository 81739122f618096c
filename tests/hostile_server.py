"""A loopback HTTP server that misbehaves on purpose, one scripted behaviour per request path.

Raw sockets, not http.server: a hostile server trickles headers, lies about sizes and never
finishes. Every connection gets one answer and is closed; behaviours poll ``stopping`` between
bytes, so ``stop()`` ends even a server that trickles forever within a fraction of a second.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Behaviour = Callable[["Connection"], None]


@dataclass
class Connection:
    sock: socket.socket
    path: str
    headers: dict[str, str]
    stopping: threading.Event
    rest: bytes = b""
    """What arrived after the request's headers: the start of its body."""

    def drain_body(self) -> None:
        """Read the request's body, so closing the socket sends FIN, not a reset that could beat the answer."""
        missing = int(self.headers.get("content-length") or 0) - len(self.rest)
        while missing > 0:
            chunk = self.sock.recv(min(missing, 65536))
            if not chunk:
                return
            missing -= len(chunk)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def trickle(self, data: bytes, interval_s: float) -> None:
        """One byte at a time, ``interval_s`` apart, until done or the server stops."""
        for i in range(len(data)):
            if self.stopping.wait(interval_s):
                return
            self.sock.sendall(data[i : i + 1])


@dataclass
class HostileServer:
    routes: dict[str, Behaviour]
    default: Behaviour | None = None
    requests: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    base_url: str = ""

    def behaviour_for(self, path: str) -> Behaviour:
        route = urlsplit(path).path
        if route in self.routes:
            return self.routes[route]
        assert self.default is not None, f"no behaviour for {path}"
        return self.default

    def count(self, route: str) -> int:
        return sum(1 for path in self.requests if urlsplit(path).path == route)


def head(status: int, headers: dict[str, str] | None = None, *, length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} X"]
    all_headers = {"content-type": "application/json", "connection": "close", **(headers or {})}
    if length is not None:
        all_headers["content-length"] = str(length)
    lines += [f"{name}: {value}" for name, value in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Behaviour:
    """A plain, well-formed answer: ``body`` as JSON (or as is when bytes)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()

    def behave(conn: Connection) -> None:
        conn.send(head(status, headers, length=len(data)) + data)

    return behave


def trickled_body(body: Any, interval_s: float) -> Behaviour:
    data = json.dumps(body).encode()

    def behave(conn: Connection) -> None:
        conn.send(head(200, length=len(data)))
        conn.trickle(data, interval_s)

    return behave


def trickled_headers(body: Any, interval_s: float) -> Behaviour:
    data = json.dumps(body).encode()

    def behave(conn: Connection) -> None:
        conn.trickle(head(200, length=len(data)) + data, interval_s)

    return behave


def gzip_bomb(prefix: bytes, filler: bytes, decoded_size: int, suffix: bytes = b"") -> bytes:
    """A gzip body that decodes to ``prefix + filler * n + suffix`` of about ``decoded_size`` bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [compressor.compress(prefix)]
    block = filler * (1024 * 1024 // len(filler))
    for _ in range(decoded_size // len(block)):
        parts.append(compressor.compress(block))
    parts += [compressor.compress(suffix), compressor.flush()]
    return b"".join(parts)


def gzipped(status: int, data: bytes) -> Behaviour:
    def behave(conn: Connection) -> None:
        conn.send(head(status, {"content-encoding": "gzip"}, length=len(data)) + data)

    return behave


@contextmanager
def hostile_server(routes: dict[str, Behaviour], default: Behaviour | None = None) -> Iterator[HostileServer]:
    server = HostileServer(routes, default)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    server.base_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    threads: list[threading.Thread] = []

    def serve(sock: socket.socket) -> None:
        with sock:
            sock.settimeout(5)
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head_bytes, _, rest = data.partition(b"\r\n\r\n")
                request_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
                path = request_line.split(" ")[1]
                headers = {}
                for line in header_lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                server.requests.append(path)
                server.behaviour_for(path)(Connection(sock, path, headers, server.stopping, rest))
            except OSError:
                pass

    def accept() -> None:
        while not server.stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=serve, args=(sock,), daemon=True)
            thread.start()
            threads.append(thread)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        server.stopping.set()
        acceptor.join(5)
        listener.close()
        deadline = time.monotonic() + 5
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
