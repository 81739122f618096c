"""When BFL's endpoints go away: a retired listing fails the run, retired details keep the record.

Real syncs over loopback against the mock with retired endpoints, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from bflsync.cli import cli
from bflsync.mock.server import LISTING, MockBFL
from bflsync.store.access import locate_store

KEY = "gone-key"
ALPHA = {"mode": "character", "iterations": 300}
BETA = {"mode": "style", "iterations": 500}
GAMMA = {"mode": "product", "iterations": 1000}


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": ALPHA, "beta": BETA, "gamma": GAMMA}, api_key=KEY) as server:
        yield server


def sync(db: str, mock: MockBFL, *args: str) -> Result:
    return CliRunner().invoke(
        cli,
        ["--db", db, "sync", "--base-url", mock.base_url, "--max-retries", "0", *args],
        env={"BFL_API_KEY": KEY},
        catch_exceptions=False,
    )


def query(db: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(locate_store(db).url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql))]
    finally:
        engine.dispose()


def record(db: str) -> list[tuple[Any, ...]]:
    """What a sync may change about each finetune: its row and its versions."""
    return query(
        db,
        "SELECT f.finetune_id, f.version, f.details, f.deleted_at, f.status, "
        "(SELECT count(*) FROM finetune_version v WHERE v.finetune_pk = f.id) "
        "FROM finetune f ORDER BY f.finetune_id",
    )


@pytest.fixture
def synced(store_db: str, mock: MockBFL) -> str:
    assert sync(store_db, mock).exit_code == 0
    return store_db


@pytest.mark.parametrize("status", [410, 404])
def test_a_retired_listing_fails_the_run_in_one_line_and_tombstones_nothing(
    synced: str, mock: MockBFL, status: int
) -> None:
    before = record(synced)
    mock.retire("my_finetunes", status=status)

    result = sync(synced, mock)

    host = mock.base_url.removeprefix("http://")
    assert result.exit_code == 3
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        f"bflsync: error: upstream_gone: cannot list finetunes at {host}, nothing was marked deleted: "
        f"the finetune list is gone ({status}): the endpoint looks retired; GET /v1/my_finetunes -> {status}"
    )
    assert record(synced) == before
    assert query(synced, "SELECT status, substr(error, 1, 14) FROM sync_run ORDER BY id DESC LIMIT 1") == [
        ("failed", "upstream_gone:")
    ]


@pytest.mark.parametrize(
    "answer",
    [
        lambda m: m.non_object(LISTING, value={"items": []}),
        lambda m: m.missing_details(LISTING),
        lambda m: m.bad_json(LISTING),
    ],
    ids=["finetunes-not-a-list", "no-finetunes", "not-json"],
)
def test_a_listing_body_that_is_not_a_listing_fails_the_run_as_upstream_gone(
    synced: str, mock: MockBFL, answer: Callable[[MockBFL], None]
) -> None:
    before = record(synced)
    answer(mock)

    result = sync(synced, mock)

    assert result.exit_code == 3
    assert result.stderr.startswith("bflsync: error: upstream_gone: cannot list finetunes at ")
    assert "the answer is not a finetune listing" in result.stderr
    assert result.stderr.count("\n") == 1
    assert record(synced) == before


def test_the_empty_listing_guard_still_refuses_an_empty_listing(synced: str, mock: MockBFL) -> None:
    for finetune_id in ("alpha", "beta", "gamma"):
        mock.remove(finetune_id)

    result = sync(synced, mock)

    assert result.exit_code == 3
    assert "the API listed no finetunes while 3 are stored" in result.stderr
    assert "upstream_gone" not in result.stderr


@pytest.mark.parametrize("status", [410, 404])
def test_details_gone_for_every_finetune_keep_the_record_and_say_so_once(
    synced: str, mock: MockBFL, status: int
) -> None:
    before = record(synced)
    mock.retire("finetune_details", status=status)

    result = sync(synced, mock)

    host = mock.base_url.removeprefix("http://")
    line = (
        f"GET /v1/finetune_details answered 404/410 for all 3 finetunes asked at {host}: "
        "the endpoint looks retired; their stored records are kept"
    )
    assert result.exit_code == 1
    assert [text for text in result.stderr.splitlines() if "warning" in text.lower()] == [
        text for text in result.stderr.splitlines() if text.endswith(line)
    ]
    assert result.stderr.count(line) == 1
    assert record(synced) == before
    assert query(synced, "SELECT status, error FROM sync_run ORDER BY id DESC LIMIT 1") == [("partial", line)]


def test_one_finetune_not_found_is_still_warned_about_by_name(synced: str, mock: MockBFL) -> None:
    mock.fail("beta", status=404)

    result = sync(synced, mock)

    assert result.exit_code == 1
    warnings = [text for text in result.stderr.splitlines() if "warning" in text.lower()]
    assert len(warnings) == 1
    assert "finetune beta not stored: finetune 'beta' not found" in warnings[0]
    assert query(synced, "SELECT error FROM sync_run ORDER BY id DESC LIMIT 1") == [(None,)]


def test_get_result_gone_for_every_finetune_keeps_the_statuses_and_says_so_once(
    store_db: str, mock: MockBFL
) -> None:
    for finetune_id in ("alpha", "beta", "gamma"):
        mock.script_status(finetune_id, [("Pending", 0.5)])
    assert sync(store_db, mock).exit_code == 0
    mock.retire("get_result")

    result = sync(store_db, mock)

    assert result.exit_code == 0
    assert result.stderr.count("GET /v1/get_result answered 404/410 for all 3 finetunes asked at") == 1
    assert "status of finetune" not in result.stderr
    assert query(store_db, "SELECT finetune_id, status, progress FROM finetune ORDER BY finetune_id") == [
        ("alpha", "Pending", 0.5),
        ("beta", "Pending", 0.5),
        ("gamma", "Pending", 0.5),
    ]


def test_reasoning_and_generating_count_as_training_and_failed_as_terminal(
    store_db: str, mock: MockBFL
) -> None:
    mock.script_status("alpha", ["Reasoning"])
    mock.script_status("beta", [("Generating", 0.4)])
    mock.script_status("gamma", ["Failed"])
    assert sync(store_db, mock).exit_code == 0
    mock.clear_requests()

    assert sync(store_db, mock).exit_code == 0

    asked = sorted(r.task_id for r in mock.requests if r.task_id is not None)
    assert asked == ["alpha", "beta"]
    assert query(store_db, "SELECT finetune_id, status FROM finetune ORDER BY finetune_id") == [
        ("alpha", "Reasoning"),
        ("beta", "Generating"),
        ("gamma", "Failed"),
    ]


def test_the_mock_answers_a_retired_endpoint_whatever_the_key(tmp_path: Path, mock: MockBFL) -> None:
    import httpx

    mock.retire("finetune_details")

    with httpx.Client(base_url=mock.base_url) as client:
        without_key = client.get("/v1/finetune_details", params={"finetune_id": "alpha"})
        with_key = client.get("/v1/finetune_details", params={"finetune_id": "alpha"}, headers={"x-key": KEY})
        listing = client.get("/v1/my_finetunes", headers={"x-key": KEY})

    assert (without_key.status_code, without_key.json()) == (
        410,
        {"detail": "This endpoint has been retired"},
    )
    assert with_key.status_code == 410
    assert listing.status_code == 200


def test_mock_api_refuses_an_unknown_endpoint_to_retire() -> None:
    result = CliRunner().invoke(cli, ["mock-api", "--gone", "my_finetunes,finetune"])

    assert result.exit_code == 2
    assert "unknown endpoint 'finetune'" in result.stderr
