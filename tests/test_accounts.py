"""Several API keys and regions share one store: identity is (source, account, finetune_id).

Every behaviour test runs on SQLite and on PostgreSQL (the ``store_db`` fixture), through the
real CLI against the mock API over loopback.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from bflsync.cli import cli
from bflsync.mock_api import MockBFL

KEY_A = "key-of-team-a"
KEY_B = "key-of-team-b"
SHARED = "org-7/shared-lora"
A1 = {"mode": "character", "trigger_word": "TOK"}
A2 = {"mode": "style", "iterations": 300}
B1 = {"mode": "product", "captioning": True}
SHARED_AS_A = {"mode": "general", "finetune_comment": "as team A sees it"}
SHARED_AS_B = {"mode": "general", "finetune_comment": "as team B sees it"}


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    """Key A lists a1, a2; key B lists b1; both list the org-shared LoRA, with different details."""
    with MockBFL.serve(finetunes={"a1": A1, "a2": A2, SHARED: SHARED_AS_A}, api_key=KEY_A) as server:
        server.add_account(KEY_B, {"b1": B1, SHARED: SHARED_AS_B})
        yield server


def sync(store_db: str, base_url: str, key: str, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(
        cli,
        ["--db", store_db, "sync", "--base-url", base_url, *args],
        env={"BFL_API_KEY": key},
        catch_exceptions=code != 0,
    )
    assert result.exit_code == code, result.output
    return result


def fetch(store_db: str, query: str) -> list[tuple[Any, ...]]:
    url = store_db if "://" in store_db else f"sqlite:///{store_db}"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.exec_driver_sql(query)]
    finally:
        engine.dispose()


def finetunes(store_db: str) -> list[tuple[Any, ...]]:
    return fetch(
        store_db,
        "SELECT account, finetune_id, version, deleted_at IS NULL FROM finetune ORDER BY account, finetune_id",
    )


def version_changes(store_db: str) -> list[tuple[Any, ...]]:
    return fetch(
        store_db,
        "SELECT f.account, f.finetune_id, v.version, v.change FROM finetune_version v"
        " JOIN finetune f ON f.id = v.finetune_pk ORDER BY f.account, f.finetune_id, v.version",
    )


def test_two_accounts_syncing_alternately_ten_times_never_tombstone_each_other(
    store_db: str, mock: MockBFL
) -> None:
    for _ in range(10):
        sync(store_db, mock.base_url, KEY_A, "--account", "team-a")
        sync(store_db, mock.base_url, KEY_B, "--account", "team-b")

    assert finetunes(store_db) == [
        ("team-a", "a1", 1, True),
        ("team-a", "a2", 1, True),
        ("team-a", SHARED, 1, True),
        ("team-b", "b1", 1, True),
        ("team-b", SHARED, 1, True),
    ]
    assert {change for *_, change in version_changes(store_db)} == {"created"}
    runs = fetch(store_db, "SELECT account, deleted, restored, status FROM sync_run ORDER BY id")
    assert runs == [("team-a", 0, 0, "ok"), ("team-b", 0, 0, "ok")] * 10


def test_a_full_sync_tombstones_only_its_own_accounts_finetunes(store_db: str, mock: MockBFL) -> None:
    sync(store_db, mock.base_url, KEY_A, "--account", "team-a")
    sync(store_db, mock.base_url, KEY_B, "--account", "team-b")
    mock.remove("a2")
    mock.remove(SHARED, key=KEY_B)

    sync(store_db, mock.base_url, KEY_B, "--account", "team-b")
    sync(store_db, mock.base_url, KEY_A, "--account", "team-a")

    assert finetunes(store_db) == [
        ("team-a", "a1", 1, True),
        ("team-a", "a2", 2, False),
        ("team-a", SHARED, 1, True),
        ("team-b", "b1", 1, True),
        ("team-b", SHARED, 2, False),
    ]
    assert fetch(store_db, "SELECT account, deleted FROM sync_run ORDER BY id") == [
        ("team-a", 0),
        ("team-b", 0),
        ("team-b", 1),
        ("team-a", 1),
    ]


def test_an_id_listed_by_two_accounts_is_two_rows_each_with_its_own_history(
    store_db: str, mock: MockBFL
) -> None:
    sync(store_db, mock.base_url, KEY_A, "--account", "team-a")
    sync(store_db, mock.base_url, KEY_B, "--account", "team-b")
    mock.put(SHARED, {**SHARED_AS_B, "iterations": 900}, key=KEY_B)
    sync(store_db, mock.base_url, KEY_B, "--account", "team-b")

    rows = fetch(
        store_db,
        f"SELECT account, finetune_comment, version FROM finetune WHERE finetune_id = '{SHARED}' ORDER BY account",
    )
    assert rows == [("team-a", "as team A sees it", 1), ("team-b", "as team B sees it", 2)]
    shared_versions = [row for row in version_changes(store_db) if row[1] == SHARED]
    assert shared_versions == [
        ("team-a", SHARED, 1, "created"),
        ("team-b", SHARED, 1, "created"),
        ("team-b", SHARED, 2, "updated"),
    ]


def test_without_account_a_sync_is_the_default_account_and_the_env_var_names_one(
    store_db: str, mock: MockBFL, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync(store_db, mock.base_url, KEY_A)
    monkeypatch.setenv("BFLSYNC_ACCOUNT", "team-b")
    sync(store_db, mock.base_url, KEY_B)

    assert fetch(store_db, "SELECT DISTINCT account FROM finetune ORDER BY account") == [
        ("default",),
        ("team-b",),
    ]
    assert fetch(store_db, "SELECT account FROM sync_run ORDER BY id") == [("default",), ("team-b",)]


def test_gateway_prefixes_are_distinct_sources(store_db: str) -> None:
    with MockBFL.serve(finetunes={}, api_key="unused-key") as gateway:
        gateway.add_account(KEY_A, {"us-only": A1, SHARED: SHARED_AS_A}, prefix="/us1")
        gateway.add_account(KEY_A, {"eu-only": A2, SHARED: SHARED_AS_A}, prefix="/eu1")
        sync(store_db, f"{gateway.base_url}/us1", KEY_A)
        sync(store_db, f"{gateway.base_url}/eu1/", KEY_A)
        sync(store_db, f"{gateway.base_url}/us1", KEY_A)
        host = gateway.base_url.removeprefix("http://")

    assert fetch(
        store_db, "SELECT source, finetune_id, version FROM finetune ORDER BY source, finetune_id"
    ) == [
        (f"{host}/eu1", "eu-only", 1),
        (f"{host}/eu1", SHARED, 1),
        (f"{host}/us1", SHARED, 1),
        (f"{host}/us1", "us-only", 1),
    ]
    assert fetch(store_db, "SELECT source, deleted FROM sync_run ORDER BY id") == [
        (f"{host}/us1", 0),
        (f"{host}/eu1", 0),
        (f"{host}/us1", 0),
    ]


def test_regions_are_distinct_sources(store_db: str) -> None:
    """Two region endpoints (two hosts here, as api.us1/api.eu1 are) never share finetunes."""
    with (
        MockBFL.serve(finetunes={"same-id": A1, "us-only": A2}, api_key=KEY_A) as us1,
        MockBFL.serve(finetunes={"same-id": B1}, api_key=KEY_A, host="127.0.0.2") as eu1,
    ):
        sync(store_db, us1.base_url, KEY_A)
        sync(store_db, eu1.base_url, KEY_A)
        sync(store_db, us1.base_url, KEY_A)
        sources = (us1.base_url.removeprefix("http://"), eu1.base_url.removeprefix("http://"))

    assert fetch(
        store_db, "SELECT source, finetune_id, version, mode FROM finetune ORDER BY source, finetune_id"
    ) == [
        (sources[0], "same-id", 1, "character"),
        (sources[0], "us-only", 1, "style"),
        (sources[1], "same-id", 1, "product"),
    ]
    assert fetch(store_db, "SELECT sum(deleted) + sum(restored) FROM sync_run") == [(0,)]


@pytest.mark.parametrize("name", ["", "a" * 65, "team a", "tëam", "a/b", "a;b", "-\n"])
def test_an_invalid_account_name_exits_2_before_anything_runs(db_path: Any, mock: MockBFL, name: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["--db", str(db_path), "sync", "--base-url", mock.base_url, "--account", name],
        env={"BFL_API_KEY": KEY_A},
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("bflsync: error: --account ")
    assert "an account name is 1-64 characters" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not db_path.exists()
    assert mock.requests == []


def test_an_invalid_account_name_in_the_environment_exits_2(db_path: Any, mock: MockBFL) -> None:
    result = CliRunner().invoke(
        cli,
        ["--db", str(db_path), "sync", "--base-url", mock.base_url],
        env={"BFL_API_KEY": KEY_A, "BFLSYNC_ACCOUNT": "no spaces"},
    )
    assert (result.exit_code, result.stderr.count("\n")) == (2, 1)
    assert "an account name is 1-64 characters" in result.stderr


def test_the_longest_account_name_and_every_allowed_character_are_accepted(
    db_path: Any, mock: MockBFL
) -> None:
    name = ("Az09._-" * 10)[:64]
    sync(str(db_path), mock.base_url, KEY_A, "--account", name)
    assert fetch(str(db_path), "SELECT DISTINCT account FROM finetune") == [(name,)]


# --- the read side ------------------------------------------------------------------------------


def read(store_db: str, *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, ["--db", store_db, *args], catch_exceptions=code != 0)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def two_accounts(store_db: str, mock: MockBFL) -> str:
    """team-a and team-b synced into one store; the shared LoRA is updated for team-b."""
    sync(store_db, mock.base_url, KEY_A, "--account", "team-a")
    sync(store_db, mock.base_url, KEY_B, "--account", "team-b")
    mock.put(SHARED, {**SHARED_AS_B, "iterations": 900}, key=KEY_B)
    sync(store_db, mock.base_url, KEY_B, "--account", "team-b")
    return store_db


@pytest.mark.parametrize(
    "command",
    [["show", SHARED], ["history", SHARED], ["diff", SHARED, "a1"], ["diff", f"{SHARED}@1", f"{SHARED}@2"]],
)
def test_an_id_stored_for_two_accounts_asks_which_one(
    two_accounts: str, mock: MockBFL, command: list[str]
) -> None:
    source = mock.base_url.removeprefix("http://")
    result = read(two_accounts, *command, code=2)
    assert result.stderr == (
        f"bflsync: error: finetune '{SHARED}' is stored several times: {source} (account team-a), "
        f"{source} (account team-b); pick one with --account NAME\n"
    )


def test_account_picks_the_row_for_show_history_and_diff(two_accounts: str) -> None:
    shown = json.loads(read(two_accounts, "show", SHARED, "--account", "team-b", "--format", "json").stdout)
    assert (shown["account"], shown["finetune_comment"], shown["version"]) == (
        "team-b",
        "as team B sees it",
        2,
    )
    history = json.loads(
        read(two_accounts, "history", SHARED, "--account", "team-a", "--format", "json").stdout
    )
    assert [(entry["account"], entry["version"], entry["change"]) for entry in history] == [
        ("team-a", 1, "created")
    ]
    diff = json.loads(
        read(
            two_accounts, "diff", f"{SHARED}@1", f"{SHARED}@2", "--account", "team-b", "--format", "json"
        ).stdout
    )
    assert diff["a"]["account"] == diff["b"]["account"] == "team-b"
    assert diff["differences"] == [{"key": "iterations", "b": 900}]
    changes = json.loads(
        read(
            two_accounts, "history", "--since", "2000-01-01", "--account", "team-b", "--format", "json"
        ).stdout
    )
    assert sorted((entry["finetune_id"], entry["version"]) for entry in changes) == [
        ("b1", 1),
        (SHARED, 1),
        (SHARED, 2),
    ]


def test_runs_show_and_filter_by_account(two_accounts: str) -> None:
    listed = json.loads(read(two_accounts, "runs", "--format", "json").stdout)
    assert [(run["id"], run["account"]) for run in listed] == [(3, "team-b"), (2, "team-b"), (1, "team-a")]
    only_a = json.loads(read(two_accounts, "runs", "--account", "team-a", "--format", "json").stdout)
    assert [run["id"] for run in only_a] == [1]
    table = read(two_accounts, "runs").stdout.splitlines()
    assert table[0].split()[:6] == ["id", "started_at", "duration_s", "status", "source", "account"]
    assert table[-1].split()[5] == "team-a"


def test_an_invalid_account_name_on_a_read_command_exits_2(two_accounts: str) -> None:
    result = read(two_accounts, "runs", "--account", "no spaces", code=2)
    assert result.stderr.count("\n") == 1
    assert "an account name is 1-64 characters" in result.stderr


def test_query_filters_and_shows_account_as_a_bookkeeping_column(store_db: str, mock: MockBFL) -> None:
    store = store_db
    sync(store, mock.base_url, KEY_A, "--account", "team-a")
    sync(store, mock.base_url, KEY_B, "--account", "team-b")

    assert read(store, "query", "account=team-b", "--format", "ids").stdout.split() == ["b1", SHARED]
    assert read(store, "query", "--account", "team-a", "--format", "ids").stdout.split() == [
        "a1",
        "a2",
        SHARED,
    ]
    records = json.loads(read(store, "query", "--format", "json").stdout)
    assert [(r["finetune_id"], r["account"]) for r in records] == [
        ("a1", "team-a"),
        ("a2", "team-a"),
        ("b1", "team-b"),
        (SHARED, "team-a"),
        (SHARED, "team-b"),
    ]
    lines = read(store, "query", "--account", "team-b", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line)["account"] for line in lines] == ["team-b", "team-b"]
    picked = json.loads(
        read(store, "query", "--columns", "mode", "--format", "json", "account=team-b").stdout
    )
    assert picked[0] == {
        "finetune_id": "b1",
        "source": mock.base_url.removeprefix("http://"),
        "account": "team-b",
        "mode": "product",
    }
    csv_rows = list(csv.DictReader(io.StringIO(read(store, "query", "--format", "csv").stdout)))
    assert [row["account"] for row in csv_rows] == ["team-a", "team-a", "team-b", "team-a", "team-b"]
    table = read(store, "query").stdout.splitlines()
    assert table[0].split()[:2] == ["finetune_id", "account"]
    facets = json.loads(read(store, "facets", "account", "--format", "json").stdout)
    assert facets == {"account": [{"value": "team-a", "count": 3}, {"value": "team-b", "count": 2}]}
    assert json.loads(read(store, "facets", "mode", "--account", "team-b", "--format", "json").stdout) == {
        "mode": [{"value": "general", "count": 1}, {"value": "product", "count": 1}]
    }
