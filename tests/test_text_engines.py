"""``--text`` gives the same answers on SQLite and PostgreSQL: one store per engine, the same questions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from storebuild import day, write_sync

from bflsync.cli import cli
from bflsync.store import access

RECORDS: dict[str, dict[str, Any]] = {
    "jp-landscape": {"finetune_comment": "日本の風景写真、桜と富士山", "mode": "style"},
    "jp-portrait": {"finetune_comment": "日本人のポートレート", "trigger_word": "ohwx"},
    "jp-mixed-case": {"finetune_comment": "写真ABCの作品 Tokyo"},
    "zh-product": {"finetune_comment": "产品照片 sneaker", "mode": "product"},
    "ko": {"finetune_comment": "한국어 설명", "mode": "general"},
    "th": {"finetune_comment": "ภาพถ่ายทิวทัศน์"},
    "latin": {"finetune_comment": "Zoë's portrait, red fox", "extra": {"tag": "Forest"}},
    "punctuation": {"finetune_comment": "state-of-the-art 100%_done (v2.1) under_score"},
    "c1": {"finetune_comment": "alpha\x85beta gamma\x9fdelta 日本\x85語"},
    "nul": {"finetune_comment": "nul\x00byte 写\x00真集"},
    "split-values": {"a": "写真", "b": "集団"},
    "like-characters": {"finetune_comment": "写%真集 写_真 写\\真 100%"},
    "key-only": {"日本": "value without the needle"},
}

QUESTIONS = [
    ["portrait"],
    ["PORTRAIT"],
    ["Zoe"],
    ["port*"],
    ["po*"],
    ["fox red"],
    ["state-of-the-art"],
    ["100%_done"],
    ["under_score"],
    ["v2.1"],
    ["%"],
    ["_"],
    ["日"],
    ["日本"],
    ["風景写"],
    ["日本人の"],
    ["写真ABC"],
    ["写真abc"],
    ["真A"],
    ["真a"],
    ["桜*"],
    ["产品 sneaker"],
    ["产品 fox"],
    ["국어"],
    ["ทิวทัศน์"],
    ["ภา"],
    ["日本 portrait"],
    ["富士山", "日本"],
    ["beta"],
    ["alpha\x85beta"],
    ["gamma\x9fdelta"],
    ["delta\x85gamma"],
    ["beta\x9falpha"],
    ["日本\x85語"],
    ["本語"],
    ["byte"],
    ["写真集"],
    ["真集"],
    ["写真集団"],
    ["写%真"],
    ["写_真"],
    ["写\\真"],
    ["写x真"],
    ["写%"],
    ["%真集"],
    ["真 集"],
    ["ohwx*"],
    ['"quoted"'],
    ["OR"],
    ["--"],
]


@pytest.fixture
def engines(db_path: Path, pg_url: str) -> Iterator[dict[str, str]]:
    """The same finetunes stored on both engines; the ``--db`` value of each."""
    locations = {"sqlite": str(db_path), "postgresql": pg_url}
    for location in locations.values():
        opened = access.open_store_for_write(access.locate_store(location))
        write_sync(opened.engine, RECORDS, now=day(1))
        opened.engine.dispose()
    yield locations


def text_ids(location: str, words: list[str]) -> set[str]:
    args = ["--db", location, "query", "--format", "ids", "--limit", "0"]
    for word in words:
        args.append(f"--text={word}")
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return set(result.stdout.split())


@pytest.mark.parametrize("words", QUESTIONS, ids=[repr(words) for words in QUESTIONS])
def test_both_engines_answer_text_questions_alike(engines: dict[str, str], words: list[str]) -> None:
    assert text_ids(engines["sqlite"], words) == text_ids(engines["postgresql"], words)


def test_both_engines_find_unspaced_substrings_of_every_length(engines: dict[str, str]) -> None:
    expected = {
        ("日",): {"jp-landscape", "jp-portrait", "c1"},  # keys are not searched
        ("日本",): {"jp-landscape", "jp-portrait", "c1"},
        ("風景写",): {"jp-landscape"},
        ("写真abc",): {"jp-mixed-case"},
        ("本語",): set(),
        ("写真集",): set(),
    }
    for words, ids in expected.items():
        for location in engines.values():
            assert text_ids(location, list(words)) == ids, (words, location)


_ALPHABET = st.sampled_from(list("ab AZé日本写真の集ภา-_%*\\\x85\x00,"))
_TEXT = st.text(_ALPHABET, min_size=0, max_size=12)


@pytest.fixture
def empty_stores(db_path: Path, pg_url: str) -> Iterator[dict[str, tuple[str, Engine]]]:
    """An empty store on each engine, built once for a whole property test: its ``--db`` and an engine."""
    locations = {"sqlite": str(db_path), "postgresql": pg_url}
    opened = {
        name: access.open_store_for_write(access.locate_store(where)) for name, where in locations.items()
    }
    yield {name: (locations[name], item.engine) for name, item in opened.items()}
    for item in opened.values():
        item.engine.dispose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(_TEXT, min_size=1, max_size=3),
    needle=_TEXT,
    cut=st.tuples(st.integers(0, 12), st.integers(0, 12)),
)
def test_both_engines_agree_on_generated_text(
    empty_stores: dict[str, tuple[str, Engine]], values: list[str], needle: str, cut: tuple[int, int]
) -> None:
    joined = " ".join(values)
    # Half the time the question is a piece of the stored text, so that matches are common.
    question = joined[min(cut) : max(cut)] if cut[0] % 2 else needle
    if not question.replace("\x85", " ").replace("\x00", " ").strip():
        return
    payload = {"generated": {f"v{index}": value for index, value in enumerate(values)}}
    answers = {}
    for name, (location, engine) in empty_stores.items():
        write_sync(engine, payload, now=day(2))
        answers[name] = text_ids(location, [question])
    assert answers["sqlite"] == answers["postgresql"], (values, question)
