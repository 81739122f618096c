"""The sync lock: one ``bflsync sync`` per store at a time, however and wherever it was started.

For a SQLite store, an advisory ``flock`` on ``<db>.lock`` beside the real file (symlinks
resolved, so two spellings of one store share one lock). The kernel releases it when the
holder's process ends, even by ``kill -9``, so there is never a stale lock to clean up. The
holder writes its pid into the file so a second sync can say who is in the way; the pid is
advice for humans, the ``flock`` alone decides.

For a PostgreSQL store, shared by several machines, a session-level advisory lock in the
database itself, held by one dedicated connection; the server releases it when that
connection ends, however the process died.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import sqlalchemy as sa

from bflsync.db import StoreLocation, create_store_engine, translate_errors
from bflsync.errors import StoreWriteError, SyncLockedError

POLL_INTERVAL_S = 0.1
_CONTENDED = frozenset({errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK})


def sync_lock_for(location: StoreLocation, *, wait_s: float = 0.0) -> SyncLock | AdvisoryLock:
    """The lock that serialises syncs of this store: a file lock, or an advisory lock in PostgreSQL."""
    if location.path is None:
        return AdvisoryLock(location, wait_s=wait_s)
    return SyncLock(lock_path_for(location), wait_s=wait_s)


def lock_path_for(location: StoreLocation) -> Path:
    """``<db>.lock`` beside the real SQLite file, whichever symlink named it."""
    if location.path is None:
        raise ValueError("a server store is locked inside its database, not by a file")
    real = location.path.resolve()
    return real.with_name(real.name + ".lock")


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
    """Exclusive, process-lifetime lock on a lock file; use as a context manager."""

    def __init__(
        self,
        path: Path,
        *,
        wait_s: float = 0.0,
        pid: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(wait_s=wait_s, monotonic=monotonic, sleep=sleep)
        self.path = path
        self._pid = os.getpid() if pid is None else pid
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, polling up to ``wait_s`` seconds; raise SyncLockedError naming the holder."""
        fd = self._open()
        try:
            self._poll(lambda: _try_flock(fd), lambda: _describe_holder(fd))
            # Truncate only once the lock is ours, or we would erase the holder's pid.
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{self._pid}\n".encode("ascii"), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Give the lock up; the file stays, so waiters keep locking the same inode."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreWriteError(f"cannot open the sync lock file {self.path}: {exc.strerror}") from exc


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _CONTENDED:
            return False
        raise
    return True


def _describe_holder(fd: int) -> str:
    """``pid N`` from the lock file; the holder may not have written it yet in the instant after locking."""
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return f"pid {text}" if text.isdigit() else "pid unknown"


class AdvisoryLock(_PollingLock):
    """Exclusive lock on a PostgreSQL store, held by a dedicated connection for the whole sync."""

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

    def acquire(self) -> None:
        """Take the lock, polling up to ``wait_s`` seconds; raise SyncLockedError naming the holder."""
        engine = create_store_engine(self.location, read_only=False)
        try:
            with translate_errors(self.location):
                connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except BaseException:
            engine.dispose()
            raise
        try:
            with translate_errors(self.location):
                self._poll(
                    lambda: bool(connection.scalar(_TRY_ADVISORY_LOCK)), lambda: _running_pid(connection)
                )
        except BaseException:
            connection.close()
            engine.dispose()
            raise
        self._engine, self._connection = engine, connection

    def release(self) -> None:
        """Unlock, then close the session (which would release the lock too, if the unlock failed).

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
                connection.execute(_ADVISORY_UNLOCK)
            connection.close()
        finally:
            engine.dispose()


# One key per database: two stores in one PostgreSQL cluster do not exclude each other.
_TRY_ADVISORY_LOCK = sa.text("SELECT pg_try_advisory_lock(hashtext('bflsync sync ' || current_database()))")
_ADVISORY_UNLOCK = sa.text("SELECT pg_advisory_unlock(hashtext('bflsync sync ' || current_database()))")


def _running_pid(connection: sa.Connection) -> str:
    """The holder's pid as its run row records it (it may run on another machine)."""
    if not sa.inspect(connection).has_table("sync_run"):
        return "pid unknown"
    pid = connection.scalar(
        sa.text("SELECT pid FROM sync_run WHERE status = 'running' ORDER BY id DESC LIMIT 1")
    )
    return f"pid {pid}" if pid is not None else "pid unknown"
