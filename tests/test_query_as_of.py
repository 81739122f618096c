"""``--as-of``: answers from the audit history as the store knew things at a moment."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from storebuild import SOURCE, day, write_sync

from bflsync.errors import FilterError, InputError
from bflsync.extract import content_hash, extract_fields
from bflsync.read import filters, search
from bflsync.read.reader import Reader, open_reader
from bflsync.store import access
from bflsync.store.schema import Finetune

V1 = {"mode": "character", "learning_rate": "1e-5", "iterations": 300}
V2 = {"mode": "character", "learning_rate": 2e-5, "iterations": 300}
B1 = {"mode": "style", "captioning": True}
B3 = {"mode": "general", "captioning": "false"}
C2 = {"mode": "style", "lora_rank": 16}
C3 = {"mode": "style", "lora_rank": 32}


@pytest.fixture
def target(any_store: tuple[str, Engine]) -> str:
    """Day 1: a, b. Day 2: a changes, b disappears, c appears. Day 3: b returns changed, c changes."""
    target, engine = any_store
    write_sync(engine, {"a": V1, "b": B1}, now=day(1))
    write_sync(engine, {"a": V2, "c": C2}, now=day(2))
    write_sync(engine, {"a": V2, "b": B3, "c": C3}, now=day(3))
    return target


@pytest.fixture
def reader(target: str) -> Iterator[Reader]:
    with open_reader(target) as reader:
        yield reader


def record(
    finetune_id: str,
    details: dict[str, Any],
    *,
    version: int,
    first: int,
    seen: int,
    changed: int,
    deleted: datetime | None = None,
) -> dict[str, Any]:
    return {
        "finetune_id": finetune_id,
        "source": SOURCE,
        "account": "default",
        **extract_fields(details),
        "version": version,
        "content_hash": content_hash(details),
        "first_seen_at": day(first),
        "last_seen_at": day(seen),
        "last_changed_at": day(changed),
        "deleted_at": deleted,
        # write_sync records no status: these stores were never asked.
        "status": None,
        "progress": None,
        "status_checked_at": None,
        "ready_at": None,
        "details": details,
        "labels": {},
    }


def as_of(connection: Reader, moment: datetime, *texts: str, deleted: bool = False) -> list[dict[str, Any]]:
    question = filters.Query(
        filters=[filters.parse_filter(text) for text in texts], as_of=moment, include_deleted=deleted
    )
    return [item.as_dict() for item in search.search(connection, question).records]


def test_as_of_the_first_sync_gives_the_first_versions(reader: Reader) -> None:
    assert as_of(reader, day(1, 12)) == [
        record("a", V1, version=1, first=1, seen=1, changed=1),
        record("b", B1, version=1, first=1, seen=1, changed=1),
    ]


def test_as_of_the_second_sync_excludes_what_was_deleted_by_then(reader: Reader) -> None:
    assert as_of(reader, day(2)) == [
        record("a", V2, version=2, first=1, seen=2, changed=2),
        record("c", C2, version=1, first=2, seen=2, changed=2),
    ]


def test_as_of_with_include_deleted_shows_the_last_details_known_before_deletion(reader: Reader) -> None:
    assert as_of(reader, day(2, 12), "mode=style", deleted=True) == [
        record("b", B1, version=2, first=1, seen=1, changed=2, deleted=day(2)),
        record("c", C2, version=1, first=2, seen=2, changed=2),
    ]


def test_as_of_the_third_sync_sees_the_restored_and_changed_finetunes(reader: Reader) -> None:
    assert as_of(reader, day(3)) == [
        record("a", V2, version=2, first=1, seen=2, changed=2),
        record("b", B3, version=3, first=1, seen=3, changed=3),
        record("c", C3, version=2, first=2, seen=3, changed=3),
    ]


def test_as_of_filters_extracted_fields_computed_from_the_versions(reader: Reader) -> None:
    assert [r["finetune_id"] for r in as_of(reader, day(1), "learning_rate>=2e-5")] == []
    assert [r["finetune_id"] for r in as_of(reader, day(2), "learning_rate>=2e-5")] == ["a"]
    assert [r["finetune_id"] for r in as_of(reader, day(1), "captioning=true")] == ["b"]
    assert [r["finetune_id"] for r in as_of(reader, day(3), "captioning=false")] == ["b"]
    assert [r["finetune_id"] for r in as_of(reader, day(3), "lora_rank>20", "mode~STY")] == ["c"]


def test_as_of_before_anything_was_stored_is_empty(reader: Reader) -> None:
    assert as_of(reader, datetime(2025, 12, 31, tzinfo=day(1).tzinfo)) == []


def test_as_of_cannot_be_combined_with_text(reader: Reader) -> None:
    with pytest.raises(FilterError, match="--as-of"):
        search.search(reader, filters.Query(text="style", as_of=day(3)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-02", day(2)),
        ("2026-01-02T05:00:00", day(2, 5)),
        ("2026-01-02T07:00:00+02:00", day(2, 5)),
        ("2026-01-02T05:00:00Z", day(2, 5)),
    ],
)
def test_timestamps_are_iso_8601_with_naive_meaning_utc(text: str, expected: datetime) -> None:
    assert filters.parse_timestamp(text) == expected


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00+01:00"])
def test_a_timestamp_outside_the_calendar_in_utc_is_an_input_error_naming_it(text: str) -> None:
    with pytest.raises(InputError, match=re.escape(f"out of range: '{text}'")):
        filters.parse_timestamp(text)


def test_as_of_refuses_a_filter_on_last_seen_at(reader: Reader) -> None:
    question = filters.Query(filters=[filters.parse_filter("last_seen_at>=2026-01-01")], as_of=day(3))
    with pytest.raises(FilterError, match="last_seen_at cannot be filtered, sorted or counted"):
        search.search(reader, question)


def test_as_of_refuses_sorting_by_last_seen_at(reader: Reader) -> None:
    question = filters.Query(sort=filters.parse_sort("-last_seen_at"), as_of=day(3))
    with pytest.raises(FilterError, match="last_seen_at cannot be filtered, sorted or counted"):
        search.search(reader, question)


def test_as_of_refuses_facets_of_last_seen_at(reader: Reader) -> None:
    fields = [filters.parse_field("last_seen_at")]
    with pytest.raises(FilterError, match="last_seen_at cannot be filtered, sorted or counted"):
        search.facet_counts(reader, fields, filters.Query(as_of=day(3)))


def test_as_of_still_shows_last_seen_at_as_when_the_version_was_first_observed(reader: Reader) -> None:
    # a was seen on day 3 but has had the same details since day 2.
    assert [item["last_seen_at"] for item in as_of(reader, day(3))] == [day(2), day(3), day(3)]


def test_last_seen_at_filters_still_work_without_as_of(reader: Reader) -> None:
    question = filters.Query(filters=[filters.parse_filter("last_seen_at>=2026-01-03")])
    assert [record.finetune_id for record in search.search(reader, question).records] == ["a", "b", "c"]


def test_record_timestamps_decode_as_the_store_column_type_does(reader: Reader, target: str) -> None:
    [record] = search.search(reader, filters.Query(filters=[filters.parse_filter("finetune_id=b")])).records
    engine = access.open_store_for_read(access.locate_store(target))
    with engine.connect() as connection:
        stored = connection.execute(
            sa.select(Finetune.last_seen_at).where(Finetune.finetune_id == "b")
        ).scalar_one()
    engine.dispose()
    assert (record.column("last_seen_at"), record.column("last_seen_at").tzinfo) == (stored, stored.tzinfo)
    assert stored == day(3)
