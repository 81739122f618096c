"""The settings every PostgreSQL session of bflsync runs with, in one place for every way in.

A store shared by several roles is only as safe as the name lookups of its owner's sessions:
a role that may create objects in a schema on the ``search_path`` can plant an operator or a
function that matches our SQL better than the built-in one, and it then runs with the rights
of whoever runs the statement (CVE-2018-1058). So every session:

* fixes ``search_path`` to the store's schema alone (no ``"$user"`` schema that some role
  may own). PostgreSQL searches ``pg_catalog`` before it whenever the path does not name it,
  so lookups go ``pg_catalog`` first, then the store's schema; naming ``pg_catalog`` first
  would also make it the schema that ``current_schema()`` reports and that migrations create
  tables in;
* refuses to go on when a role that is neither a superuser, the store's owner nor the role connecting can create
  objects in the store's schema, or owns a function or operator there
  (:data:`UNTRUSTED_OBJECTS_SQL`, itself written with schema-qualified operators only);
* waits at most :data:`LOCK_TIMEOUT_MS` for any lock (``lock_timeout``), so a reader that
  leaves a transaction open cannot make a writer, or ``db upgrade``, wait forever;
* gives up connecting after :data:`CONNECT_TIMEOUT_S` unless the URL says otherwise, and gives up
  on a server that stops answering after :data:`READ_TIMEOUT_S` (``?read_timeout=SECONDS``, 0 for
  never; bflsync's own option, which :func:`split_read_timeout` takes out before libpq sees the URL,
  and :mod:`bflsync.store.pg_connection` enforces on every wait).

:func:`libpq_options` is the ``options`` connection parameter for libpq, used by both ways in:
psycopg directly (the read commands, :mod:`bflsync.read.server_reader`) and psycopg through
SQLAlchemy (:mod:`bflsync.store.access`). Only the standard library here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bflsync.errors import InputError

SCHEMA = "public"
CONNECT_TIMEOUT_S = 10
LOCK_TIMEOUT_MS = 10_000
# Longer than any statement of ours takes on a healthy server, short enough that a cron job whose
# server stalled after accepting the connection ends and says so instead of piling up.
READ_TIMEOUT_S = 60.0
READ_TIMEOUT_OPTION = "read_timeout"


def startup_parameters(schema: str = SCHEMA) -> dict[str, str]:
    """Run-time parameters to set on connect: a default ``lock_timeout``, and the ``search_path``."""
    return {"lock_timeout": str(LOCK_TIMEOUT_MS), "search_path": quote_ident(schema)}


def libpq_options(existing: str | None = None, *, schema: str = SCHEMA) -> str:
    """libpq's ``options`` value; the last ``-c`` of a name wins.

    A ``lock_timeout`` in the URL's own ``options`` overrides the default; the ``search_path``
    is always ours.
    """
    settings = startup_parameters(schema)
    parts = [f"-c lock_timeout={settings['lock_timeout']}"]
    if existing:
        parts.append(existing)
    parts.append(f"-c search_path={_escape(settings['search_path'])}")
    return " ".join(parts)


def connect_args(query: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for psycopg's connect, given the URL's query options (which they extend)."""
    existing = query.get("options")
    args: dict[str, Any] = {"options": libpq_options(existing if isinstance(existing, str) else None)}
    if "connect_timeout" not in query:
        args["connect_timeout"] = CONNECT_TIMEOUT_S
    return args


def read_timeout_seconds(values: Sequence[str]) -> float:
    """The read timeout that the URL's ``read_timeout`` values ask for (the last wins), else the default.

    Raises :class:`~bflsync.errors.InputError` (exit 2) for anything but a finite number >= 0.
    """
    # An empty value is no value, as libpq reads its own options (and SQLAlchemy drops it anyway).
    values = [value for value in values if value]
    if not values:
        return READ_TIMEOUT_S
    text = values[-1]
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise InputError(f"--db: {READ_TIMEOUT_OPTION}={text!r} is not a number of seconds (0 for no limit)")
    return seconds


def split_read_timeout(url: str) -> tuple[str, float]:
    """The URL without bflsync's ``read_timeout`` option (libpq refuses options it does not know),
    and the read timeout in seconds that it asked for."""
    rest, question, query = url.partition("?")
    if not question:
        return url, READ_TIMEOUT_S
    # Imported here: store.check imports this module for its constants, so a top-level urllib.parse
    # (and the ipaddress module it loads) would be ~2.5 ms of every SQLite read's start-up.
    from urllib.parse import unquote_plus

    kept: list[str] = []
    values: list[str] = []
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if unquote_plus(key) == READ_TIMEOUT_OPTION:
            values.append(unquote_plus(value))
        else:
            kept.append(pair)
    seconds = read_timeout_seconds(values)
    return (f"{rest}?{'&'.join(kept)}" if kept else rest), seconds


# How a stalled server is reported; :func:`bflsync.store.check.store_error_for` knows it by this phrase.
STALLED_PHRASE = "sent nothing for"


def stalled_server_message(host: str, seconds: float) -> str:
    """The one line for a server that stopped answering: which host, after how long, and the knob."""
    return (
        f"{host} {STALLED_PHRASE} {seconds:g} s after accepting the connection "
        f"(?{READ_TIMEOUT_OPTION}=SECONDS in the URL sets the limit, 0 turns it off)"
    )


def quote_ident(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _escape(value: str) -> str:
    # In libpq's options, a backslash escapes the next character (spaces included).
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


# Roles other than superusers and members of the owners of the schema and of the store's
# tables that can create objects in the store's schema, and the owners of functions and
# operators there that are none of those. Every operator is pg_catalog's, by name.
UNTRUSTED_OBJECTS_SQL = """
WITH schema AS (
  SELECT n.oid, n.nspowner FROM pg_catalog.pg_namespace n
  WHERE n.nspname OPERATOR(pg_catalog.=) pg_catalog.current_schema()
), owners AS (
  SELECT s.nspowner AS oid FROM schema s
  UNION SELECT c.relowner FROM pg_catalog.pg_class c, schema s
  WHERE c.relnamespace OPERATOR(pg_catalog.=) s.oid AND c.relname OPERATOR(pg_catalog.=) 'finetune'
), trusted AS (
  SELECT r.oid FROM pg_catalog.pg_roles r
  WHERE r.rolsuper OR r.rolname OPERATOR(pg_catalog.=) CURRENT_USER OR EXISTS (
    SELECT 1 FROM owners o WHERE pg_catalog.pg_has_role(r.oid, o.oid, 'MEMBER'))
)
SELECT 'may create objects' AS what, r.rolname FROM pg_catalog.pg_roles r, schema s
WHERE pg_catalog.has_schema_privilege(r.oid, s.oid, 'CREATE')
  AND NOT EXISTS (SELECT 1 FROM trusted t WHERE t.oid OPERATOR(pg_catalog.=) r.oid)
UNION
SELECT 'owns functions or operators', r.rolname FROM pg_catalog.pg_roles r, schema s
WHERE NOT EXISTS (SELECT 1 FROM trusted t WHERE t.oid OPERATOR(pg_catalog.=) r.oid)
  AND (EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.pronamespace OPERATOR(pg_catalog.=) s.oid
               AND p.proowner OPERATOR(pg_catalog.=) r.oid)
    OR EXISTS (SELECT 1 FROM pg_catalog.pg_operator o WHERE o.oprnamespace OPERATOR(pg_catalog.=) s.oid
               AND o.oprowner OPERATOR(pg_catalog.=) r.oid))
ORDER BY 1, 2
"""


def untrusted_objects_refusal(where: str, rows: Sequence[tuple[Any, ...]]) -> str | None:
    """The one-line refusal for what :data:`UNTRUSTED_OBJECTS_SQL` found, or ``None`` when it found nothing."""
    if not rows:
        return None
    found = "; ".join(f"role {role} {what}" for what, role in rows)
    return (
        f"the store at {where} is in a schema where other roles can plant code that would run as you "
        f"({found}): as its owner, REVOKE CREATE ON SCHEMA from them and drop their objects "
        "(see docs/postgresql-roles.md)"
    )


# Sessions other than this one holding locks on tables of this database, as far as the server
# shows (pg_locks and the role of every session are visible to all): for lock timeout errors.
LOCK_HOLDERS_SQL = (
    "SELECT DISTINCT a.pid, a.usename, a.state FROM pg_catalog.pg_locks l"
    " JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid"
    " WHERE l.granted AND l.locktype OPERATOR(pg_catalog.=) 'relation'"
    " AND l.database OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_database"
    " WHERE datname OPERATOR(pg_catalog.=) pg_catalog.current_database())"
    " AND l.pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid() ORDER BY 1 LIMIT 5"
)


def describe_lock_holders(rows: Sequence[tuple[Any, ...]]) -> str:
    """``held by pid N (role R, state)``, from the rows of :data:`LOCK_HOLDERS_SQL`."""
    if not rows:
        return "its holder is gone"
    return "held by " + ", ".join(f"pid {pid} (role {role}, {state})" for pid, role, state in rows)
