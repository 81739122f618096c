"""The read commands' reader on a PostgreSQL store, over :mod:`bflsync.read.pgwire` instead of SQLAlchemy.

:func:`open_wire_reader` connects with the small stdlib client, checks the schema revision
by reading ``alembic_version`` itself, and answers :class:`~bflsync.read.reader.Reader` calls in
one read-only ``REPEATABLE READ`` transaction. It returns ``None`` for what the client does
not support (see :mod:`bflsync.read.pgwire`), and when libpq's environment variables (``PG*``) are
set, since only libpq knows what they mean together: the caller then reads through
SQLAlchemy and psycopg as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from bflsync.errors import StoreBusyError, StoreUnreachableError, StoreUnsafeError
from bflsync.read import pgwire
from bflsync.read.reader import DetailsNotJsonError, require_head
from bflsync.store import pg_session
from bflsync.store.check import display_url, refuse_ambiguous_url, store_error_for

Row = tuple[Any, ...]
# What a URL must start with for the wire client to try it.
WIRE_SCHEMES = tuple(f"{scheme}://" for scheme in pgwire.SCHEMES)


class WireReader:
    """A :class:`~bflsync.read.reader.Reader` over a :class:`bflsync.read.pgwire.Connection`."""

    dialect = "postgresql"

    def __init__(self, connection: pgwire.Connection, *, where: str) -> None:
        self.connection = connection
        self.where = where
        self.finetune_columns: frozenset[str] = frozenset()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.named_rows(sql, params)[1]

    def named_rows(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[Row]]:
        try:
            return self.connection.query(sql, params)
        except pgwire.ServerError as exc:
            if self.connection.status == "E":
                # The statement failed its transaction; later statements get a fresh one.
                self.connection.execute_simple("ROLLBACK")
                self.connection.execute_simple(pgwire.BEGIN)
            message = str(exc)
            if "invalid input syntax for type json" in message:
                raise DetailsNotJsonError(message) from exc
            error = store_error_for(self.where, message)
            if error is None:
                raise
            if isinstance(error, StoreBusyError):
                holders = self.connection.query(pg_session.LOCK_HOLDERS_SQL)[1]
                error = StoreBusyError(f"{error}; {pg_session.describe_lock_holders(holders)}")
            raise error from exc
        except pgwire.ConnectionFailed as exc:
            raise StoreUnreachableError(f"cannot reach the store at {self.where} ({exc})") from exc

    def time_param(self, moment: datetime) -> Any:
        return moment.astimezone(UTC)

    def bool_param(self, value: bool) -> Any:
        return value

    def close(self) -> None:
        self.connection.close()


def open_wire_reader(url: str, *, environ: Mapping[str, str]) -> WireReader | None:
    """A checked reader on the store at ``url``, or ``None`` when psycopg must do the connecting."""
    refuse_ambiguous_url(url)
    if not url.startswith(WIRE_SCHEMES) or any(name.startswith("PG") for name in environ):
        return None
    import os
    import pwd

    try:
        target = pgwire.parse_url(url, default_user=pwd.getpwuid(os.geteuid()).pw_name)
    except pgwire.Unsupported:
        return None
    where = display_url(url)
    try:
        connection = pgwire.Connection.open(target)
    except pgwire.Unsupported:
        return None
    except pgwire.ConnectionFailed as exc:
        raise StoreUnreachableError(f"cannot reach the store at {where} ({exc})") from None
    except pgwire.ServerError as exc:
        error = store_error_for(where, str(exc))
        if error is None:
            raise StoreUnreachableError(f"cannot use the store at {where} ({exc})") from None
        raise error from None
    reader = WireReader(connection, where=where)
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


def _check_revision(reader: WireReader) -> None:
    """Refuse a database that is not a store at head (see :func:`bflsync.read.reader.require_head`)."""
    refusal = pg_session.untrusted_objects_refusal(
        reader.where, reader.rows(pg_session.UNTRUSTED_OBJECTS_SQL)
    )
    if refusal is not None:
        raise StoreUnsafeError(refusal)
    ((catalogue,),) = reader.rows(_CATALOGUE)
    tables, columns = (names or [] for names in catalogue)
    require_head(reader, reader.where, tables)
    reader.finetune_columns = frozenset(columns)
