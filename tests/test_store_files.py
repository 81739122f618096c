"""Files beside the store: what bflsync creates, adopts, refuses and never leaves behind."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from storebuild import day, file_digest, write_sync
from sync_support import KEY

from bflsync.cli import cli
from bflsync.mock.server import MockBFL
from bflsync.store import access
from bflsync.store.files import adopt_empty_store_file
from bflsync.store.lock import sync_lock_for

OTHER_UID = 65534  # nobody
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root can make a file owned by another user")


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": {"mode": "general", "iterations": 300}}, api_key=KEY) as server:
        yield server


def bflsync(db_path: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", str(db_path), *args], env={"BFL_API_KEY": KEY})


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def wal_store(path: Path) -> None:
    """A store at head in WAL mode whose -wal and -shm are gone, as a clean shutdown leaves it."""
    opened = access.open_store_for_write(access.locate_store(str(path)))
    write_sync(opened.engine, {"alpha": {"mode": "general"}}, now=day(1))
    opened.engine.dispose()
    assert listing(path.parent) == [path.name]


# --- 3: a dangling symlink at the store path -------------------------------------------------


@pytest.mark.parametrize("command", [["sync", "--base-url", "{url}"], ["db", "upgrade"], ["db", "reextract"]])
def test_a_dangling_symlink_at_the_store_path_exits_2_and_creates_nothing(
    db_path: Path, tmp_path: Path, mock: MockBFL, command: list[str]
) -> None:
    target = tmp_path / "elsewhere" / "planted.db"
    target.parent.mkdir()
    db_path.symlink_to(target)

    result = bflsync(db_path, *(arg.format(url=mock.base_url) for arg in command))

    assert (result.exit_code, result.stderr) == (
        2,
        f"bflsync: error: {db_path} is a symlink to {target}, which does not exist; "
        "refusing to create a store there\n",
    )
    assert listing(target.parent) == []


# --- 4: a store bflsync initialises is private -----------------------------------------------


def test_an_empty_file_with_a_lax_mode_becomes_a_private_store(db_path: Path) -> None:
    db_path.touch()
    db_path.chmod(0o666)

    result = bflsync(db_path, "db", "upgrade")

    assert result.exit_code == 0, result.output
    assert mode_of(db_path) == 0o600
    engine = access.create_store_engine(access.locate_store(str(db_path)), read_only=False)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TEMP TABLE t (x)")
        journals = [db_path.with_name(db_path.name + suffix) for suffix in ("-wal", "-shm")]
        assert [mode_of(path) for path in journals] == [0o600, 0o600]
    engine.dispose()


def test_journals_with_a_lax_mode_beside_an_empty_file_are_made_private(db_path: Path) -> None:
    shm = db_path.with_name(db_path.name + "-shm")
    for path in (db_path, shm):
        path.touch()
        path.chmod(0o666)

    with sync_lock_for(access.locate_store(str(db_path))):
        adopt_empty_store_file(db_path)

    assert [mode_of(db_path), mode_of(shm)] == [0o600, 0o600]


@as_root
def test_an_empty_file_of_another_user_is_not_adopted_as_a_store(db_path: Path) -> None:
    db_path.touch()
    os.chown(db_path, OTHER_UID, OTHER_UID)
    db_path.chmod(0o666)

    result = bflsync(db_path, "db", "upgrade")

    assert (result.exit_code, result.stderr) == (
        3,
        f"bflsync: error: the store at {db_path} belongs to uid {OTHER_UID}, not to you (uid 0); "
        "bflsync writes only files you own\n",
    )
    assert (db_path.stat().st_size, mode_of(db_path), listing(db_path.parent)) == (0, 0o666, ["store.db"])


@pytest.mark.parametrize("journal", ["-wal", "-journal"])
def test_a_journal_hard_linked_to_another_file_is_refused(
    db_path: Path, tmp_path: Path, journal: str
) -> None:
    wal_store(db_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("notes\n")
    os.link(victim, db_path.with_name(db_path.name + journal))

    result = bflsync(db_path, "db", "reextract")

    assert (result.exit_code, result.stderr) == (
        3,
        f"bflsync: error: {db_path}{journal} has 2 hard links; refusing to let SQLite write it\n",
    )
    assert victim.read_text() == "notes\n"


@pytest.mark.parametrize("journal", ["-wal", "-journal"])
@pytest.mark.parametrize("command", [["label", "alpha", "k=v"], ["note", "alpha", "seen"]], ids=" ".join)
def test_label_and_note_refuse_a_journal_hard_linked_to_another_file(
    db_path: Path, tmp_path: Path, journal: str, command: list[str]
) -> None:
    wal_store(db_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("notes\n")
    os.link(victim, db_path.with_name(db_path.name + journal))

    result = bflsync(db_path, *command)

    assert (result.exit_code, result.stderr) == (
        3,
        f"bflsync: error: {db_path}{journal} has 2 hard links; refusing to let SQLite write it\n",
    )
    assert victim.read_text() == "notes\n"


@pytest.mark.parametrize("journal", ["-wal", "-shm"])
@pytest.mark.parametrize(
    "command",
    [
        ["query", "--format", "ids"],
        ["db", "current"],
        ["audit", "verify"],
        ["export", "{tmp}/archive"],
        ["sync", "--dry-run", "--base-url", "{url}"],
    ],
    ids=" ".join,
)
def test_a_read_refuses_a_journal_hard_linked_to_another_file(
    db_path: Path, tmp_path: Path, mock: MockBFL, journal: str, command: list[str]
) -> None:
    wal_store(db_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("notes\n")
    os.link(victim, db_path.with_name(db_path.name + journal))

    result = bflsync(db_path, *(arg.format(tmp=tmp_path, url=mock.base_url) for arg in command))

    assert (result.exit_code, result.stdout, result.stderr) == (
        3,
        "",
        f"bflsync: error: {db_path}{journal} has 2 hard links; refusing to let SQLite write it\n",
    )
    assert victim.read_text() == "notes\n"


# --- 5: backups are atomic -------------------------------------------------------------------


def test_a_leftover_partial_backup_is_removed_by_the_next_backup(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    location = access.locate_store(str(db_path))
    access.upgrade_store(location, revision=access.KNOWN_REVISIONS[0]).engine.dispose()
    leftover = db_path.with_name(f"{db_path.name}{access.PARTIAL_BACKUP_INFIX}x1y2")
    leftover.mkdir()
    (leftover / "backup.db").write_bytes(b"SQLite format 3\x00torn")

    with caplog.at_level(logging.WARNING, logger="bflsync"):
        opened = access.open_store_for_write(location)
    opened.engine.dispose()

    assert listing(db_path.parent) == ["store.db", f"store.db.bak-{access.KNOWN_REVISIONS[0]}"]
    assert [record.getMessage() for record in caplog.records] == [
        f"removed {leftover}, a partial backup left by an interrupted run"
    ]


def test_a_backup_is_private_complete_and_never_replaces_an_earlier_one(db_path: Path) -> None:
    wal_store(db_path)
    first = access.backup_sqlite(db_path, revision="r1")
    first_bytes = first.read_bytes()
    second = access.backup_sqlite(db_path, revision="r1")

    assert (first.name, second.name) == ("store.db.bak-r1", "store.db.bak-r1.1")
    assert first.read_bytes() == first_bytes
    assert [mode_of(first), mode_of(second)] == [0o600, 0o600]
    connection = sqlite3.connect(f"{second.as_uri()}?mode=ro", uri=True)
    assert connection.execute("SELECT finetune_id FROM finetune").fetchall() == [("alpha",)]
    connection.close()
    assert not [name for name in listing(db_path.parent) if access.PARTIAL_BACKUP_INFIX in name]


# --- 6: the db commands take the sync lock ---------------------------------------------------


@pytest.mark.parametrize(
    "command", [["db", "upgrade"], ["db", "downgrade", "base"], ["db", "reextract"]], ids=" ".join
)
def test_db_commands_that_write_exit_4_while_a_sync_holds_the_lock(db_path: Path, command: list[str]) -> None:
    location = access.locate_store(str(db_path))
    access.upgrade_store(location, revision=access.KNOWN_REVISIONS[0]).engine.dispose()
    before = file_digest(db_path)

    with sync_lock_for(location):
        result = bflsync(db_path, *command)

    assert (result.exit_code, result.stderr) == (
        4,
        f"bflsync: error: another sync is running (pid {os.getpid()})\n",
    )
    assert file_digest(db_path) == before
    assert listing(db_path.parent) == ["store.db"]


def test_db_downgrade_of_a_missing_store_creates_nothing(db_path: Path) -> None:
    result = bflsync(db_path, "db", "downgrade", "base")

    assert (result.exit_code, result.stderr) == (
        2,
        f"bflsync: error: no bflsync store at {db_path} - run `bflsync sync` first\n",
    )
    assert not db_path.exists()


# --- 7: reading or refusing leaves no files beside the store ---------------------------------


READ_COMMANDS = [
    ["query"],
    ["show", "alpha"],
    ["history", "alpha"],
    ["runs"],
    ["facets", "mode"],
    ["diff", "alpha", "alpha"],
    ["accounts"],
    ["db", "current"],
    ["db", "check"],
    ["sync", "--dry-run", "--base-url", "{url}"],
]


@as_root
@pytest.mark.parametrize("command", READ_COMMANDS, ids=" ".join)
def test_reading_another_users_store_leaves_no_files_beside_it(
    db_path: Path, mock: MockBFL, command: list[str]
) -> None:
    wal_store(db_path)
    os.chown(db_path, OTHER_UID, OTHER_UID)
    before = file_digest(db_path)

    result = bflsync(db_path, *(arg.format(url=mock.base_url) for arg in command))

    assert result.exit_code == 0, result.output
    assert listing(db_path.parent) == ["store.db"]
    assert file_digest(db_path) == before


def foreign_wal_database(path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    connection.execute("INSERT INTO invoices (total) VALUES (12.5)")
    connection.commit()
    connection.close()


def newer_store(path: Path) -> None:
    wal_store(path)
    connection = sqlite3.connect(path)
    connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    connection.commit()
    connection.close()


@pytest.mark.parametrize("make", [foreign_wal_database, newer_store], ids=["foreign", "newer"])
@pytest.mark.parametrize(
    "command",
    [
        ["sync", "--base-url", "{url}"],
        ["sync", "--dry-run", "--base-url", "{url}"],
        ["db", "upgrade"],
        ["query"],
    ],
    ids=" ".join,
)
def test_refusing_a_foreign_or_newer_file_leaves_it_byte_identical_and_alone(
    db_path: Path, mock: MockBFL, make: object, command: list[str]
) -> None:
    make(db_path)  # type: ignore[operator]
    assert listing(db_path.parent) == ["store.db"]
    before = file_digest(db_path)

    result = bflsync(db_path, *(arg.format(url=mock.base_url) for arg in command))

    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1
    assert listing(db_path.parent) == ["store.db"]
    assert file_digest(db_path) == before


@pytest.mark.parametrize(
    "command", [["sync", "--base-url", "{url}"], ["db", "upgrade"], ["query"]], ids=" ".join
)
def test_a_fifo_at_the_store_path_is_refused_at_once(
    db_path: Path, mock: MockBFL, command: list[str]
) -> None:
    os.mkfifo(db_path)
    argv = [
        sys.executable,
        "-m",
        "bflsync",
        "--db",
        str(db_path),
        *(a.format(url=mock.base_url) for a in command),
    ]

    done = subprocess.run(
        argv, env={**os.environ, "BFL_API_KEY": KEY}, capture_output=True, text=True, timeout=30
    )

    assert (done.returncode, done.stderr) == (
        2,
        f"bflsync: error: {db_path} is not a regular file; refusing to touch it\n",
    )
    assert listing(db_path.parent) == ["store.db"]
