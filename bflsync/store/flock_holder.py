"""Which process holds an ``flock`` on a file, as Linux lists it in ``/proc/locks``, and whether a pid lives.

The sync lock of a SQLite store is an ``flock`` on the store file (:mod:`bflsync.store.lock`).
Both a sync refused by it and ``bflsync status`` name the holder's pid; both read it here. The
answer is exact whichever name of the file the holder locked (a symlink, a hard link), since
``/proc/locks`` names the file by device and inode. It is advice for humans: the ``flock``
alone decides who may write. This module imports only the standard library, so ``status``
stays free of SQLAlchemy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

PROC_LOCKS: Final = Path("/proc/locks")


def flock_holder(info: os.stat_result) -> int | None:
    """The pid holding an ``flock`` on the file ``info`` describes: 0 if a holder is listed without
    one, None if nobody holds it. OSError where ``/proc/locks`` cannot be read (not Linux)."""
    wanted = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    for line in PROC_LOCKS.read_text(encoding="ascii", errors="replace").splitlines():
        # "1: FLOCK  ADVISORY  WRITE 8476 fd:01:2883614 0 EOF"; waiters' lines have "->" second.
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == wanted:
            return int(fields[4]) if fields[4].isdigit() else 0
    return None


def process_alive(pid: int) -> bool:
    """Whether ``pid`` names a running process, another user's included (kill 0 is refused to us)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (ProcessLookupError, OverflowError):
        return False
    return True
