"""A loopback TCP proxy in front of the test cluster that can be told to stall mid-session.

It forwards bytes both ways until a client sends a chunk holding ``stall_on`` (a piece of SQL):
from then on that connection forwards nothing either way but stays open, as a server (or a NAT
box in front of it) that accepted a connection and then stopped answering does. Other
connections go on working. One thread per direction; :meth:`StallProxy.close` ends them all.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit


class StallProxy:
    """A proxy on 127.0.0.1 to ``target`` (host, port); ``port`` is where clients connect."""

    def __init__(self, target: tuple[str, int], *, stall_on: bytes) -> None:
        self.target = target
        self.stall_on = stall_on
        self.stalled = threading.Event()
        self._closing = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        # Closing a socket does not wake a thread blocked in accept(): poll, so close() is prompt.
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._spawn(self._accept)

    def url(self, server_url: str) -> str:
        """``server_url`` (a URL of the cluster) with its port replaced by the proxy's."""
        parts = urlsplit(server_url)
        host = parts.netloc.rpartition(":")[0]
        return parts._replace(netloc=f"{host}:{self.port}").geturl()

    def close(self) -> None:
        """Stop accepting and forwarding, close every socket, join every thread."""
        self._closing.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.setblocking(True)
            server = socket.create_connection(self.target)
            self._sockets += [client, server]
            session_stalled = threading.Event()
            self._spawn(self._forward, client, server, session_stalled, True)
            self._spawn(self._forward, server, client, session_stalled, False)

    def _forward(
        self, source: socket.socket, sink: socket.socket, session_stalled: threading.Event, from_client: bool
    ) -> None:
        while not self._closing.is_set():
            if session_stalled.is_set():
                # Stalled: hold the connection open, read and send nothing.
                self._closing.wait(0.05)
                continue
            try:
                readable, _, _ = select.select([source], [], [], 0.05)
                if not readable:
                    continue
                data = source.recv(65536)
                if not data:
                    return
                if from_client and self.stall_on in data:
                    session_stalled.set()
                    self.stalled.set()
                    continue
                sink.sendall(data)
            except OSError:
                return


@contextlib.contextmanager
def stall_proxy(server_url: str, *, stall_on: bytes) -> Iterator[StallProxy]:
    """A :class:`StallProxy` in front of the cluster at ``server_url``, closed after."""
    parts = urlsplit(server_url)
    proxy = StallProxy((parts.hostname or "127.0.0.1", parts.port or 5432), stall_on=stall_on)
    try:
        yield proxy
    finally:
        proxy.close()
