"""What ``bflsync serve`` refuses, whatever the URL: secrets, foreign Host headers and arbitrary SQL.

Three independent layers, each pure so that tests can hold it to its word:

* :func:`authorize` is a SQLite authorizer set on every connection Datasette opens to the store:
  ``store_meta`` (the fingerprint secret) and ``account.key_fingerprint`` read as NULL in every
  statement, views, facets, filters and ``?sql=`` included; raw-page tables, functions that reach
  outside the database (files, extensions, ``fts3_tokenizer``'s pointers) and ATTACH are refused;
* :func:`host_allowed` refuses a ``Host`` header that is not the address the server is bound to
  (a page on another site can point its own name at 127.0.0.1: DNS rebinding); on a wildcard
  address, ``localhost`` and the IP literals of this machine's own addresses;
* :func:`sql_refusal` refuses SQL from the URL (``?sql=``, ``?_where=``) unless ``--allow-sql``
  was given, except the statements of the configured charts, which the dashboards page sends.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence

from bflsync.config import MAX_ANSWER_BYTES

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
# The largest string or blob a statement may hold (SQLITE_LIMIT_LENGTH): one call such as
# randomblob(1e9) or printf('%.*c', 1e9, 'x') is a single step of SQLite's program, which
# Datasette's time limit cannot interrupt, and would hold a gigabyte per request. Four times the
# largest answer a sync stores (canonical JSON is never longer than the answer), so every stored
# value still reads.
MAX_VALUE_BYTES = 4 * MAX_ANSWER_BYTES
SQL_PARAMETERS = ("sql", "_where")
DEFAULT_HTTP_PORT = 80
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
    it is loopback or a wildcard, and the names given with ``--allow-host``; each with the port, and
    also without it on port 80, where browsers leave it out. For a wildcard address
    :func:`host_allowed` also accepts the IP literals of this machine's own addresses."""
    names = list(extra)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        names.append(host)
    else:
        if not address.is_unspecified:
            names.append(f"[{host}]" if address.version == 6 else host)
        if address.is_loopback or address.is_unspecified:
            names.append("localhost")
    names = [name.lower() for name in names]
    with_port = [f"{name}:{port}" for name in names]
    return with_port + names if port == DEFAULT_HTTP_PORT else with_port


def host_allowed(header: str | None, allowed: Collection[str], *, port: int, wildcard: bool) -> bool:
    """Whether a request's ``Host`` header names the bound address (a DNS name could be anyone's)."""
    if header is None:
        return False
    header = header.lower()
    if header in allowed:
        return True
    if not wildcard:
        return False
    name, given_port = _split_host(header)
    if given_port != str(port) and not (given_port is None and port == DEFAULT_HTTP_PORT):
        return False
    try:
        address = ipaddress.ip_address(name[1:-1] if name.startswith("[") else name)
    except ValueError:
        return False
    return _is_own_address(address)


def _split_host(header: str) -> tuple[str, str | None]:
    """``name:port``, ``[v6]:port``, ``name`` or ``[v6]`` as the name and the port (None if absent)."""
    if header.startswith("["):
        name, _, rest = header.partition("]")
        if rest and not rest.startswith(":"):
            return "", None
        return name + "]", rest[1:] or None
    name, colon, given = header.rpartition(":")
    return (name, given) if colon else (header, None)


def _is_own_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is one of this machine's: the kernel lets a socket bind only to those.
    Asked per request, not listed at start, so an address the machine gains or loses counts at once."""
    if address.is_loopback or address.is_unspecified:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
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
