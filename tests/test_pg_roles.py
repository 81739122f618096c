"""A PostgreSQL store shared by roles (owner, writer, reader, and a hostile one): what each can do to the others."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from bflsync.cli import cli
from bflsync.errors import StoreWriteError
from bflsync.store import access
from bflsync.store.lock import sync_lock_for

MakeRole = Callable[..., str]


def admin(url: str, *statements: str) -> None:
    """Run statements as the cluster's superuser, outside bflsync."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
    finally:
        engine.dispose()


@pytest.fixture
def make_role(pg_alpha_store: str) -> Iterator[MakeRole]:
    """``make_role(*grants)``: a new login role with these grants; returns a URL connecting as it."""
    made: list[str] = []

    def make(*grants: str) -> str:
        name = f"r_{uuid.uuid4().hex[:10]}"
        made.append(name)
        admin(pg_alpha_store, f"CREATE ROLE {name} LOGIN", *(grant.format(role=name) for grant in grants))
        return pg_alpha_store.replace("://bfl@", f"://{name}@")

    yield make
    for name in made:
        admin(pg_alpha_store, f"DROP OWNED BY {name}", f"DROP ROLE {name}")


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", url, *args])


def can_insert(url: str, role_url: str, table: str) -> bool:
    role = sa.make_url(role_url).username
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return bool(
                connection.exec_driver_sql(
                    f"SELECT has_table_privilege('{role}', '{table}', 'INSERT')"
                ).scalar()
            )
    finally:
        engine.dispose()


READER = "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"
PLANTER = "GRANT CREATE ON SCHEMA public TO {role}"


def test_code_planted_in_the_store_schema_by_another_role_never_runs_as_the_owner(
    pg_alpha_store: str, make_role: MakeRole
) -> None:
    mallory = make_role(READER, PLANTER)
    role = sa.make_url(mallory).username
    grab = f"EXECUTE 'GRANT INSERT ON public.finetune_note TO {role}'"
    admin(
        mallory,
        # An operator matching the lock query's `'text' || current_database()` exactly, and a
        # function matching pg_try_advisory_lock(hashtext(...)) better than pg_catalog's.
        "CREATE FUNCTION public.steal(a name, b name) RETURNS text LANGUAGE plpgsql AS $$"
        f" BEGIN {grab}; RETURN a::text; END $$",
        "CREATE OPERATOR public.|| (LEFTARG = name, RIGHTARG = name, FUNCTION = public.steal)",
        "CREATE FUNCTION public.pg_try_advisory_lock(k integer) RETURNS boolean LANGUAGE plpgsql AS $$"
        f" BEGIN {grab}; RETURN true; END $$",
    )
    result = run(pg_alpha_store, "note", "alpha", "hello")
    assert result.exit_code == 3
    assert result.stderr.startswith("bflsync: error: the store at ")
    assert f"role {role} may create objects" in result.stderr
    assert f"role {role} owns functions or operators" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not can_insert(pg_alpha_store, mallory, "finetune_note")
    assert run(pg_alpha_store, "show", "alpha").exit_code == 3


def test_the_owner_writes_again_once_the_planted_code_and_the_create_right_are_gone(
    pg_alpha_store: str, make_role: MakeRole
) -> None:
    mallory = make_role(READER, PLANTER)
    admin(mallory, "CREATE FUNCTION public.f(a name) RETURNS text LANGUAGE sql AS 'SELECT a::text'")
    assert run(pg_alpha_store, "note", "alpha", "hello").exit_code == 3
    role = sa.make_url(mallory).username
    admin(pg_alpha_store, "DROP FUNCTION public.f(name)", f"REVOKE CREATE ON SCHEMA public FROM {role}")
    result = run(pg_alpha_store, "note", "alpha", "hello")
    assert (result.exit_code, result.stderr) == (0, "alpha: note added\n")


def test_a_role_that_cannot_write_the_store_cannot_take_the_sync_lock(
    pg_alpha_store: str, make_role: MakeRole
) -> None:
    reader = make_role(READER)
    lock = sync_lock_for(access.locate_store(reader))
    with pytest.raises(StoreWriteError, match="permission denied for table bflsync_lock"):
        lock.acquire()
    result = run(reader, "label", "alpha", "a=1")
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1


def test_a_reader_holding_the_old_advisory_key_does_not_stop_writers(
    pg_alpha_store: str, make_role: MakeRole
) -> None:
    reader = make_role(READER)
    engine = sa.create_engine(reader)
    try:
        with engine.connect() as connection:
            taken = connection.exec_driver_sql(
                "SELECT pg_try_advisory_lock(hashtext('bflsync sync ' || current_database()))"
            ).scalar()
            assert taken
            result = run(pg_alpha_store, "label", "alpha", "a=1")
            assert (result.exit_code, result.stderr) == (0, "alpha: a=1\n")
    finally:
        engine.dispose()


def test_a_reader_holding_a_transaction_open_makes_db_upgrade_exit_4_naming_it(
    pg_alpha_store: str, make_role: MakeRole
) -> None:
    assert run(pg_alpha_store, "db", "downgrade", "0009_search_text").exit_code == 0
    reader = make_role(READER)
    role = sa.make_url(reader).username
    engine = sa.create_engine(reader)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT count(*) FROM finetune_note").scalar()
            pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            # The store's default lock_timeout is 10 s; a URL may set its own.
            short = f"{pg_alpha_store}?options=-c%20lock_timeout%3D300"
            result = run(short, "db", "upgrade")
    finally:
        engine.dispose()
    assert result.exit_code == 4
    assert "locked by another session for longer than lock_timeout" in result.stderr
    assert f"pid {pid} (role {role}, idle in transaction)" in result.stderr
    assert result.stderr.count("\n") == 1


def test_db_reextract_by_a_select_only_role_exits_3_in_one_line(make_role: MakeRole) -> None:
    reader = make_role(READER)
    result = run(reader, "db", "reextract")
    assert (result.exit_code, result.stderr.count("\n")) == (3, 1), result.output
    assert result.stderr.startswith("bflsync: error: ") and "internal error" not in result.stderr


def test_db_grant_prints_the_statements_and_applies_nothing(pg_alpha_store: str, make_role: MakeRole) -> None:
    bare = make_role()
    role = sa.make_url(bare).username
    result = run(pg_alpha_store, "db", "grant", "--reader", str(role))
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0] == 'REVOKE CREATE ON SCHEMA "public" FROM PUBLIC;'
    assert f'GRANT SELECT ON ALL TABLES IN SCHEMA "public" TO "{role}";' in result.stdout
    assert run(bare, "runs").exit_code == 3


def test_db_grant_apply_makes_a_reader_that_reads_and_cannot_write_or_lock(
    pg_alpha_store: str, make_role: MakeRole
) -> None:
    reader = make_role()
    role = str(sa.make_url(reader).username)
    assert run(pg_alpha_store, "db", "grant", "--reader", role, "--apply").exit_code == 0
    assert run(reader, "show", "alpha").exit_code == 0
    refused = run(reader, "label", "alpha", "a=1")
    assert refused.exit_code == 3
    assert "bflsync_lock" in refused.stderr
    reextract = run(reader, "db", "reextract")
    assert (reextract.exit_code, reextract.stderr.count("\n")) == (3, 1)


def test_db_grant_apply_makes_a_writer_that_labels_notes_and_syncs_rows(
    pg_alpha_store: str, make_role: MakeRole
) -> None:
    writer = make_role()
    role = str(sa.make_url(writer).username)
    assert run(pg_alpha_store, "db", "grant", "--writer", role, "--apply").exit_code == 0
    assert run(writer, "label", "alpha", "a=1").exit_code == 0
    assert run(writer, "note", "alpha", "hi").exit_code == 0
    assert run(writer, "db", "reextract").exit_code == 0
    assert run(writer, "history", "alpha").stdout.count(f"(role {role})") == 2


def test_db_grant_needs_exactly_one_role_and_a_postgresql_store(pg_alpha_store: str, db_path: Path) -> None:
    for args in (["db", "grant"], ["db", "grant", "--reader", "a", "--writer", "b"]):
        result = run(pg_alpha_store, *args)
        assert (result.exit_code, result.stderr) == (
            2,
            "bflsync: error: give one of --reader ROLE or --writer ROLE\n",
        )
    result = run(str(db_path), "db", "grant", "--reader", "a")
    assert result.exit_code == 2
    assert (
        result.stderr
        == "bflsync: error: db grant is for a PostgreSQL store: a SQLite store's rights are its file's\n"
    )
