"""The store on PostgreSQL, the path for teams that outgrow one SQLite file.

The ``postgres_server`` and ``pg_url`` fixtures (tests/pgcluster.py, shared through conftest)
start a throwaway cluster from the machine's PostgreSQL binaries on 127.0.0.1. Where they are
missing these tests are skipped, except in CI (``CI=true``), where that is a failure. Behaviour
both engines share is tested once, over the ``store_db`` fixture, in the other modules.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from pglaunch import free_port

from bflsync.cli import cli
from bflsync.mock.server import MockBFL
from bflsync.store import access
from bflsync.store.lock import sync_lock_for

KEY = "pg-test-key"
ALPHA = {"mode": "character", "iterations": "300", "learning_rate": 2e-5, "trigger_word": "TOK"}
BETA = {"mode": "style", "finetune_type": "full", "captioning": True}


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve(finetunes={"alpha": ALPHA, "beta": BETA}, api_key=KEY) as server:
        yield server


def run_cli(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), env={"BFL_API_KEY": KEY}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def fetch(url: str, query: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.exec_driver_sql(query)]
    finally:
        engine.dispose()


def test_db_upgrade_creates_the_schema_and_models_match(pg_url: str) -> None:
    run_cli("--db", pg_url, "db", "upgrade")
    assert run_cli("--db", pg_url, "db", "check").stdout == "models and migrations agree\n"
    assert run_cli("--db", pg_url, "db", "current").stdout == f"{access.HEAD_REVISION} (head)\n"


def test_three_syncs_record_created_updated_deleted_versions(pg_url: str, mock: MockBFL) -> None:
    run_cli("--db", pg_url, "sync", "--base-url", mock.base_url)
    run_cli("--db", pg_url, "sync", "--base-url", mock.base_url)
    mock.put("alpha", {**ALPHA, "iterations": 500})
    mock.remove("beta")
    run_cli("--db", pg_url, "sync", "--base-url", mock.base_url)

    versions = fetch(
        pg_url,
        "SELECT f.finetune_id, v.version, v.change, v.changed_keys, v.sync_run_id"
        " FROM finetune_version v JOIN finetune f ON f.id = v.finetune_pk ORDER BY f.finetune_id, v.version",
    )
    assert versions == [
        ("alpha", 1, "created", '["iterations","learning_rate","mode","trigger_word"]', 1),
        ("alpha", 2, "updated", '["iterations"]', 3),
        ("beta", 1, "created", '["captioning","finetune_type","mode"]', 1),
        ("beta", 2, "deleted", '["captioning","finetune_type","mode"]', 3),
    ]
    current = fetch(
        pg_url,
        "SELECT finetune_id, mode, iterations, learning_rate, captioning, version, deleted_at IS NOT NULL"
        " FROM finetune ORDER BY finetune_id",
    )
    assert current == [
        ("alpha", "character", 500, 2e-5, None, 2, False),
        ("beta", "style", None, None, True, 2, True),
    ]
    assert fetch(pg_url, "SELECT status, created, unchanged, updated, deleted FROM sync_run ORDER BY id") == [
        ("ok", 2, 0, 0, 0),
        ("ok", 0, 2, 0, 0),
        ("ok", 0, 0, 1, 1),
    ]


def test_timestamps_are_stored_as_utc_instants(pg_url: str, mock: MockBFL) -> None:
    before = datetime.now(UTC)
    run_cli("--db", pg_url, "sync", "--base-url", mock.base_url)
    [(first_seen,)] = fetch(pg_url, "SELECT first_seen_at FROM finetune WHERE finetune_id = 'alpha'")
    assert first_seen.utcoffset() is not None
    assert before <= first_seen <= datetime.now(UTC)


def test_show_history_and_runs_read_a_postgresql_store(pg_url: str, mock: MockBFL) -> None:
    run_cli("--db", pg_url, "sync", "--base-url", mock.base_url)
    assert '"iterations": "300"' in run_cli("--db", pg_url, "show", "alpha", "--format", "json").stdout
    assert "created" in run_cli("--db", pg_url, "history", "alpha").stdout
    assert '"status": "ok"' in run_cli("--db", pg_url, "runs", "--format", "json").stdout


def test_query_facets_and_as_of_answer_on_postgresql(pg_url: str, mock: MockBFL) -> None:
    run_cli("--db", pg_url, "sync", "--base-url", mock.base_url)
    assert run_cli("--db", pg_url, "query", "iterations=300", "--format", "ids").stdout == "alpha\n"
    assert run_cli("--db", pg_url, "facets", "mode", "--format", "json").stdout.count('"count": 1') == 2
    as_of = run_cli("--db", pg_url, "query", "--as-of", "2999-01-01", "captioning=true", "--format", "ids")
    assert as_of.stdout == "beta\n"


def test_read_engine_cannot_write_on_postgresql(pg_url: str) -> None:
    run_cli("--db", pg_url, "db", "upgrade")
    engine = access.open_store_for_read(access.locate_store(pg_url))
    try:
        with (
            engine.connect() as connection,
            pytest.raises(sa.exc.InternalError, match="read-only transaction"),
        ):
            connection.exec_driver_sql("DELETE FROM sync_run")
    finally:
        engine.dispose()


def test_a_missing_postgresql_store_is_refused_by_read_commands(pg_url: str) -> None:
    result = CliRunner().invoke(cli, ["--db", pg_url, "runs"])
    assert result.exit_code == 2
    assert "run `bflsync sync` first" in result.stderr
    engine = sa.create_engine(pg_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_a_second_sync_of_the_same_postgresql_store_is_refused_naming_the_holder(
    pg_url: str, mock: MockBFL
) -> None:
    run_cli("--db", pg_url, "sync", "--base-url", mock.base_url)
    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO sync_run (started_at, status, source, pid, bflsync_version, listed, fetched,"
                " created, updated, unchanged, deleted, restored, failed)"
                " VALUES (now(), 'running', 'elsewhere', 4711, 'x', 0, 0, 0, 0, 0, 0, 0, 0)"
            )
        with sync_lock_for(access.locate_store(pg_url)):
            result = CliRunner().invoke(
                cli, ["--db", pg_url, "sync", "--base-url", mock.base_url], env={"BFL_API_KEY": KEY}
            )
        assert result.exit_code == 4
        assert result.stderr.startswith("bflsync: error: another sync is running (server pid ")
        assert result.stderr.endswith(", role bfl; client pid 4711)\n")
        run_cli("--db", pg_url, "sync", "--base-url", mock.base_url)
    finally:
        engine.dispose()


def test_two_postgresql_databases_do_not_share_a_lock(postgres_server: str, pg_url: str) -> None:
    other = f"{postgres_server}/postgres"
    with sync_lock_for(access.locate_store(pg_url)), sync_lock_for(access.locate_store(other)):
        pass


@pytest.mark.parametrize(
    "command", [["sync", "--base-url", "http://127.0.0.1:9"], ["runs"], ["db", "upgrade"]]
)
def test_an_unreachable_postgresql_server_exits_3_in_one_line(command: list[str]) -> None:
    url = f"postgresql+psycopg://bfl@127.0.0.1:{free_port()}/bfl"
    result = CliRunner().invoke(cli, ["--db", url, *command], env={"BFL_API_KEY": KEY})
    assert result.exit_code == 3
    assert result.stderr.startswith(f"bflsync: error: cannot reach the store at {url} (")
    assert result.stderr.count("\n") == 1


def test_a_postgresql_database_that_does_not_exist_exits_3(postgres_server: str, mock: MockBFL) -> None:
    url = f"{postgres_server}/no_such_database"
    result = CliRunner().invoke(
        cli, ["--db", url, "sync", "--base-url", mock.base_url], env={"BFL_API_KEY": KEY}
    )
    assert result.exit_code == 3
    assert 'database "no_such_database" does not exist' in result.stderr


def test_sync_without_the_postgresql_driver_exits_2(mock: MockBFL) -> None:
    url = "postgresql+nosuchdriver://bfl@127.0.0.1/bfl"
    result = CliRunner().invoke(
        cli, ["--db", url, "sync", "--base-url", mock.base_url], env={"BFL_API_KEY": KEY}
    )
    assert result.exit_code == 2
    assert "no database driver for 'postgresql+nosuchdriver'" in result.stderr
