"""The read commands' own PostgreSQL client (bflsync.read.pgwire) against the private cluster.

Authentication by password (SCRAM-SHA-256, md5, cleartext) uses roles created here, with
pg_hba.conf lines put in front of the fixture's ``trust`` ones for those roles only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from storebuild import day, write_sync

from bflsync.cli import cli
from bflsync.errors import StoreUnreachableError, StoreWriteError
from bflsync.read import pgwire
from bflsync.read.server_reader import WireReader, display_url, open_wire_reader
from bflsync.store import access
from bflsync.text.casefold import (
    EXPANSIONS,
    LOWERCASE_EXPANSIONS,
    SINGLES,
    UNICODE_VERSION,
    scan,
    scan_lowercase_expansions,
)

PASSWORD = "s3cret-Pw"
# role -> (password_encryption, pg_hba method)
ROLES = {
    "pw_scram": ("scram-sha-256", "scram-sha-256"),
    "pw_md5": ("md5", "md5"),
    "pw_clear": ("md5", "password"),
}
DETAILS = {
    "alpha": {"finetune_comment": "NUL \x00 here, a replacement \ufffd, 漢字 and ß 🙂", "mode": "character"},
    "bravo": {"finetune_comment": "plain", "mode": "style", "dataset": "ds-1"},
}
SELF_SIGNED = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
SELF_SIGNED += ["-nodes", "-subj", "/CN=localhost", "-days", "1"]
HEAVY = ("sqlalchemy", "sqlmodel", "psycopg", "pydantic", "alembic")


@pytest.fixture(scope="session")
def password_roles(postgres_server: str) -> str:
    """Roles that must log in with a password, one per method; returns the server URL."""
    admin = sa.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        hba = Path(connection.exec_driver_sql("SHOW hba_file").scalar_one())
        for role, (encryption, _) in ROLES.items():
            connection.exec_driver_sql(f"SET password_encryption = '{encryption}'")
            connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        lines = "".join(f"host all {role} 127.0.0.1/32 {method}\n" for role, (_, method) in ROLES.items())
        hba.write_text(lines + hba.read_text())
        connection.exec_driver_sql("SELECT pg_reload_conf()")
    admin.dispose()
    return postgres_server


@pytest.fixture
def pg_store(password_roles: str, pg_url: str) -> Iterator[str]:
    """A store on the cluster holding DETAILS, readable by the password roles."""
    opened = access.open_store_for_write(access.locate_store(pg_url))
    write_sync(opened.engine, DETAILS, now=day(1))
    with opened.engine.begin() as connection:
        for role in ROLES:
            connection.exec_driver_sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    opened.engine.dispose()
    yield pg_url


def with_user(url: str, user: str, password: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{user}:{quote(password, safe='')}@{rest.partition('@')[2]}"


def run(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, *args])


def wire(url: str) -> WireReader:
    reader = open_wire_reader(url, environ={})
    assert reader is not None
    return reader


@pytest.mark.parametrize("role", sorted(ROLES))
def test_password_roles_read_through_the_wire_client(password_roles: str, pg_store: str, role: str) -> None:
    url = with_user(pg_store, role, PASSWORD)
    reader = wire(url)
    try:
        assert reader.rows("SELECT current_user") == [(role,)]
    finally:
        reader.close()
    result = run(url, "query", "--format", "ids")
    assert (result.exit_code, result.output) == (0, "alpha\nbravo\n")


@pytest.mark.parametrize("role", ["pw_scram", "pw_md5"])
def test_a_wrong_password_is_one_line_exit_3_without_the_password(
    password_roles: str, pg_store: str, role: str
) -> None:
    wrong = "Wr0ng-p@ss:word"
    result = run(with_user(pg_store, role, wrong), "query", "--format", "ids")
    assert result.exit_code == 3
    assert len(result.output.strip().splitlines()) == 1
    assert "password authentication failed" in result.output
    for shown in (wrong, quote(wrong, safe=""), PASSWORD):
        assert shown not in result.output
    assert ":***@" in result.output


def test_the_read_commands_on_postgresql_import_no_sqlalchemy_psycopg_or_pydantic(pg_store: str) -> None:
    for args in (
        ["query", "mode=character", "--format", "json"],
        ["query", "--as-of", "2026-01-02", "--format", "csv"],
        ["show", "alpha"],
        ["facets", "mode"],
        ["history", "alpha"],
        ["history", "--since", "2026-01-01"],
        ["runs"],
        ["diff", "alpha", "bravo"],
        ["accounts"],
    ):
        script = (
            "import sys\n"
            "from bflsync.cli import cli\n"
            f"sys.argv = ['bflsync', '--db', {pg_store!r}, *{args!r}]\n"
            "try:\n    cli(prog_name='bflsync')\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}), file=sys.stderr)\n"
        )
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.stdout, (args, done.stderr)
        assert done.stderr.splitlines()[-1] == "[]", args  # after any summary line


def test_the_transaction_is_read_only(pg_store: str) -> None:
    reader = wire(pg_store)
    try:
        assert reader.rows("SHOW transaction_read_only") == [("on",)]
        with pytest.raises(StoreWriteError, match="read-only transaction"):
            reader.rows("DELETE FROM finetune")
        with pytest.raises(StoreWriteError, match="read-only transaction"):
            reader.rows("CREATE TABLE intruder (a int)")
        # A refused statement leaves the reader usable, and nothing was deleted.
        assert reader.rows("SELECT count(*) FROM finetune") == [(2,)]
    finally:
        reader.close()


def test_nul_replacement_and_non_ascii_values_round_trip(pg_store: str, db_path: Path) -> None:
    sqlite = access.open_store_for_write(access.locate_store(str(db_path)))
    write_sync(sqlite.engine, DETAILS, now=day(1))
    sqlite.engine.dispose()
    for args in (
        ["query", "--format", "json"],
        ["query", "finetune_comment~漢字", "--format", "json"],
        ["query", "--as-of", "2026-01-02", "finetune_comment~\ufffd", "--format", "json"],
    ):
        answers = [run(target, *args) for target in (pg_store, str(db_path))]
        assert [answer.exit_code for answer in answers] == [0, 0]
        assert answers[0].output == answers[1].output
        assert json.loads(answers[0].output), args
    records = json.loads(run(pg_store, "query", "finetune_comment~SS 🙂", "--format", "json").output)
    assert [record["details"] for record in records] == [DETAILS["alpha"]]
    reader = wire(pg_store)
    try:
        value = "é \ufffd 漢字 🙂 '\"\\"
        assert reader.rows("SELECT CAST(? AS text), ? = 'x'", [value, "x"]) == [(value, True)]
    finally:
        reader.close()


def test_values_are_bound_and_decoded_by_type(pg_store: str) -> None:
    reader = wire(pg_store)
    moment = day(2, 5)
    try:
        ((row),) = reader.rows(
            "SELECT ?, ?, ?, CAST(? AS bigint), ?, ?, CAST(? AS numeric), ?,"
            " CAST('{\"a\": [1]}' AS jsonb), CAST(NULL AS text), CAST(? AS jsonb) #> ?",
            [1, 2**40, 1.5, -(2**62), True, moment, "1.25", None, json.dumps({"k": {"x": 3}}), ["k", "x"]],
        )
    finally:
        reader.close()
    assert row[:8] == (1, 2**40, 1.5, -(2**62), True, moment, pgwire._decimal("1.25"), None)
    assert row[8:] == ({"a": [1]}, None, 3)


def test_a_unix_socket_directory_in_the_url_is_used(pg_store: str) -> None:
    reader = wire(pg_store)
    try:
        ((directories,),) = reader.rows("SHOW unix_socket_directories")
    finally:
        reader.close()
    directory = directories.split(",")[0].strip()
    server = sa.make_url(pg_store)
    for url in (
        f"postgresql://bfl@{quote(directory, safe='')}:{server.port}/{server.database}",
        f"postgresql://bfl@/{server.database}?host={directory}&port={server.port}",
    ):
        local = wire(url)
        try:
            assert local.rows("SELECT inet_server_addr()") == [(None,)]  # not over TCP
        finally:
            local.close()
        assert run(url, "query", "--format", "ids").output == "alpha\nbravo\n"


@pytest.mark.parametrize(
    "suffix", ["?sslmode=verify-full", "?sslmode=verify-ca", "?keepalives=1", "?sslcert=/nowhere"]
)
def test_what_the_wire_client_does_not_support_falls_back_to_psycopg(pg_store: str, suffix: str) -> None:
    assert open_wire_reader(pg_store + suffix, environ={}) is None
    assert open_wire_reader(pg_store, environ={"PGSSLMODE": "verify-full"}) is None


def test_the_fallback_reads_the_store_through_psycopg(pg_store: str) -> None:
    url = pg_store + "?keepalives=1"
    script = (
        "import sys\n"
        "from bflsync.cli import cli\n"
        f"sys.argv = ['bflsync', '--db', {url!r}, 'query', '--format', 'ids']\n"
        "try:\n    cli(prog_name='bflsync')\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('psycopg' in sys.modules, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.stdout, done.stderr) == ("alpha\nbravo\n", "True\n")


def test_sslmode_require_against_a_server_without_ssl_is_one_line_exit_3(pg_store: str) -> None:
    result = run(pg_store + "?sslmode=require", "query")
    assert result.exit_code == 3
    assert result.output.strip().splitlines() == [
        f"bflsync: error: cannot reach the store at {pg_store}?sslmode=require "
        "(server does not support SSL, but SSL was required)"
    ]


def test_sslmode_disable_and_prefer_connect_without_ssl(pg_store: str) -> None:
    for mode in ("disable", "prefer"):
        assert run(f"{pg_store}?sslmode={mode}", "query", "--format", "ids").output == "alpha\nbravo\n"


def test_urls_are_parsed_like_libpq_reads_them() -> None:
    target = pgwire.parse_url(
        "postgresql+psycopg://us%40er:p%3Aw%2F@[::1]:6543/my%20db?sslmode=disable&connect_timeout=1",
        default_user="me",
    )
    assert target == pgwire.Target(
        host="::1",
        port=6543,
        user="us@er",
        password="p:w/",
        database="my db",
        sslmode="disable",
        connect_timeout=2.0,
        application_name="",
    )
    bare = pgwire.parse_url("postgresql://db.example", default_user="me")
    assert (bare.host, bare.port, bare.user, bare.password, bare.database) == (
        "db.example",
        5432,
        "me",
        None,
        "me",
    )
    for unsupported in (
        "postgresql:///store",  # no host: libpq knows its default socket
        "postgresql://h1,h2/store",
        "postgresql://h/store?sslmode=allow",
        "postgresql://h/store?options=-csearch_path%3Dx",
        "mysql://h/store",
    ):
        with pytest.raises(pgwire.Unsupported):
            pgwire.parse_url(unsupported, default_user="me")


def test_errors_show_the_url_without_its_password() -> None:
    assert display_url("postgresql://u:secret@h:5/d?x=1") == "postgresql://u:***@h:5/d?x=1"
    assert display_url("postgresql://u@h/d") == "postgresql://u@h/d"


def test_the_written_fold_tables_are_this_pythons_casefold() -> None:
    import unicodedata

    if unicodedata.unidata_version != UNICODE_VERSION:
        pytest.skip(f"tables written for Unicode {UNICODE_VERSION}; this Python computes its own")
    assert scan() == (SINGLES, EXPANSIONS)


def test_the_characters_whose_lowercase_expands_are_the_written_ones() -> None:
    assert scan_lowercase_expansions() == LOWERCASE_EXPANSIONS


@pytest.fixture
def ssl_server(postgres_server: str) -> Iterator[None]:
    """TLS switched on in the cluster (a throwaway self-signed certificate), off again after."""
    admin = sa.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        data = Path(connection.exec_driver_sql("SHOW data_directory").scalar_one())
        key, certificate = data / "server.key", data / "server.crt"
        if not shutil.which("openssl"):
            pytest.skip("no openssl to make a certificate")
        subprocess.run(
            [*SELF_SIGNED, "-keyout", str(key), "-out", str(certificate)], check=True, capture_output=True
        )
        key.chmod(0o600)
        if os.geteuid() == 0:
            for made in (key, certificate):
                shutil.chown(made, user="postgres")
        connection.exec_driver_sql("ALTER SYSTEM SET ssl = on")
        connection.exec_driver_sql("SELECT pg_reload_conf()")
    try:
        yield
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql("ALTER SYSTEM RESET ssl")
            connection.exec_driver_sql("SELECT pg_reload_conf()")
        admin.dispose()


@pytest.mark.parametrize("mode", ["prefer", "require"])
def test_tls_is_used_when_the_server_offers_it(ssl_server: None, pg_store: str, mode: str) -> None:
    reader = wire(f"{pg_store}?sslmode={mode}")
    try:
        assert reader.rows("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [(True,)]
    finally:
        reader.close()
    assert run(f"{pg_store}?sslmode={mode}", "query", "--format", "ids").output == "alpha\nbravo\n"
    plain = wire(f"{pg_store}?sslmode=disable")
    try:
        assert plain.rows("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [(False,)]
    finally:
        plain.close()


@pytest.mark.parametrize("environ", [{}, {"PGCONNECT_TIMEOUT": "10"}], ids=["wire", "psycopg"])
@pytest.mark.parametrize(
    "command", [["query", "--format", "ids"], ["label", "alpha", "k=v"], ["db", "check"]]
)
def test_a_password_in_the_url_query_is_never_printed(
    password_roles: str,
    pg_store: str,
    monkeypatch: pytest.MonkeyPatch,
    environ: dict[str, str],
    command: list[str],
) -> None:
    """libpq takes ``?password=``; an error naming the store shows it as ``***`` like the userinfo one."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    wrong = "Qu3ry-p@ss/word"
    url = f"{with_user(pg_store, 'pw_scram', 'x').replace(':x@', '@')}?password={quote(wrong, safe='')}"
    result = run(url, *command)
    assert result.exit_code == 3, result.output
    assert len(result.output.strip().splitlines()) == 1
    for shown in (wrong, quote(wrong, safe=""), quote(wrong)):
        assert shown not in result.output
    assert "password=***" in result.output


@pytest.mark.parametrize(
    "suffix", [":notaport/db", "/db?sslmode=bogus", "/db?connect_timeout=soon", "/db?port=http"]
)
def test_a_url_with_a_malformed_value_is_one_line_exit_2_without_the_password(suffix: str) -> None:
    result = run(f"postgresql://someone:Pl41n-s3cret@127.0.0.1{suffix}", "query")
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("bflsync: error: --db:")
    assert "Pl41n-s3cret" not in result.output


def test_an_unparsable_url_is_refused_without_its_password() -> None:
    result = run("postgres ql://someone:Pl41n-s3cret@127.0.0.1/db", "query")
    assert result.exit_code == 2, result.output
    assert "Pl41n-s3cret" not in result.output


def test_a_database_that_does_not_exist_is_named_in_one_line_exit_3(pg_store: str) -> None:
    """The server's FATAL error ends the startup; it is the message, not the closed connection after it."""
    missing = pg_store.rpartition("/")[0] + "/no_such_store"
    result = run(missing, "query", "--format", "ids")
    assert result.exit_code == 3, result.output
    assert result.output.strip().splitlines() == [
        f'bflsync: error: cannot reach the store at {missing} (database "no_such_store" does not exist)'
    ]


def test_a_session_the_server_ends_mid_read_is_a_store_error_naming_why(pg_store: str) -> None:
    reader = wire(pg_store)
    try:
        ((pid,),) = reader.rows("SELECT pg_backend_pid()")
        admin = sa.create_engine(pg_store, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        admin.dispose()
        with pytest.raises(
            StoreUnreachableError, match="terminating connection due to administrator command"
        ):
            reader.rows("SELECT 1")
    finally:
        reader.close()


@contextlib.contextmanager
def broken_server(answer: bytes) -> Iterator[int]:
    """A loopback 'server' that reads the startup packet (declining TLS), sends ``answer`` and hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        with contextlib.suppress(OSError):
            for _ in range(2):
                conn, _ = listener.accept()
                with conn:
                    if conn.recv(8)[4:8] == b"\x04\xd2\x16\x2f":  # SSLRequest: say no, read the startup
                        conn.sendall(b"N")
                    conn.recv(4096)
                    conn.sendall(answer)
                    time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    "answer",
    [
        b"R" + struct.pack("!i", -5) + b"\x00" * 16,  # a negative length
        b"R" + struct.pack("!i", 4),  # an authentication request without its code
        b"R" + struct.pack("!ii", 8, 0) + b"Z" + struct.pack("!i", 2),  # ReadyForQuery cut short
        b"R" + struct.pack("!ii", 8, 0) + b"S" + struct.pack("!i", 6) + b"ab",  # a parameter without NULs
    ],
    ids=["negative-length", "no-auth-code", "short-ready", "bad-parameter"],
)
def test_a_server_breaking_the_protocol_is_one_line_exit_3(answer: bytes) -> None:
    with broken_server(answer) as port:
        result = run(f"postgresql://someone:Pl41n-s3cret@127.0.0.1:{port}/db?sslmode=disable", "query")
    assert result.exit_code == 3, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("bflsync: error: cannot reach the store at postgresql://someone:***@")
    assert "Pl41n-s3cret" not in result.output


@pytest.mark.parametrize(
    "command",
    [["label", "alpha", "k=v"], ["note", "alpha", "a note"], ["sync", "--base-url", "http://127.0.0.1:9"]],
)
def test_a_role_that_may_only_read_is_refused_writes_with_exit_3(
    pg_store: str, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """A team store whose owner granted you SELECT only is read-only to you, as a read-only file is."""
    monkeypatch.setenv("BFL_API_KEY", "sk-review-test-key-0123456789")
    url = with_user(pg_store, "pw_scram", PASSWORD)
    result = run(url, *command)
    assert result.exit_code == 3, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert "permission denied" in result.output
    assert PASSWORD not in result.output
    assert run(pg_store, "show", "alpha", "--format", "json").exit_code == 0
    labels = json.loads(run(pg_store, "show", "alpha", "--format", "json").output)["labels"]
    assert labels == {}


def test_a_row_of_tens_of_megabytes_is_read_about_as_fast_as_psycopg_reads_it(pg_store: str) -> None:
    """Each received chunk used to copy everything buffered so far: quadratic in a huge row's size."""
    blob = "x" * 40_000_000
    opened = access.open_store_for_write(access.locate_store(pg_store))
    write_sync(opened.engine, {**DETAILS, "huge": {"blob": blob}}, now=day(2))
    statement = "SELECT details FROM finetune WHERE finetune_id = 'huge'"
    with opened.engine.connect() as connection:
        started = time.perf_counter()
        assert len(connection.exec_driver_sql(statement).scalar_one()) > len(blob)
        psycopg_s = time.perf_counter() - started
    opened.engine.dispose()
    reader = wire(pg_store)
    try:
        started = time.perf_counter()
        assert len(reader.rows(statement)[0][0]) > len(blob)
        wire_s = time.perf_counter() - started
    finally:
        reader.close()
    assert wire_s < 3 * psycopg_s + 0.5, (wire_s, psycopg_s)
