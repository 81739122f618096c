"""Server-side limits and refusals end in one line and exit 3 or 4, never exit 70 or a wait without end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from bflsync.cli import cli


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", url, *args])


def one_line(result: Result) -> bool:
    return result.stderr.startswith("bflsync: error: ") and result.stderr.count("\n") == 1


@pytest.fixture
def table_locked(pg_alpha_store: str) -> Iterator[int]:
    """Another session holding an exclusive lock on ``finetune`` in an open transaction; yields its pid."""
    engine = sa.create_engine(pg_alpha_store)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("LOCK TABLE finetune IN ACCESS EXCLUSIVE MODE")
            yield int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar() or 0)
            connection.rollback()
    finally:
        engine.dispose()


@pytest.fixture
def slow_role(pg_alpha_store: str) -> Iterator[str]:
    """A superuser role whose statement_timeout is 300 ms: its URL."""
    name = f"r_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(pg_alpha_store, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE ROLE {name} LOGIN SUPERUSER")
        connection.exec_driver_sql(f"ALTER ROLE {name} SET statement_timeout = 300")
    try:
        yield pg_alpha_store.replace("://bfl@", f"://{name}@")
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP ROLE {name}")
        admin.dispose()


@pytest.mark.parametrize("command", [["show", "alpha"], ["query"], ["label", "alpha", "a=1"]])
def test_a_statement_timeout_of_the_role_exits_3_in_one_line(
    slow_role: str, table_locked: int, command: list[str]
) -> None:
    result = run(slow_role, *command)
    assert result.exit_code == 3, result.output
    assert one_line(result)
    assert "statement timeout" in result.stderr


@pytest.mark.parametrize(
    ("command", "exit_code"),
    [
        # A read refused by a server limit exits 3, as every such refusal of a read does (issue 17);
        # a writer kept from the store by another session's lock exits 4, as a locked sync does.
        (["show", "alpha"], 3),
        (["label", "alpha", "a=1"], 4),
    ],
)
def test_a_lock_held_past_lock_timeout_is_one_line_naming_the_holder(
    pg_alpha_store: str, table_locked: int, command: list[str], exit_code: int
) -> None:
    result = run(f"{pg_alpha_store}?options=-c%20lock_timeout%3D300", *command)
    assert result.exit_code == exit_code, result.output
    assert one_line(result)
    assert f"pid {table_locked} (role bfl, idle in transaction)" in result.stderr


def test_seventy_thousand_labels_in_one_command_stay_under_the_bind_parameter_limit(
    pg_alpha_store: str,
) -> None:
    removals = [argument for number in range(70_000) for argument in ("--remove", f"k{number}")]
    result = CliRunner().invoke(cli, ["--db", pg_alpha_store, "label", "alpha", *removals])
    assert (result.exit_code, result.stderr) == (0, "alpha: no change\n")
