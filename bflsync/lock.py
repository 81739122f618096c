"""The sync lock: one ``bflsync sync`` per store at a time, however it was started.

An advisory ``flock`` on ``<db>.lock`` (or, for a server database, a file in the user data dir
keyed by a hash of its URL). The kernel releases it when the holder's process ends, even by
``kill -9``, so there is never a stale lock to clean up. The holder writes its pid into the
file so a second sync can say who is in the way; the pid is advice for humans, the ``flock``
alone decides.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

from bflsync.config import APP_NAME
from bflsync.db import StoreLocation
from bflsync.errors import StoreWriteError, SyncLockedError

POLL_INTERVAL_S = 0.1
_CONTENDED = frozenset({errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK})


def lock_path_for(location: StoreLocation) -> Path:
    """``<db>.lock`` beside a SQLite file; for a server URL a per-URL file in the user data dir."""
    if location.path is not None:
        return location.path.with_name(location.path.name + ".lock")
    from platformdirs import user_data_path

    digest = hashlib.sha256(location.display.encode("utf-8")).hexdigest()[:16]
    return user_data_path(APP_NAME, appauthor=False) / f"sync-{digest}.lock"


class SyncLock:
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
        self.path = path
        self._wait_s = wait_s
        self._pid = os.getpid() if pid is None else pid
        self._monotonic = monotonic
        self._sleep = sleep
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, polling up to ``wait_s`` seconds; raise SyncLockedError naming the holder."""
        fd = self._open()
        deadline = self._monotonic() + self._wait_s
        try:
            while not _try_flock(fd):
                if self._monotonic() >= deadline:
                    raise SyncLockedError(f"another sync is running ({_describe_holder(fd)})")
                self._sleep(POLL_INTERVAL_S)
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
