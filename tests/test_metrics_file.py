"""``sync --metrics-file``: a node_exporter textfile, replaced atomically after every run, read by Prometheus' parser."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from monitor_support import samples, sync, value
from prometheus_client.parser import text_string_to_metric_families
from sync_support import ALPHA, BETA, GAMMA, KEY

from bflsync.columns import RUN_COUNTERS
from bflsync.errors import ExitCode
from bflsync.mock.server import MockBFL
from bflsync.monitor import metrics
from bflsync.store import access
from bflsync.store.lock import sync_lock_for

STATUS = "bflsync_last_run_status"


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": ALPHA, "beta": BETA, "gamma": GAMMA}, api_key=KEY) as server:
        yield server


@pytest.fixture
def prom(tmp_path: Path) -> Path:
    return tmp_path / "textfile" / "bflsync.prom"


def source_of(mock: MockBFL) -> str:
    return mock.base_url.removeprefix("http://")


def statuses(found: dict, source: str, account: str) -> dict[str, float]:  # type: ignore[type-arg]
    return {s: value(found, STATUS, source=source, account=account, status=s) for s in metrics.STATUSES}


def test_an_ok_run_writes_every_documented_series_for_its_source_and_account(
    store_db: str, mock: MockBFL, prom: Path
) -> None:
    prom.parent.mkdir()
    result = sync(store_db, mock, "--metrics-file", str(prom))
    assert result.exit_code == 0, result.output
    found = samples(prom)
    labels = {"source": source_of(mock), "account": "default"}
    ended = value(found, "bflsync_last_run_timestamp_seconds", **labels)
    assert value(found, "bflsync_last_success_timestamp_seconds", **labels) == ended
    assert statuses(found, **labels) == {"ok": 1, "partial": 0, "failed": 0, "interrupted": 0, "locked": 0}
    assert value(found, "bflsync_last_run_exit_code", **labels) == 0
    assert value(found, "bflsync_last_run_duration_seconds", **labels) >= 0
    counts = {name: value(found, f"bflsync_last_run_{name}", **labels) for name in RUN_COUNTERS}
    assert counts == {**dict.fromkeys(RUN_COUNTERS, 0), "listed": 3, "fetched": 3, "created": 3}
    assert value(found, "bflsync_finetunes", **labels, state="live") == 3
    assert value(found, "bflsync_finetunes", **labels, state="deleted") == 0
    assert value(found, "bflsync_credits", **labels) is not None
    assert {name for name, _ in found} == {
        "bflsync_last_run_timestamp_seconds",
        "bflsync_last_success_timestamp_seconds",
        STATUS,
        "bflsync_last_run_exit_code",
        "bflsync_last_run_duration_seconds",
        *(f"bflsync_last_run_{name}" for name in RUN_COUNTERS),
        "bflsync_finetunes",
        "bflsync_credits",
    }


def test_a_failed_run_is_status_failed_and_keeps_the_last_success(
    store_db: str, mock: MockBFL, prom: Path
) -> None:
    prom.parent.mkdir()
    assert sync(store_db, mock, "--metrics-file", str(prom)).exit_code == 0
    succeeded = value(
        samples(prom), "bflsync_last_success_timestamp_seconds", source=source_of(mock), account="default"
    )
    result = sync(store_db, mock, "--metrics-file", str(prom), key="revoked-key")
    assert result.exit_code == ExitCode.CANNOT_RUN
    found = samples(prom)
    labels = {"source": source_of(mock), "account": "default"}
    assert statuses(found, **labels)["failed"] == 1
    assert value(found, "bflsync_last_run_exit_code", **labels) == 3
    assert value(found, "bflsync_last_success_timestamp_seconds", **labels) == succeeded
    assert value(found, "bflsync_last_run_timestamp_seconds", **labels) > succeeded
    assert value(found, "bflsync_finetunes", **labels, state="live") == 3


def test_a_partial_run_is_status_partial_with_its_failed_count(
    store_db: str, mock: MockBFL, prom: Path
) -> None:
    prom.parent.mkdir()
    mock.fail("beta", status=404, body={"detail": "gone"})
    result = sync(store_db, mock, "--metrics-file", str(prom))
    assert result.exit_code == ExitCode.PARTIAL
    found = samples(prom)
    labels = {"source": source_of(mock), "account": "default"}
    assert statuses(found, **labels)["partial"] == 1
    assert value(found, "bflsync_last_run_failed", **labels) == 1
    assert value(found, "bflsync_last_run_exit_code", **labels) == 1
    assert value(found, "bflsync_last_success_timestamp_seconds", **labels) is None


def test_a_sync_refused_by_the_lock_is_written_as_locked_with_the_store_figures_kept(
    store_db: str, mock: MockBFL, prom: Path
) -> None:
    prom.parent.mkdir()
    assert sync(store_db, mock, "--metrics-file", str(prom)).exit_code == 0
    labels = {"source": source_of(mock), "account": "default"}
    succeeded = value(samples(prom), "bflsync_last_success_timestamp_seconds", **labels)
    with sync_lock_for(access.locate_store(store_db)):
        result = sync(store_db, mock, "--metrics-file", str(prom))
    assert result.exit_code == ExitCode.LOCKED
    found = samples(prom)
    assert statuses(found, **labels) == {"ok": 0, "partial": 0, "failed": 0, "interrupted": 0, "locked": 1}
    assert value(found, "bflsync_last_run_exit_code", **labels) == 4
    assert value(found, "bflsync_last_success_timestamp_seconds", **labels) == succeeded
    assert value(found, "bflsync_finetunes", **labels, state="live") == 3
    assert value(found, "bflsync_last_run_listed", **labels) == 0


def test_two_accounts_writing_one_file_keep_each_others_series(
    store_db: str, mock: MockBFL, prom: Path
) -> None:
    prom.parent.mkdir()
    assert sync(store_db, mock, "--account", "team", "--metrics-file", str(prom)).exit_code == 0
    assert sync(store_db, mock, "--account", "solo", "--metrics-file", str(prom), key="wrong").exit_code == 3
    found = samples(prom)
    source = source_of(mock)
    assert statuses(found, source, "team")["ok"] == 1
    assert statuses(found, source, "solo")["failed"] == 1
    assert value(found, "bflsync_finetunes", source=source, account="team", state="live") == 3
    assert value(found, "bflsync_last_success_timestamp_seconds", source=source, account="solo") is None


def test_the_metrics_file_can_be_named_by_bflsync_metrics_file(
    db_path: Path, mock: MockBFL, prom: Path
) -> None:
    prom.parent.mkdir()
    result = sync(str(db_path), mock, env={"BFLSYNC_METRICS_FILE": str(prom)})
    assert result.exit_code == 0
    assert statuses(samples(prom), source_of(mock), "default")["ok"] == 1


def test_a_metrics_file_in_a_missing_directory_is_refused_before_the_run(
    db_path: Path, mock: MockBFL, prom: Path
) -> None:
    result = sync(str(db_path), mock, "--metrics-file", str(prom))
    assert result.exit_code == ExitCode.INPUT
    assert result.stderr == f"bflsync: error: --metrics-file {prom}: directory {prom.parent} does not exist\n"
    assert not db_path.exists()


def test_a_dry_run_writes_no_metrics(db_path: Path, mock: MockBFL, prom: Path) -> None:
    prom.parent.mkdir()
    assert sync(str(db_path), mock, "--dry-run", "--metrics-file", str(prom)).exit_code == 0
    assert not prom.exists()


def test_a_metrics_file_that_cannot_be_written_is_a_warning_and_the_exit_code_stands(
    db_path: Path, mock: MockBFL, prom: Path
) -> None:
    prom.parent.mkdir()
    Path(f"{prom}.lock").mkdir()  # the writers' lock cannot be opened
    result = sync(str(db_path), mock, "--metrics-file", str(prom))
    assert result.exit_code == 0
    [warning] = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warning == f"bflsync: warning: cannot write the metrics file {prom}: Is a directory"
    assert not prom.exists()


def test_the_file_is_replaced_by_rename_readable_by_the_collector_and_leaves_no_temporary(
    db_path: Path, mock: MockBFL, prom: Path
) -> None:
    prom.parent.mkdir()
    assert sync(str(db_path), mock, "--metrics-file", str(prom)).exit_code == 0
    first = prom.stat().st_ino
    assert sync(str(db_path), mock, "--metrics-file", str(prom)).exit_code == 0
    assert prom.stat().st_ino != first
    assert prom.stat().st_mode & 0o777 == 0o644
    assert sorted(path.name for path in prom.parent.iterdir()) == ["bflsync.prom", "bflsync.prom.lock"]


def test_label_values_are_escaped_and_read_back_whole() -> None:
    item = metrics.AccountMetrics(
        source='gw.example.com/"odd"\\path', account="a.b_c-d", last_run_at=1.5, status="ok", exit_code=0
    )
    text = metrics.render([item])
    [family] = [
        f for f in text_string_to_metric_families(text) if f.name == "bflsync_last_run_timestamp_seconds"
    ]
    assert family.samples[0].labels == {"source": item.source, "account": "a.b_c-d"}
    assert metrics.parse(text) == {item.key: item}


accounts = st.sampled_from(["default", "work", "team-2"])
items = st.builds(
    metrics.AccountMetrics,
    source=st.sampled_from(["api.us1.bfl.ai", "api.eu1.bfl.ai"]),
    account=accounts,
    last_run_at=st.floats(1e9, 2e9),
    status=st.sampled_from(metrics.STATUSES),
    exit_code=st.sampled_from([0, 1, 3, 4, 130]),
    duration_s=st.floats(0, 1e4),
    counts=st.fixed_dictionaries({name: st.integers(0, 10**6) for name in RUN_COUNTERS}),
    last_success_at=st.none() | st.floats(1e9, 2e9),
    live=st.none() | st.integers(0, 10**6),
    deleted=st.none() | st.integers(0, 10**6),
    credits=st.none() | st.floats(0, 1e6),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(updates=st.lists(items, min_size=1, max_size=12))
def test_a_reader_never_sees_a_half_written_file(
    tmp_path: Path, updates: list[metrics.AccountMetrics]
) -> None:
    """Whatever a concurrent reader catches is the file before or after some whole update, never a mix."""
    path = tmp_path / f"{os.urandom(4).hex()}.prom"
    expected: dict[metrics.Key, metrics.AccountMetrics] = {}
    complete = {""}
    for item in updates:
        expected[item.key] = item.carried_over(expected.get(item.key))
        complete.add(metrics.render(expected.values()))
    seen: list[str] = []
    done = threading.Event()

    def read_until_done() -> None:
        while not done.is_set():
            try:
                seen.append(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                seen.append("")

    reader = threading.Thread(target=read_until_done)
    reader.start()
    try:
        for item in updates:
            metrics.update_file(path, item)
    finally:
        done.set()
        reader.join()
    assert path.read_text(encoding="utf-8") == metrics.render(expected.values())
    assert set(seen) <= complete
    for text in set(seen):
        list(text_string_to_metric_families(text))  # each one parses


def test_concurrent_writers_of_different_accounts_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bflsync.prom"
    names = [f"acct-{n}" for n in range(8)]

    def write(account: str) -> None:
        for run in range(5):
            metrics.update_file(
                path, metrics.AccountMetrics(source="s", account=account, last_run_at=float(run), status="ok")
            )

    threads = [threading.Thread(target=write, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    parsed = metrics.parse(path.read_text(encoding="utf-8"))
    assert {key: item.last_run_at for key, item in parsed.items()} == {("s", name): 4.0 for name in names}


def test_a_writer_that_never_lets_go_of_the_lock_costs_an_error_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "bflsync.prom"
    with Path(f"{path}.lock").open("w") as stuck:
        fcntl.flock(stuck, fcntl.LOCK_EX)
        with pytest.raises(OSError, match=r"stayed locked for 0\.2 s"):
            metrics.update_file(path, metrics.AccountMetrics(source="s", account="a"), lock_wait_s=0.2)
    assert not path.exists()


def test_a_store_that_cannot_be_opened_is_written_as_failed_with_its_exit_code(
    tmp_path: Path, mock: MockBFL, prom: Path
) -> None:
    prom.parent.mkdir()
    not_a_store = tmp_path / "notes.txt"
    not_a_store.write_text("not a database\n")
    result = sync(str(not_a_store), mock, "--metrics-file", str(prom))
    assert result.exit_code == ExitCode.INPUT
    found = samples(prom)
    labels = {"source": source_of(mock), "account": "default"}
    assert statuses(found, **labels)["failed"] == 1
    assert value(found, "bflsync_last_run_exit_code", **labels) == 2
