"""What ``bflsync serve`` refuses, whatever the URL: secrets, foreign Host headers and arbitrary SQL.

Three independent layers, each pure so that tests can hold it to its word:

* :func:`authorize` is a SQLite authorizer set on every connection Datasette opens to the store:
  ``store_meta`` (the fingerprint secret) and ``account.key_fingerprint`` read as NULL in every
  statement, views, facets, filters and ``?sql=`` included; raw-page tables, functions that reach
  outside the database (files, extensions, ``fts3_tokenizer``'s pointers) and ATTACH are refused;
* :func:`host_allowed` refuses a ``Host`` header that is not the address the server is bound to
  (a page on another site can point its own name at 127.0.0.1: DNS rebinding);
* :func:`sql_refusal` refuses SQL from the URL (``?sql=``, ``?_where=``) unless ``--allow-sql``
  was given, except the statements of the configured charts, which the dashboards page sends.
"""

from __future__ import annotations

import ipaddress
import re
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence

SECRET_TABLES = frozenset({"store_meta"})
SECRET_COLUMNS = frozenset({("account", "key_fingerprint")})
# Virtual tables that read the file's raw pages, where every secret is in plain sight, or (the
# shell's fsdir and zipfile, should an extension bring them) other files.
RAW_TABLES = frozenset({"sqlite_dbpage", "dbstat", "fsdir", "zipfile"})
# Functions that reach outside the database: extensions, the file system (the shell's, should an
# extension bring them), and fts3_tokenizer, which reads (and with two arguments sets) a C pointer.
OUTSIDE_FUNCTIONS = frozenset(
    {
        "fts3_tokenizer",
        "load_extension",
        "readfile",
        "writefile",
        "edit",
        "lsmode",
        "sqlar_compress",
        "sqlar_uncompress",
    }
)
# ATTACH opens (or creates) another file; bflsync serve serves one database.
OUTSIDE_ACTIONS = frozenset({sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH})
SQL_PARAMETERS = ("sql", "_where")
_OPTIONAL = re.compile(r"\[\[.*?\]\]")


def authorize(
    action: int, first: str | None, second: str | None, _db: str | None, _source: str | None
) -> int:
    """SQLite authorizer: secrets read as NULL; raw pages, other files and their functions refused."""
    if action == sqlite3.SQLITE_READ:
        if first in SECRET_TABLES or (first, second) in SECRET_COLUMNS:
            return sqlite3.SQLITE_IGNORE
        if first in RAW_TABLES:
            return sqlite3.SQLITE_DENY
    elif action == sqlite3.SQLITE_FUNCTION:
        # SQLite passes the function's name second; names are case-insensitive in SQL.
        if second is not None and second.lower() in OUTSIDE_FUNCTIONS:
            return sqlite3.SQLITE_DENY
    elif action in OUTSIDE_ACTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def allowed_hosts(host: str, port: int, *, extra: Sequence[str] = ()) -> list[str]:
    """``Host`` values a browser sends for the bound address: the address itself, ``localhost`` when
    it is loopback, and the names given with ``--allow-host``; empty for a wildcard address, where
    :func:`host_allowed` accepts IP literals only."""
    names = list(extra)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        names.append(host)
    else:
        if address.is_unspecified:
            return [f"{name}:{port}" for name in names]
        names.append(f"[{host}]" if address.version == 6 else host)
        if address.is_loopback:
            names.append("localhost")
    return [f"{name}:{port}".lower() for name in names]


def host_allowed(header: str | None, allowed: Collection[str], *, port: int, wildcard: bool) -> bool:
    """Whether a request's ``Host`` header names the bound address (a DNS name could be anyone's)."""
    if header is None:
        return False
    header = header.lower()
    if header in allowed:
        return True
    if not wildcard:
        return False
    name, _, given_port = header.rpartition(":")
    if given_port != str(port):
        return False
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def chart_statements(queries: Iterable[str]) -> frozenset[str]:
    """Every statement a chart can send: each ``[[ … ]]`` part of its query kept or dropped."""
    statements: set[str] = set()
    for query in queries:
        parts = _OPTIONAL.findall(query)
        for mask in range(2 ** len(parts)):
            text = query
            for bit, part in enumerate(parts):
                text = text.replace(part, part.strip("[]") if mask >> bit & 1 else "", 1)
            statements.add(normalise(text))
    return frozenset(statements)


def normalise(statement: str) -> str:
    return " ".join(statement.split())


def sql_refusal(
    params: Mapping[str, Sequence[str]], *, allow_sql: bool, charts: Collection[str]
) -> str | None:
    """Why the request's SQL is refused, or None when it carries none or may run it."""
    if allow_sql:
        return None
    for name in SQL_PARAMETERS:
        for value in params.get(name, ()):
            if name == "sql" and normalise(value) in charts:
                continue
            return f"SQL from the URL ({name}=) is off: start `bflsync serve --allow-sql` to run your own"
    return None
