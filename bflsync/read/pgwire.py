"""A minimal PostgreSQL client for the read commands: protocol v3 over a socket, standard library only.

Importing psycopg (its libpq wrapper, its error classes, asyncio) costs more than ``psql``
takes to answer a query over 100,000 finetunes, so the read commands speak the frontend/backend
protocol themselves: a startup packet, authentication (trust, cleartext, md5, SCRAM-SHA-256),
the extended query protocol with every value a bound, text-format parameter, and text-format
results decoded by type OID. TLS is negotiated as libpq's ``sslmode=prefer``/``require`` do
(encryption without certificate checks), importing :mod:`ssl` only when the server agrees.

Whatever this client does not do raises :class:`Unsupported` before any statement runs: other
authentication methods (GSSAPI, SSPI, certificates), ``sslmode`` values that verify
certificates, URL options it does not know, a password that must be looked up (``~/.pgpass``)
or is not ASCII (SCRAM would need SASLprep). The caller then reads through psycopg instead.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import os
import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NamedTuple
from urllib.parse import parse_qsl, unquote

from bflsync.store import pg_session

Row = tuple[Any, ...]

PROTOCOL_VERSION = 196608  # 3.0
SSL_REQUEST = 80877103
DEFAULT_PORT = 5432
SCHEMES = ("postgresql", "postgresql+psycopg")
SSL_MODES = ("disable", "prefer", "require")
# URL query options this client understands; any other sends the connection to psycopg.
KNOWN_OPTIONS = frozenset({"host", "port", "sslmode", "connect_timeout", "application_name"})
# Run-time parameters of every session: UTF-8 text, ISO timestamps in UTC, floats that round-trip.
SESSION_PARAMETERS = {
    "client_encoding": "UTF8",
    "DateStyle": "ISO, YMD",
    "TimeZone": "UTC",
    "extra_float_digits": "3",
    "default_transaction_read_only": "on",
}
BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"


class Unsupported(Exception):
    """Something this client does not implement; the caller connects through psycopg instead."""


class ServerError(Exception):
    """An ErrorResponse from the server: its primary message, and its SQLSTATE as ``code``."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class ConnectionFailed(Exception):
    """The server could not be reached, or broke the protocol; the message says which, in one line."""


class Target(NamedTuple):
    """Where and as whom to connect, parsed from a store URL."""

    host: str
    """A host name or address, or a directory holding the server's Unix socket."""
    port: int
    user: str
    password: str | None
    database: str
    sslmode: str
    connect_timeout: float | None
    application_name: str

    @property
    def unix_socket(self) -> bool:
        return self.host.startswith("/")


def parse_url(url: str, *, default_user: str) -> Target:
    """A :class:`Target` from a ``postgresql://`` (or ``postgresql+psycopg://``) store URL.

    ``user:password@host:port/dbname``, percent-encoded; the host may be a socket directory
    (percent-encoded in the URL, or ``?host=/dir``). A URL naming no host is left to libpq,
    which knows where its build keeps the default socket.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in SCHEMES:
        raise Unsupported(f"not a URL this client reads: scheme {scheme!r}")
    rest, _, query_text = rest.partition("?")
    if "#" in query_text or "#" in rest:
        raise Unsupported("a URL fragment")
    netloc, _, path = rest.partition("/")
    options = dict(parse_qsl(query_text, keep_blank_values=True, strict_parsing=False))
    unknown = set(options) - KNOWN_OPTIONS
    if unknown:
        raise Unsupported(f"URL options {sorted(unknown)}")
    userinfo, at, hostport = netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    host, port_text = _split_host_port(hostport)
    host = options.get("host", host)
    port_text = options.get("port", port_text)
    if not host or "," in host or "," in port_text:
        raise Unsupported("no host, or several hosts")
    sslmode = options.get("sslmode", "prefer")
    if sslmode not in SSL_MODES:
        raise Unsupported(f"sslmode={sslmode}")
    try:
        port = int(port_text) if port_text else DEFAULT_PORT
        timeout = float(options["connect_timeout"]) if options.get("connect_timeout") else None
    except ValueError as exc:
        raise Unsupported(f"a port or connect_timeout that is not a number ({exc})") from None
    user = (unquote(user) if at else "") or default_user
    return Target(
        host=unquote(host),
        port=port,
        user=user,
        password=unquote(password) if colon else None,
        database=unquote(path) or user,
        sslmode=sslmode,
        # libpq treats a timeout under 2 s as 2 s, and 0 as none.
        connect_timeout=max(timeout, 2.0)
        if timeout
        else (None if "connect_timeout" in options else float(pg_session.CONNECT_TIMEOUT_S)),
        application_name=options.get("application_name", ""),
    )


def _split_host_port(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        return host, tail.removeprefix(":")
    host, _, port = hostport.partition(":")
    return host, port


# -- values -------------------------------------------------------------------------------------

_OID_INT2, _OID_INT4, _OID_INT8, _OID_NUMERIC = 21, 23, 20, 1700
_OID_FLOAT8, _OID_BOOL, _OID_TIMESTAMPTZ, _OID_TEXT_ARRAY = 701, 16, 1184, 1009


def encode_param(value: Any) -> tuple[int, bytes | None]:
    """A parameter's type OID and text form, typed as psycopg types them (text as ``unknown``)."""
    if value is None:
        return 0, None
    if isinstance(value, bool):
        return _OID_BOOL, b"t" if value else b"f"
    if isinstance(value, int):
        if -(2**15) <= value < 2**15:
            oid = _OID_INT2
        elif -(2**31) <= value < 2**31:
            oid = _OID_INT4
        else:
            oid = _OID_INT8 if -(2**63) <= value < 2**63 else _OID_NUMERIC
        return oid, str(value).encode()
    if isinstance(value, float):
        return _OID_FLOAT8, repr(value).replace("inf", "Infinity").replace("nan", "NaN").encode()
    if isinstance(value, str):
        return 0, value.encode()
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError("a naive datetime parameter")
        return _OID_TIMESTAMPTZ, value.isoformat().encode()
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        items = ('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in value)
        return _OID_TEXT_ARRAY, ("{" + ",".join(items) + "}").encode()
    raise TypeError(f"cannot send a {type(value).__name__} parameter")


def _decimal(text: str) -> Any:
    from decimal import Decimal

    return Decimal(text)


def _timestamp(text: str) -> datetime:
    # ISO DateStyle: "2026-01-01 10:00:00.5+00"; Python before 3.12 wants 3 or 6 fraction digits.
    head, dot, tail = text.partition(".")
    if dot:
        digits = len(tail) - len(tail.lstrip("0123456789"))
        tail = tail[:digits].ljust(6, "0") + tail[digits:]
        text = f"{head}.{tail}"
    return datetime.fromisoformat(text)


_DECODERS: dict[int, Callable[[str], Any]] = {
    _OID_INT2: int,
    _OID_INT4: int,
    _OID_INT8: int,
    26: int,  # oid
    700: float,  # float4
    _OID_FLOAT8: float,
    _OID_NUMERIC: _decimal,
    _OID_BOOL: lambda text: text == "t",
    114: json.loads,  # json
    3802: json.loads,  # jsonb
    _OID_TIMESTAMPTZ: _timestamp,
    1114: _timestamp,  # timestamp
}


# -- the connection -----------------------------------------------------------------------------


class Connection:
    """One session: authenticated, read-only, inside a single ``REPEATABLE READ`` transaction."""

    def __init__(self, sock: socket.socket) -> None:
        self._socket = sock
        # What has been received and not yet parsed: self._data[self._position:].
        self._data = b""
        self._position = 0
        self.status = "I"
        self.parameters: dict[str, str] = {}

    @classmethod
    def open(cls, target: Target) -> Connection:
        """Connect, authenticate and begin the read-only transaction."""
        sock = _connect(target)
        try:
            if not target.unix_socket and target.sslmode != "disable":
                sock = _negotiate_tls(sock, target)
            connection = cls(sock)
            with _protocol_checked():
                connection._start(target)
                connection.execute_simple(BEGIN)
        except BaseException:
            sock.close()
            raise
        return connection

    def close(self) -> None:
        """Say goodbye (Terminate) and close the socket; the transaction ends with the session."""
        with contextlib.suppress(OSError):
            self._socket.sendall(b"X\x00\x00\x00\x04")
        self._socket.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> tuple[list[str], list[Row]]:
        """Column names and rows of one statement; ``?`` in ``sql`` are the bound ``params``."""
        text = _numbered(sql)
        encoded = [encode_param(value) for value in params]
        parse = _cstring("") + _cstring(text) + struct.pack("!h", len(encoded))
        parse += b"".join(struct.pack("!I", oid) for oid, _ in encoded)
        bind = _cstring("") + _cstring("") + struct.pack("!hh", 0, len(encoded))
        for _, data in encoded:
            bind += struct.pack("!i", -1) if data is None else struct.pack("!i", len(data)) + data
        bind += struct.pack("!h", 0)
        self._send(
            _message(b"P", parse)
            + _message(b"B", bind)
            + _message(b"D", b"P\x00")
            + _message(b"E", b"\x00\x00\x00\x00\x00")
            + _message(b"S", b"")
        )
        with _protocol_checked():
            return self._results()

    def execute_simple(self, sql: str) -> None:
        """Run a statement without parameters or results (``BEGIN``, ``ROLLBACK``)."""
        self._send(_message(b"Q", _cstring(sql)))
        self._results()

    def _start(self, target: Target) -> None:
        parameters = {
            "user": target.user,
            "database": target.database,
            **SESSION_PARAMETERS,
            **pg_session.startup_parameters(),
        }
        if target.application_name:
            parameters["application_name"] = target.application_name
        body = struct.pack("!i", PROTOCOL_VERSION)
        body += b"".join(_cstring(key) + _cstring(value) for key, value in parameters.items()) + b"\x00"
        self._send(struct.pack("!i", len(body) + 4) + body)
        _Authentication(self, target).run()
        while True:
            kind, payload = self._receive()
            if kind == b"E":
                # An error during startup is FATAL: the server closes the connection after it.
                raise _server_error(payload)
            if kind == b"Z":
                self.status = payload.decode()
                break
            if kind == b"S":
                key, value, _ = payload.split(b"\x00", 2)
                self.parameters[key.decode()] = value.decode()

    def _results(self) -> tuple[list[str], list[Row]]:
        """Messages up to ReadyForQuery; DataRows are parsed in place, as many as have arrived."""
        names: list[str] = []
        decoders: list[Callable[[str], Any]] = []
        rows: list[Row] = []
        error: ServerError | None = None
        while True:
            data, position, size = self._data, self._position, len(self._data)
            needed = 5  # bytes of the next message to have buffered: its header, then all of it
            while position + 5 <= size:
                length = _unpack_int(data, position + 1)[0]
                if length < 4:
                    raise ConnectionFailed(MALFORMED)
                end = position + 1 + length
                if end > size:
                    needed = end - position
                    break
                kind = data[position]
                if kind == 68:  # DataRow
                    rows.append(_row(data, position + 5, decoders))
                elif kind == 84:  # RowDescription
                    names, decoders = _description(data[position + 5 : end])
                elif kind == 69:  # ErrorResponse
                    error = _server_error(data[position + 5 : end])
                elif kind == 90:  # ReadyForQuery
                    self.status = chr(data[position + 5])
                    self._position = end
                    if error is not None:
                        raise error
                    return names, rows
                position = end
            self._position = position
            try:
                self._fill(needed)
            except ConnectionFailed:
                if error is None:
                    raise
                # A FATAL error the server closed the connection after: it says why.
                raise ConnectionFailed(f"the server ended the session: {error}") from None

    def _send(self, data: bytes) -> None:
        try:
            self._socket.sendall(data)
        except OSError as exc:
            raise ConnectionFailed(f"lost the connection to the server: {exc.strerror or exc}") from None

    def _receive(self) -> tuple[bytes, bytes]:
        """The next message's type byte and body."""
        while len(self._data) - self._position < 5:
            self._fill(5)
        length = _unpack_int(self._data, self._position + 1)[0]
        if length < 4:
            raise ConnectionFailed(MALFORMED)
        while len(self._data) - self._position < 1 + length:
            self._fill(1 + length)
        start = self._position
        self._position = start + 1 + length
        return self._data[start : start + 1], self._data[start + 5 : start + 1 + length]

    def _fill(self, wanted: int) -> None:
        """Receive at least one chunk, and more until ``wanted`` unparsed bytes are buffered.

        The chunks are joined once: a message of many megabytes (a huge details row) is not
        copied again for every chunk that arrives, which made reading it quadratic.
        """
        chunks = [self._data[self._position :]]
        have = len(chunks[0])
        while True:
            try:
                chunk = self._socket.recv(min(max(wanted - have, 1 << 16), 1 << 20))
            except TimeoutError:
                raise ConnectionFailed(
                    f"the server sent nothing for {pg_session.READ_TIMEOUT_S:g} s; giving up"
                ) from None
            except OSError as exc:
                raise ConnectionFailed(f"lost the connection to the server: {exc.strerror or exc}") from None
            if not chunk:
                raise ConnectionFailed("the server closed the connection unexpectedly")
            chunks.append(chunk)
            have += len(chunk)
            if have >= wanted:
                break
        self._data = b"".join(chunks)
        self._position = 0


MALFORMED: Final = "the server broke the PostgreSQL protocol (a malformed message)"


@contextlib.contextmanager
def _protocol_checked() -> Iterator[None]:
    """Parsing what a server sent: a message that is cut short or malformed is the server's fault."""
    try:
        yield
    except (struct.error, IndexError, ValueError, UnicodeDecodeError):
        raise ConnectionFailed(MALFORMED) from None


def _connect(target: Target) -> socket.socket:
    where = (
        f'connection to server on socket "{target.host}/.s.PGSQL.{target.port}"'
        if target.unix_socket
        else f'connection to server at "{target.host}", port {target.port}'
    )
    try:
        if target.unix_socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(target.connect_timeout)
            try:
                sock.connect(f"{target.host}/.s.PGSQL.{target.port}")
            except BaseException:
                sock.close()
                raise
        else:
            sock = socket.create_connection((target.host, target.port), timeout=target.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except socket.gaierror as exc:
        raise ConnectionFailed(f'could not translate host name "{target.host}" ({exc.strerror})') from None
    except TimeoutError:
        raise ConnectionFailed(f"{where} failed: timeout expired") from None
    except OSError as exc:
        raise ConnectionFailed(f"{where} failed: {exc.strerror or exc}") from None
    # Once connected, a server that stops answering must not hang a read or a TAB completion.
    sock.settimeout(pg_session.READ_TIMEOUT_S)
    return sock


def _negotiate_tls(sock: socket.socket, target: Target) -> socket.socket:
    sock.sendall(struct.pack("!ii", 8, SSL_REQUEST))
    answer = sock.recv(1)
    if answer == b"N":
        if target.sslmode == "require":
            raise ConnectionFailed("server does not support SSL, but SSL was required")
        return sock
    if answer != b"S":
        raise ConnectionFailed("the server answered the SSL request with something else")
    # libpq's "require" verifies the server against a root certificate when the user has one.
    if (Path.home() / ".postgresql" / "root.crt").exists():
        raise Unsupported("sslmode with a root certificate (~/.postgresql/root.crt)")
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        return context.wrap_socket(sock)
    except (ssl.SSLError, OSError) as exc:
        raise ConnectionFailed(f"SSL negotiation failed: {exc}") from None


class _Authentication:
    """The authentication exchange after the startup packet, up to AuthenticationOk."""

    def __init__(self, connection: Connection, target: Target) -> None:
        self.connection = connection
        self.target = target

    def run(self) -> None:
        while True:
            kind, payload = self.connection._receive()
            if kind == b"E":
                raise _server_error(payload)
            if kind != b"R":
                raise ConnectionFailed(f"unexpected message {kind!r} during authentication")
            code = struct.unpack("!i", payload[:4])[0]
            if code == 0:
                return
            if code == 3:
                self._password_message(self._password().encode())
            elif code == 5:
                self._password_message(_md5_password(self._password(), self.target.user, payload[4:8]))
            elif code == 10:
                mechanisms = payload[4:].split(b"\x00")
                if b"SCRAM-SHA-256" not in mechanisms:
                    raise Unsupported(f"SASL mechanisms {mechanisms}")
                _Scram(self.connection, self._password()).run()
            else:
                raise Unsupported(f"authentication method {code}")

    def _password(self) -> str:
        password = self.target.password
        if password is None:
            raise Unsupported("the server wants a password the URL does not give (libpq reads ~/.pgpass)")
        if not password.isascii():
            raise Unsupported("a non-ASCII password (SCRAM needs SASLprep)")
        return password

    def _password_message(self, secret: bytes) -> None:
        self.connection._send(_message(b"p", secret + b"\x00"))


def _md5_password(password: str, user: str, salt: bytes) -> bytes:
    """The md5 method's answer: the protocol fixes the hash (not a choice of ours)."""
    import hashlib

    inner = hashlib.md5((password + user).encode(), usedforsecurity=False).hexdigest()
    return ("md5" + hashlib.md5(inner.encode() + salt, usedforsecurity=False).hexdigest()).encode()


def _b64encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode()


class _Scram:
    """SCRAM-SHA-256 (RFC 5802/7677) without channel binding, the server's signature verified."""

    def __init__(self, connection: Connection, password: str) -> None:
        self.connection = connection
        self.password = password.encode()

    def run(self) -> None:
        import hashlib
        import hmac

        nonce = _b64encode(os.urandom(18))
        first_bare = f"n=,r={nonce}"
        initial = ("n,," + first_bare).encode()
        self.connection._send(
            _message(b"p", _cstring("SCRAM-SHA-256") + struct.pack("!i", len(initial)) + initial)
        )
        server_first = self._expect(11)
        fields = dict(item.split("=", 1) for item in server_first.split(","))
        if not fields.get("r", "").startswith(nonce):
            raise ConnectionFailed("the server's SCRAM nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac(
            "sha256", self.password, binascii.a2b_base64(fields["s"]), int(fields["i"])
        )
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        final_bare = f"c=biws,r={fields['r']}"
        auth_message = f"{first_bare},{server_first},{final_bare}".encode()
        signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        final = f"{final_bare},p={_b64encode(proof)}".encode()
        self.connection._send(_message(b"p", final))
        server_final = self._expect(12)
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        expected = _b64encode(hmac.digest(server_key, auth_message, "sha256"))
        if not hmac.compare_digest(server_final.strip(), f"v={expected}"):
            raise ConnectionFailed("the server's SCRAM signature is wrong")

    def _expect(self, code: int) -> str:
        kind, payload = self.connection._receive()
        if kind == b"E":
            raise _server_error(payload)
        if kind != b"R" or struct.unpack("!i", payload[:4])[0] != code:
            raise ConnectionFailed("unexpected message during SCRAM authentication")
        return payload[4:].decode()


# -- message framing ----------------------------------------------------------------------------


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def _cstring(text: str) -> bytes:
    return text.encode() + b"\x00"


def _numbered(sql: str) -> str:
    """``?`` placeholders as ``$1``, ``$2``, …: our SQL holds no literal ``?``."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${number}{part}" for number, part in enumerate(parts[1:], start=1))


def _description(payload: bytes) -> tuple[list[str], list[Callable[[str], Any]]]:
    count = struct.unpack("!h", payload[:2])[0]
    names: list[str] = []
    decoders: list[Callable[[str], Any]] = []
    position = 2
    for _ in range(count):
        end = payload.index(b"\x00", position)
        names.append(payload[position:end].decode())
        oid = struct.unpack("!I", payload[end + 7 : end + 11])[0]
        decoders.append(_DECODERS.get(oid, str))
        position = end + 19
    return names, decoders


_unpack_int = struct.Struct("!i").unpack_from


def _row(data: bytes, start: int, decoders: Sequence[Callable[[str], Any]]) -> Row:
    """The values of the DataRow whose body starts at ``start`` in ``data``."""
    values: list[Any] = []
    position = start + 2
    for decode in decoders:
        length = _unpack_int(data, position)[0]
        position += 4
        if length < 0:
            values.append(None)
            continue
        values.append(decode(data[position : position + length].decode()))
        position += length
    return tuple(values)


def _server_error(payload: bytes) -> ServerError:
    fields = {item[:1]: item[1:].decode(errors="replace") for item in payload.split(b"\x00") if item}
    return ServerError(fields.get(b"M", "unknown error"), code=fields.get(b"C", ""))
