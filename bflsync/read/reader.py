"""Read-only connections to a store, for the commands that only read.

On SQLite (a path, the common case) this is the standard library's ``sqlite3`` and nothing
heavier: a read command's time is mostly start-up, and SQLAlchemy alone costs more to
import than a query over thousands of finetunes. The file is opened ``mode=ro`` with
``query_only``, its revision is read from ``alembic_version`` directly, and a store on a
read-only medium, or another user's, is read as ``immutable`` (see :func:`_open_sqlite`). A PostgreSQL store is
read through psycopg by :mod:`bflsync.read.server_reader`, in one read-only transaction.

Both kinds are a :class:`Reader`: SQL text with ``?`` placeholders plus bound parameters
in, plain tuples out. The SQL that :mod:`bflsync.read.search` and :mod:`bflsync.read.audit_trail` write for
PostgreSQL contains no literal ``?`` or ``%``, so the placeholders translate one to one.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

from bflsync.errors import DetailsNotJsonError, StoreWriteError
from bflsync.store.check import (
    BUSY_TIMEOUT_MS,
    is_server_url,
    require_head,
    require_sqlite_file,
    require_sqlite_version,
    store_error_for,
)
from bflsync.store.files import check_journals, read_immutable
from bflsync.timeform import iso_utc

Row = tuple[Any, ...]


class Reader(Protocol):
    """A read-only connection to a store, whatever the database."""

    dialect: str
    """``"sqlite"`` or ``"postgresql"``: which SQL the callers write."""
    finetune_columns: frozenset[str]
    """The ``finetune`` table's columns, for SQL that uses optional ones (``details_jsonb``)."""

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...

    def named_rows(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[Row]]: ...

    def time_param(self, moment: datetime) -> Any: ...

    def bool_param(self, value: bool) -> Any: ...


def sqlite_time(moment: datetime) -> str:
    """The text the store keeps on SQLite (:mod:`bflsync.timeform`): compares as the times do."""
    return iso_utc(moment)


class SqliteReader:
    """A :class:`Reader` over a ``sqlite3`` connection opened read-only."""

    dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection, *, where: str) -> None:
        self.connection = connection
        self.where = where
        self.finetune_columns: frozenset[str] = frozenset()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._execute(sql, params).fetchall()

    def named_rows(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[Row]]:
        cursor = self._execute(sql, params)
        rows = cursor.fetchall()
        return [item[0] for item in cursor.description], rows

    def time_param(self, moment: datetime) -> Any:
        return sqlite_time(moment)

    def bool_param(self, value: bool) -> Any:
        return int(value)

    def close(self) -> None:
        self.connection.close()

    def _execute(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        try:
            return self.connection.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            if "malformed JSON" in str(exc):
                raise DetailsNotJsonError(str(exc)) from exc
            error = store_error_for(self.where, str(exc))
            if error is None:
                raise
            raise error from exc


class ConnectionReader:
    """A :class:`Reader` over the write side's own SQLAlchemy connection: ``bflsync label`` finds
    the finetune it edits the way ``show`` does."""

    def __init__(
        self, connection: Any, *, where: str, finetune_columns: frozenset[str] = frozenset()
    ) -> None:
        self.connection = connection
        self.where = where
        self.finetune_columns = finetune_columns
        self.dialect: str = connection.dialect.name

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.named_rows(sql, params)[1]

    def named_rows(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[Row]]:
        # Here only: this module is the SQLite read path, which must not load SQLAlchemy (~60 ms).
        import sqlalchemy as sa

        statement = sql if self.dialect == "sqlite" else sql.replace("%", "%%").replace("?", "%s")
        try:
            result = self.connection.exec_driver_sql(statement, tuple(params))
            return list(result.keys()), [tuple(row) for row in result]
        except sa.exc.DBAPIError as exc:
            message = str(exc.orig)
            if "invalid input syntax for type json" in message:
                self.connection.rollback()
                raise DetailsNotJsonError(message) from exc
            error = store_error_for(self.where, message)
            if error is None:
                raise
            raise error from exc

    def time_param(self, moment: datetime) -> Any:
        if self.dialect == "sqlite":
            return sqlite_time(moment)
        return moment.astimezone(UTC)

    def bool_param(self, value: bool) -> Any:
        return int(value) if self.dialect == "sqlite" else value


@contextmanager
def open_reader(db: str | None) -> Iterator[Reader]:
    """A read-only :class:`Reader` on the store ``--db`` names (a path, a URL, or the default)."""
    if db is not None and "://" in db:
        with _open_url(db) as reader:
            yield reader
        return
    if db is None:
        path = default_sqlite_path()
    else:
        # What Path(db).expanduser().absolute() gives, without importing pathlib (and its
        # urllib.parse) on every read: '..' stays, as a symlinked directory may need it.
        path = os.path.expanduser(db)
        if not os.path.isabs(path):
            path = os.path.join(os.getcwd(), path)
    with closing(_open_sqlite(path)) as sqlite_reader:
        yield sqlite_reader


@contextmanager
def _open_url(db: str) -> Iterator[Reader]:
    if is_server_url(db):
        # Imported here: the PostgreSQL reader and its session module are ~3 ms of every SQLite
        # read's start-up (measured with -X importtime), which `show` cannot spare within its budget.
        from bflsync.read.server_reader import open_server_reader

        with closing(open_server_reader(db)) as server_reader:
            yield server_reader
        return
    # A sqlite:// URL: SQLAlchemy's rules say which file it names, as for writes. Imported here:
    # store.access loads SQLAlchemy, which a read by path must not (~60 ms of start-up).
    from bflsync.store.access import locate_store

    location = locate_store(db)
    assert location.path is not None  # locate_store refuses every other backend
    with closing(_open_sqlite(str(location.path))) as sqlite_reader:
        yield sqlite_reader


def default_sqlite_path() -> str:
    """:func:`bflsync.config.default_db_path` as a str, computed without platformdirs where that is plain.

    platformdirs imports pathlib, shutil, tempfile and random: ~9 ms of every read command that
    names no ``--db``. On Linux with ``XDG_DATA_HOME`` unset and a plain absolute ``HOME``, its answer
    is ``$HOME/.local/share/bflsync``; anywhere else (other platforms, XDG set, Android, an odd
    ``HOME``) platformdirs decides, as for writes. A test keeps both answers equal.
    """
    home = os.environ.get("HOME", "")
    plain = (
        sys.platform == "linux"
        and "XDG_DATA_HOME" not in os.environ
        and not hasattr(sys, "getandroidapilevel")
        and "ANDROID_DATA" not in os.environ
        and home.startswith("/")
        and home != "/"
        and os.path.normpath(home) == home
    )
    if plain:
        return f"{home}/.local/share/bflsync/bflsync.db"  # config.APP_NAME / config.DB_FILENAME
    from bflsync.config import default_db_path

    return str(default_db_path())


def _open_sqlite(path: str) -> SqliteReader:
    """A checked read-only connection to a SQLite store at head, by the rules of :mod:`bflsync.store.files`.

    A read-only connection to a file without ``-wal`` creates ``-wal`` and ``-shm`` beside
    it. So the file is judged first through an immutable connection, which creates nothing:
    a refused file (foreign, too new, behind) is left exactly as found, and so is a store of
    another user's, which is read immutable throughout. Our own store is then read normally,
    one snapshot however a sync writes meanwhile. A WAL store in a directory (or mount) this
    user cannot write cannot even be read normally: SQLite cannot create the ``-shm`` file it
    wants. Without a ``-wal`` file no writer is mid-way, so it is read as immutable then.
    """
    require_sqlite_version()
    require_sqlite_file(path)
    if read_immutable(path, inspecting=True):
        inspected = _checked_sqlite(path, immutable=True)
        if read_immutable(path):
            return inspected
        inspected.close()
    # Read normally, SQLite writes the -shm file (and would roll back a -journal): as for writes,
    # journals planted beside the store are refused before it touches them.
    check_journals(path)
    try:
        return _checked_sqlite(path, immutable=False)
    except StoreWriteError:
        if os.path.exists(path + "-wal"):
            raise
        return _checked_sqlite(path, immutable=True)


def file_uri(path: str) -> str:
    """The ``file:`` URI of an absolute path, as ``Path.as_uri()`` writes it (bytes outside
    ``A-Za-z0-9/._~-`` percent-encoded), without importing pathlib and urllib.parse."""
    raw = os.fsencode(path)
    return "file://" + "".join(chr(byte) if byte in _URI_SAFE else f"%{byte:02X}" for byte in raw)


_URI_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._~-")


def _checked_sqlite(path: str, *, immutable: bool) -> SqliteReader:
    uri = f"{file_uri(path)}?mode=ro" + ("&immutable=1" if immutable else "")
    connection = sqlite3.connect(
        uri, uri=True, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    reader = SqliteReader(connection, where=path)
    try:
        connection.execute("PRAGMA query_only = ON")
        # One snapshot for every statement of the command, however a sync writes meanwhile.
        connection.execute("BEGIN")
        tables = [
            name
            for (name,) in reader.rows("SELECT name FROM sqlite_master WHERE type = 'table'")
            if not name.startswith("sqlite_")
        ]
        require_head(reader.rows, path, tables)
        reader.finetune_columns = frozenset(row[1] for row in reader.rows("PRAGMA table_info(finetune)"))
    except BaseException:
        connection.close()
        raise
    return reader
