"""Labels and notes as the read commands show them, `compare` and `show --format request`, through the CLI,
on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from storebuild import SOURCE, day, write_sync

from bflsync.cli import cli
from bflsync.store.access import locate_store, open_store_for_write

USER = getpass.getuser()
PORTRAIT = {
    "finetune_comment": "portrait v1",
    "trigger_word": "TOK",
    "mode": "character",
    "finetune_type": "lora",
    "iterations": 300,
    "lora_rank": 32,
    "learning_rate": 1e-05,
    "captioning": True,
    "timestamp": "2026-01-01T10:00:00",
    "extra": {"images": 12},
}
FAST = {**PORTRAIT, "finetune_comment": "portrait v2", "iterations": "300", "learning_rate": 4e-05}
SPARSE = {"mode": "product"}


@pytest.fixture
def store(store_db: str) -> str:
    """v1 and fast (fast has two versions: its comment changed), sparse; v1 labelled and noted."""
    opened = open_store_for_write(locate_store(store_db))
    try:
        write_sync(opened.engine, {"v1": PORTRAIT, "fast": {**FAST, "finetune_comment": "draft"}}, now=day(1))
        write_sync(opened.engine, {"v1": PORTRAIT, "fast": FAST, "sparse": SPARSE}, now=day(2))
    finally:
        opened.engine.dispose()
    run(store_db, "label", "v1", "project=acme", "approved=true")
    run(store_db, "label", "fast", "project=acme", "approved=false")
    run(store_db, "note", "v1", "the one that worked")
    return store_db


def author(url: str) -> str:
    """How show and history name the author: the OS account, and on PostgreSQL the session's role."""
    return f"{USER} (role bfl)" if url.startswith("postgresql") else USER


def run(url: str, *args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(cli, ["--db", url, *args], input=stdin, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def fails(url: str, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--db", url, *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("bflsync: error: ") and result.stderr.count("\n") == 1
    return result


# -- show and history ------------------------------------------------------------------------


def test_show_json_has_the_labels_object_and_the_notes(store: str) -> None:
    shown = json.loads(run(store, "show", "v1", "--format", "json").stdout)
    assert shown["labels"] == {"approved": True, "project": "acme"}
    assert [(note["text"], note["written_by"]) for note in shown["notes"]] == [("the one that worked", USER)]
    assert json.loads(run(store, "show", "sparse", "--format", "json").stdout)["labels"] == {}


def test_show_text_lists_labels_and_the_last_five_notes(store: str) -> None:
    for number in range(1, 7):
        run(store, "note", "fast", f"note {number}")
    text = run(store, "show", "fast").stdout
    assert "labels:\n  approved = false\n  project = acme\n" in text
    assert "notes (newest last, 1 earlier in `bflsync history`):\n" in text
    assert "note 1" not in text
    assert all(f"{author(store)}: note {number}\n" in text for number in range(2, 7))


def test_history_marks_label_changes_and_notes_among_the_versions(store: str) -> None:
    run(store, "label", "v1", "project=globex", "--remove", "approved")
    entries = json.loads(run(store, "history", "v1", "--format", "json").stdout)
    assert [entry["kind"] for entry in entries] == ["version", "label", "label", "note", "label", "label"]
    labels = [
        {key: entry[key] for key in ("key", "change", "old", "new", "changed_by")}
        for entry in entries
        if entry["kind"] == "label"
    ]
    assert sorted(labels, key=lambda item: (item["change"], item["key"], str(item["old"]))) == [
        {"key": "approved", "change": "removed", "old": True, "new": None, "changed_by": USER},
        {"key": "approved", "change": "set", "old": None, "new": True, "changed_by": USER},
        {"key": "project", "change": "set", "old": None, "new": "acme", "changed_by": USER},
        {"key": "project", "change": "set", "old": "acme", "new": "globex", "changed_by": USER},
    ]
    text = run(store, "history", "v1").stdout
    assert "label set  " in text and f'  label.project: "acme" → "globex"  by {author(store)}\n' in text
    assert f"  label.approved: true → (missing)  by {author(store)}\n" in text
    assert f"  by {author(store)}: the one that worked\n" in text


def test_history_since_includes_label_changes_and_notes_of_every_finetune(store: str) -> None:
    entries = json.loads(run(store, "history", "--since", "2026-01-03", "--format", "json").stdout)
    assert sorted((entry["kind"], entry["finetune_id"]) for entry in entries) == [
        ("label", "fast"),
        ("label", "fast"),
        ("label", "v1"),
        ("label", "v1"),
        ("note", "v1"),
    ]


# -- compare ---------------------------------------------------------------------------------


def test_compare_only_changed_from_stdin_ids(store: str) -> None:
    result = run(store, "compare", "-", "--only-changed", "--format", "json", stdin="fast\n\n v1 \nfast\n")
    matrix = json.loads(result.stdout)
    assert [entry["column"] for entry in matrix["finetunes"]] == ["fast", "v1"]
    assert matrix["rows"] == [
        {
            "field": "finetune_comment",
            "changed": True,
            "values": {"fast": "portrait v2", "v1": "portrait v1"},
        },
        {"field": "learning_rate", "changed": True, "values": {"fast": 4e-05, "v1": 1e-05}},
        {"field": "label.approved", "changed": True, "values": {"fast": False, "v1": True}},
    ]


def test_compare_refuses_stdin_that_is_not_utf8_naming_the_line(store: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bflsync", "--db", store, "compare", "-"],
        input=b"fast\nv\xff1\n",
        capture_output=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout) == (2, b"")
    assert result.stderr == b"bflsync: error: line 2 of stdin is not valid UTF-8 text\n"


def test_compare_versions_and_chosen_columns_as_csv(store: str) -> None:
    result = run(
        store,
        "compare",
        "fast@1",
        "fast",
        "sparse",
        "--columns",
        "finetune_comment,extra.images,label.project,version",
        "--format",
        "csv",
    )
    assert list(csv.reader(io.StringIO(result.stdout))) == [
        ["field", "fast@1", "fast", "sparse"],
        ["finetune_comment", "draft", "portrait v2", ""],
        ["extra.images", "12", "12", ""],
        ["label.project", "acme", "acme", ""],
        ["version", "1", "2", "1"],
    ]


def test_compare_markdown_is_a_table_of_code_spans(store: str) -> None:
    lines = run(
        store, "compare", "v1", "sparse", "--only-changed", "--format", "markdown"
    ).stdout.splitlines()
    assert lines[:3] == [
        "| `field` | `v1` | `sparse` |",
        "| --- | --- | --- |",
        '| `finetune_comment` | `"portrait v1"` | `(missing)` |',
    ]
    assert '| `mode` | `"character"` | `"product"` |' in lines
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines)


def test_compare_table_lists_every_field(store: str) -> None:
    lines = run(store, "compare", "v1", "fast").stdout.splitlines()
    assert lines[0].split() == ["field", "v1", "fast"]
    assert [line.split()[0] for line in lines[1:]] == [
        "finetune_comment",
        "trigger_word",
        "mode",
        "finetune_type",
        "priority",
        "iterations",
        "lora_rank",
        "learning_rate",
        "captioning",
        "remote_timestamp",
        "extra.images",
        "label.approved",
        "label.project",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "nosuch"], "no finetune 'nosuch' in the store"),
        (["compare", "v1", "fast@9"], "fast@9: no such version"),
        (["compare", "-"], "compare needs at least one finetune id"),
        (["compare", "v1", "--columns", "a,,b"], "bad field"),
    ],
)
def test_compare_refuses_unknown_ids_and_bad_columns(store: str, args: list[str], message: str) -> None:
    assert message in fails(store, *args).stderr


@pytest.mark.parametrize(
    "args",
    [
        ["compare", "-"],
        ["compare", "v1", "-"],
        ["show", "v1\x00fast"],
        ["history", "v1\x00fast"],
        ["diff", "v1", "v1\x00fast"],
        ["label", "v1\x00fast", "k=v"],
        ["note", "v1\x00fast", "text"],
        ["show", "v1", "--source", "a\x00b"],
    ],
)
def test_an_id_holding_a_nul_is_unknown_on_both_engines(store: str, args: list[str]) -> None:
    """No stored id holds U+0000 (PostgreSQL text cannot): such an id is unknown, never exit 70."""
    result = CliRunner().invoke(cli, ["--db", store, *args], input="v1\x00fast\n")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("bflsync: error: no finetune ") and result.stderr.count("\n") == 1


# -- show --format request -------------------------------------------------------------------


def test_show_request_prints_the_body_and_names_what_was_left_out(store: str) -> None:
    result = run(
        store, "show", "fast", "--format", "request", "--set", "learning_rate=2e-5", "--set", "lora_rank=null"
    )
    assert json.loads(result.stdout) == {
        "finetune_comment": "portrait v2",
        "trigger_word": "TOK",
        "mode": "character",
        "iterations": 300,
        "learning_rate": 2e-05,
        "captioning": True,
        "finetune_type": "lora",
    }
    assert result.stderr == "left out, not inputs of POST /v1/finetune: extra, timestamp\n"


def test_show_request_of_a_sparse_record(store: str) -> None:
    result = run(store, "show", "sparse", "--format", "request")
    assert (json.loads(result.stdout), result.stderr) == ({"mode": "product"}, "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "v1", "--set", "mode=style"], "use it with --format request"),
        (["show", "v1", "--format", "request", "--set", "resolution=1"], "not an input of POST /v1/finetune"),
        (["show", "v1", "--format", "request", "--set", "iterations=lots"], "'lots' is not an integer"),
        (["show", "v1", "--format", "request", "--set", "file_data=x"], "add the base64-encoded ZIP"),
    ],
)
def test_show_request_refuses_bad_sets(store: str, args: list[str], message: str) -> None:
    assert message in fails(store, *args).stderr


def test_the_request_body_never_holds_a_stored_secret(db_path: Path) -> None:
    opened = open_store_for_write(locate_store(str(db_path)))
    try:
        write_sync(
            opened.engine, {"x": {"mode": "style", "webhook_secret": "hush", "file_data": "UEsD"}}, now=day(1)
        )
    finally:
        opened.engine.dispose()
    result = run(str(db_path), "show", "x", "--format", "request")
    assert json.loads(result.stdout) == {"mode": "style"}
    assert "hush" not in result.output and "UEsD" not in result.output
    assert SOURCE not in result.stdout


def test_show_request_refuses_a_set_value_that_is_not_utf8(store: str) -> None:
    """Such bytes arrive as surrogates; the body must not carry them out as invalid UTF-8 JSON."""
    argv = [sys.executable, "-m", "bflsync", "--db", store, "show", "v1", "--format", "request"]
    done = subprocess.run(
        [*argv, "--set", b"trigger_word=\xff"],
        capture_output=True,
        timeout=60,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    assert (done.returncode, done.stdout) == (2, b"")
    assert done.stderr == b"bflsync: error: --set trigger_word: the value is not valid UTF-8 text\n"
