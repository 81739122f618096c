"""Where the store lives, how to connect to it, and which schema revision it holds.

Three ways in, one per kind of command:

* :func:`open_store_for_read` never creates, migrates or writes: the connection is read-only
  at the SQLite level, so a read command cannot change the file even by accident.
* :func:`open_store_for_edit` writes to an existing store at head and changes nothing else
  (``bflsync label`` and ``note``).
* :func:`open_store_for_write` creates a missing store at head and upgrades an older one
  after an online backup. A file it refuses (not SQLite, foreign tables, newer schema) is
  inspected through a read-only connection first, so it stays byte-identical.

The revision check compares against :data:`HEAD_REVISION` (kept in :mod:`bflsync.store.check`, which
the lean read path shares), so read commands do not pay for importing alembic; a test keeps it equal
to the migrations' head.
"""

from __future__ import annotations

import errno
import glob
import io
import logging
import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool

from bflsync.config import default_db_path
from bflsync.errors import (
    InputError,
    StoreBehindError,
    StoreBusyError,
    StoreError,
    StoreMissingError,
    StoreUnsafeError,
    StoreWriteError,
)
from bflsync.store import pg_session
from bflsync.store.account_merge import downgrade_refusal
from bflsync.store.check import (
    ACCOUNTS_REVISION,
    BFLSYNC_TABLES,
    BUSY_TIMEOUT_MS,
    HEAD_REVISION,
    KNOWN_REVISIONS,
    SQLITE_HEADER,
    StoreState,
    check_server_options,
    classify_tables,
    display_url,
    refuse_ambiguous_url,
    reject_behind,
    reject_unusable,
    require_sqlite_file,
    require_sqlite_version,
    store_error_for,
)
from bflsync.store.files import (
    adopt_empty_store_file,
    check_journals,
    journal_path,
    open_store_file,
    read_immutable,
)

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "ACCOUNTS_REVISION",
    "BFLSYNC_TABLES",
    "BUSY_TIMEOUT_MS",
    "HEAD_REVISION",
    "KNOWN_REVISIONS",
    "SQLITE_HEADER",
    "StoreBehindError",
    "StoreState",
]

logger = logging.getLogger("bflsync.store.access")


@dataclass(frozen=True)
class StoreLocation:
    """A store given as a SQLite file (``path`` set) or as a SQLAlchemy URL of a server database."""

    url: sa.URL
    path: Path | None

    @property
    def display(self) -> str:
        return str(self.path) if self.path else display_url(self.url.render_as_string(hide_password=False))


@dataclass(frozen=True)
class OpenedStore:
    """A writable engine plus what opening it did, for the CLI to report."""

    engine: Engine
    created: bool
    upgraded_from: str | None
    backup_path: Path | None


def locate_store(db: str | None) -> StoreLocation:
    """Turn ``--db`` (a path, a SQLAlchemy URL, or nothing for the default) into a location."""
    if db is None:
        path = default_db_path()
    elif "://" in db:
        refuse_ambiguous_url(db)
        try:
            url = sa.make_url(db)
        except sa.exc.ArgumentError:
            raise InputError(f"--db: not a database path or SQLAlchemy URL: {display_url(db)}") from None
        except ValueError:
            raise InputError(f"--db: the port is not a number in {display_url(db)}") from None
        backend = url.get_backend_name()
        if backend == "postgresql":
            _check_server_options(url)
            return StoreLocation(url=url, path=None)
        if backend != "sqlite":
            raise InputError(f"--db: a bflsync store lives in SQLite or PostgreSQL, not {backend!r}")
        if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
            raise InputError(
                "--db: an in-memory or URI-style SQLite URL cannot hold a store; give a file path"
            )
        path = Path(url.database)
    else:
        path = Path(db)
    path = path.expanduser().absolute()
    return StoreLocation(url=sa.URL.create("sqlite+pysqlite", database=str(path)), path=path)


def _check_server_options(url: sa.URL) -> None:
    """Refuse (exit 2) a server URL whose options libpq cannot read, before anything connects."""
    port = [("port", str(url.port))] if url.port is not None else []
    check_server_options(
        [
            *port,
            *(
                (name, text)
                for name, value in url.query.items()
                for text in ((value,) if isinstance(value, str) else value)
            ),
        ]
    )


def create_store_engine(location: StoreLocation, *, read_only: bool, immutable: bool = False) -> Engine:
    """An engine with bflsync's connection settings; the caller disposes it."""
    if location.path is None:
        return _server_engine(location.url, read_only=read_only)
    require_sqlite_version()
    path = location.path
    read_uri = f"{path.as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")

    def connect() -> sqlite3.Connection:
        target, uri = (read_uri, True) if read_only else (str(path), False)
        # isolation_level=None: pysqlite must not open transactions on its own; the
        # "begin" hook below decides how each transaction starts.
        return sqlite3.connect(target, uri=uri, isolation_level=None, check_same_thread=False)

    engine = sa.create_engine("sqlite+pysqlite://", creator=connect, poolclass=QueuePool)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        dbapi_connection.execute("PRAGMA foreign_keys = ON")
        if read_only:
            dbapi_connection.execute("PRAGMA query_only = ON")
        else:
            dbapi_connection.execute("PRAGMA journal_mode = WAL")
            dbapi_connection.execute("PRAGMA synchronous = NORMAL")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a deferred BEGIN that reads and then
        # writes fails with "database is locked" under concurrency, busy timeout or not.
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def _server_engine(url: sa.URL, *, read_only: bool) -> Engine:
    read_timeout = pg_session.read_timeout_seconds(_query_values(url, pg_session.READ_TIMEOUT_OPTION))
    url = url.difference_update_query([pg_session.READ_TIMEOUT_OPTION])
    try:
        engine = sa.create_engine(
            url, pool_pre_ping=True, connect_args=pg_session.connect_args(dict(url.query))
        )
    except (sa.exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        raise InputError(
            f"--db: no database driver for {url.drivername!r} is installed ({exc}); "
            "install it (for PostgreSQL: pip install psycopg) or give a SQLite path"
        ) from None
    if read_only:

        @event.listens_for(engine, "connect")
        def _read_only(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cursor.close()
            # SET is transactional in PostgreSQL: without a commit the pool's reset rolls it back.
            dbapi_connection.commit()

    @event.listens_for(engine, "do_connect")
    def _connect_with_deadline(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        from bflsync.store import pg_connection

        return pg_connection.connect(*cargs, read_timeout=read_timeout, **cparams)

    where = display_url(url.render_as_string(hide_password=False))

    @event.listens_for(engine, "connect")
    def _refuse_planted_code(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(pg_session.UNTRUSTED_OBJECTS_SQL)
            refusal = pg_session.untrusted_objects_refusal(where, cursor.fetchall())
        finally:
            cursor.close()
            dbapi_connection.rollback()
        if refusal is not None:
            raise StoreUnsafeError(refusal)

    return engine


def _query_values(url: sa.URL, name: str) -> list[str]:
    value = url.query.get(name)
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def read_revision(connection: Connection) -> str | None:
    """The alembic revision stamped in the database, without importing alembic."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def classify(connection: Connection) -> tuple[StoreState, str | None]:
    """What the database holds (see :func:`bflsync.store.check.classify_tables`) and its revision."""
    revision = read_revision(connection)
    return classify_tables(sa.inspect(connection).get_table_names(), revision), revision


def open_store_for_read(location: StoreLocation, *, allow_behind: bool = False) -> Engine:
    """A read-only engine on an existing store at head (or any known revision if ``allow_behind``)."""
    if location.path is None:
        return _checked_read_engine(location, allow_behind=allow_behind, immutable=False)
    require_sqlite_file(location.path)
    # Judged first through a connection that leaves no files behind, since it may be refused.
    state, revision = inspect_state(location)
    _reject_unusable(location, state, revision, missing_ok=False)
    immutable = read_immutable(location.path)
    if not immutable:
        # Read normally, SQLite writes the -shm file: planted journals are refused first.
        check_journals(location.path)
    try:
        return _checked_read_engine(location, allow_behind=allow_behind, immutable=immutable)
    except StoreWriteError:
        # A WAL store in a directory (or mount) this user cannot write: SQLite cannot create
        # the -shm file it wants even to read. Without a -wal file no writer is mid-way, so the
        # file can be read as immutable for the few moments a read command takes.
        if journal_path(location.path, "-wal").exists():
            raise
        return _checked_read_engine(location, allow_behind=allow_behind, immutable=True)


def _checked_read_engine(location: StoreLocation, *, allow_behind: bool, immutable: bool) -> Engine:
    engine = create_store_engine(location, read_only=True, immutable=immutable)
    try:
        with translate_errors(location), engine.connect() as connection:
            state, revision = classify(connection)
        _reject_unusable(location, state, revision, missing_ok=False)
        if not allow_behind:
            reject_behind(location.display, state, revision)
    except BaseException:
        engine.dispose()
        raise
    return engine


def open_store_for_edit(location: StoreLocation) -> Engine:
    """A writable engine on an existing store at head, for ``label`` and ``note``.

    Unlike :func:`open_store_for_write` it never creates or migrates: a few words of
    annotation are no reason to create a store or change its schema. Missing, older or
    foreign stores are refused exactly as the read commands refuse them. Its journals are
    checked as a sync checks them: SQLite would otherwise write through a planted one.
    """
    open_store_for_read(location).dispose()
    if location.path is not None:
        _prepare_sqlite_file(location.path, create=False)
    return create_store_engine(location, read_only=False)


def open_store_for_write(location: StoreLocation) -> OpenedStore:
    """A writable engine on a store at head: created if missing, upgraded (after a backup) if older."""
    return upgrade_store(location, revision="head")


def upgrade_store(location: StoreLocation, *, revision: str) -> OpenedStore:
    """Bring a store (created if missing) to ``revision``, backing up existing data first."""
    target = len(KNOWN_REVISIONS) - 1 if revision in ("head", HEAD_REVISION) else _position_of(revision)
    created = False
    if location.path is not None:
        created = _prepare_sqlite_file(location.path)
    state, current = inspect_state(location)
    _reject_unusable(location, state, current, missing_ok=True)
    if current and target is not None and target < KNOWN_REVISIONS.index(current):
        raise InputError(
            f"the store is at schema revision {current}, newer than {revision}: "
            f"use `bflsync db downgrade {revision}` to go back"
        )
    needs_migration = state is not StoreState.CURRENT or revision not in ("head", HEAD_REVISION)
    backup_path = None
    if needs_migration and state is StoreState.BEHIND and location.path is not None and current:
        backup_path = backup_sqlite(location.path, revision=current)
    engine = create_store_engine(location, read_only=False)
    try:
        if needs_migration:
            with translate_errors(location):
                run_migration(engine, lambda command, config: command.upgrade(config, revision))
    except BaseException:
        engine.dispose()
        raise
    upgraded_from = current if state is StoreState.BEHIND else None
    return OpenedStore(engine=engine, created=created, upgraded_from=upgraded_from, backup_path=backup_path)


def downgrade_store(location: StoreLocation, *, revision: str) -> Path | None:
    """Downgrade an existing store to ``revision`` after a backup; return the backup's path."""
    if location.path is not None:
        _prepare_sqlite_file(location.path, create=False)
    state, current = inspect_state(location)
    _reject_unusable(location, state, current, missing_ok=False)
    target = _position_of(revision)
    if current and target is not None and target >= KNOWN_REVISIONS.index(current):
        raise InputError(f"the store is at schema revision {current}; {revision} is not older: nothing to do")
    if (
        current
        and target is not None
        and target < KNOWN_REVISIONS.index(ACCOUNTS_REVISION) <= (KNOWN_REVISIONS.index(current))
    ):
        _refuse_merging_accounts(location)
    backup_path = None
    if location.path is not None and current:
        backup_path = backup_sqlite(location.path, revision=current)
    engine = create_store_engine(location, read_only=False)
    try:
        with translate_errors(location):
            run_migration(engine, lambda command, config: command.downgrade(config, revision))
    finally:
        engine.dispose()
    return backup_path


def _refuse_merging_accounts(location: StoreLocation) -> None:
    """Before any backup: leave no backup file behind for a downgrade the migration would refuse."""
    engine = create_store_engine(location, read_only=True)
    try:
        with translate_errors(location), engine.connect() as connection:
            refusal = downgrade_refusal(connection)
    finally:
        engine.dispose()
    if refusal is not None:
        raise InputError(refusal)


def inspect_state(location: StoreLocation) -> tuple[StoreState, str | None]:
    """Classify an existing store through a read-only connection that leaves no files behind."""
    immutable = location.path is not None and read_immutable(location.path, inspecting=True)
    engine = create_store_engine(location, read_only=True, immutable=immutable)
    try:
        with translate_errors(location), engine.connect() as connection:
            return classify(connection)
    finally:
        engine.dispose()


def _reject_unusable(
    location: StoreLocation, state: StoreState, revision: str | None, *, missing_ok: bool
) -> None:
    reject_unusable(location.display, state, revision, missing_ok=missing_ok)


def _prepare_sqlite_file(path: Path, *, create: bool = True) -> bool:
    """Check the store file and its journals before writing; create a missing one, adopt an empty one.

    Return whether the store is new (created here, or an empty file made into a store).
    SQLite gives the -wal and -shm files the main file's mode, so making the file 0600
    ourselves, before SQLite writes, keeps all three private. See :mod:`bflsync.store.files`.
    """
    fd, created = open_store_file(path, create=create)
    try:
        empty = os.fstat(fd).st_size == 0
    finally:
        os.close(fd)
    if created or empty:
        if not create:
            raise StoreMissingError(f"no bflsync store at {path} (empty file) - run `bflsync sync` first")
        adopt_empty_store_file(path)
        return True
    require_sqlite_file(path)
    check_journals(path)
    return False


def backup_sqlite(path: Path, *, revision: str) -> Path:
    """Copy a live SQLite store to ``<db>.bak-<revision>`` (``.1``, ``.2``… if taken); return its path.

    The online backup API copies a consistent snapshot (a file copy of a live store could be
    torn). The copy is written in a private temporary directory beside the store, synced to
    disk, and only then given its final name, by a hard link that never replaces an earlier
    backup: a backup under a final name is always complete. A temporary directory that a
    killed run left behind is removed first (the caller holds the sync lock, so no other
    backup is in progress).
    """
    _remove_partial_backups(path)
    try:
        workdir = Path(tempfile.mkdtemp(prefix=f"{path.name}{PARTIAL_BACKUP_INFIX}", dir=path.parent))
    except OSError as exc:
        raise StoreWriteError(f"cannot back up {path}: {exc.strerror}") from exc
    try:
        partial = workdir / "backup.db"
        # Created 0600 before SQLite opens it, like the store: a backup holds the same data.
        os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, 0o600))
        source = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
        try:
            destination = sqlite3.connect(partial)
            try:
                source.backup(destination)
            finally:
                destination.close()
        finally:
            source.close()
        _fsync(partial)
        target = _link_unused_name(partial, path.with_name(f"{path.name}.bak-{revision}"))
        _fsync(path.parent)
    except (OSError, sqlite3.Error) as exc:
        raise StoreWriteError(f"cannot back up {path}: {exc}") from exc
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return target


PARTIAL_BACKUP_INFIX = ".bak-partial-"
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK})


def _remove_partial_backups(path: Path) -> None:
    """Remove the private temporary directories of backups whose run was killed, saying so."""
    for entry in path.parent.glob(f"{glob.escape(path.name)}{PARTIAL_BACKUP_INFIX}*"):
        info = entry.lstat()
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
            shutil.rmtree(entry, ignore_errors=True)
            logger.warning("removed %s, a partial backup left by an interrupted run", entry)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_unused_name(partial: Path, wanted: Path) -> Path:
    """Give ``partial`` the first free name of ``wanted``, ``wanted.1``, …; never replace a file."""
    for suffix in range(10_000):
        target = wanted if suffix == 0 else wanted.with_name(f"{wanted.name}.{suffix}")
        try:
            os.link(partial, target, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS or os.path.lexists(target):
                raise
            partial.rename(target)  # a file system without hard links: checked free just now
        return target
    raise StoreWriteError(f"cannot back up: {wanted} and 10,000 numbered names after it are taken")


@contextmanager
def translate_errors(location: StoreLocation) -> Iterator[None]:
    """Turn driver errors about the file itself into one-line store errors; others pass through."""
    try:
        yield
    except StoreBusyError as exc:
        if location.path is None and "; held by" not in str(exc):
            raise StoreBusyError(f"{exc}; {_lock_holders(location)}") from exc
        raise
    except (sa.exc.DBAPIError, sqlite3.Error) as exc:
        error = _store_error_for(location, str(getattr(exc, "orig", exc)))
        if error is None:
            raise
        if isinstance(error, StoreBusyError) and location.path is None:
            error = StoreBusyError(f"{error}; {_lock_holders(location)}")
        raise error from exc


def _lock_holders(location: StoreLocation) -> str:
    """Who holds locks on the store's tables, for a one-line lock timeout error; best effort."""
    engine = create_store_engine(location, read_only=True)
    try:
        with engine.connect() as connection:
            rows = connection.exec_driver_sql(pg_session.LOCK_HOLDERS_SQL).all()
    except (sa.exc.SQLAlchemyError, StoreError):
        return "its holder is not visible"
    finally:
        engine.dispose()
    return pg_session.describe_lock_holders([tuple(row) for row in rows])


def _store_error_for(location: StoreLocation, message: str) -> StoreError | None:
    return store_error_for(location.display, message)


def migrations_dir() -> Path:
    """Inside the wheel migrations ship as ``bflsync/migrations``; a checkout keeps them at the root."""
    package = Path(__file__).parent.parent
    packaged = package / "migrations"
    return packaged if packaged.is_dir() else package.parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    # Alembic prints progress notes to stdout; stdout is for command output only.
    config = Config(stdout=io.StringIO())
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["connection"] = connection
    return config


def run_migration(engine: Engine, step: Callable[[Any, Config], None]) -> None:
    """Run one alembic command on ``engine`` in a single transaction.

    On SQLite, foreign keys are switched off around it: batch migrations rebuild tables
    (copy, drop, rename) and the drop would cascade into child rows. The pragma cannot
    change inside a transaction, so it is set on the raw connection before BEGIN, and the
    result is verified with ``foreign_key_check`` before committing.
    """
    from alembic import command

    with engine.connect() as connection:
        sqlite = engine.dialect.name == "sqlite"
        raw = connection.connection.driver_connection
        assert raw is not None
        if sqlite:
            raw.execute("PRAGMA foreign_keys = OFF")
        try:
            with connection.begin():
                step(command, alembic_config(connection))
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StoreError(f"migration left {len(broken)} broken foreign keys; rolled back")
        finally:
            if sqlite:
                raw.execute("PRAGMA foreign_keys = ON")


def _position_of(revision: str) -> int | None:
    """Where a target revision sits in KNOWN_REVISIONS (-1 for base; None for a relative one like -1).

    Resolving it fails before any backup or migration step when alembic would not know where to go.
    """
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    try:
        scripts = ScriptDirectory.from_config(alembic_config()).get_revisions(revision)
    except CommandError as exc:
        raise InputError(f"unknown schema revision {revision!r}: {exc}") from None
    if revision.startswith(("+", "-")):
        return None
    return KNOWN_REVISIONS.index(scripts[0].revision) if scripts else -1


def alembic_check(connection: Connection) -> None:
    """Raise alembic's ``AutogenerateDiffsDetected`` when the models and the database at head differ."""
    from alembic import command

    command.check(alembic_config(connection))
