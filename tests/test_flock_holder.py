"""``store/flock_holder.py``: the pid holding a SQLite store's ``flock``, which both a refused sync and
``bflsync status`` name."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bflsync.store.flock_holder import PROC_LOCKS, flock_holder

pytestmark = pytest.mark.skipif(not PROC_LOCKS.exists(), reason="/proc/locks is Linux's")

HOLD = """
import fcntl, sys
handle = open(sys.argv[1], "rb")
fcntl.flock(handle, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


def test_a_file_nobody_locks_has_no_holder(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"")
    assert flock_holder(path.stat()) is None


def test_the_holder_is_the_process_holding_the_flock_whichever_name_it_locked(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"")
    other_name = tmp_path / "linked.db"
    os.link(path, other_name)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(other_name)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert flock_holder(path.stat()) == holder.pid
    finally:
        holder.communicate("", timeout=30)


def test_this_process_is_named_while_it_holds_the_flock(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"")
    with path.open("rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        assert flock_holder(path.stat()) == os.getpid()
    assert flock_holder(path.stat()) is None
