"""The public Python API (``bflsync.open_store``, ``bflsync.sync``), called directly on both engines.

Stores are filled by ``bflsync.sync`` itself against the mock BFL API on loopback; labels and notes
through the CLI. Every behaviour test runs on SQLite and PostgreSQL (the ``store_db`` fixture).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

import bflsync
from bflsync.cli import cli
from bflsync.errors import ExitCode, InputError, RunFailedError, StoreMissingError
from bflsync.mock.server import MockBFL
from bflsync.read.audit_trail import StatusEntry, VersionEntry
from bflsync.read.label_reads import LabelEvent, Note

KEY = "python-api-key"
ALPHA = {"mode": "character", "trigger_word": "TOK", "learning_rate": 1e-5, "iterations": 300}
BRAVO = {"mode": "style", "trigger_word": "ART", "learning_rate": 4e-5, "iterations": 500}
CHARLIE = {"mode": "character", "trigger_word": "ME", "learning_rate": 2e-5, "iterations": 400}


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve(finetunes={"alpha": ALPHA, "bravo": BRAVO, "charlie": CHARLIE}, api_key=KEY) as server:
        yield server


@pytest.fixture
def synced(store_db: str, mock: MockBFL) -> str:
    """A store that one ``bflsync.sync`` filled with alpha, bravo and charlie."""
    result = bflsync.sync(store_db, api_key=KEY, base_url=mock.base_url)
    assert (result.status, result.created) == ("ok", 3)
    return store_db


def cli_run(store_db: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--db", store_db, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_sync_returns_the_runs_result(store_db: str, mock: MockBFL) -> None:
    result = bflsync.sync(store_db, api_key=KEY, base_url=mock.base_url)
    assert isinstance(result, bflsync.SyncResult)
    assert result.as_json() | {"duration_s": 0} == {
        "run_id": 1,
        "status": "ok",
        "source": mock.base_url.removeprefix("http://"),
        "account": "default",
        "listed": 3,
        "fetched": 3,
        "created": 3,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "restored": 0,
        "failed": 0,
        "status_failed": 0,
        "status_checked": 3,
        "status_changed": 3,
        "credits": result.credits,
        "key_changed": False,
        "duration_s": 0,
    }
    assert result.exit_code() == ExitCode.OK


def test_a_second_sync_finds_nothing_changed(synced: str, mock: MockBFL) -> None:
    again = bflsync.sync(synced, api_key=KEY, base_url=mock.base_url)
    assert (again.run_id, again.status, again.created, again.unchanged) == (2, "ok", 0, 3)


def test_a_dry_run_writes_nothing(store_db: str, mock: MockBFL) -> None:
    result = bflsync.sync(store_db, api_key=KEY, base_url=mock.base_url, dry_run=True)
    assert (result.run_id, result.dry_run, result.created) == (None, True, 3)
    with pytest.raises(StoreMissingError):
        bflsync.open_store(store_db)


def test_a_refused_key_fails_the_run_in_its_result_not_by_raising(store_db: str, mock: MockBFL) -> None:
    result = bflsync.sync(store_db, api_key="not-the-key", base_url=mock.base_url)
    assert result.status == "failed"
    assert isinstance(result.failure, RunFailedError)
    assert result.exit_code() == ExitCode.CANNOT_RUN


def test_sync_refuses_region_and_base_url_together(store_db: str, mock: MockBFL) -> None:
    with pytest.raises(InputError, match="either --region or --base-url"):
        bflsync.sync(store_db, api_key=KEY, base_url=mock.base_url, region="eu1")


def test_query_answers_filters_sorted_and_limited(synced: str) -> None:
    with bflsync.open_store(synced) as store:
        found = store.query(["mode=character"], bflsync.QueryOptions(sort="-learning_rate", limit=1))
    assert [(r.finetune_id, r.column("learning_rate"), r.details) for r in found.records] == [
        ("charlie", 2e-5, CHARLIE)
    ]
    assert found.unreadable == ()


def test_query_takes_a_made_query(synced: str) -> None:
    question = bflsync.make_query(["learning_rate>=2e-5"], bflsync.QueryOptions(sort="iterations"))
    with bflsync.open_store(synced) as store:
        assert [r.finetune_id for r in store.query(question).records] == ["charlie", "bravo"]
        with pytest.raises(TypeError, match="options given both"):
            store.query(question, bflsync.QueryOptions(sort="mode"))


def test_ids_are_the_querys_ids(synced: str) -> None:
    with bflsync.open_store(synced) as store:
        assert store.ids(["iterations>300"], bflsync.QueryOptions(sort="-iterations")) == (
            ["bravo", "charlie"],
            (),
        )


def test_query_ids_and_make_query_share_one_frozen_options_bundle(synced: str) -> None:
    options = bflsync.QueryOptions(sort="-iterations", limit=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.limit = 2  # type: ignore[misc]
    with bflsync.open_store(synced) as store:
        queried = [record.finetune_id for record in store.query(["iterations>300"], options).records]
        made = store.ids(bflsync.make_query(["iterations>300"], options)).ids
        assert queried == made == store.ids(["iterations>300"], options).ids == ["bravo"]


def test_facets_refuse_a_sort_or_limit_they_would_ignore(synced: str) -> None:
    with bflsync.open_store(synced) as store, pytest.raises(TypeError, match="limit"):
        store.facets(["mode"], [], bflsync.QueryOptions(limit=1))


def test_a_bad_filter_is_a_filter_error(synced: str) -> None:
    with bflsync.open_store(synced) as store, pytest.raises(bflsync.BflsyncError) as caught:
        store.query(["learning_rate>>1"])
    assert caught.value.exit_code == ExitCode.INPUT


def test_facets_count_each_value_most_common_first(synced: str) -> None:
    with bflsync.open_store(synced) as store:
        facets = store.facets(["mode"], ["iterations>=300"])
    assert {name: [tuple(count) for count in counts] for name, counts in facets.counts.items()} == {
        "mode": [("character", 2), ("style", 1)]
    }


def test_unknown_field_names_the_closest_known_one(synced: str) -> None:
    with bflsync.open_store(synced) as store:
        assert store.unknown_field("trigger_wrd") == (
            "no stored finetune has a key 'trigger_wrd' (did you mean trigger_word?)"
        )
        assert store.unknown_field("mode") is None


def test_show_returns_the_record_its_status_timeline_and_notes(synced: str) -> None:
    cli_run(synced, "note", "alpha", "the good one")
    with bflsync.open_store(synced) as store:
        shown = store.show("alpha")
    assert (shown.record.finetune_id, shown.record.version, shown.record.details) == ("alpha", 1, ALPHA)
    assert [(entry.status, entry.progress, entry.sync_run_id) for entry in shown.status_timeline] == [
        ("Ready", 1.0, 1)
    ]
    assert [(note.finetune_id, note.text) for note in shown.notes] == [("alpha", "the good one")]


def test_an_unknown_id_is_an_input_error(synced: str) -> None:
    with bflsync.open_store(synced) as store, pytest.raises(InputError, match="no finetune 'zulu'"):
        store.finetune("zulu")


def test_history_merges_versions_labels_and_notes_oldest_first(synced: str) -> None:
    cli_run(synced, "label", "bravo", "project=acme")
    cli_run(synced, "note", "bravo", "ship it")
    with bflsync.open_store(synced) as store:
        entries = store.history("bravo")
        since = store.history(since=datetime.now(UTC) - timedelta(days=1))
    kinds = [(bflsync.api.history_kind(e), e.finetune_id) for e in entries if not isinstance(e, StatusEntry)]
    assert kinds == [("version", "bravo"), ("label", "bravo"), ("note", "bravo")]
    assert [bflsync.api.history_time(e) for e in entries] == sorted(
        bflsync.api.history_time(e) for e in entries
    )
    version, label, note = (e for e in entries if not isinstance(e, StatusEntry))
    assert isinstance(version, VersionEntry) and (version.version, version.change) == (1, "created")
    assert isinstance(label, LabelEvent) and (label.key, label.change, label.new) == (
        "project",
        "set",
        "acme",
    )
    assert isinstance(note, Note) and note.text == "ship it"
    assert {e.finetune_id for e in since if isinstance(e, VersionEntry)} == {"alpha", "bravo", "charlie"}


def test_history_needs_an_id_or_a_start(synced: str) -> None:
    with bflsync.open_store(synced) as store, pytest.raises(InputError, match="needs a finetune ID"):
        store.history()


def test_runs_list_newest_first_and_one_run_has_its_errors(synced: str, mock: MockBFL) -> None:
    bflsync.sync(synced, api_key=KEY, base_url=mock.base_url)
    with bflsync.open_store(synced) as store:
        listed = store.runs()
        detail = store.run(1)
    assert [(run["id"], run["status"], run["created"], run["unchanged"]) for run in listed] == [
        (2, "ok", 0, 3),
        (1, "ok", 3, 0),
    ]
    assert detail == (listed[1], [])


def test_diff_lists_the_differing_keys(synced: str) -> None:
    with bflsync.open_store(synced) as store:
        result = store.diff("alpha", "charlie")
    assert (result.a.finetune_id, result.b.finetune_id) == ("alpha", "charlie")
    assert result.differences == [
        {"field": "iterations", "a": 300, "b": 400},
        {"field": "learning_rate", "a": 1e-5, "b": 2e-5},
        {"field": "trigger_word", "a": "TOK", "b": "ME"},
    ]


def test_compare_lines_up_the_chosen_fields(synced: str) -> None:
    with bflsync.open_store(synced) as store:
        matrix = store.compare(
            ["alpha", "bravo", "charlie"], fields=["mode", "iterations"], only_changed=True
        )
    assert [entry.heading for entry in matrix.entries] == ["alpha", "bravo", "charlie"]
    assert [(row.field.name, row.values, row.changed) for row in matrix.rows] == [
        ("mode", ["character", "style", "character"], True),
        ("iterations", [300, 500, 400], True),
    ]


def test_accounts_and_credits_list_what_the_sync_read(synced: str, mock: MockBFL) -> None:
    source = mock.base_url.removeprefix("http://")
    with bflsync.open_store(synced) as store:
        accounts = store.accounts()
        credits = store.credits()
    assert [(a["source"], a["account"], a["live"], a["deleted"]) for a in accounts] == [
        (source, "default", 3, 0)
    ]
    assert [(c.run_id, c.source, c.account, c.drop, sorted(c.new_finetunes)) for c in credits] == [
        (1, source, "default", None, ["alpha", "bravo", "charlie"])
    ]


def test_the_cli_answers_what_the_api_answers(synced: str) -> None:
    with bflsync.open_store(synced) as store:
        ids = store.ids(["mode=character"]).ids
    assert cli_run(synced, "query", "mode=character", "--format", "ids") == "".join(f"{i}\n" for i in ids)


def test_the_documented_example_runs(synced: str, capsys: pytest.CaptureFixture[str]) -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "python-api.md").read_text(encoding="utf-8")
    example = page.split("```python\n", 1)[1].split("```", 1)[0]
    example = example.replace('"~/.local/share/bflsync/bflsync.db"', repr(synced))
    exec(example.replace("acme-labs/portrait-lora-3", "alpha"), {})  # noqa: S102 - the page's own code
    assert capsys.readouterr().out == (
        "charlie 2e-05 {}\n"
        "[FacetCount(value='character', finetunes=2), FacetCount(value='style', finetunes=1)]\n"
        "status [MISSING, 'Ready']\n"
    )


def test_opening_a_missing_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreMissingError) as caught:
        bflsync.open_store(tmp_path / "none.db")
    assert caught.value.exit_code == ExitCode.INPUT


def test_import_bflsync_loads_only_what_its_names_need(tmp_path: Path) -> None:
    script = (
        "import sys, bflsync\n"
        "print(sorted(m for m in sys.modules if m.startswith('bflsync')))\n"
        "bflsync.open_store\n"
        "print(sorted(m.split('.')[0] for m in sys.modules"
        " if m.split('.')[0] in {'sqlalchemy', 'sqlmodel', 'pydantic', 'alembic', 'httpx', 'click'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == "['bflsync', 'bflsync.sync', 'bflsync.version']\n[]\n"


def test_reading_a_sqlite_store_through_the_api_imports_no_heavy_module(db_path: Path, mock: MockBFL) -> None:
    bflsync.sync(db_path, api_key=KEY, base_url=mock.base_url)
    script = (
        "import sys, bflsync\n"
        f"with bflsync.open_store({str(db_path)!r}) as store:\n"
        "    store.query(['mode=character']); store.show('alpha'); store.history('alpha'); store.runs()\n"
        "print(sorted(m.split('.')[0] for m in sys.modules"
        " if m.split('.')[0] in {'sqlalchemy', 'sqlmodel', 'pydantic', 'alembic', 'httpx'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == "[]\n"
