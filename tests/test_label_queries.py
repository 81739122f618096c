"""`label.KEY` in query filters, --sort, --columns and facets, checked against a Python reference, and
labels in every query output format, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner
from filter_reference import value_matches
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from storebuild import day, write_sync

from bflsync import annotate
from bflsync.cli import cli
from bflsync.errors import InputError
from bflsync.read import filters, search
from bflsync.read.reader import Reader, open_reader
from bflsync.store.labels import Author

# Each finetune's labels, as `bflsync label` would type them from the command line.
LABELS: dict[str, list[str]] = {
    "acme-1": ["project=acme", "approved=true", "score=3", "stage=prod"],
    "acme-2": ["project=acme", "approved=false", "score=2.5", 'code="300"'],
    "globex": ["project=globex", "score=-1", "code=300", "note=Straße 100%_done"],
    "numeric-text": ['project="12"', 'approved="true"', "score=1e-5"],
    "unlabelled": [],
    "gone": ["project=acme", "stage=retired"],
}
KEYS = ("project", "approved", "score", "code", "note", "stage", "missing")


@pytest.fixture
def label_store(any_store: tuple[str, Engine]) -> str:
    target, store_engine = any_store
    write_sync(store_engine, {finetune_id: {"mode": "style"} for finetune_id in LABELS}, now=day(1))
    for finetune_id, assignments in LABELS.items():
        if assignments:
            edit = annotate.build_edit(assignments, [])
            annotate.edit_labels(
                store_engine,
                finetune_id,
                edit,
                source=None,
                account=None,
                actor=Author("tester"),
                now=datetime(2026, 1, 2, tzinfo=UTC),
            )
    write_sync(
        store_engine,
        {finetune_id: {"mode": "style"} for finetune_id in LABELS if finetune_id != "gone"},
        now=day(3),
    )
    return target


@pytest.fixture
def reader(label_store: str) -> Iterator[Reader]:
    with open_reader(label_store) as opened:
        yield opened


def stored_labels() -> dict[str, dict[str, Any]]:
    return {fid: dict(annotate.parse_assignment(text) for text in texts) for fid, texts in LABELS.items()}


def live_ids(reader: Reader, *texts: str, include_deleted: bool = False) -> list[str]:
    question = filters.Query(
        filters=[filters.parse_filter(text) for text in texts], include_deleted=include_deleted
    )
    return [record.finetune_id for record in search.search(reader, question).records]


def reference(op: str, key: str, value: Any, *, include_deleted: bool = False) -> list[str]:
    return sorted(
        fid
        for fid, found in stored_labels().items()
        if (include_deleted or fid != "gone") and value_matches(found.get(key), op, value)
    )


@pytest.mark.parametrize(
    ("text", "op", "key", "value"),
    [
        ("label.project=acme", "=", "project", "acme"),
        ("label.project!=acme", "!=", "project", "acme"),
        ('label.project="12"', "=", "project", "12"),
        ("label.project=12", "=", "project", 12),
        ("label.approved=true", "=", "approved", True),
        ('label.approved="true"', "=", "approved", "true"),
        ("label.approved!=true", "!=", "approved", True),
        ("label.score>=2.5", ">=", "score", 2.5),
        ("label.score<0", "<", "score", 0),
        ("label.code=300", "=", "code", 300),
        ('label.code="300"', "=", "code", "300"),
        ("label.note~STRASSE 100%_", "~", "note", "STRASSE 100%_"),
        ("label.missing=null", "=", "missing", None),
        ("label.missing!=null", "!=", "missing", None),
        ("label.stage=null", "=", "stage", None),
    ],
)
def test_label_filters_select_what_the_reference_selects(
    reader: Reader, text: str, op: str, key: str, value: Any
) -> None:
    assert live_ids(reader, text) == reference(op, key, value)


def test_a_tombstoned_finetune_keeps_its_labels_for_include_deleted(reader: Reader) -> None:
    assert live_ids(reader, "label.stage=retired") == []
    assert live_ids(reader, "label.stage=retired", include_deleted=True) == ["gone"]


def test_a_backticked_label_is_a_details_key(reader: Reader) -> None:
    assert live_ids(reader, "`label`.project=acme") == []
    assert filters.parse_field("`label`.project").label is None
    assert filters.parse_field("`label`.project").name == "`label`.project"
    assert filters.parse_field("label.project").name == "label.project"


VALUES = st.one_of(
    st.integers(-5, 5).map(lambda n: (repr(n), n)),
    st.sampled_from([2.5, 1e-5, 300.0, -1.0]).map(lambda f: (repr(f), f)),
    st.sampled_from(["acme", "globex", "12", "300", "true", "straße", "", "%_", "a"]).map(
        lambda s: ('"' + s + '"', s)
    ),
    st.sampled_from(["null", "true", "false"]).map(
        lambda t: (t, {"null": None, "true": True, "false": False}[t])
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), op=st.sampled_from(filters.OPERATORS), value=VALUES)
def test_random_label_filters_match_the_reference(
    reader: Reader, key: str, op: str, value: tuple[str, Any]
) -> None:
    token, typed = value
    text = f"label.{key}{op}{token}"
    if op not in ("=", "!=", "~") and (typed is None or isinstance(typed, bool)):
        with pytest.raises(InputError):
            live_ids(reader, text)
        return
    if isinstance(typed, float) and not math.isfinite(typed):
        return
    needle = token.strip('"') if op == "~" else typed
    assert live_ids(reader, text) == reference(op, key, needle)


def run(store: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--db", store, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_sort_by_a_label_puts_numbers_first_and_missing_last(label_store: str) -> None:
    assert run(label_store, "query", "--sort", "label.score", "--format", "ids").split() == [
        "globex",
        "numeric-text",
        "acme-2",
        "acme-1",
        "unlabelled",
    ]
    assert run(label_store, "query", "--sort", "-label.project", "--format", "ids").split() == [
        "globex",
        "acme-1",
        "acme-2",
        "numeric-text",
        "unlabelled",
    ]


def test_facets_count_label_values(label_store: str) -> None:
    counts = json.loads(run(label_store, "facets", "label.project", "label.approved", "--format", "json"))
    assert counts == [
        {"field": "label.project", "value": "acme", "count": 2},
        {"field": "label.project", "value": None, "count": 1},
        {"field": "label.project", "value": "12", "count": 1},
        {"field": "label.project", "value": "globex", "count": 1},
        {"field": "label.approved", "value": None, "count": 2},
        {"field": "label.approved", "value": "true", "count": 1},
        {"field": "label.approved", "value": False, "count": 1},
        {"field": "label.approved", "value": True, "count": 1},
    ]


def expected_labels() -> Mapping[str, dict[str, Any]]:
    return {fid: dict(sorted(found.items())) for fid, found in stored_labels().items() if fid != "gone"}


def test_json_and_jsonl_records_carry_a_labels_object(label_store: str) -> None:
    as_json = json.loads(run(label_store, "query", "--format", "json"))
    assert {record["finetune_id"]: record["labels"] for record in as_json} == expected_labels()
    lines = run(label_store, "query", "--format", "jsonl").splitlines()
    assert {
        json.loads(line)["finetune_id"]: json.loads(line)["labels"] for line in lines
    } == expected_labels()


def test_csv_and_table_have_one_column_per_label_in_columns(label_store: str) -> None:
    out = run(
        label_store,
        "query",
        "label.project=acme",
        "--columns",
        "label.project,label.score,label.code",
        "--format",
        "csv",
    )
    assert list(csv.reader(io.StringIO(out))) == [
        ["label.project", "label.score", "label.code"],
        ["acme", "3", ""],
        ["acme", "2.5", "300"],
    ]
    table = run(
        label_store, "query", "label.approved=true", "--columns", "finetune_id,label.approved"
    ).splitlines()
    assert [line.split() for line in table] == [["finetune_id", "label.approved"], ["acme-1", "true"]]


def test_a_filter_on_a_label_no_finetune_has_warns_with_the_closest_label(label_store: str) -> None:
    result = CliRunner().invoke(
        cli, ["--db", label_store, "query", "label.projct=acme", "--format", "ids"], catch_exceptions=False
    )
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == (
        "bflsync: warning: no stored finetune has a label 'projct' (did you mean label.project?)\n"
    )


@pytest.mark.parametrize("option", ["--sort", "--columns"])
def test_sort_or_columns_on_a_label_no_finetune_has_exits_2(label_store: str, option: str) -> None:
    result = CliRunner().invoke(cli, ["--db", label_store, "query", option, "label.scor"])
    assert (result.exit_code, result.stdout) == (2, "")
    assert "no stored finetune has a label 'scor' (did you mean label.score?)" in result.stderr


def test_with_as_of_labels_are_the_current_ones_and_filter_sort_and_count(label_store: str) -> None:
    # At day 2 every finetune is live (gone was tombstoned on day 3); its labels are today's.
    as_of = ["--as-of", "2026-01-02T12:00:00Z"]
    records = json.loads(run(label_store, "query", *as_of, "label.project=acme", "--format", "json"))
    assert {record["finetune_id"]: record["labels"] for record in records} == {
        fid: found for fid, found in stored_labels().items() if found.get("project") == "acme"
    }
    assert run(label_store, "query", *as_of, "--sort", "label.score", "--format", "ids").split() == [
        "globex",
        "numeric-text",
        "acme-2",
        "acme-1",
        "gone",
        "unlabelled",
    ]
    counts = json.loads(run(label_store, "facets", "label.stage", *as_of, "--format", "json"))
    assert counts == [
        {"field": "label.stage", "value": None, "count": 4},
        {"field": "label.stage", "value": "prod", "count": 1},
        {"field": "label.stage", "value": "retired", "count": 1},
    ]
