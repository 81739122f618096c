"""The sync lock: one writer per store at a time, however and wherever it was started.

For a SQLite store, an advisory ``flock`` on the store file itself. The lock belongs to the
file, not to a name: symlinks and hard links to one store all lock the same inode, so two
syncs through two names exclude each other (each name would otherwise get its own ``-wal``,
and the second writer would corrupt the first's commits). There is no lock file beside the
store to plant a symlink at. The kernel releases the lock when the holder's process ends,
even by ``kill -9``, so there is never a stale lock to clean up. SQLite itself locks with
``fcntl`` byte ranges, which Linux keeps apart from ``flock``. One caveat of POSIX locks
shapes :meth:`SyncLock.release`: closing any descriptor of a file drops the process's
``fcntl`` locks on it, so the lock is released only after the store's engine is disposed.

A second taker is told the holder's pid, from ``/proc/locks`` on Linux, else from the newest
``running`` run row whose process is alive; the pid is advice for humans, the ``flock``
alone decides.

For a PostgreSQL store, shared by several machines, a session-level advisory lock in the
database itself, held by one dedicated connection; the server releases it when that
connection ends, however the process died.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import sqlalchemy as sa

from bflsync.errors import SyncLockedError
from bflsync.store.access import StoreLocation, create_store_engine, translate_errors
from bflsync.store.files import open_store_file, read_immutable
from bflsync.store.flock_holder import flock_holder, process_alive

POLL_INTERVAL_S = 0.1
_CONTENDED = frozenset({errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK})


def sync_lock_for(
    location: StoreLocation, *, wait_s: float = 0.0, create: bool = True
) -> SyncLock | AdvisoryLock:
    """The lock that serialises writers of this store: a file lock, or an advisory lock in PostgreSQL.

    A missing SQLite store file is created (private) to be locked, unless ``create`` is False:
    then a missing store is a StoreMissingError.
    """
    if location.path is None:
        return AdvisoryLock(location, wait_s=wait_s)
    return SyncLock(location.path, wait_s=wait_s, create=create)


class _PollingLock:
    """What both locks share: waiting up to ``wait_s`` for the lock, and the ``with`` protocol."""

    def __init__(
        self,
        *,
        wait_s: float,
        monotonic: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self._wait_s = wait_s
        self._monotonic = monotonic
        self._sleep = sleep

    def acquire(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def _poll(self, try_once: Callable[[], bool], holder: Callable[[], str]) -> None:
        """Call ``try_once`` until it wins; past the deadline, raise SyncLockedError naming the holder."""
        deadline = self._monotonic() + self._wait_s
        while not try_once():
            if self._monotonic() >= deadline:
                raise SyncLockedError(f"another sync is running ({holder()})")
            self._sleep(POLL_INTERVAL_S)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class SyncLock(_PollingLock):
    """Exclusive, process-lifetime ``flock`` on a SQLite store file; use as a context manager."""

    def __init__(
        self,
        path: Path,
        *,
        wait_s: float = 0.0,
        create: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(wait_s=wait_s, monotonic=monotonic, sleep=sleep)
        self.path = path
        self._create = create
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, polling up to ``wait_s`` seconds; raise SyncLockedError naming the holder."""
        fd, _ = open_store_file(self.path, create=self._create)
        try:
            self._poll(lambda: _try_flock(fd), lambda: _describe_holder(fd, self.path))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Give the lock up. Call it after disposing of every engine on the store (see the module doc)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _CONTENDED:
            return False
        raise
    return True


def _describe_holder(fd: int, path: Path) -> str:
    """``pid N`` of the process holding the ``flock``, or of the newest live running run; else unknown."""
    try:
        pid = flock_holder(os.fstat(fd))
    except OSError:
        pid = None
    if not pid:
        pid = _running_run_pid(path)
    return f"pid {pid}" if pid else "pid unknown"


def _running_run_pid(path: Path) -> int | None:
    """The newest running run whose process is alive: the holder, once it has started its run."""
    # Refused, this process must leave nothing beside the store: no -wal or -shm of its own.
    immutable = read_immutable(path, inspecting=True)
    uri = f"{path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")
    try:
        connection = sqlite3.connect(uri, uri=True, timeout=1.0)
        try:
            pids = connection.execute(
                "SELECT pid FROM sync_run WHERE status = 'running' ORDER BY id DESC LIMIT 20"
            ).fetchall()
        finally:
            connection.close()
    except sqlite3.Error:
        return None
    return next((pid for (pid,) in pids if isinstance(pid, int) and process_alive(pid)), None)


class AdvisoryLock(_PollingLock):
    """Exclusive lock on a PostgreSQL store, held by a dedicated connection for the whole sync.

    At head the lock is the one row of ``bflsync_lock``, locked ``FOR UPDATE NOWAIT`` in a
    transaction that stays open until :meth:`release`. ``FOR UPDATE`` needs the UPDATE privilege:
    a role that cannot write the store is refused (exit 3) instead of taking the lock, so it
    cannot stop the writers. A store without that table (new, or older than ``0013_hardening``)
    is locked as before with a session advisory lock, for as long as creating or upgrading it takes.
    The name is kept from when it was only that.
    """

    def __init__(
        self,
        location: StoreLocation,
        *,
        wait_s: float = 0.0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(wait_s=wait_s, monotonic=monotonic, sleep=sleep)
        self.location = location
        self._engine: sa.Engine | None = None
        self._connection: sa.Connection | None = None
        self._advisory = False

    def acquire(self) -> None:
        """Take the lock, polling up to ``wait_s`` seconds; raise SyncLockedError naming the holder."""
        engine = create_store_engine(self.location, read_only=False)
        try:
            with translate_errors(self.location):
                connection = engine.connect()
        except BaseException:
            engine.dispose()
            raise
        try:
            with translate_errors(self.location):
                self._advisory = connection.scalar(_LOCK_TABLE) is None
                connection.rollback()
                try_once = self._try_advisory if self._advisory else self._try_row
                self._poll(lambda: try_once(connection), lambda: _holder(connection, advisory=self._advisory))
        except BaseException:
            connection.close()
            engine.dispose()
            raise
        self._engine, self._connection = engine, connection

    @staticmethod
    def _try_row(connection: sa.Connection) -> bool:
        """Lock the row; and yield to a writer still holding the advisory lock it took to create the table.

        Only holders whose role may UPDATE the lock table count: anyone can take the advisory key.
        """
        try:
            connection.execute(_LOCK_ROW)
        except sa.exc.OperationalError as exc:
            connection.rollback()
            if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                return False
            raise
        if connection.execute(_WRITER_HOLDING_ADVISORY).first() is not None:
            connection.rollback()
            return False
        return True

    @staticmethod
    def _try_advisory(connection: sa.Connection) -> bool:
        taken = bool(connection.scalar(_TRY_ADVISORY_LOCK))
        connection.commit()  # a session lock: the transaction that took it need not stay open
        return taken

    def release(self) -> None:
        """End the row lock's transaction (or unlock), then close the session.

        Closing alone is not enough for the next sync: the server ends the backend, and with
        it the lock, a moment after the client hangs up, so a sync started right after this
        one could still find the lock held.
        """
        if self._connection is None or self._engine is None:
            return
        connection, engine = self._connection, self._engine
        self._connection = self._engine = None
        try:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                if self._advisory:
                    connection.execute(_ADVISORY_UNLOCK)
                    connection.commit()
                else:
                    connection.rollback()
            connection.close()
        finally:
            engine.dispose()

    def before_dropping_lock_table(self) -> None:
        """Hold the advisory lock instead of the row, whose table a downgrade is about to drop.

        The drop would otherwise wait for this very session's row lock until ``lock_timeout``.
        """
        if self._connection is None or self._advisory:
            return
        connection = self._connection
        with translate_errors(self.location):
            if not self._try_advisory(connection):
                raise SyncLockedError(f"another sync is running ({_holder(connection, advisory=True)})")
            connection.rollback()  # ends the row lock; the advisory lock stays with the session
        self._advisory = True


# Every function and operator schema-qualified: a role that can create objects must not be
# able to make these statements run its code (see bflsync.store.pg_session).
_LOCK_TABLE = sa.text("SELECT pg_catalog.to_regclass('bflsync_lock')")
_LOCK_ROW = sa.text("SELECT id FROM bflsync_lock WHERE id OPERATOR(pg_catalog.=) 1 FOR UPDATE NOWAIT")
_LOCK_NOT_AVAILABLE = "55P03"
# One key per database: two stores in one PostgreSQL cluster do not exclude each other. The same
# key as bflsync releases before 0013_hardening, so old and new exclude each other while upgrading.
_KEY = "pg_catalog.hashtext(pg_catalog.concat('bflsync sync ', pg_catalog.current_database()))"
_TRY_ADVISORY_LOCK = sa.text(f"SELECT pg_catalog.pg_try_advisory_lock({_KEY})")
_ADVISORY_UNLOCK = sa.text(f"SELECT pg_catalog.pg_advisory_unlock({_KEY})")
# Who holds it, as far as the server shows: pg_locks and the role of each session are visible to all.
_ROW_HOLDER = sa.text(
    "SELECT a.pid, a.usename FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a"
    " ON a.pid OPERATOR(pg_catalog.=) l.pid"
    " WHERE l.locktype OPERATOR(pg_catalog.=) 'relation' AND l.granted"
    " AND l.mode OPERATOR(pg_catalog.=) 'RowShareLock'"
    " AND l.relation OPERATOR(pg_catalog.=) pg_catalog.to_regclass('bflsync_lock')"
    " AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() LIMIT 1"
)
_ADVISORY_HOLDER_SQL = (
    "SELECT a.pid, a.usename FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a"
    " ON a.pid OPERATOR(pg_catalog.=) l.pid"
    " WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted"
    " AND l.objsubid OPERATOR(pg_catalog.=) 1"
    f" AND l.objid OPERATOR(pg_catalog.=) (({_KEY})::pg_catalog.int8"
    " OPERATOR(pg_catalog.&) 4294967295)::pg_catalog.oid"
    " AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()"
)
_ADVISORY_HOLDER = sa.text(f"{_ADVISORY_HOLDER_SQL} LIMIT 1")
# A writer that took the advisory lock because the lock table did not exist yet (it was creating
# the store) still holds the store after its migration created the table.
_WRITER_HOLDING_ADVISORY = sa.text(
    f"{_ADVISORY_HOLDER_SQL} AND pg_catalog.has_table_privilege(a.usesysid, 'bflsync_lock', 'UPDATE') LIMIT 1"
)


def _holder(connection: sa.Connection, *, advisory: bool) -> str:
    """The holding session's server pid and role, and the pid its run row records (on its own machine)."""
    try:
        row = None if advisory else connection.execute(_ROW_HOLDER).first()
        if row is None:
            row = connection.execute(_ADVISORY_HOLDER).first()
        run_pid = (
            connection.scalar(
                sa.text("SELECT pid FROM sync_run WHERE status = 'running' ORDER BY id DESC LIMIT 1")
            )
            if sa.inspect(connection).has_table("sync_run")
            else None
        )
    except sa.exc.SQLAlchemyError:
        connection.rollback()
        return "holder unknown"
    finally:
        if connection.in_transaction():
            connection.rollback()
    parts = [f"server pid {row.pid}, role {row.usename}"] if row is not None else []
    if run_pid is not None:
        parts.append(f"client pid {run_pid}")
    return "; ".join(parts) if parts else "pid unknown"
