"""Extraction is pure and total: typed columns from any JSON, never an exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bflsync.extract import (
    EXTRACTED_FIELDS,
    as_bool,
    as_float,
    as_int,
    as_text,
    as_timestamp_text,
    canonical_json,
    changed_keys,
    content_hash,
    extract_fields,
    without_nul,
)

FULL_DETAILS = {
    "finetune_comment": "Portrait of Ada",
    "trigger_word": "TOK",
    "mode": "character",
    "finetune_type": "lora",
    "priority": "quality",
    "iterations": 300,
    "lora_rank": 32,
    "learning_rate": 1e-5,
    "captioning": True,
    "timestamp": "2026-03-01T12:00:00Z",
    "future_key": {"nested": [1, 2]},
}


def test_extract_fields_reads_every_known_key() -> None:
    assert extract_fields(FULL_DETAILS) == {
        "finetune_comment": "Portrait of Ada",
        "trigger_word": "TOK",
        "mode": "character",
        "finetune_type": "lora",
        "priority": "quality",
        "iterations": 300,
        "lora_rank": 32,
        "learning_rate": 1e-5,
        "captioning": True,
        "remote_timestamp": "2026-03-01T12:00:00.000000Z",
    }


def test_extract_fields_gives_none_for_missing_keys() -> None:
    assert extract_fields({}) == dict.fromkeys(EXTRACTED_FIELDS)


@pytest.mark.parametrize("details", [None, [], "text", 42, [{"mode": "character"}]])
def test_extract_fields_of_a_non_object_is_all_none(details: Any) -> None:
    assert extract_fields(details) == dict.fromkeys(EXTRACTED_FIELDS)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (300, 300),
        ("300", 300),
        (" 300 ", 300),
        (300.0, 300),
        ("300.0", 300),
        ("3e2", 300),
        (-5, -5),
        (300.5, None),
        ("300.5", None),
        ("many", None),
        ("", None),
        ("1_000", None),
        ("0x10", None),
        ("٣٠٠", None),
        ("\uff13\uff10\uff10", None),  # fullwidth digits
        (True, None),
        (False, None),
        (None, None),
        ([300], None),
        ({"n": 300}, None),
        (float("nan"), None),
        (float("inf"), None),
        ("nan", None),
        ("1e400", None),
        (2**63, None),
        (2**63 - 1, 2**63 - 1),
    ],
)
def test_as_int_coerces_only_losslessly(raw: Any, expected: int | None) -> None:
    assert as_int(raw) == expected
    assert as_int(raw) is None or type(as_int(raw)) is int


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (1e-5, 1e-5),
        ("1e-5", 1e-5),
        ("0.00002", 2e-5),
        (".5", 0.5),
        (2, 2.0),
        ("2", 2.0),
        ("fast", None),
        (True, None),
        (None, None),
        ({"lr": 1}, None),
        (float("nan"), None),
        (float("-inf"), None),
        ("Infinity", None),
        ("1e999", None),
        (10**400, None),
    ],
)
def test_as_float_accepts_finite_numbers_and_numeric_strings(raw: Any, expected: float | None) -> None:
    assert as_float(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("FALSE", False),
        (" True ", True),
        (1, True),
        (0, False),
        (2, None),
        ("yes", None),
        (None, None),
        (1.0, None),
        ([True], None),
    ],
)
def test_as_bool_accepts_booleans_and_their_unambiguous_spellings(raw: Any, expected: bool | None) -> None:
    assert as_bool(raw) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("character", "character"),
        ("", ""),
        ("ünïcødé ✨", "ünïcødé ✨"),
        (5, None),
        ({"a": 1}, None),
        (None, None),
    ],
)
def test_as_text_keeps_strings_only(raw: Any, expected: str | None) -> None:
    assert as_text(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-03-01T12:00:00Z", "2026-03-01T12:00:00.000000Z"),
        ("2026-03-01T12:00:00", "2026-03-01T12:00:00.000000Z"),
        ("2026-03-01T13:00:00.25+01:00", "2026-03-01T12:00:00.250000Z"),
        ("not a date", "not a date"),
        (1767225600, "2026-01-01T00:00:00.000000Z"),
        (1767225600.5, "2026-01-01T00:00:00.500000Z"),
        (1e300, "1e+300"),
        (True, None),
        (None, None),
        ({"t": 1}, None),
    ],
)
def test_timestamp_is_kept_in_the_one_time_form(raw: Any, expected: str | None) -> None:
    assert as_timestamp_text(raw) == expected


def test_odd_types_become_null_while_the_raw_value_is_untouched() -> None:
    details = {"iterations": "many", "mode": {"kind": "character"}, "learning_rate": [1e-5]}
    before = json.dumps(details, sort_keys=True)
    fields = extract_fields(details)
    assert (fields["iterations"], fields["mode"], fields["learning_rate"]) == (None, None, None)
    assert json.dumps(details, sort_keys=True) == before


def test_canonical_json_ignores_key_order_and_whitespace() -> None:
    a = json.loads('{"b": 1, "a": {"y": [1, 2], "x": "é"}}')
    b = json.loads('{"a":{"x":"é","y":[1,2]},"b":1}')
    assert canonical_json(a) == canonical_json(b) == '{"a":{"x":"é","y":[1,2]},"b":1}'
    assert content_hash(a) == content_hash(b)


def test_content_hash_changes_with_any_value() -> None:
    assert content_hash({"iterations": 300}) != content_hash({"iterations": 301})
    assert content_hash({"iterations": 300}) != content_hash({"iterations": "300"})


def test_changed_keys_lists_changed_added_and_removed_keys_sorted() -> None:
    old = {"mode": "general", "iterations": 300, "gone": 1, "same": {"a": 1, "b": 2}}
    new = {"mode": "character", "iterations": 300, "added": True, "same": {"b": 2, "a": 1}}
    assert changed_keys(old, new) == ["added", "gone", "mode"]


def test_changed_keys_is_null_safe() -> None:
    assert changed_keys(None, {"b": 1, "a": 2}) == ["a", "b"]
    assert changed_keys({"a": 1}, None) == ["a"]
    assert changed_keys(None, None) == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
known_keys = st.sampled_from([key for key, _ in EXTRACTED_FIELDS.values()])
details_objects = st.dictionaries(known_keys | st.text(max_size=10), json_values, max_size=12)


@settings(max_examples=400, deadline=None)
@given(details_objects)
def test_extract_fields_never_raises_and_types_are_right(details: dict[str, Any]) -> None:
    fields = extract_fields(details)
    assert set(fields) == set(EXTRACTED_FIELDS)
    for name in ("finetune_comment", "trigger_word", "mode", "finetune_type", "priority", "remote_timestamp"):
        assert fields[name] is None or isinstance(fields[name], str)
    for name in ("iterations", "lora_rank"):
        assert fields[name] is None or type(fields[name]) is int
    assert fields["learning_rate"] is None or type(fields["learning_rate"]) is float
    assert fields["captioning"] is None or type(fields["captioning"]) is bool


@settings(max_examples=300, deadline=None)
@given(details_objects)
def test_canonical_json_round_trips_and_hashes_stably(details: dict[str, Any]) -> None:
    text = canonical_json(details)
    assert canonical_json(json.loads(text)) == text
    assert content_hash(json.loads(text)) == content_hash(details)


def test_text_columns_take_nul_as_u_fffd_while_the_hash_keeps_the_raw_details() -> None:
    details = {"finetune_comment": "a\u0000b", "timestamp": "2024\u0000", "mode": "\u0000"}
    fields = extract_fields(details)
    assert (fields["finetune_comment"], fields["remote_timestamp"], fields["mode"]) == (
        "a\ufffdb",
        "2024\ufffd",
        "\ufffd",
    )
    assert content_hash(details) != content_hash({**details, "finetune_comment": "a\ufffdb"})
    assert "a\\u0000b" in canonical_json(details)


def test_without_nul_replaces_nul_in_strings_and_keys_only() -> None:
    value = {"k\u0000": ["\u0000", 1, None, {"\\u0000": "\\u0000"}], "n": 1.5}
    assert without_nul(value) == {"k\ufffd": ["\ufffd", 1, None, {"\\u0000": "\\u0000"}], "n": 1.5}


@pytest.mark.parametrize(
    ("sent", "canonical"),
    [
        ('{"iterations": 300.0}', '{"iterations":300}'),
        ('{"learning_rate": -0.0}', '{"learning_rate":0}'),
        ('{"learning_rate": 0.0}', '{"learning_rate":0}'),
        ('{"nested": [1.0, {"x": -2.0}, 2.5]}', '{"nested":[1,{"x":-2},2.5]}'),
        ('{"big": 9007199254740992.0}', '{"big":9007199254740992}'),
        ('{"huge": 1e300}', '{"huge":1e+300}'),
        ('{"rate": 1e-05, "text": "v1.0"}', '{"rate":1e-05,"text":"v1.0"}'),
    ],
)
def test_canonical_json_writes_integral_floats_as_integers_and_negative_zero_as_zero(
    sent: str, canonical: str
) -> None:
    assert canonical_json(json.loads(sent)) == canonical


def test_the_same_json_number_in_another_form_has_the_same_content_hash() -> None:
    assert content_hash({"iterations": 300}) == content_hash({"iterations": 300.0})
    assert content_hash({"learning_rate": 0.0}) == content_hash({"learning_rate": -0.0})
    assert content_hash({"iterations": 300}) != content_hash({"iterations": 300.5})
