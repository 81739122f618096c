"""Where the sync lock lives and what a second taker is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from bflsync import db
from bflsync.errors import SyncLockedError
from bflsync.lock import SyncLock, lock_path_for


def test_sqlite_store_is_locked_beside_its_file(db_path: Path) -> None:
    assert lock_path_for(db.locate_store(str(db_path))) == db_path.with_name("store.db.lock")


def test_server_store_is_locked_in_the_data_dir_without_its_password(isolated_env: Path) -> None:
    path = lock_path_for(db.locate_store("postgresql://sync:s3cret@db.internal/bfl"))

    assert path.parent == isolated_env / "bflsync"
    assert path.name.startswith("sync-") and "s3cret" not in str(path)


def test_same_server_url_with_another_password_shares_the_lock() -> None:
    first = lock_path_for(db.locate_store("postgresql://sync:one@db.internal/bfl"))
    second = lock_path_for(db.locate_store("postgresql://sync:two@db.internal/bfl"))

    assert first == second


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
