"""The read commands' reader on a PostgreSQL store: psycopg 3 directly, no SQLAlchemy.

The store URL goes to libpq as it is (bar the ``+psycopg`` of SQLAlchemy's scheme), so libpq's
whole behaviour applies: ``~/.pgpass``, service files, the ``PG*`` variables, every ``sslmode``,
several hosts. A command reads in one read-only ``REPEATABLE READ`` transaction (one snapshot,
however a sync writes meanwhile), with every value a bound parameter.

psycopg is the ``postgres`` extra, so it is imported in :func:`connect` only, the one place a
read command connects: SQLite reads never load it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bflsync.errors import (
    DetailsNotJsonError,
    InputError,
    StoreBusyError,
    StoreRefusedError,
    StoreUnreachableError,
    StoreUnsafeError,
)
from bflsync.store import pg_session
from bflsync.store.check import (
    check_server_options,
    display_url,
    refuse_ambiguous_url,
    require_head,
    store_error_for,
)

if TYPE_CHECKING:
    import psycopg

Row = tuple[Any, ...]
# Timestamps come back in the session's time zone: UTC, as the SQLite side stores them.
SESSION_OPTIONS = "-c TimeZone=UTC"


def libpq_url(url: str) -> str:
    """The URL as libpq reads it: SQLAlchemy's ``postgresql+psycopg://`` scheme as ``postgresql://``."""
    return "postgresql://" + url.partition("://")[2]


def connect(url: str) -> psycopg.Connection[Row]:
    """A psycopg connection to the store at ``url``, read-only and ``REPEATABLE READ``.

    The one place a read command connects to PostgreSQL: session options belong here.
    Raises :class:`~bflsync.errors.InputError` for a URL libpq cannot read and
    :class:`~bflsync.errors.StoreUnreachableError` when the server cannot be reached or refuses us.
    """
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ModuleNotFoundError as exc:
        raise InputError(
            f"--db: no PostgreSQL driver is installed ({exc}); "
            "install it (pip install 'bflsync[postgres]') or give a SQLite path"
        ) from None
    refuse_ambiguous_url(url)
    where = display_url(url)
    url, read_timeout = pg_session.split_read_timeout(url)
    conninfo = libpq_url(url)
    try:
        parameters = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        raise InputError(f"--db: not a PostgreSQL URL that libpq can read: {where}") from None
    check_server_options((name, str(value)) for name, value in parameters.items())
    session = pg_session.connect_args({name: str(value) for name, value in parameters.items()})
    session["options"] = f"{session['options']} {SESSION_OPTIONS}"
    from bflsync.store import pg_connection

    try:
        connection = pg_connection.connect(conninfo, read_timeout=read_timeout, **session)
    except psycopg.Error as exc:
        # libpq says why over several lines (one per host tried): one line, as every error is.
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise StoreUnreachableError(f"cannot reach the store at {where} ({reason})") from None
    connection.read_only = True
    connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    return connection


class ServerReader:
    """A :class:`~bflsync.read.reader.Reader` over a psycopg connection, in read-only transactions."""

    dialect = "postgresql"

    def __init__(self, connection: psycopg.Connection[Row], *, where: str) -> None:
        self.connection = connection
        self.where = where
        self.finetune_columns: frozenset[str] = frozenset()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.named_rows(sql, params)[1]

    def named_rows(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[Row]]:
        import psycopg

        # The SQL that bflsync.read writes holds no literal ? or %: the placeholders map one to one.
        statement = sql.replace("%", "%%").replace("?", "%s")
        try:
            cursor = self.connection.execute(statement, tuple(params))
            if cursor.description is None:  # a statement without rows (SET)
                return [], []
            return [column.name for column in cursor.description], cursor.fetchall()
        except psycopg.Error as exc:
            error = self._store_error(exc)
            if not self.connection.closed:
                # The statement failed its transaction; later statements get a fresh one.
                with contextlib.suppress(psycopg.Error):
                    self.connection.rollback()
            raise error from exc

    def time_param(self, moment: datetime) -> Any:
        return moment.astimezone(UTC)

    def bool_param(self, value: bool) -> Any:
        return value

    def close(self) -> None:
        self.connection.close()

    def _store_error(self, exc: Exception) -> Exception:
        """The one-line store error (exit 3) a server's complaint stands for, never a bug's exit 70."""
        import psycopg

        message = _first_line(exc)
        if "invalid input syntax for type json" in message:
            return DetailsNotJsonError(message)
        known = store_error_for(self.where, message)
        if isinstance(known, StoreBusyError) and not self.connection.closed:
            with contextlib.suppress(psycopg.Error):
                self.connection.rollback()
                holders = self.connection.execute(pg_session.LOCK_HOLDERS_SQL).fetchall()
                # A read that waited past lock_timeout is refused like any other limit (exit 3);
                # only writers waiting for the store's lock exit 4.
                known = StoreRefusedError(f"{known}; {pg_session.describe_lock_holders(holders)}")
        if known is not None:
            return known
        if self.connection.closed or isinstance(exc, psycopg.InterfaceError):
            return StoreUnreachableError(f"lost the store at {self.where} ({message})")
        if isinstance(exc, psycopg.OperationalError | psycopg.InternalError):
            # statement_timeout, lock_timeout, the server shutting down, out of resources.
            return StoreRefusedError(f"the store at {self.where} stopped the read ({message})")
        return exc


def open_server_reader(url: str) -> ServerReader:
    """A reader on the PostgreSQL store at ``url``, refused unless the store is at head."""
    reader = ServerReader(connect(url), where=display_url(url))
    try:
        _check_revision(reader)
    except BaseException:
        reader.close()
        raise
    return reader


# The current schema's tables and the finetune table's columns, in one round trip; the
# catalogue rather than information_schema, whose views take milliseconds to plan.
_CATALOGUE = (
    "SELECT pg_catalog.json_build_array("
    "(SELECT pg_catalog.json_agg(tablename) FROM pg_catalog.pg_tables"
    " WHERE schemaname OPERATOR(pg_catalog.=) pg_catalog.current_schema()),"
    " (SELECT pg_catalog.json_agg(attname) FROM pg_catalog.pg_attribute"
    " WHERE attrelid OPERATOR(pg_catalog.=)"
    " pg_catalog.to_regclass(pg_catalog.concat(pg_catalog.quote_ident(pg_catalog.current_schema()), '.finetune'))"
    " AND attnum OPERATOR(pg_catalog.>) 0 AND NOT attisdropped))"
)


def _check_revision(reader: ServerReader) -> None:
    """Refuse a database that is not a store at head (see :func:`bflsync.read.reader.require_head`)."""
    refusal = pg_session.untrusted_objects_refusal(
        reader.where, reader.rows(pg_session.UNTRUSTED_OBJECTS_SQL)
    )
    if refusal is not None:
        raise StoreUnsafeError(refusal)
    ((catalogue,),) = reader.rows(_CATALOGUE)
    tables, columns = (names or [] for names in catalogue)
    require_head(reader.rows, reader.where, tables)
    reader.finetune_columns = frozenset(columns)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
