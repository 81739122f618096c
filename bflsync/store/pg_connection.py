"""psycopg connections with a read timeout, for both ways in to a PostgreSQL store.

libpq bounds only the connect (``connect_timeout``). A server, or a proxy or NAT box in front of
it, that accepts the connection and then stops answering would make every later wait for a reply
last forever: a cron job's sync, a ``label``, a ``query``, even TAB completion. psycopg runs each
round trip as a generator that :meth:`psycopg.Connection.wait` drives, waking every
``interval`` (0.1 s) when nothing arrived; :class:`DeadlineConnection` wraps that generator so
that a wait with nothing received for ``read_timeout`` seconds closes the connection and raises.

Closing matters: the connection is then ``closed``, which SQLAlchemy's psycopg dialect reads as
a disconnect (it invalidates the connection instead of waiting again on a rollback), and the
read commands skip their rollback. The error is a :class:`psycopg.OperationalError`, so both
ways in turn it into their one-line store error (exit 3) as they do a lost connection.

Used by the read commands (:mod:`bflsync.read.server_reader`, psycopg directly) and by
SQLAlchemy's engine (:mod:`bflsync.store.access`, through its ``do_connect`` event). Imported
only where a PostgreSQL store is opened: psycopg is an extra.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

import psycopg
from psycopg.abc import PQGen
from psycopg.rows import TupleRow

from bflsync.store.pg_session import stalled_server_message

RV = TypeVar("RV")


class DeadlineConnection(psycopg.Connection[TupleRow]):
    """A psycopg connection whose every wait for the server gives up after :attr:`read_timeout` seconds."""

    # Seconds a wait may receive nothing before the connection is given up; 0 waits forever.
    read_timeout: float = 0.0

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        """Drive ``gen`` as psycopg does, under the read timeout when one is set."""
        if self.read_timeout:
            gen = self._under_deadline(gen, self.read_timeout)
        # Older psycopg releases have no ``timeout`` parameter: pass it on only when psycopg gave one.
        if timeout is None:
            return super().wait(gen, interval)
        return super().wait(gen, interval, timeout)

    def _under_deadline(self, gen: PQGen[RV], seconds: float) -> PQGen[RV]:
        # The deadline restarts whenever the server sends something: a slow result that keeps
        # arriving is fine, silence is not. psycopg sends READY_NONE when an interval passed idle.
        deadline = time.monotonic() + seconds
        try:
            waiting_for = next(gen)
            while True:
                ready = yield waiting_for
                if ready:
                    deadline = time.monotonic() + seconds
                elif time.monotonic() >= deadline:
                    where = f"{self.pgconn.host.decode(errors='replace')}:{self.pgconn.port.decode()}"
                    self.pgconn.finish()
                    raise psycopg.OperationalError(stalled_server_message(where, seconds))
                waiting_for = gen.send(ready)
        except StopIteration as stop:
            result: RV = stop.value
            return result


def connect(conninfo: str = "", *, read_timeout: float, **kwargs: Any) -> DeadlineConnection:
    """``psycopg.connect`` for a :class:`DeadlineConnection` with ``read_timeout`` seconds (0: none)."""
    connection = DeadlineConnection.connect(conninfo, **kwargs)
    connection.read_timeout = read_timeout
    return connection
