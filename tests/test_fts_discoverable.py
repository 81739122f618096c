"""0007_fts_discoverable: Datasette and sqlite-utils find the index; --text finds substrings in unspaced scripts."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner
from datasette.utils import detect_fts
from sqlalchemy.engine import Engine
from storebuild import day, write_sync

from bflsync.cli import cli
from bflsync.store.access import downgrade_store, locate_store, upgrade_store
from bflsync.text import matching

RECORDS = {
    "jp-landscape": {"finetune_comment": "日本の風景写真、桜と富士山", "mode": "style"},
    "jp-portrait": {"finetune_comment": "日本人のポートレート", "trigger_word": "ohwx"},
    "zh-product": {"finetune_comment": "产品照片 sneaker", "mode": "product"},
    "ko": {"finetune_comment": "한국어 설명", "mode": "general"},
    "latin": {"finetune_comment": "Zoë's portrait, red fox", "extra": {"tag": "Forest"}},
    "key-only": {"日本": "value without the needle"},
}


@pytest.fixture
def store(store_engine: Engine, db_path: Path) -> Path:
    write_sync(store_engine, RECORDS, now=day(1))
    store_engine.dispose()
    return db_path


def text_ids(store: Path, *words: str) -> list[str]:
    args = ["--db", str(store), "query", "--format", "ids"]
    for word in words:
        args += ["--text", word]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout.split()


def test_sqlite_utils_and_datasette_detect_the_index(store: Path) -> None:
    database = sqlite_utils.Database(store)
    assert database["finetune"].detect_fts() == "finetune_fts"  # type: ignore[union-attr]
    found = database["finetune"].search("fox", columns=["finetune_id"])  # type: ignore[union-attr]
    assert [row["finetune_id"] for row in found] == ["latin"]
    database.close()
    with sqlite3.connect(store) as connection:
        assert detect_fts(connection, "finetune") == "finetune_fts"
    connection.close()


def test_sqlite_utils_search_command_works_on_the_store(store: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sqlite_utils",
            "search",
            str(store),
            "finetune",
            "forest",
            "-c",
            "finetune_id",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [{"finetune_id": "latin"}]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["日本"], ["jp-landscape", "jp-portrait"]),  # two characters: too short for trigrams, scanned
        (["風景写"], ["jp-landscape"]),  # three: the trigram index
        (["富士山"], ["jp-landscape"]),
        (["日本人の"], ["jp-portrait"]),
        (["产品"], ["zh-product"]),
        (["产品 sneaker"], ["zh-product"]),  # a word and a substring, ANDed
        (["产品 fox"], []),
        (["국어"], ["ko"]),
        (["zoe"], ["latin"]),  # the word index still folds diacritics
        (["port*"], ["latin"]),
        (["富士山 日本"], ["jp-landscape"]),
        (["桜*"], ["jp-landscape"]),
    ],
)
def test_text_finds_substrings_in_scripts_without_spaces(
    store: Path, words: list[str], expected: list[str]
) -> None:
    assert sorted(text_ids(store, *words)) == expected


def test_keys_are_not_searched_only_values(store: Path) -> None:
    assert "key-only" not in text_ids(store, "日本")


def test_triggers_keep_both_indexes_current_and_skip_unparsable_details(
    store_engine: Engine, db_path: Path
) -> None:
    write_sync(
        store_engine, {"a": {"c": "東京の夜景"}, "nan": {"x": float("nan"), "c": "東京の夜景"}}, now=day(1)
    )
    write_sync(
        store_engine, {"a": {"c": "大阪の夜景"}, "nan": {"x": float("nan"), "c": "東京の夜景"}}, now=day(2)
    )
    store_engine.dispose()
    assert text_ids(db_path, "大阪の") == ["a"]
    assert text_ids(db_path, "東京の") == []
    assert text_ids(db_path, "東京") == []  # scanned, but the NaN record's details are not JSON to SQLite
    with sqlite3.connect(db_path) as connection:
        connection.execute("DELETE FROM finetune_version")
        connection.execute("DELETE FROM finetune")
    connection.close()
    assert text_ids(db_path, "大阪の") == []


def test_downgrade_to_0002_and_back_rebuilds_both_indexes(store: Path) -> None:
    location = locate_store(str(store))
    downgrade_store(location, revision="0002_fts")
    with sqlite3.connect(store) as connection:
        names = {name for (name,) in connection.execute("SELECT name FROM sqlite_master")}
        assert "finetune_fts_trigram" not in names
        rows = connection.execute("SELECT rowid FROM finetune_fts WHERE finetune_fts MATCH 'fox'").fetchall()
        assert rows == [(5,)]
    connection.close()
    upgrade_store(location, revision="head").engine.dispose()
    assert text_ids(store, "風景写") == ["jp-landscape"]
    assert text_ids(store, "fox") == ["latin"]


@pytest.mark.parametrize(
    ("text", "words", "trigrams", "substrings"),
    [
        ("日本", [], [], ["日本"]),
        ("日本の風景 fox*", [("fox", True)], ["日本の風景"], []),
        ('風"景"', [], ['風"景"'], []),
        ("カタカナ ひら", [], ["カタカナ"], ["ひら"]),
        ("ไทย", [], ["ไทย"], []),
        ("a\x85b 日\x9f本", [("a", False), ("b", False)], [], ["日", "本"]),
    ],
)
def test_plan_sends_each_word_where_it_can_be_found(
    text: str, words: list[tuple[str, bool]], trigrams: list[str], substrings: list[str]
) -> None:
    assert matching.plan(text) == matching.TextPlan(words=words, trigrams=trigrams, substrings=substrings)
