"""What a database holds and what its driver's complaints mean, without SQLAlchemy or alembic.

Shared by :mod:`bflsync.store.access` (opening stores for writing and migrating them) and
:mod:`bflsync.read.reader` (the lean read path), so both judge a file by the same rules:
the revisions this release knows, the tables a bflsync store has, the SQLite file header,
and which driver messages are about the store itself rather than a bug.
"""

from __future__ import annotations

import enum
import errno
import os
import sqlite3
import stat
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from bflsync.errors import (
    InputError,
    NotAStoreError,
    StoreBehindError,
    StoreBusyError,
    StoreError,
    StoreMissingError,
    StoreRefusedError,
    StoreTooNewError,
    StoreUnreachableError,
    StoreWriteError,
)
from bflsync.store.pg_session import READ_TIMEOUT_OPTION, STALLED_PHRASE, read_timeout_seconds

KNOWN_REVISIONS: tuple[str, ...] = (
    "0001_initial",
    "0002_fts",
    "0003_accounts",
    "0004_canonical_numbers",
    "0005_search",
    "0006_lifecycle",
    "0007_fts_discoverable",
    "0008_labels",
    "0009_search_text",
    "0010_hash_chain",
    "0012_views",
    "0013_hardening",
    "0011_iso_times",
    "0014_typed_label_views",
)
HEAD_REVISION = KNOWN_REVISIONS[-1]
# The revision that made accounts part of a finetune's identity; below it they cannot be told apart.
ACCOUNTS_REVISION = "0003_accounts"
SQLITE_HEADER = b"SQLite format 3\x00"
BFLSYNC_TABLES = frozenset({"finetune", "finetune_version", "sync_run", "sync_error"})
BUSY_TIMEOUT_MS = 10_000
# The JSON ``->`` operator (facets on details keys) arrived in SQLite 3.38.
MIN_SQLITE_VERSION = (3, 38, 0)

if TYPE_CHECKING:
    from pathlib import Path


class StoreState(enum.Enum):
    EMPTY = "empty"
    CURRENT = "current"
    BEHIND = "behind"
    TOO_NEW = "too new"
    FOREIGN = "foreign"


def classify_tables(tables: Collection[str], revision: str | None) -> StoreState:
    """What a database holds, judged by its tables as well as its revision stamp.

    Another alembic-managed project may stamp a revision named like ours ("0001_initial"),
    so a stamp counts only next to bflsync's own tables.
    """
    tables = set(tables) - {"alembic_version"}
    if revision is None:
        # `db downgrade base` leaves an empty alembic_version table behind: still an empty store.
        return StoreState.FOREIGN if tables else StoreState.EMPTY
    if not BFLSYNC_TABLES.issubset(tables):
        return StoreState.FOREIGN
    if revision == HEAD_REVISION:
        return StoreState.CURRENT
    if revision in KNOWN_REVISIONS:
        return StoreState.BEHIND
    return StoreState.TOO_NEW


def reject_unusable(display: str, state: StoreState, revision: str | None, *, missing_ok: bool) -> None:
    """Refuse a database that is not a bflsync store this release can use."""
    if state is StoreState.TOO_NEW:
        raise StoreTooNewError(
            f"the store at {display} has schema revision {revision}, which this bflsync "
            "does not know (written by a newer version?): upgrade bflsync; the file was not modified"
        )
    if state is StoreState.FOREIGN:
        raise NotAStoreError(f"{display} is a database without bflsync tables; refusing to touch it")
    if state is StoreState.EMPTY and not missing_ok:
        raise StoreMissingError(f"no bflsync store at {display} - run `bflsync sync` first")


def reject_behind(display: str, state: StoreState, revision: str | None) -> None:
    """Refuse a store at an older known revision: reading and editing need the head schema."""
    if state is StoreState.BEHIND:
        raise StoreBehindError(
            f"the store at {display} is at schema revision {revision}, older than this "
            f"bflsync ({HEAD_REVISION}): run `bflsync db upgrade` (a backup is taken first)"
        )


def require_head(
    rows: Callable[[str], Sequence[tuple[Any, ...]]], where: str, tables: Collection[str]
) -> None:
    """Refuse a database that is not a store at head, as :mod:`bflsync.store.access` does for readers.

    ``tables`` are the database's (each engine lists them its own way); the revision stamp is
    read through ``rows`` (a reader's).
    """
    revision = None
    if "alembic_version" in tables:
        stamped = rows("SELECT version_num FROM alembic_version")
        revision = stamped[0][0] if stamped else None
    state = classify_tables(tables, revision)
    reject_unusable(where, state, revision, missing_ok=False)
    reject_behind(where, state, revision)


# libpq's sslmode values and its options that must be integers; libpq would refuse others
# only when connecting, as an error that is not about the store.
SSL_MODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
_INTEGER_OPTIONS = ("port", "connect_timeout")
MAX_PORT = 65535


# libpq's connection parameters (PostgreSQL 17); any other name in the URL's query is refused.
LIBPQ_OPTIONS = frozenset(
    [
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "require_auth",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "replication",
        "gssencmode",
        "sslmode",
        "sslnegotiation",
        "requiressl",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslcertmode",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
    ]
)


def check_server_options(options: Iterable[tuple[str, str]]) -> None:
    """Refuse (exit 2) a server URL's options that libpq cannot read, before anything connects.

    ``port`` may list one number per host (``h1,h2`` with ``5432,5433``). bflsync's own
    ``read_timeout`` is checked here too; it never reaches libpq.
    """
    options = list(options)
    read_timeout_seconds([text for name, text in options if name == READ_TIMEOUT_OPTION])
    options = [(name, text) for name, text in options if name != READ_TIMEOUT_OPTION]
    unknown = sorted({name for name, _ in options} - LIBPQ_OPTIONS)
    if unknown:
        raise InputError(f"--db: {', '.join(map(repr, unknown))} is not a PostgreSQL connection option")
    for name, text in options:
        if name == "sslmode" and text not in SSL_MODES:
            raise InputError(f"--db: sslmode={text!r} is none of {', '.join(sorted(SSL_MODES))}")
        if name in _INTEGER_OPTIONS and not all(_is_integer(part) for part in text.split(",")):
            raise InputError(f"--db: {name}={text!r} is not a number")
        if name == "port" and not all(1 <= int(part) <= MAX_PORT for part in text.split(",")):
            raise InputError(f"--db: port={text!r} is not a port number (1 to {MAX_PORT})")


def _is_integer(text: str) -> bool:
    digits = text.strip().removeprefix("-")
    return digits.isascii() and digits.isdigit()


def require_sqlite_version() -> None:
    """Refuse a SQLite library too old for the JSON operators the read side uses (``->``, 3.38).

    Both ways in ask: :mod:`bflsync.store.access` before it creates an engine, :mod:`bflsync.read.reader`
    before it opens a file, so the refusal is the same one line (exit 2) whichever command runs.
    """
    if sqlite3.sqlite_version_info < MIN_SQLITE_VERSION:
        wanted = ".".join(str(part) for part in MIN_SQLITE_VERSION)
        raise StoreError(
            f"bflsync needs SQLite {wanted} or newer; this Python's sqlite3 module uses SQLite "
            f"{sqlite3.sqlite_version} (use a Python built against a newer SQLite)"
        )


def require_sqlite_file(path: str | Path) -> None:
    """Refuse, before SQLite opens it, a path that is missing, a directory or not a SQLite file.

    One ``stat`` and one read of the header, with ``os`` alone: the read commands run this on
    every start and need no ``pathlib``.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP):
            raise StoreMissingError(f"no bflsync store at {path} - run `bflsync sync` first") from None
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
    if stat.S_ISDIR(mode):
        raise NotAStoreError(f"{path} is a directory, not a bflsync store")
    if not stat.S_ISREG(mode):
        # A FIFO or device: opening it could hang or read forever.
        raise NotAStoreError(f"{path} is not a regular file; refusing to touch it")
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
    if not header:
        raise StoreMissingError(f"no bflsync store at {path} (empty file) - run `bflsync sync` first")
    if header != SQLITE_HEADER:
        raise NotAStoreError(f"{path} is not a SQLite database; refusing to touch it")


# What server drivers say when the database cannot be reached or will not let us in.
_UNREACHABLE_SERVER = (
    "connection refused",
    "could not connect",
    "connection failed",
    "timeout expired",
    "could not translate host name",
    "name or service not known",
    "password authentication failed",
    "no pg_hba.conf entry",
)


# What PostgreSQL says when it cancels or refuses a statement for a limit, not for its data.
_SERVER_REFUSALS = (
    "due to statement timeout",
    "due to user request",
    "idle-in-transaction timeout",
    "out of shared memory",
    "too many connections",
    "number of parameters must be",
    "too many bind parameters",
)
_CONNECTION_LOST = (
    "server closed the connection unexpectedly",
    "terminating connection",
    "connection is closed",
    "connection already closed",
    "consuming input failed",
    "ssl syscall error",
    "lost the connection",
    STALLED_PHRASE,
)


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else message


# libpq's connection options that hold secrets: shown as *** wherever a URL is shown.
SECRET_OPTIONS = frozenset({"password", "sslpassword"})


SERVER_SCHEMES = ("postgresql://", "postgres://", "postgresql+")


def is_server_url(db: str) -> bool:
    """Whether ``--db`` names a PostgreSQL database (else SQLite, by path or ``sqlite://`` URL)."""
    return db.startswith(SERVER_SCHEMES)


def refuse_ambiguous_url(url: str) -> None:
    """Refuse (exit 2), before anything connects or looks a host up, a server URL that parses two ways.

    An unencoded ``/``, ``?``, ``#`` or ``@`` in the password ends the host part early for one
    parser and not for another: a piece of the password then becomes a host name (sent to DNS),
    a database name or an option, and shows in error messages. The URL is not repeated here.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.startswith("sqlite"):
        return
    ends = [index for index in (rest.find(mark) for mark in "/?#") if index >= 0]
    authority, tail = rest[: min(ends, default=len(rest))], rest[min(ends, default=len(rest)) :]
    if authority.count("@") > 1 or "@" in tail:
        from bflsync.errors import InputError

        raise InputError(
            "--db: the URL cannot be read unambiguously (the user name or password holds an unencoded "
            "'@', '/', '?' or '#'): percent-encode them (@ as %40, / as %2F, ? as %3F, # as %23)"
        )


def display_url(url: str) -> str:
    """The URL as errors show it: its password, in the userinfo or as libpq's ``?password=``, as ``***``.

    The userinfo ends at the last ``@``, so a password holding unencoded ``/``, ``?`` or ``@``
    (which SQLAlchemy accepts) is still masked whole.
    """

    scheme, separator, rest = url.partition("://")
    userinfo, at, rest = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = f"{userinfo.partition(':')[0]}:***"
    rest, question, query = rest.partition("?")
    if question:
        # Imported here: urllib.parse (and the ipaddress module it loads) is ~2.5 ms of every
        # SQLite read's start-up, and only a URL with a query string needs it.
        from urllib.parse import unquote_plus

        pairs = (pair.partition("=") for pair in query.split("&"))
        query = "&".join(
            f"{key}={'***' if unquote_plus(key).strip().lower() in SECRET_OPTIONS else value}"
            if equals
            else key
            for key, equals, value in pairs
        )
    return f"{scheme}{separator}{userinfo}{at}{rest}{question}{query}"


def store_error_for(where: str, message: str) -> StoreError | None:
    """The store error a driver message stands for, or ``None`` when it is not about the store."""
    lowered = message.lower()
    if "is not a database" in lowered or "disk image is malformed" in lowered:
        return NotAStoreError(f"{where} is not a usable SQLite database ({message})")
    if any(s in lowered for s in _UNREACHABLE_SERVER) or (
        'database "' in lowered and "does not exist" in lowered
    ):
        first_line = message.strip().splitlines()[0] if message.strip() else message
        return StoreUnreachableError(f"cannot reach the store at {where} ({first_line})")
    if "due to lock timeout" in lowered or "could not obtain lock" in lowered:
        return StoreBusyError(
            f"the store at {where} is locked by another session for longer than lock_timeout "
            f"({_first_line(message)})"
        )
    if any(s in lowered for s in _SERVER_REFUSALS):
        return StoreRefusedError(
            f"the database server refused the statement at {where} ({_first_line(message)})"
        )
    if any(s in lowered for s in _CONNECTION_LOST):
        return StoreUnreachableError(f"lost the connection to the store at {where} ({_first_line(message)})")
    if "database is locked" in lowered or "database is busy" in lowered:
        return StoreWriteError(
            f"the store at {where} stayed locked by another writer for longer than "
            f"{BUSY_TIMEOUT_MS // 1000} s ({message})"
        )
    if "readonly" in lowered or "read-only" in lowered:
        return StoreWriteError(f"the store at {where} is read-only ({message})")
    if "permission denied for" in lowered:
        # PostgreSQL: a role granted SELECT only (a team store someone else owns) is read-only to you.
        first_line = message.strip().splitlines()[0]
        return StoreWriteError(f"the store at {where} does not let you do this ({first_line})")
    if any(s in lowered for s in ("unable to open", "disk i/o", "disk is full", "database or disk")):
        return StoreWriteError(f"cannot use the store at {where} ({message})")
    return None
