"""Training status and credits recorded by sync, over loopback against the mock, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from bflsync.bfl.client import BflClient, RetryPolicy
from bflsync.cli import cli
from bflsync.config import Secret
from bflsync.mock.server import CREDITS, MockBFL, status_of
from bflsync.store.access import downgrade_store, locate_store, open_store_for_write, upgrade_store
from bflsync.store.schema import Finetune, FinetuneStatus, SyncError, SyncRun
from bflsync.sync.run import SyncOptions, SyncResult, run_sync
from bflsync.timeform import iso_utc

KEY = "lifecycle-key"
T1 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
T2 = T1 + timedelta(hours=1)
T3 = T2 + timedelta(hours=1)
T4 = T3 + timedelta(hours=1)
ALPHA = {"mode": "character", "iterations": 300}
BETA = {"mode": "style", "iterations": 500}
GAMMA = {"mode": "product", "iterations": 1000}
FAST_RETRY = RetryPolicy(max_retries=1, backoff_base_s=0.01, backoff_cap_s=0.02)


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": ALPHA, "beta": BETA}, api_key=KEY, credits=100.0) as server:
        yield server


def sync_at(store_db: str, mock: MockBFL, at: datetime, **options: Any) -> SyncResult:
    """One sync through the library with a fixed clock, so timestamps can be asserted exactly."""
    opened = open_store_for_write(locate_store(store_db))

    async def go() -> SyncResult:
        async with BflClient(api_key=Secret(KEY), base_url=mock.base_url, retry=FAST_RETRY) as client:
            return await run_sync(
                engine=opened.engine, client=client, options=SyncOptions(**options), now=lambda: at, pid=1
            )

    try:
        return asyncio.run(go())
    finally:
        opened.engine.dispose()


def table(
    store_db: str, model: type[Any], *columns: str, order_by: str | None = None
) -> list[dict[str, Any]]:
    """Rows of a table through SQLAlchemy, so timestamps come back as UTC datetimes on both engines.

    Finetunes come by id, not by row id: rows are inserted in the order concurrent fetches finish.
    """
    location = locate_store(store_db)
    engine = sa.create_engine(location.url)
    t: sa.Table = model.__table__
    if order_by is None:
        order_by = "finetune_id" if "finetune_id" in t.c else "id"
    try:
        with engine.connect() as connection:
            query = sa.select(*(t.c[c] for c in columns)).order_by(t.c[order_by], t.c.id)
            return [dict(row._mapping) for row in connection.execute(query)]
    finally:
        engine.dispose()


def timeline(store_db: str) -> list[tuple[Any, ...]]:
    location = locate_store(store_db)
    engine = sa.create_engine(location.url)
    try:
        with engine.connect() as connection:
            return [
                tuple(row)
                for row in connection.execute(
                    sa.text(
                        "SELECT f.finetune_id, s.status, s.progress, s.observed_at, s.sync_run_id"
                        " FROM finetune_status s JOIN finetune f ON f.id = s.finetune_pk"
                        " ORDER BY f.finetune_id, s.id"
                    )
                )
            ]
    finally:
        engine.dispose()


def invoke(store_db: str, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--db", store_db, *args], env={"BFL_API_KEY": KEY}, catch_exceptions=False
    )


def status_requests(mock: MockBFL) -> list[str]:
    return sorted(r.task_id for r in mock.requests if r.task_id is not None)


def as_stored(moment: datetime, store_db: str) -> Any:
    """How a timestamp reads through plain SQL: text on SQLite, a datetime on PostgreSQL."""
    return moment if store_db.startswith("postgresql") else iso_utc(moment)


# --- status over successive syncs ------------------------------------------------------------------


def test_pending_to_ready_over_three_syncs_records_the_timeline_and_ready_at_once(
    store_db: str, mock: MockBFL
) -> None:
    mock.script_status("alpha", [("Pending", 0.1), ("Pending", 0.6), ("Ready", 1.0)])
    for moment in (T1, T2, T3, T4):
        sync_at(store_db, mock, moment)

    assert timeline(store_db) == [
        ("alpha", "Pending", 0.1, as_stored(T1, store_db), 1),
        ("alpha", "Pending", 0.6, as_stored(T2, store_db), 2),
        ("alpha", "Ready", 1.0, as_stored(T3, store_db), 3),
        ("beta", "Ready", 1.0, as_stored(T1, store_db), 1),
    ]
    assert table(
        store_db, Finetune, "finetune_id", "status", "progress", "status_checked_at", "ready_at"
    ) == [
        {"finetune_id": "alpha", "status": "Ready", "progress": 1.0, "status_checked_at": T3, "ready_at": T3},
        {"finetune_id": "beta", "status": "Ready", "progress": 1.0, "status_checked_at": T1, "ready_at": T1},
    ]
    assert mock.status_polls("alpha") == 3  # Ready is terminal: the fourth sync did not ask


def test_the_timeline_keeps_the_answer_as_canonical_json_with_its_result(
    store_db: str, mock: MockBFL
) -> None:
    sync_at(store_db, mock, T1)

    answers = [json.loads(row["answer"]) for row in table(store_db, FinetuneStatus, "answer")]
    assert sorted(answers, key=lambda a: a["id"]) == [
        {
            "details": None,
            "id": "alpha",
            "progress": 1.0,
            "result": {"finetune_id": "alpha"},
            "status": "Ready",
        },
        {
            "details": None,
            "id": "beta",
            "progress": 1.0,
            "result": {"finetune_id": "beta"},
            "status": "Ready",
        },
    ]
    assert all(
        row["answer"] == json.dumps(json.loads(row["answer"]), sort_keys=True, separators=(",", ":"))
        for row in table(store_db, FinetuneStatus, "answer")
    )


def test_polling_the_same_progress_again_writes_no_timeline_row(store_db: str, mock: MockBFL) -> None:
    mock.script_status("alpha", [("Pending", 0.5)])
    sync_at(store_db, mock, T1)
    sync_at(store_db, mock, T2)

    assert [row[1:3] for row in timeline(store_db) if row[0] == "alpha"] == [("Pending", 0.5)]
    [alpha] = table(store_db, Finetune, "status_checked_at", "ready_at", order_by="finetune_id")[:1]
    assert alpha == {"status_checked_at": T2, "ready_at": None}


def test_task_not_found_after_ready_leaves_ready(store_db: str, mock: MockBFL) -> None:
    sync_at(store_db, mock, T1)
    mock.forget("alpha")
    result = sync_at(store_db, mock, T2, refresh_status=True)

    assert result.status_changed == 0
    assert table(store_db, Finetune, "finetune_id", "status", "ready_at", "status_checked_at") == [
        {"finetune_id": "alpha", "status": "Ready", "ready_at": T1, "status_checked_at": T2},
        {"finetune_id": "beta", "status": "Ready", "ready_at": T1, "status_checked_at": T2},
    ]
    assert len(timeline(store_db)) == 2


def test_task_not_found_never_overwrites_pending(store_db: str, mock: MockBFL) -> None:
    mock.script_status("alpha", [("Pending", 0.3), "Task not found"])
    sync_at(store_db, mock, T1)
    sync_at(store_db, mock, T2)

    [alpha, _] = table(store_db, Finetune, "status", "progress")
    assert alpha == {"status": "Pending", "progress": 0.3}


def test_first_seen_task_not_found_is_unknown_and_not_asked_again(store_db: str, mock: MockBFL) -> None:
    mock.forget("alpha")
    sync_at(store_db, mock, T1)
    mock.clear_requests()
    sync_at(store_db, mock, T2)

    assert table(store_db, Finetune, "finetune_id", "status", "progress", "ready_at") == [
        {"finetune_id": "alpha", "status": "unknown", "progress": None, "ready_at": None},
        {"finetune_id": "beta", "status": "Ready", "progress": 1.0, "ready_at": T1},
    ]
    assert [row[:2] for row in timeline(store_db)] == [("alpha", "unknown"), ("beta", "Ready")]
    assert status_requests(mock) == []


def test_a_404_from_get_result_is_an_answer(store_db: str, mock: MockBFL) -> None:
    mock.fail(status_of("alpha"), status=404, body={"detail": "Not Found"})
    result = sync_at(store_db, mock, T1)

    assert (result.status, result.status_failed) == ("ok", 0)
    assert table(store_db, Finetune, "finetune_id", "status")[0] == {
        "finetune_id": "alpha",
        "status": "unknown",
    }


def test_error_and_moderated_statuses_are_recorded_and_settled(store_db: str, mock: MockBFL) -> None:
    mock.put("gamma", GAMMA)
    mock.put("delta", GAMMA)
    mock.script_status("alpha", ["Pending", "Error"])
    mock.script_status("beta", ["Request Moderated"])
    mock.script_status("gamma", ["Content Moderated"])
    mock.script_status("delta", ["Queued", "Failed"])  # strings BFL may add are data
    sync_at(store_db, mock, T1)
    sync_at(store_db, mock, T2)
    mock.clear_requests()
    sync_at(store_db, mock, T3)

    assert table(store_db, Finetune, "finetune_id", "status", "ready_at", order_by="finetune_id") == [
        {"finetune_id": "alpha", "status": "Error", "ready_at": None},
        {"finetune_id": "beta", "status": "Request Moderated", "ready_at": None},
        {"finetune_id": "delta", "status": "Failed", "ready_at": None},
        {"finetune_id": "gamma", "status": "Content Moderated", "ready_at": None},
    ]
    assert [row[:2] for row in timeline(store_db)] == [
        ("alpha", "Pending"),
        ("alpha", "Error"),
        ("beta", "Request Moderated"),
        ("delta", "Queued"),
        ("delta", "Failed"),
        ("gamma", "Content Moderated"),
    ]
    assert status_requests(mock) == []


# --- request counts --------------------------------------------------------------------------------


def test_steady_state_sync_makes_n_plus_one_requests_and_one_credits_request(store_db: str) -> None:
    finetunes = {f"ft-{i:02d}": {"iterations": 100 + i} for i in range(12)}
    with MockBFL.serve(finetunes, api_key=KEY) as mock:
        mock.script_status("ft-03", [("Pending", 0.5), "Ready"])
        sync_at(store_db, mock, T1)
        sync_at(store_db, mock, T2)  # ft-03 becomes Ready: now every finetune is settled
        mock.clear_requests()
        result = sync_at(store_db, mock, T3)
        paths = sorted(r.path for r in mock.requests)

    assert result.status == "ok"
    assert paths == ["/v1/credits"] + ["/v1/finetune_details"] * 12 + ["/v1/my_finetunes"]


def test_a_first_sync_asks_every_status_once(store_db: str, mock: MockBFL) -> None:
    result = sync_at(store_db, mock, T1)

    assert status_requests(mock) == ["alpha", "beta"]
    assert (result.status_checked, result.status_changed) == (2, 2)


def test_new_only_still_follows_finetunes_in_training(store_db: str, mock: MockBFL) -> None:
    mock.script_status("alpha", [("Pending", 0.2), ("Pending", 0.7), "Ready"])
    sync_at(store_db, mock, T1)
    mock.clear_requests()
    sync_at(store_db, mock, T2, new_only=True)

    assert [r.finetune_id for r in mock.requests if r.finetune_id] == []
    assert status_requests(mock) == ["alpha"]
    assert table(store_db, Finetune, "finetune_id", "progress")[0] == {
        "finetune_id": "alpha",
        "progress": 0.7,
    }


def test_no_status_asks_no_status(store_db: str, mock: MockBFL) -> None:
    result = sync_at(store_db, mock, T1, status=False)

    assert status_requests(mock) == []
    assert table(store_db, Finetune, "status", "status_checked_at") == [
        {"status": None, "status_checked_at": None},
        {"status": None, "status_checked_at": None},
    ]
    assert result.status_checked == 0


def test_refresh_status_asks_settled_finetunes_again(store_db: str, mock: MockBFL) -> None:
    sync_at(store_db, mock, T1)
    mock.clear_requests()
    sync_at(store_db, mock, T2, refresh_status=True)

    assert status_requests(mock) == ["alpha", "beta"]


# --- failures stay per finetune --------------------------------------------------------------------


def test_status_failures_are_sync_errors_and_the_details_are_still_stored(
    store_db: str, mock: MockBFL
) -> None:
    mock.put("gamma", GAMMA)
    mock.fail(status_of("alpha"), status=500)
    mock.hang(status_of("beta"), seconds=2)
    mock.bad_json(status_of("gamma"))
    opened = open_store_for_write(locate_store(store_db))

    async def go() -> SyncResult:
        async with BflClient(
            api_key=Secret(KEY), base_url=mock.base_url, retry=FAST_RETRY, read_timeout_s=0.3
        ) as client:
            return await run_sync(
                engine=opened.engine, client=client, options=SyncOptions(), now=lambda: T1, pid=1
            )

    try:
        result = asyncio.run(go())
    finally:
        opened.engine.dispose()

    assert (result.status, result.fetched, result.failed, result.status_failed) == ("ok", 3, 0, 3)
    errors = table(
        store_db, SyncError, "finetune_id", "kind", "http_status", "attempts", order_by="finetune_id"
    )
    assert errors == [
        {"finetune_id": "alpha", "kind": "status_http", "http_status": 500, "attempts": 2},
        {"finetune_id": "beta", "kind": "status_timeout", "http_status": None, "attempts": 2},
        {"finetune_id": "gamma", "kind": "status_bad_json", "http_status": 200, "attempts": 1},
    ]
    assert table(store_db, Finetune, "finetune_id", "version", "status", order_by="finetune_id") == [
        {"finetune_id": "alpha", "version": 1, "status": None},
        {"finetune_id": "beta", "version": 1, "status": None},
        {"finetune_id": "gamma", "version": 1, "status": None},
    ]
    assert table(store_db, SyncRun, "status", "failed", "status_failed") == [
        {"status": "ok", "failed": 0, "status_failed": 3}
    ]


def test_a_status_answer_without_a_status_string_is_status_bad_json(store_db: str, mock: MockBFL) -> None:
    mock.non_object(status_of("alpha"), value={"id": "alpha", "progress": 0.5})
    result = sync_at(store_db, mock, T1)

    assert result.status_failed == 1
    assert table(store_db, SyncError, "finetune_id", "kind") == [
        {"finetune_id": "alpha", "kind": "status_bad_json"}
    ]


def test_strict_status_makes_a_status_failure_a_partial_run(store_db: str, mock: MockBFL) -> None:
    mock.fail(status_of("alpha"), status=503)
    result = invoke(
        store_db, "sync", "--base-url", mock.base_url, "--strict-status", "--max-retries", "0", "--json"
    )

    payload = json.loads(result.stdout)
    assert (result.exit_code, payload["status"], payload["status_failed"], payload["failed"]) == (
        1,
        "partial",
        1,
        0,
    )


def test_without_strict_status_a_status_failure_exits_0_and_is_counted(store_db: str, mock: MockBFL) -> None:
    mock.fail(status_of("alpha"), status=503)
    result = invoke(store_db, "sync", "--base-url", mock.base_url, "--max-retries", "0", "--json")

    payload = json.loads(result.stdout)
    assert (result.exit_code, payload["status"], payload["status_failed"]) == (0, "ok", 1)
    assert "status of finetune alpha not recorded" in result.stderr


def test_no_status_with_refresh_status_exits_2(store_db: str, mock: MockBFL) -> None:
    result = CliRunner().invoke(
        cli,
        ["--db", store_db, "sync", "--base-url", mock.base_url, "--no-status", "--refresh-status"],
        env={"BFL_API_KEY": KEY},
    )
    assert (result.exit_code, result.stderr) == (
        2,
        "bflsync: error: --no-status cannot be combined with --refresh-status or --strict-status\n",
    )


# --- credits ---------------------------------------------------------------------------------------


def test_credits_are_read_once_per_run_and_stored_on_the_run(store_db: str, mock: MockBFL) -> None:
    sync_at(store_db, mock, T1)
    mock.put("gamma", GAMMA)
    sync_at(store_db, mock, T2)

    assert [r.path for r in mock.requests].count("/v1/credits") == 2
    assert table(store_db, SyncRun, "id", "credits") == [
        {"id": 1, "credits": 92.0},
        {"id": 2, "credits": 82.0},
    ]


def test_no_credits_skips_the_request(store_db: str, mock: MockBFL) -> None:
    result = sync_at(store_db, mock, T1, credits=False)

    assert "/v1/credits" not in [r.path for r in mock.requests]
    assert result.credits is None
    assert table(store_db, SyncRun, "credits") == [{"credits": None}]


def test_a_failing_credits_request_never_fails_the_run(store_db: str, mock: MockBFL) -> None:
    mock.fail(CREDITS, status=500)
    result = invoke(store_db, "sync", "--base-url", mock.base_url, "--max-retries", "0", "--json")

    payload = json.loads(result.stdout)
    assert (result.exit_code, payload["status"], payload["credits"]) == (0, "ok", None)
    assert "credits not recorded" in result.stderr


def test_sync_json_has_the_balance(store_db: str, mock: MockBFL) -> None:
    payload = json.loads(invoke(store_db, "sync", "--base-url", mock.base_url, "--json").stdout)
    assert payload["credits"] == 92.0


# --- dry run ---------------------------------------------------------------------------------------


def test_dry_run_asks_but_writes_no_status(store_db: str, mock: MockBFL) -> None:
    sync_at(store_db, mock, T1, status=False, credits=False)
    before = (table(store_db, Finetune, "status"), timeline(store_db), table(store_db, SyncRun, "credits"))

    result = invoke(store_db, "sync", "--base-url", mock.base_url, "--dry-run", "--json")

    payload = json.loads(result.stdout)
    assert (payload["run_id"], payload["status_checked"], payload["credits"]) == (None, 2, 92.0)
    assert (
        table(store_db, Finetune, "status"),
        timeline(store_db),
        table(store_db, SyncRun, "credits"),
    ) == before


# --- the read side ---------------------------------------------------------------------------------


@pytest.fixture
def trained(store_db: str, mock: MockBFL) -> str:
    """A store where alpha trained Pending 0.5 -> Ready over two syncs, beta was moderated, gamma trains."""
    mock.put("gamma", GAMMA)
    mock.script_status("alpha", [("Pending", 0.5), ("Ready", 1.0)])
    mock.script_status("beta", ["Request Moderated"])
    mock.script_status("gamma", [("Pending", 0.1), ("Pending", 0.4)])
    sync_at(store_db, mock, T1)
    sync_at(store_db, mock, T2)
    return store_db


def test_query_filters_and_sorts_on_status_and_ready_at(tmp_path: Path, mock: MockBFL) -> None:
    store = str(tmp_path / "store.db")  # query reads SQLite only for now
    mock.put("gamma", GAMMA)
    mock.script_status("gamma", [("Pending", 0.4)])
    mock.script_status("beta", [("Pending", 0.1), "Ready"])
    sync_at(store, mock, T1)
    sync_at(store, mock, T2)

    assert invoke(store, "query", "status=Pending", "--format", "ids").stdout == "gamma\n"
    assert invoke(store, "query", "progress<1", "--format", "ids").stdout == "gamma\n"
    assert invoke(store, "query", "ready_at!=null", "--sort", "-ready_at", "--format", "ids").stdout == (
        "beta\nalpha\n"
    )
    [gamma] = json.loads(invoke(store, "query", "status=Pending", "--format", "json").stdout)
    assert (gamma["status"], gamma["progress"], gamma["ready_at"]) == ("Pending", 0.4, None)
    table_out = invoke(store, "query", "status=Pending").stdout
    assert "status" in table_out.splitlines()[0] and "Pending" in table_out
    csv_out = invoke(store, "query", "--format", "csv", "--columns", "status,ready_at").stdout
    assert csv_out.splitlines()[:2] == ["status,ready_at", f"Ready,{iso_utc(T1)}"]


def test_facets_count_statuses(tmp_path: Path, mock: MockBFL) -> None:
    store = str(tmp_path / "store.db")
    mock.put("gamma", GAMMA)
    mock.script_status("gamma", ["Pending"])
    sync_at(store, mock, T1)

    counts = json.loads(invoke(store, "facets", "status", "--format", "json").stdout)
    assert counts == [
        {"field": "status", "value": "Ready", "count": 2},
        {"field": "status", "value": "Pending", "count": 1},
    ]


def test_show_prints_the_status_and_its_timeline(trained: str) -> None:
    lines = invoke(trained, "show", "alpha").stdout.splitlines()
    assert lines[lines.index("status timeline:") - 1].split(None, 1) == [
        "training",
        f"Ready, progress 1, checked {iso_utc(T2)}, ready since {iso_utc(T2)}",
    ]
    start = lines.index("status timeline:")
    assert lines[start + 1 : start + 3] == [
        f"    status  Pending 0.5  {iso_utc(T1)}  run 1",
        f"    status  Ready 1  {iso_utc(T2)}  run 2",
    ]
    shown = json.loads(invoke(trained, "show", "alpha", "--format", "json").stdout)
    assert (shown["status"], shown["ready_at"]) == ("Ready", iso_utc(T2))
    assert [(e["status"], e["progress"], e["sync_run_id"]) for e in shown["status_timeline"]] == [
        ("Pending", 0.5, 1),
        ("Ready", 1.0, 2),
    ]


def test_show_says_not_checked_yet_for_a_finetune_never_asked(store_db: str, mock: MockBFL) -> None:
    sync_at(store_db, mock, T1, status=False)
    lines = invoke(store_db, "show", "alpha").stdout.splitlines()
    assert "training          not checked yet" in lines
    assert "status timeline:" not in lines


def test_history_lists_status_changes_among_versions_marked_as_such(trained: str) -> None:
    assert invoke(trained, "history", "alpha").stdout.splitlines() == [
        f"v1 created  {iso_utc(T1)}  run 1",
        f"status  {iso_utc(T1)}  Pending  run 1",
        f"status  {iso_utc(T2)}  Pending → Ready  run 2",
    ]
    since = invoke(trained, "history", "--since", iso_utc(T2), "--format", "json").stdout
    assert [(e["finetune_id"], e["change"], e["status"]) for e in json.loads(since)] == [
        ("alpha", "status", "Ready"),
        ("gamma", "status", "Pending"),
    ]
    text = invoke(trained, "history", "--since", iso_utc(T2)).stdout.splitlines()
    # gamma's progress moved (Pending, as at T1): only alpha's status changed.
    assert text == [f"alpha  status  {iso_utc(T2)}  Pending → Ready  run 2"]


def test_runs_show_the_balance_and_its_change_since_the_previous_run(store_db: str, mock: MockBFL) -> None:
    sync_at(store_db, mock, T1)
    mock.put("gamma", GAMMA)
    sync_at(store_db, mock, T2, credits=False)
    mock.put("delta", ALPHA)
    sync_at(store_db, mock, T3)

    runs = json.loads(invoke(store_db, "runs", "--format", "json").stdout)
    assert [(r["id"], r["credits"], r["credits_change"]) for r in runs] == [
        (3, 79.0, -13.0),
        (2, None, None),
        (1, 92.0, None),
    ]
    one = json.loads(invoke(store_db, "runs", "3", "--format", "json").stdout)
    assert (one["credits"], one["credits_change"], one["status_failed"]) == (79.0, -13.0, 0)
    assert "credits_change" in invoke(store_db, "runs").stdout.splitlines()[0]


def test_credits_command_lists_each_interval_with_its_drop_and_new_finetunes(
    store_db: str, mock: MockBFL
) -> None:
    sync_at(store_db, mock, T1)
    mock.put("gamma", GAMMA)
    sync_at(store_db, mock, T2, credits=False)
    mock.put("delta", ALPHA)
    sync_at(store_db, mock, T3)
    sync_at(store_db, mock, T4)

    source = mock.base_url.removeprefix("http://")
    intervals = json.loads(invoke(store_db, "credits", "--format", "json").stdout)
    assert intervals == [
        {
            "run_id": 1,
            "started_at": iso_utc(T1),
            "source": source,
            "account": "default",
            "credits": 92.0,
            "drop": None,
            "new_finetunes": ["alpha", "beta"],
        },
        {
            "run_id": 3,
            "started_at": iso_utc(T3),
            "source": source,
            "account": "default",
            "credits": 79.0,
            "drop": 13.0,
            "new_finetunes": ["delta", "gamma"],
        },
        {
            "run_id": 4,
            "started_at": iso_utc(T4),
            "source": source,
            "account": "default",
            "credits": 79.0,
            "drop": 0.0,
            "new_finetunes": [],
        },
    ]
    since = json.loads(invoke(store_db, "credits", "--since", iso_utc(T3), "--format", "json").stdout)
    assert [(i["run_id"], i["drop"]) for i in since] == [(3, 13.0), (4, 0.0)]
    lines = invoke(store_db, "credits", "--format", "jsonl").stdout.splitlines()
    assert [json.loads(line) for line in lines] == intervals
    csv_lines = invoke(store_db, "credits", "--format", "csv").stdout.splitlines()
    assert csv_lines[0] == "run_id,started_at,source,account,credits,drop,new_finetunes"
    assert csv_lines[2] == f"3,{iso_utc(T3)},{source},default,79.0,13.0,delta gamma"
    table_out = invoke(store_db, "credits").stdout.splitlines()
    assert table_out[2].split()[-1] == "2"  # delta and gamma, counted


def test_credits_since_takes_relative_times(store_db: str, mock: MockBFL) -> None:
    sync_at(store_db, mock, datetime.now(UTC) - timedelta(days=3))
    sync_at(store_db, mock, datetime.now(UTC) - timedelta(hours=1))
    recent = json.loads(invoke(store_db, "credits", "--since", "12h", "--format", "json").stdout)
    assert [interval["run_id"] for interval in recent] == [2]
    week = json.loads(invoke(store_db, "credits", "--since", "7d", "--format", "json").stdout)
    assert [interval["run_id"] for interval in week] == [1, 2]


def test_credits_and_statuses_belong_to_a_source_and_account(store_db: str, mock: MockBFL) -> None:
    mock.add_account("key-b", {"alpha": ALPHA, "b-only": BETA}, credits=50.0)

    def sync_as(account: str, key: str) -> None:
        result = CliRunner().invoke(
            cli,
            ["--db", store_db, "sync", "--base-url", mock.base_url, "--account", account],
            env={"BFL_API_KEY": key},
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output

    sync_as("default", KEY)
    sync_as("team-b", "key-b")
    mock.put("b-new", GAMMA, key="key-b")
    mock.clear_requests()
    sync_as("team-b", "key-b")
    sync_as("default", KEY)

    # Each account asked only its own new finetune's status: alpha is settled in both.
    assert status_requests(mock) == ["b-new"]
    runs = json.loads(invoke(store_db, "runs", "--format", "json").stdout)
    assert [(r["account"], r["credits"], r["credits_change"]) for r in runs] == [
        ("default", 92.0, 0.0),
        ("team-b", 32.0, -10.0),
        ("team-b", 42.0, None),
        ("default", 92.0, None),
    ]
    team_b = json.loads(invoke(store_db, "credits", "--account", "team-b", "--format", "json").stdout)
    assert [(i["credits"], i["drop"], i["new_finetunes"]) for i in team_b] == [
        (42.0, None, ["alpha", "b-only"]),
        (32.0, 10.0, ["b-new"]),
    ]


# --- schema ----------------------------------------------------------------------------------------


def test_0004_gives_existing_rows_no_status_and_round_trips(store_db: str, mock: MockBFL) -> None:
    location = locate_store(store_db)
    upgrade_store(location, revision="0003_accounts").engine.dispose()
    sync_at_0003 = sa.create_engine(location.url)
    try:
        with sync_at_0003.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO sync_run (started_at, status, source, account, pid, bflsync_version, listed,"
                    " fetched, created, updated, unchanged, deleted, restored, failed, key_changed)"
                    " VALUES (:t, 'ok', :s, 'default', 1, '0.1.0', 1, 1, 1, 0, 0, 0, 0, 0, false)"
                ),
                {"t": T1.replace(tzinfo=None), "s": mock.base_url.removeprefix("http://")},
            )
    finally:
        sync_at_0003.dispose()

    upgrade_store(location, revision="head").engine.dispose()
    assert table(store_db, SyncRun, "id", "credits", "status_failed") == [
        {"id": 1, "credits": None, "status_failed": 0}
    ]
    sync_at(store_db, mock, T2, status=False)
    assert {row["status"] for row in table(store_db, Finetune, "status")} == {None}
    sync_at(store_db, mock, T3)  # the next sync asks, since nothing was checked
    assert {row["status"] for row in table(store_db, Finetune, "status")} == {"Ready"}

    downgrade_store(location, revision="0003_accounts")
    engine = sa.create_engine(location.url)
    try:
        inspector = sa.inspect(engine)
        assert "finetune_status" not in inspector.get_table_names()
        assert "status" not in {c["name"] for c in inspector.get_columns("finetune")}
        assert "credits" not in {c["name"] for c in inspector.get_columns("sync_run")}
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT count(*) FROM finetune")).scalar() == 2
            assert connection.execute(sa.text("SELECT count(*) FROM sync_run")).scalar() == 3
    finally:
        engine.dispose()
    upgrade_store(location, revision="head").engine.dispose()
    assert table(store_db, Finetune, "finetune_id", "status") == [
        {"finetune_id": "alpha", "status": None},
        {"finetune_id": "beta", "status": None},
    ]
