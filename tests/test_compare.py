"""The compare matrix on realistic and sparse records, checked against hand-built expectations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bflsync.extract import MISSING, extract_fields
from bflsync.read.compare import Entry, Field, default_fields, matrix


def entry(heading: str, details: Any, labels: Mapping[str, Any] | None = None, **columns: Any) -> Entry:
    return Entry(
        heading=heading,
        finetune_id=heading.split("@")[0],
        source="api.us1.bfl.ai",
        account="default",
        version=1,
        columns={**extract_fields(details), **columns},
        details=details,
        labels=labels or {},
    )


def dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)


PORTRAIT = {
    "finetune_comment": "portrait v1",
    "trigger_word": "TOK",
    "mode": "character",
    "finetune_type": "lora",
    "priority": "quality",
    "iterations": 300,
    "lora_rank": 32,
    "learning_rate": 1e-05,
    "captioning": True,
    "timestamp": "2026-01-01T10:00:00",
    "extra": {"images": 12, "seed": 7},
}
# The same run with a higher learning rate; iterations arrive as a numeric string.
PORTRAIT_FAST = {**PORTRAIT, "finetune_comment": "portrait v2", "iterations": "300", "learning_rate": 4e-05}
SPARSE = {"mode": "character", "extra": {"images": 12}}


def table(result: Any) -> list[tuple[str, list[Any]]]:
    return [(row.field.name, row.values) for row in result.rows]


def test_only_changed_keeps_the_differing_fields_and_ignores_numeric_strings() -> None:
    entries = [entry("a", PORTRAIT, {"approved": True}), entry("b", PORTRAIT_FAST, {"approved": False})]
    result = matrix(entries, default_fields(entries, name_of_path=dotted), only_changed=True)
    assert table(result) == [
        ("finetune_comment", ["portrait v1", "portrait v2"]),
        ("learning_rate", [1e-05, 4e-05]),
        ("label.approved", [True, False]),
    ]


def test_the_full_matrix_lists_extracted_columns_then_other_keys_then_labels() -> None:
    entries = [entry("a", PORTRAIT, {"project": "acme"}), entry("s", SPARSE)]
    result = matrix(entries, default_fields(entries, name_of_path=dotted))
    assert table(result) == [
        ("finetune_comment", ["portrait v1", MISSING]),
        ("trigger_word", ["TOK", MISSING]),
        ("mode", ["character", "character"]),
        ("finetune_type", ["lora", MISSING]),
        ("priority", ["quality", MISSING]),
        ("iterations", [300, MISSING]),
        ("lora_rank", [32, MISSING]),
        ("learning_rate", [1e-05, MISSING]),
        ("captioning", [True, MISSING]),
        ("remote_timestamp", ["2026-01-01T10:00:00.000000Z", MISSING]),
        ("extra.images", [12, 12]),
        ("extra.seed", [7, MISSING]),
        ("label.project", ["acme", MISSING]),
    ]
    assert [row.changed for row in result.rows] == [
        True,
        True,
        False,
        True,
        True,
        True,
        True,
        True,
        True,
        True,
        False,
        True,
        True,
    ]


def test_a_sparse_pair_with_only_changed() -> None:
    entries = [
        entry("s", SPARSE),
        entry("t", {"mode": "style", "extra": {"images": 12, "tags": []}, "odd": None}),
    ]
    result = matrix(entries, default_fields(entries, name_of_path=dotted), only_changed=True)
    assert table(result) == [
        ("mode", ["character", "style"]),
        ("extra.tags", [MISSING, []]),
        ("odd", [MISSING, None]),
    ]


def test_missing_differs_from_null_and_identical_values_are_unchanged() -> None:
    entries = [entry("a", {"k": None}), entry("b", {}), entry("c", {"k": None})]
    [row] = matrix(entries, [Field(name="k", path=("k",))]).rows
    assert (row.values, row.changed) == ([None, MISSING, None], True)
    same = matrix(entries[::2], [Field(name="k", path=("k",))], only_changed=True)
    assert same.rows == []


def test_nested_objects_compare_by_content_not_key_order() -> None:
    entries = [
        entry("a", {"o": {"x": 1, "y": [1, {"z": 2}]}}),
        entry("b", {"o": {"y": [1, {"z": 2}], "x": 1}}),
    ]
    assert matrix(entries, default_fields(entries, name_of_path=dotted), only_changed=True).rows == []


def test_chosen_fields_keep_their_order_and_status_appears_only_when_recorded() -> None:
    entries = [entry("a", PORTRAIT, {"project": "acme"}), entry("b", PORTRAIT_FAST)]
    fields = [
        Field(name="label.project", label="project"),
        Field(name="extra.images", path=("extra", "images")),
        Field(name="learning_rate", column="learning_rate"),
    ]
    assert table(matrix(entries, fields)) == [
        ("label.project", ["acme", MISSING]),
        ("extra.images", [12, 12]),
        ("learning_rate", [1e-05, 4e-05]),
    ]
    assert "status" not in [f.name for f in default_fields(entries, name_of_path=dotted)]
    recorded = [entry("a", PORTRAIT, status="Ready"), entry("b", PORTRAIT_FAST, status=None)]
    names = [f.name for f in default_fields(recorded, name_of_path=dotted)]
    assert names.index("status") == names.index("remote_timestamp") + 1


def test_many_finetunes_line_up_in_the_order_given() -> None:
    entries = [entry(f"v{n}", {**PORTRAIT, "iterations": 100 * n}) for n in range(1, 6)]
    result = matrix(entries, default_fields(entries, name_of_path=dotted), only_changed=True)
    assert table(result) == [("iterations", [100, 200, 300, 400, 500])]
    assert [e.heading for e in result.entries] == ["v1", "v2", "v3", "v4", "v5"]
