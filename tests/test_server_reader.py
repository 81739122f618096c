"""Read commands on PostgreSQL through psycopg (bflsync.read.server_reader), against the private cluster.

libpq does the connecting, so its behaviour is the contract: ``~/.pgpass``, service files, ``PG*``
variables, several hosts, every ``sslmode``. Password roles get pg_hba.conf lines put in front of
the fixture's ``trust`` ones for those roles only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from pglaunch import free_port
from storebuild import day, write_sync

from bflsync.cli import cli
from bflsync.errors import StoreRefusedError, StoreUnreachableError, StoreWriteError
from bflsync.read.server_reader import ServerReader, open_server_reader
from bflsync.store import access
from bflsync.store.check import display_url

PASSWORD = "s3cret-Pw"
# role -> (password_encryption, pg_hba method)
ROLES = {
    "pw_scram": ("scram-sha-256", "scram-sha-256"),
    "pw_md5": ("md5", "md5"),
    "pw_clear": ("md5", "password"),
}
# A role that may log in but was granted nothing.
STRANGER = "pw_stranger"
DETAILS = {
    "alpha": {"finetune_comment": "NUL \x00 here, a replacement \ufffd, 漢字 and ß 🙂", "mode": "character"},
    "bravo": {"finetune_comment": "plain", "mode": "style", "dataset": "ds-1"},
}
SELF_SIGNED = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
SELF_SIGNED += ["-nodes", "-subj", "/CN=localhost", "-days", "1"]
# What a PostgreSQL read must not load: the write side's libraries.
HEAVY = ("sqlalchemy", "sqlmodel", "pydantic", "alembic", "httpx")


@pytest.fixture(scope="session")
def password_roles(postgres_server: str) -> str:
    """Roles that must log in with a password, one per method; returns the server URL."""
    admin = sa.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        hba = Path(connection.exec_driver_sql("SHOW hba_file").scalar_one())
        for role, (encryption, _) in ROLES.items():
            connection.exec_driver_sql(f"SET password_encryption = '{encryption}'")
            connection.exec_driver_sql(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
        connection.exec_driver_sql(f"CREATE ROLE {STRANGER} LOGIN")
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


def with_user(url: str, user: str, password: str | None) -> str:
    scheme, _, rest = url.partition("://")
    userinfo = user if password is None else f"{user}:{quote(password, safe='')}"
    return f"{scheme}://{userinfo}@{rest.partition('@')[2]}"


def run(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db_url, *args])


def assert_one_line_exit(result: Result, code: int, *needles: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bflsync: error: "), result.output
    for needle in needles:
        assert needle in lines[0]


def server_parts(url: str) -> tuple[str, int, str]:
    parsed = sa.make_url(url)
    assert parsed.host is not None and parsed.port is not None and parsed.database is not None
    return parsed.host, parsed.port, parsed.database


@pytest.mark.parametrize("role", sorted(ROLES))
def test_password_roles_read_through_libpq(pg_store: str, role: str) -> None:
    url = with_user(pg_store, role, PASSWORD)
    reader = open_server_reader(url)
    try:
        assert reader.rows("SELECT current_user") == [(role,)]
    finally:
        reader.close()
    result = run(url, "query", "--format", "ids")
    assert (result.exit_code, result.output) == (0, "alpha\nbravo\n")


@pytest.mark.parametrize("role", ["pw_scram", "pw_md5"])
def test_a_wrong_password_is_one_line_exit_3_without_the_password(pg_store: str, role: str) -> None:
    wrong = "Wr0ng-p@ss:word"
    result = run(with_user(pg_store, role, wrong), "query", "--format", "ids")
    assert_one_line_exit(result, 3, "password authentication failed", ":***@")
    for shown in (wrong, quote(wrong, safe=""), PASSWORD):
        assert shown not in result.output


def test_the_password_comes_from_pgpass(
    pg_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port, database = server_parts(pg_store)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{host}:{port}:{database}:pw_scram:{PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    result = run(with_user(pg_store, "pw_scram", None), "query", "--format", "ids")
    assert (result.exit_code, result.output) == (0, "alpha\nbravo\n")


def test_the_server_comes_from_pg_variables(pg_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    host, port, database = server_parts(pg_store)
    for name, value in {"PGHOST": host, "PGPORT": str(port), "PGUSER": "bfl"}.items():
        monkeypatch.setenv(name, value)
    result = run(f"postgresql:///{database}", "query", "--format", "ids")
    assert (result.exit_code, result.output) == (0, "alpha\nbravo\n")


def test_the_server_comes_from_a_service_file(
    pg_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host, port, database = server_parts(pg_store)
    services = tmp_path / "pg_service.conf"
    services.write_text(f"[team]\nhost={host}\nport={port}\ndbname={database}\nuser=bfl\n")
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    result = run("postgresql:///?service=team", "query", "--format", "ids")
    assert (result.exit_code, result.output) == (0, "alpha\nbravo\n")


def test_the_next_host_is_tried_when_the_first_is_down(pg_store: str) -> None:
    host, port, database = server_parts(pg_store)
    url = f"postgresql://bfl@{host}:{free_port()},{host}:{port}/{database}"
    result = run(url, "query", "--format", "ids")
    assert (result.exit_code, result.output) == (0, "alpha\nbravo\n")


def test_the_read_commands_on_postgresql_import_no_sqlalchemy_or_pydantic(pg_store: str) -> None:
    for args in (
        ["query", "mode=character", "--format", "json"],
        ["query", "--as-of", "2026-01-02", "--format", "csv"],
        ["show", "alpha"],
        ["facets", "mode"],
        ["history", "alpha"],
        ["runs"],
        ["diff", "alpha", "bravo"],
    ):
        script = (
            "import sys\n"
            "from bflsync.cli import cli\n"
            f"sys.argv = ['bflsync', '--db', {pg_store!r}, *{args!r}]\n"
            "try:\n    cli(prog_name='bflsync')\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}), file=sys.stderr)\n"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert done.stdout, (args, done.stderr)
        assert done.stderr.splitlines()[-1] == "[]", args


def test_the_transaction_is_read_only_and_one_snapshot(pg_store: str) -> None:
    reader = open_server_reader(pg_store)
    try:
        assert reader.rows("SHOW transaction_read_only") == [("on",)]
        assert reader.rows("SHOW transaction_isolation") == [("repeatable read",)]
        with pytest.raises(StoreWriteError, match="read-only transaction"):
            reader.rows("DELETE FROM finetune")
        # A refused statement leaves the reader usable, and nothing was deleted.
        assert reader.rows("SELECT count(*) FROM finetune") == [(2,)]
    finally:
        reader.close()


def test_values_are_bound_and_decoded_by_type(pg_store: str) -> None:
    reader = open_server_reader(pg_store)
    moment = day(2, 5)
    try:
        ((row),) = reader.rows(
            "SELECT ?, ?, ?, CAST(? AS bigint), ?, ?, CAST(? AS numeric), ?,"
            " CAST('{\"a\": [1]}' AS jsonb), CAST(NULL AS text), CAST(? AS jsonb) #> ?, CAST(? AS text)",
            [1, 2**40, 1.5, -(2**62), True, moment, "1.25", None, '{"k": {"x": 3}}', ["k", "x"], "'?%\\"],
        )
    finally:
        reader.close()
    assert row == (1, 2**40, 1.5, -(2**62), True, moment, Decimal("1.25"), None, {"a": [1]}, None, 3, "'?%\\")


def test_nul_replacement_and_non_ascii_values_match_sqlite(pg_store: str, db_path: Path) -> None:
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


def test_a_unix_socket_directory_in_the_url_is_used(pg_store: str) -> None:
    reader = open_server_reader(pg_store)
    try:
        ((directories,),) = reader.rows("SHOW unix_socket_directories")
    finally:
        reader.close()
    directory = directories.split(",")[0].strip()
    _, port, database = server_parts(pg_store)
    url = f"postgresql://bfl@{quote(directory, safe='')}:{port}/{database}"
    local = open_server_reader(url)
    try:
        assert local.rows("SELECT inet_server_addr()") == [(None,)]  # not over TCP
    finally:
        local.close()
    assert run(url, "query", "--format", "ids").output == "alpha\nbravo\n"


@pytest.mark.parametrize("mode", ["require", "verify-ca", "verify-full"])
def test_an_sslmode_the_server_cannot_meet_is_one_line_exit_3(pg_store: str, mode: str) -> None:
    result = run(f"{pg_store}?sslmode={mode}", "query")
    assert_one_line_exit(result, 3, f"cannot reach the store at {pg_store}?sslmode={mode}")


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_sslmodes_that_allow_plain_connections_read_without_ssl(pg_store: str, mode: str) -> None:
    assert run(f"{pg_store}?sslmode={mode}", "query", "--format", "ids").output == "alpha\nbravo\n"


def test_errors_show_the_url_without_its_password() -> None:
    assert display_url("postgresql://u:secret@h:5/d?x=1") == "postgresql://u:***@h:5/d?x=1"
    assert display_url("postgresql://u@h/d?password=secret") == "postgresql://u@h/d?password=***"
    assert display_url("postgresql://u@h/d") == "postgresql://u@h/d"


@pytest.mark.parametrize(
    "command", [["query", "--format", "ids"], ["label", "alpha", "k=v"], ["db", "check"]]
)
def test_a_password_in_the_url_query_is_never_printed(pg_store: str, command: list[str]) -> None:
    """libpq takes ``?password=``; an error naming the store shows it as ``***`` like the userinfo one."""
    wrong = "Qu3ry-p@ss/word"
    url = f"{with_user(pg_store, 'pw_scram', None)}?password={quote(wrong, safe='')}"
    result = run(url, *command)
    assert_one_line_exit(result, 3, "password=***")
    for shown in (wrong, quote(wrong, safe=""), quote(wrong)):
        assert shown not in result.output


@pytest.mark.parametrize(
    "suffix",
    [":notaport/db", "/db?sslmode=bogus", "/db?connect_timeout=soon", "/db?port=http", "/db?bogus=1"],
)
def test_a_url_with_a_malformed_value_is_one_line_exit_2_without_the_password(suffix: str) -> None:
    result = run(f"postgresql://someone:Pl41n-s3cret@127.0.0.1{suffix}", "query")
    assert_one_line_exit(result, 2, "bflsync: error: --db:")
    assert "Pl41n-s3cret" not in result.output


def test_a_database_that_does_not_exist_is_named_in_one_line_exit_3(pg_store: str) -> None:
    missing = pg_store.rpartition("/")[0] + "/no_such_store"
    result = run(missing, "query", "--format", "ids")
    assert_one_line_exit(
        result, 3, f"cannot reach the store at {missing}", 'database "no_such_store" does not exist'
    )


def test_a_server_that_is_not_listening_is_one_line_exit_3() -> None:
    url = f"postgresql://someone:Pl41n-s3cret@127.0.0.1:{free_port()}/db"
    result = run(url, "query")
    assert_one_line_exit(result, 3, "cannot reach the store at postgresql://someone:***@")
    assert "Pl41n-s3cret" not in result.output


def test_a_session_the_server_ends_mid_read_is_a_store_error_naming_why(pg_store: str) -> None:
    reader = open_server_reader(pg_store)
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


@pytest.fixture
def locked_store(pg_store: str) -> Iterator[str]:
    """The store with its finetune table locked by another session until the test ends."""
    holder = sa.create_engine(pg_store)
    with holder.connect() as connection:
        connection.exec_driver_sql("LOCK TABLE finetune IN ACCESS EXCLUSIVE MODE")
        yield pg_store
        connection.rollback()
    holder.dispose()


@pytest.mark.parametrize(
    ("setting", "reason"),
    [("statement_timeout", "statement timeout"), ("lock_timeout", "lock timeout")],
)
def test_a_server_side_timeout_is_one_line_exit_3(locked_store: str, setting: str, reason: str) -> None:
    url = f"{locked_store}?options={quote(f'-c {setting}=200', safe='')}"
    result = run(url, "query", "--format", "ids")
    assert_one_line_exit(result, 3, locked_store, reason)


def test_a_server_side_timeout_is_a_store_server_error(locked_store: str) -> None:
    reader = open_server_reader(locked_store)
    try:
        reader.rows("SET statement_timeout = 200")
        with pytest.raises(StoreRefusedError, match="canceling statement due to statement timeout"):
            reader.rows("SELECT count(*) FROM finetune")
    finally:
        reader.close()


def test_a_role_without_select_is_refused_in_one_line_exit_3(pg_store: str) -> None:
    result = run(with_user(pg_store, STRANGER, None), "query", "--format", "ids")
    assert_one_line_exit(result, 3, "permission denied")


@pytest.mark.parametrize(
    "command",
    [["label", "alpha", "k=v"], ["note", "alpha", "a note"], ["sync", "--base-url", "http://127.0.0.1:9"]],
)
def test_a_role_that_may_only_read_is_refused_writes_with_exit_3(
    pg_store: str, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """A team store whose owner granted you SELECT only is read-only to you, as a read-only file is."""
    monkeypatch.setenv("BFL_API_KEY", "sk-review-test-key-0123456789")
    result = run(with_user(pg_store, "pw_scram", PASSWORD), *command)
    assert_one_line_exit(result, 3, "permission denied")
    assert PASSWORD not in result.output
    labels = json.loads(run(pg_store, "show", "alpha", "--format", "json").output)["labels"]
    assert labels == {}


def test_a_store_behind_head_is_refused_on_both_engines(store_db: str) -> None:
    access.upgrade_store(access.locate_store(store_db), revision="0001_initial").engine.dispose()
    result = run(store_db, "query")
    assert_one_line_exit(result, 2, "0001_initial", "bflsync db upgrade")
    assert access.inspect_state(access.locate_store(store_db))[1] == "0001_initial"


@pytest.fixture
def ssl_server(postgres_server: str) -> Iterator[None]:
    """TLS switched on in the cluster (a throwaway self-signed certificate), off again after."""
    if not shutil.which("openssl"):
        pytest.skip("no openssl to make a certificate")
    admin = sa.create_engine(f"{postgres_server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        data = Path(connection.exec_driver_sql("SHOW data_directory").scalar_one())
        key, certificate = data / "server.key", data / "server.crt"
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


def ssl_in_use(url: str) -> bool:
    reader: ServerReader = open_server_reader(url)
    try:
        ((used,),) = reader.rows("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        reader.close()
    return bool(used)


@pytest.mark.parametrize(("mode", "encrypted"), [("prefer", True), ("require", True), ("disable", False)])
def test_tls_is_used_as_the_sslmode_says(ssl_server: None, pg_store: str, mode: str, encrypted: bool) -> None:
    assert ssl_in_use(f"{pg_store}?sslmode={mode}") is encrypted
    assert run(f"{pg_store}?sslmode={mode}", "query", "--format", "ids").output == "alpha\nbravo\n"


def test_verify_full_refuses_a_certificate_it_cannot_check(
    ssl_server: None, pg_store: str, tmp_path: Path
) -> None:
    url = f"{pg_store}?sslmode=verify-full&sslrootcert={quote(str(tmp_path / 'missing.crt'), safe='')}"
    assert_one_line_exit(run(url, "query"), 3, "cannot reach the store")
