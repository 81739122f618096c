"""Where the sync lock lives and what a second taker is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from bflsync import db
from bflsync.errors import SyncLockedError
from bflsync.lock import AdvisoryLock, SyncLock, lock_path_for, sync_lock_for


def test_sqlite_store_is_locked_beside_its_file(db_path: Path) -> None:
    assert lock_path_for(db.locate_store(str(db_path))) == db_path.with_name("store.db.lock")


def test_a_symlinked_store_shares_the_lock_of_its_real_file(db_path: Path, tmp_path: Path) -> None:
    db_path.touch()
    alias = tmp_path / "elsewhere" / "alias.db"
    alias.parent.mkdir()
    alias.symlink_to(db_path)
    with (
        sync_lock_for(db.locate_store(str(db_path))),
        pytest.raises(SyncLockedError, match="another sync is running"),
    ):
        sync_lock_for(db.locate_store(str(alias))).acquire()


def test_server_stores_are_locked_inside_the_database() -> None:
    assert isinstance(
        sync_lock_for(db.locate_store("postgresql+psycopg://sync@db.internal/bfl")), AdvisoryLock
    )


def test_second_taker_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    path = tmp_path / "store.db.lock"
    with (
        SyncLock(path, pid=4711),
        pytest.raises(SyncLockedError, match=r"^another sync is running \(pid 4711\)$"),
    ):
        SyncLock(path).acquire()


def test_released_lock_can_be_taken_again_and_forgets_the_pid(tmp_path: Path) -> None:
    path = tmp_path / "store.db.lock"
    with SyncLock(path, pid=4711):
        pass

    with SyncLock(path, pid=4712):
        assert path.read_text() == "4712\n"
    assert path.read_text() == ""
