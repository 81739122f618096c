"""The store's engine settings, file permissions and the open-for-read/open-for-write policy."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bflsync.errors import InputError, NotAStoreError, StoreMissingError, StoreTooNewError, StoreWriteError
from bflsync.store import access


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_locate_store_takes_a_plain_path(tmp_path: Path) -> None:
    location = access.locate_store(str(tmp_path / "x.db"))
    assert location.path == tmp_path / "x.db"
    assert location.url.get_backend_name() == "sqlite"


def test_locate_store_takes_a_sqlite_url(tmp_path: Path) -> None:
    location = access.locate_store(f"sqlite:///{tmp_path}/x.db")
    assert location.path == tmp_path / "x.db"


def test_locate_store_keeps_server_urls_as_urls() -> None:
    location = access.locate_store("postgresql+psycopg://user:secret@127.0.0.1/bfl")
    assert location.path is None
    assert "secret" not in location.display


def test_locate_store_defaults_to_the_user_data_dir(isolated_env: Path) -> None:
    assert access.locate_store(None).path == isolated_env / "bflsync" / "bflsync.db"


def test_a_url_without_an_installed_driver_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no database driver for 'postgresql\\+nosuchdriver'"):
        access.create_store_engine(
            access.locate_store("postgresql+nosuchdriver://127.0.0.1/x"), read_only=True
        )


@pytest.mark.parametrize("url", ["nosuchdb://host/x", "mysql://127.0.0.1/bfl"])
def test_a_url_of_an_unsupported_database_is_an_input_error(url: str) -> None:
    with pytest.raises(InputError, match="SQLite or PostgreSQL"):
        access.locate_store(url)


@pytest.mark.parametrize("bad", ["sqlite://", "sqlite:///:memory:", "://nonsense"])
def test_locate_store_refuses_urls_that_cannot_hold_a_store(bad: str) -> None:
    with pytest.raises(InputError):
        access.locate_store(bad)


def test_new_store_file_and_its_wal_files_are_private(db_path: Path, store_engine: Engine) -> None:
    with store_engine.begin() as connection:
        connection.exec_driver_sql("CREATE TEMP TABLE t (x)")
        wal_files = [db_path.with_name(db_path.name + suffix) for suffix in ("-wal", "-shm")]
        assert all(path.exists() for path in wal_files)
        assert [mode_of(path) for path in [db_path, *wal_files]] == [0o600, 0o600, 0o600]


def test_new_store_parent_directory_is_created_private(tmp_path: Path) -> None:
    opened = access.open_store_for_write(access.locate_store(str(tmp_path / "deep" / "store.db")))
    opened.engine.dispose()
    assert mode_of(tmp_path / "deep") == 0o700


def test_write_connections_use_wal_normal_sync_busy_timeout_and_foreign_keys(store_engine: Engine) -> None:
    with store_engine.connect() as connection:
        pragmas = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["synchronous"] == 1  # NORMAL
    assert pragmas["busy_timeout"] >= 5000
    assert pragmas["foreign_keys"] == 1


def test_write_transactions_take_the_write_lock_at_begin(db_path: Path, store_engine: Engine) -> None:
    other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        with store_engine.begin(), pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_read_engine_cannot_write(db_path: Path, store_engine: Engine) -> None:
    engine = access.open_store_for_read(access.locate_store(str(db_path)))
    try:
        with (
            engine.connect() as connection,
            pytest.raises(sa.exc.OperationalError, match=r"readonly|read-only"),
        ):
            connection.exec_driver_sql("DELETE FROM sync_run")
    finally:
        engine.dispose()


def test_read_engine_does_not_block_while_a_writer_holds_the_lock(
    db_path: Path, store_engine: Engine
) -> None:
    reader = access.open_store_for_read(access.locate_store(str(db_path)))
    try:
        with store_engine.begin() as writer:
            writer.exec_driver_sql(
                "INSERT INTO sync_run (started_at, status, source, pid, bflsync_version, listed, fetched,"
                " created, updated, unchanged, deleted, restored, failed)"
                " VALUES ('2026-01-01', 'running', 'h', 1, 'x', 0, 0, 0, 0, 0, 0, 0, 0)"
            )
            with reader.connect() as connection:
                assert connection.exec_driver_sql("SELECT count(*) FROM sync_run").scalar() == 0
    finally:
        reader.dispose()


def test_open_for_read_refuses_a_missing_store_without_creating_it(db_path: Path) -> None:
    with pytest.raises(StoreMissingError, match="run `bflsync sync` first"):
        access.open_store_for_read(access.locate_store(str(db_path)))
    assert not db_path.exists()


def test_open_for_read_refuses_a_store_behind_head(db_path: Path) -> None:
    location = access.locate_store(str(db_path))
    access.upgrade_store(location, revision=access.KNOWN_REVISIONS[0]).engine.dispose()
    before = file_digest(db_path)
    with pytest.raises(access.StoreBehindError, match="bflsync db upgrade"):
        access.open_store_for_read(location)
    assert file_digest(db_path) == before


@pytest.mark.parametrize("opener", [access.open_store_for_read, access.open_store_for_write])
def test_a_file_that_is_not_sqlite_is_refused_and_left_byte_identical(db_path: Path, opener: object) -> None:
    db_path.write_bytes(b"name,lr\nportrait,1e-5\n" * 100)
    before = file_digest(db_path)
    with pytest.raises(NotAStoreError, match="not a SQLite database"):
        opener(access.locate_store(str(db_path)))  # type: ignore[operator]
    assert file_digest(db_path) == before


@pytest.mark.parametrize("opener", [access.open_store_for_read, access.open_store_for_write])
def test_a_foreign_sqlite_database_is_refused_and_left_byte_identical(db_path: Path, opener: object) -> None:
    with sqlite3.connect(db_path) as connection:
        connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
        connection.execute("INSERT INTO invoices (total) VALUES (12.5)")
    connection.close()
    before = file_digest(db_path)
    with pytest.raises(NotAStoreError, match="without bflsync tables"):
        opener(access.locate_store(str(db_path)))  # type: ignore[operator]
    assert file_digest(db_path) == before


@pytest.mark.parametrize("opener", [access.open_store_for_read, access.open_store_for_write])
def test_a_foreign_database_stamped_with_our_revision_name_is_refused_untouched(
    db_path: Path, opener: object
) -> None:
    with sqlite3.connect(db_path) as connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.execute("INSERT INTO alembic_version VALUES (?)", (access.KNOWN_REVISIONS[0],))
    connection.close()
    before = file_digest(db_path)
    with pytest.raises(NotAStoreError, match="without bflsync tables"):
        opener(access.locate_store(str(db_path)))  # type: ignore[operator]
    assert file_digest(db_path) == before
    assert sorted(p.name for p in db_path.parent.iterdir()) == ["store.db"]


@pytest.mark.parametrize("opener", [access.open_store_for_read, access.open_store_for_write])
def test_a_store_from_a_newer_bflsync_is_refused_and_left_byte_identical(
    db_path: Path, opener: object
) -> None:
    access.open_store_for_write(access.locate_store(str(db_path))).engine.dispose()
    with sqlite3.connect(db_path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    connection.close()
    before = file_digest(db_path)
    with pytest.raises(StoreTooNewError, match="9999_from_the_future"):
        opener(access.locate_store(str(db_path)))  # type: ignore[operator]
    assert file_digest(db_path) == before


def test_a_truncated_sqlite_file_is_refused_without_a_traceback(db_path: Path) -> None:
    access.open_store_for_write(access.locate_store(str(db_path))).engine.dispose()
    db_path.write_bytes(db_path.read_bytes()[:1024])
    with pytest.raises(NotAStoreError):
        access.open_store_for_read(access.locate_store(str(db_path)))


def test_open_for_write_creates_a_missing_store_at_head(db_path: Path) -> None:
    opened = access.open_store_for_write(access.locate_store(str(db_path)))
    try:
        with opened.engine.connect() as connection:
            assert access.read_revision(connection) == access.HEAD_REVISION
    finally:
        opened.engine.dispose()
    assert (opened.created, opened.upgraded_from, opened.backup_path) == (True, None, None)


def test_open_for_write_on_a_current_store_changes_nothing(db_path: Path) -> None:
    location = access.locate_store(str(db_path))
    access.open_store_for_write(location).engine.dispose()
    opened = access.open_store_for_write(location)
    opened.engine.dispose()
    assert (opened.created, opened.upgraded_from, opened.backup_path) == (False, None, None)


def test_open_for_write_backs_up_then_upgrades_an_older_store(db_path: Path) -> None:
    location = access.locate_store(str(db_path))
    oldest = access.KNOWN_REVISIONS[0]
    access.upgrade_store(location, revision=oldest).engine.dispose()
    opened = access.open_store_for_write(location)
    try:
        with opened.engine.connect() as connection:
            assert access.read_revision(connection) == access.HEAD_REVISION
    finally:
        opened.engine.dispose()
    assert opened.upgraded_from == oldest
    assert opened.backup_path == db_path.with_name(f"store.db.bak-{oldest}")
    backup = sqlite3.connect(opened.backup_path)
    assert backup.execute("SELECT version_num FROM alembic_version").fetchall() == [(oldest,)]
    backup.close()
    assert mode_of(opened.backup_path) == 0o600


def test_backups_never_overwrite_an_earlier_backup(db_path: Path, store_engine: Engine) -> None:
    first = access.backup_sqlite(db_path, revision="r1")
    second = access.backup_sqlite(db_path, revision="r1")
    assert (first.name, second.name) == ("store.db.bak-r1", "store.db.bak-r1.1")


def test_the_recorded_head_matches_the_migrations() -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(access.alembic_config())
    assert scripts.get_heads() == [access.HEAD_REVISION]
    assert tuple(s.revision for s in reversed(list(scripts.walk_revisions()))) == access.KNOWN_REVISIONS


def test_a_store_locked_past_the_busy_timeout_is_a_one_line_store_error(db_path: Path) -> None:
    location = access.locate_store(str(db_path))
    driver_error = sqlite3.OperationalError("database is locked")
    with (
        pytest.raises(StoreWriteError, match="locked by another writer for longer than 10 s"),
        access.translate_errors(location),
    ):
        raise sa.exc.OperationalError("INSERT INTO finetune ...", {}, driver_error)
