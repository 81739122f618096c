"""What the sync lock locks, and what a second taker is told."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sync_support import KEY

from bflsync.cli import cli
from bflsync.errors import NotAStoreError, StoreMissingError, StoreWriteError, SyncLockedError
from bflsync.mock.server import MockBFL
from bflsync.store import access
from bflsync.store.lock import AdvisoryLock, sync_lock_for

OTHER_UID = 65534  # nobody


def test_a_symlinked_store_shares_the_lock_of_its_real_file(db_path: Path, tmp_path: Path) -> None:
    db_path.touch()
    alias = tmp_path / "elsewhere" / "alias.db"
    alias.parent.mkdir()
    alias.symlink_to(db_path)
    with (
        sync_lock_for(access.locate_store(str(db_path))),
        pytest.raises(SyncLockedError, match="another sync is running"),
    ):
        sync_lock_for(access.locate_store(str(alias))).acquire()


def test_hard_links_to_one_store_share_one_lock(db_path: Path, tmp_path: Path) -> None:
    access.open_store_for_write(access.locate_store(str(db_path))).engine.dispose()
    other_name = tmp_path / "other" / "b.db"
    other_name.parent.mkdir()
    os.link(db_path, other_name)
    with (
        sync_lock_for(access.locate_store(str(db_path))),
        pytest.raises(SyncLockedError, match="another sync is running"),
    ):
        sync_lock_for(access.locate_store(str(other_name))).acquire()


def test_the_lock_is_taken_again_once_released(db_path: Path) -> None:
    location = access.locate_store(str(db_path))
    with sync_lock_for(location):
        pass
    with sync_lock_for(location):
        pass


def test_second_taker_is_told_the_pid_of_the_running_run(db_path: Path) -> None:
    opened = access.open_store_for_write(access.locate_store(str(db_path)))
    with opened.engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO sync_run (started_at, status, source, pid, bflsync_version, listed, fetched,"
            " created, updated, unchanged, deleted, restored, failed)"
            f" VALUES ('2026-01-01', 'running', 'h', {os.getpid()}, 'x', 0, 0, 0, 0, 0, 0, 0, 0)"
        )
    opened.engine.dispose()
    location = access.locate_store(str(db_path))
    with (
        sync_lock_for(location),
        pytest.raises(SyncLockedError, match=rf"^another sync is running \(pid {os.getpid()}\)$"),
    ):
        sync_lock_for(location).acquire()


def test_second_taker_through_another_hard_link_is_told_the_holders_pid(
    db_path: Path, tmp_path: Path
) -> None:
    db_path.touch()
    other_name = tmp_path / "b.db"
    os.link(db_path, other_name)
    with (
        sync_lock_for(access.locate_store(str(db_path))),
        pytest.raises(SyncLockedError, match=rf"^another sync is running \(pid {os.getpid()}\)$"),
    ):
        sync_lock_for(access.locate_store(str(other_name))).acquire()


def test_a_missing_store_is_created_private_to_be_locked(db_path: Path) -> None:
    with sync_lock_for(access.locate_store(str(db_path))):
        assert (db_path.stat().st_size, db_path.stat().st_mode & 0o777) == (0, 0o600)


def test_a_lock_that_must_not_create_refuses_a_missing_store(db_path: Path) -> None:
    with pytest.raises(StoreMissingError, match="no bflsync store"):
        sync_lock_for(access.locate_store(str(db_path)), create=False).acquire()
    assert not db_path.exists()


def test_a_dangling_symlink_at_the_store_path_is_refused(db_path: Path, tmp_path: Path) -> None:
    target = tmp_path / "nowhere" / "x.db"
    db_path.symlink_to(target)
    with pytest.raises(NotAStoreError, match=r"symlink to .*which does not exist"):
        sync_lock_for(access.locate_store(str(db_path))).acquire()
    assert not target.parent.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can make a file owned by another user")
def test_a_store_file_of_another_user_is_refused_for_writing(db_path: Path) -> None:
    db_path.touch()
    os.chown(db_path, OTHER_UID, OTHER_UID)
    with pytest.raises(StoreWriteError, match=f"belongs to uid {OTHER_UID}, not to you"):
        sync_lock_for(access.locate_store(str(db_path))).acquire()


def test_server_stores_are_locked_inside_the_database() -> None:
    assert isinstance(
        sync_lock_for(access.locate_store("postgresql+psycopg://sync@db.internal/bfl")), AdvisoryLock
    )


# --- a planted lock file is never touched ----------------------------------------------------


def test_a_lock_symlink_planted_beside_the_store_is_neither_followed_nor_truncated(
    runner: CliRunner, db_path: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim" / "notes.txt"
    victim.parent.mkdir()
    victim.write_text("the victim's notes\n")
    db_path.with_name(db_path.name + ".lock").symlink_to(victim)
    with MockBFL.serve({"a": {"mode": "general"}}, api_key=KEY) as mock:
        result = runner.invoke(
            cli,
            ["--db", str(db_path), "sync", "--base-url", mock.base_url],
            env={"BFL_API_KEY": KEY},
            catch_exceptions=False,
        )

    assert result.exit_code == 0, result.output
    assert victim.read_text() == "the victim's notes\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can make a file owned by another user")
def test_a_sync_into_a_store_of_another_user_exits_3_in_one_line(runner: CliRunner, db_path: Path) -> None:
    access.open_store_for_write(access.locate_store(str(db_path))).engine.dispose()
    os.chown(db_path, OTHER_UID, OTHER_UID)
    before = db_path.read_bytes()
    with MockBFL.serve({"a": {"mode": "general"}}, api_key=KEY) as mock:
        result = runner.invoke(
            cli, ["--db", str(db_path), "sync", "--base-url", mock.base_url], env={"BFL_API_KEY": KEY}
        )

    assert (result.exit_code, result.stderr) == (
        3,
        f"bflsync: error: the store at {db_path} belongs to uid {OTHER_UID}, not to you (uid 0); "
        "bflsync writes only files you own\n",
    )
    assert db_path.read_bytes() == before
    assert sorted(p.name for p in db_path.parent.iterdir()) == ["store.db"]
