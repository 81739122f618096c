"""Several API keys and regions share one store: identity is (source, account, finetune_id).

Every behaviour test runs on SQLite and on PostgreSQL (the ``store_db`` fixture), through the
real CLI against the mock API over loopback.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from bflsync.cli import cli
from bflsync.mock.server import LISTING, MockBFL

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


# --- the forgotten --account ------------------------------------------------------------------


def audit_rows(store_db: str) -> list[list[tuple[Any, ...]]]:
    return [
        fetch(store_db, "SELECT * FROM finetune ORDER BY id"),
        fetch(store_db, "SELECT * FROM finetune_version ORDER BY id"),
    ]


def forgotten_label_error(store_db: str, source: str) -> str:
    return (
        "bflsync: error: this key lists none of the 3 finetunes stored for account 'default' at "
        f"{source}: pass --account NAME for another account, or --accept-new-key if the old "
        "finetunes are really gone\n"
    )


def test_a_key_listing_none_of_the_accounts_finetunes_is_refused_and_changes_nothing(
    store_db: str, mock: MockBFL
) -> None:
    sync(store_db, mock.base_url, KEY_A)
    mock.remove(SHARED, key=KEY_B)  # B's listing shares nothing with A's
    before = audit_rows(store_db)

    result = sync(store_db, mock.base_url, KEY_B, "--json", code=2)

    source = mock.base_url.removeprefix("http://")
    assert result.stderr == forgotten_label_error(store_db, source)
    assert audit_rows(store_db) == before
    assert json.loads(result.stdout)["status"] == "failed"
    assert fetch(store_db, "SELECT account, status, fetched, deleted FROM sync_run ORDER BY id") == [
        ("default", "ok", 3, 0),
        ("default", "failed", 0, 0),
    ]
    assert [r.path for r in mock.requests if r.finetune_id] == ["/v1/finetune_details"] * 3  # only A's run


def test_a_dry_run_reports_the_same_refusal(store_db: str, mock: MockBFL) -> None:
    sync(store_db, mock.base_url, KEY_A)
    mock.remove(SHARED, key=KEY_B)
    before = audit_rows(store_db)

    result = sync(store_db, mock.base_url, KEY_B, "--dry-run", code=2)

    assert result.stderr == forgotten_label_error(store_db, mock.base_url.removeprefix("http://"))
    assert audit_rows(store_db) == before
    assert fetch(store_db, "SELECT count(*) FROM sync_run") == [(1,)]


def test_the_right_account_label_or_accept_new_key_lets_the_other_key_sync(
    store_db: str, mock: MockBFL
) -> None:
    sync(store_db, mock.base_url, KEY_A)
    mock.remove(SHARED, key=KEY_B)
    sync(store_db, mock.base_url, KEY_B, "--account", "team-b")
    assert finetunes(store_db)[-1] == ("team-b", "b1", 1, True)

    result = sync(store_db, mock.base_url, KEY_B, "--accept-new-key", "--json")

    assert json.loads(result.stdout)["deleted"] == 3
    assert json.loads(result.stdout)["key_changed"] is True
    assert [row for row in finetunes(store_db) if row[0] == "default"] == [
        ("default", "a1", 2, False),
        ("default", "a2", 2, False),
        ("default", "b1", 1, True),
        ("default", SHARED, 2, False),
    ]


def test_a_rotated_key_that_still_lists_the_finetunes_is_accepted_and_noted(
    store_db: str, mock: MockBFL
) -> None:
    sync(store_db, mock.base_url, KEY_A)
    [(old_fingerprint,)] = fetch(store_db, "SELECT key_fingerprint FROM account")
    mock.api_key = "rotated-key-of-team-a"  # the same finetunes, served to the new key only
    mock.remove("a2")

    result = sync(store_db, mock.base_url, "rotated-key-of-team-a", "--json")

    payload = json.loads(result.stdout)
    assert (payload["status"], payload["key_changed"], payload["deleted"], payload["created"]) == (
        "ok",
        True,
        1,
        0,
    )
    assert "the API key changed" in result.stderr
    assert finetunes(store_db) == [
        ("default", "a1", 1, True),
        ("default", "a2", 2, False),
        ("default", SHARED, 1, True),
    ]
    [(new_fingerprint,)] = fetch(store_db, "SELECT key_fingerprint FROM account")
    assert new_fingerprint != old_fingerprint
    assert fetch(store_db, "SELECT key_changed FROM sync_run ORDER BY id") == [(False,), (True,)]
    sync(store_db, mock.base_url, "rotated-key-of-team-a")
    assert fetch(store_db, "SELECT key_changed FROM sync_run ORDER BY id") == [(False,), (True,), (False,)]


def test_an_account_without_a_recorded_fingerprint_is_guarded_too(store_db: str, mock: MockBFL) -> None:
    """A store upgraded from 0002 knows no fingerprint: a foreign listing is refused all the same."""
    sync(store_db, mock.base_url, KEY_A)
    engine = sa.create_engine(store_db if "://" in store_db else f"sqlite:///{store_db}")
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE account SET key_fingerprint = NULL")
    engine.dispose()
    mock.remove(SHARED, key=KEY_B)

    sync(store_db, mock.base_url, KEY_B, code=2)
    sync(store_db, mock.base_url, KEY_A, "--json")

    assert fetch(store_db, "SELECT key_fingerprint IS NOT NULL, last_run_id FROM account") == [(True, 3)]
    assert fetch(store_db, "SELECT key_changed FROM sync_run ORDER BY id") == [(False,), (False,), (False,)]


def test_the_account_table_records_a_keyed_fingerprint_never_the_key(store_db: str, mock: MockBFL) -> None:
    sync(store_db, mock.base_url, KEY_A, "--account", "team-a")
    sync(store_db, mock.base_url, KEY_A, "--account", "team-a")
    sync(store_db, mock.base_url, KEY_B, "--account", "team-b")

    [(secret,)] = fetch(store_db, "SELECT value FROM store_meta WHERE name = 'fingerprint_secret'")
    rows = fetch(
        store_db,
        "SELECT account, key_fingerprint, first_synced_at < last_synced_at, last_run_id FROM account",
    )
    expected = {
        name: hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()[:16]
        for name, key in (("team-a", KEY_A), ("team-b", KEY_B))
    }
    assert sorted(rows) == [("team-a", expected["team-a"], True, 2), ("team-b", expected["team-b"], False, 3)]
    for key in (KEY_A, KEY_B):
        assert hashlib.sha256(key.encode()).hexdigest()[:16] not in expected.values()
    dumped = json.dumps(fetch(store_db, "SELECT * FROM account"), default=str)
    assert KEY_A not in dumped and KEY_B not in dumped


def test_an_id_only_sync_does_not_replace_the_recorded_fingerprint(store_db: str, mock: MockBFL) -> None:
    sync(store_db, mock.base_url, KEY_A)
    [(fingerprint,)] = fetch(store_db, "SELECT key_fingerprint FROM account")
    sync(store_db, mock.base_url, KEY_B, "--id", "b1", "--accept-new-key")
    assert fetch(store_db, "SELECT key_fingerprint, last_run_id FROM account") == [(fingerprint, 2)]


def test_an_id_sync_with_another_key_is_refused_so_it_cannot_defeat_the_guard(
    store_db: str, mock: MockBFL
) -> None:
    """Stored under A's label, B's b1 would make B's next full listing overlap and tombstone a1, a2."""
    sync(store_db, mock.base_url, KEY_A)
    mock.remove(SHARED, key=KEY_B)
    before = audit_rows(store_db)

    result = sync(store_db, mock.base_url, KEY_B, "--id", "b1", code=2)

    assert result.stderr == (
        "bflsync: error: this key is not the one recorded for account 'default' at "
        f"{mock.base_url.removeprefix('http://')} and a --id run cannot tell whose it is: pass "
        "--account NAME for another account, run a full sync to confirm a rotated key, or --accept-new-key\n"
    )
    assert audit_rows(store_db) == before
    sync(store_db, mock.base_url, KEY_B, code=2)  # the full sync after it is still caught
    assert audit_rows(store_db) == before
    sync(store_db, mock.base_url, KEY_A, "--id", "a1")  # the recorded key's --id runs as before


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
    versions = [entry for entry in history if entry["change"] != "status"]  # status changes are listed too
    assert [(entry["account"], entry["version"], entry["change"]) for entry in versions] == [
        ("team-a", 1, "created")
    ]
    assert {entry["account"] for entry in history} == {"team-a"}
    diff = json.loads(
        read(
            two_accounts, "diff", f"{SHARED}@1", f"{SHARED}@2", "--account", "team-b", "--format", "json"
        ).stdout
    )
    assert diff["a"]["account"] == diff["b"]["account"] == "team-b"
    assert diff["differences"] == [{"field": "iterations", "b": 900}]
    changes = json.loads(
        read(
            two_accounts, "history", "--since", "2000-01-01", "--account", "team-b", "--format", "json"
        ).stdout
    )
    assert sorted(
        (entry["finetune_id"], entry["version"]) for entry in changes if entry["change"] != "status"
    ) == [
        ("b1", 1),
        (SHARED, 1),
        (SHARED, 2),
    ]


def test_runs_show_and_filter_by_account(two_accounts: str) -> None:
    listed = json.loads(read(two_accounts, "runs", "--format", "json").stdout)
    assert [(run["id"], run["account"], run["key_changed"]) for run in listed] == [
        (3, "team-b", False),
        (2, "team-b", False),
        (1, "team-a", False),
    ]
    only_a = json.loads(read(two_accounts, "runs", "--account", "team-a", "--format", "json").stdout)
    assert [run["id"] for run in only_a] == [1]
    table = read(two_accounts, "runs").stdout.splitlines()
    assert re.split(r"\s{2,}", table[0])[:6] == [
        "id",
        "started_at",
        "duration",
        "status",
        "source",
        "account",
    ]
    assert re.split(r"\s{2,}", table[-1])[5] == "team-a"


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
    assert facets == [
        {"field": "account", "value": "team-a", "count": 3},
        {"field": "account", "value": "team-b", "count": 2},
    ]
    assert json.loads(read(store, "facets", "mode", "--account", "team-b", "--format", "json").stdout) == [
        {"field": "mode", "value": "general", "count": 1},
        {"field": "mode", "value": "product", "count": 1},
    ]


# --- bflsync accounts ---------------------------------------------------------------------------


def test_accounts_lists_each_source_and_account_with_counts_last_sync_and_fingerprint(
    two_accounts: str, mock: MockBFL
) -> None:
    mock.remove("a2")
    mock.fail(LISTING, status=500, times=1)
    sync(two_accounts, mock.base_url, KEY_A, "--account", "team-a", "--max-retries", "0", code=3)
    sync(two_accounts, mock.base_url, KEY_A, "--account", "team-a")
    mock.fail("b1", status=500)
    sync(two_accounts, mock.base_url, KEY_B, "--account", "team-b", "--max-retries", "0", code=1)

    listed = json.loads(read(two_accounts, "accounts", "--format", "json").stdout)

    [(secret,)] = fetch(two_accounts, "SELECT value FROM store_meta WHERE name = 'fingerprint_secret'")
    source = mock.base_url.removeprefix("http://")
    for item in listed:
        assert item.pop("first_synced_at") <= item.pop("last_synced_at")
    assert listed == [
        {
            "source": source,
            "account": "team-a",
            "live": 2,
            "deleted": 1,
            "last_run_id": 5,
            "last_status": "ok",
            "key_fingerprint": hmac.new(secret.encode(), KEY_A.encode(), hashlib.sha256).hexdigest()[:16],
        },
        {
            "source": source,
            "account": "team-b",
            "live": 2,
            "deleted": 0,
            "last_run_id": 6,
            "last_status": "partial",
            "key_fingerprint": hmac.new(secret.encode(), KEY_B.encode(), hashlib.sha256).hexdigest()[:16],
        },
    ]
    table = read(two_accounts, "accounts").stdout.splitlines()
    assert table[0].split() == [
        "source",
        "account",
        "live",
        "deleted",
        "last_synced_at",
        "last_status",
        "key_fingerprint",
    ]
    assert [line.split()[1:4] for line in table[1:]] == [["team-a", "2", "1"], ["team-b", "2", "0"]]


def test_accounts_help_ends_with_an_example() -> None:
    result = CliRunner().invoke(cli, ["accounts", "--help"], catch_exceptions=False)
    description = result.stdout.split("Options:")[0].rstrip().splitlines()
    assert description[-2:] == ["  Example:", "      bflsync accounts --format json"]


# --- several accounts on a schedule -------------------------------------------------------------


def start_sync_process(store_db: str, base_url: str, key: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bflsync", "--db", store_db, "sync", "--base-url", base_url, *args],
        env={**os.environ, "BFL_API_KEY": key},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_syncs_of_two_accounts_exclude_each_other_and_wait_takes_turns(store_db: str, mock: MockBFL) -> None:
    """One writer per store whatever the account: without --wait the second exits 4, with it both finish."""
    mock.hang("a1", seconds=6, times=1)  # the first sync holds the lock at least this long
    first = start_sync_process(store_db, mock.base_url, KEY_A, "--account", "team-a")
    deadline = time.monotonic() + 30
    while not [r for r in mock.requests if r.finetune_id]:  # it is fetching, so it holds the lock
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.02)
    refused = CliRunner().invoke(
        cli,
        ["--db", store_db, "sync", "--base-url", mock.base_url, "--account", "team-b"],
        env={"BFL_API_KEY": KEY_B},
    )
    waiting = start_sync_process(store_db, mock.base_url, KEY_B, "--account", "team-b", "--wait", "60")
    first_err = first.communicate(timeout=60)[1]
    waiting_err = waiting.communicate(timeout=60)[1]

    assert refused.exit_code == 4
    assert refused.stderr.startswith("bflsync: error: another sync is running (")
    assert (first.returncode, waiting.returncode) == (0, 0), first_err + waiting_err
    assert fetch(store_db, "SELECT account, status, created, deleted FROM sync_run ORDER BY id") == [
        ("team-a", "ok", 3, 0),
        ("team-b", "ok", 2, 0),
    ]
