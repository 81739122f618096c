"""PostgreSQL's ``search_tsv`` holds exactly the tokens SQLite's FTS5 index holds, and ``--text``
asked as a ``tsquery`` finds what FTS5 finds."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from storebuild import day, write_sync

from bflsync.cli import cli
from bflsync.mock.server import MockBFL, generate_finetunes
from bflsync.text import matching
from bflsync.text.tokens import details_tokens, tokens, tsquery_text, tsvector_text

KEY = "fulltext-test-key"
FINETUNES = {
    **generate_finetunes(120, seed=3),
    "odd": {
        "finetune_comment": "Crème brûlée—naïve CAFÉ ǅemo ß İstanbul 東京タワー 🥰x",
        "tags": ["it's", "a\\b"],
    },
}
WORDS = [
    "portrait",
    "PORTRAIT",
    "cafe",
    "café",
    "creme brulee",
    "naive",
    "port*",
    "東京タワー",
    "it's",
    "a\\b",
    "--",
    "x --",
    "ǆemo",
    "straße",
    "istanbul",
    "İstanbul",
    "brûlée-naïve",
    "🥰x",
    "lora style",
    "tok*",
]


def fts5_tokens(text: str) -> list[str]:
    connection = sqlite3.connect(":memory:")
    try:
        connection.execute(
            "CREATE VIRTUAL TABLE t USING fts5(body, tokenize='unicode61 remove_diacritics 2')"
        )
        connection.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
        connection.execute("INSERT INTO t (rowid, body) VALUES (1, ?)", (text,))
        return [term for (term,) in connection.execute("SELECT term FROM v ORDER BY offset")]
    finally:
        connection.close()


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40))
def test_tokens_are_fts5s_tokens(text: str) -> None:
    assert list(tokens(text)) == fts5_tokens(text)


def test_a_tsvector_keeps_every_position_and_quotes_its_lexemes() -> None:
    assert tsvector_text({"b": "it's a\\b it's", "a": ["x"], "n": 3}) == "'x':1 'it':2,6 's':3,7 'a':4 'b':5"
    assert tsvector_text({}) == ""


def test_a_token_postgresql_cannot_index_is_left_out_but_keeps_its_position() -> None:
    assert tsvector_text({"a": "x " + "y" * 3000 + " z"}) == "'x':1 'z':3"


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("portrait", "'portrait'"),
        ("Café lora*", "'cafe' & 'lora':*"),
        ("brûlée-naïve", "('brulee' <-> 'naive')"),
        ("it's*", "('it' <-> 's':*)"),
        ("-- x", "'x'"),
        ("--", None),
        ("a\\b", "('a' <-> 'b')"),
    ],
)
def test_tsquery_text_asks_what_the_fts5_query_asks(words: str, expected: str | None) -> None:
    assert tsquery_text(words) == expected


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve(FINETUNES, api_key=KEY) as server:
        yield server


def sync(store: str, mock: MockBFL) -> None:
    result = CliRunner().invoke(
        cli,
        ["--db", store, "sync", "--base-url", mock.base_url],
        env={"BFL_API_KEY": KEY},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output


def test_sqlite_indexes_the_tokens_postgresql_stores(db_path: Path, mock: MockBFL) -> None:
    sync(str(db_path), mock)
    connection = sqlite3.connect(db_path)
    try:
        connection.execute("CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, finetune_fts, 'instance')")
        indexed: dict[str, list[str]] = {}
        for finetune_id, term in connection.execute(
            "SELECT f.finetune_id, v.term FROM temp.v AS v JOIN finetune f ON f.id = v.doc ORDER BY v.doc, v.offset"
        ):
            indexed.setdefault(finetune_id, []).append(term)
    finally:
        connection.close()
    expected = {finetune_id: list(details_tokens(details)) for finetune_id, details in FINETUNES.items()}
    assert indexed == {finetune_id: terms for finetune_id, terms in expected.items() if terms}


def test_text_search_answers_the_same_on_both_engines(db_path: Path, pg_url: str, mock: MockBFL) -> None:
    sync(str(db_path), mock)
    sync(pg_url, mock)
    sqlite_answers = {}
    connection = sqlite3.connect(db_path)
    try:
        for words in WORDS:
            sqlite_answers[words] = sorted(
                finetune_id
                for (finetune_id,) in connection.execute(
                    "SELECT finetune_id FROM finetune WHERE id IN"
                    " (SELECT rowid FROM finetune_fts WHERE finetune_fts MATCH ?)",
                    (matching.fts5_query([matching.word_term(word) for word in matching.terms(words)]),),
                )
            )
    finally:
        connection.close()
    engine = sa.create_engine(pg_url)
    postgres_answers = {}
    try:
        with engine.connect() as pg:
            for words in WORDS:
                query = tsquery_text(words)
                postgres_answers[words] = (
                    []
                    if query is None
                    else sorted(
                        pg.execute(
                            sa.text(
                                "SELECT finetune_id FROM finetune WHERE search_tsv @@ CAST(:q AS tsquery)"
                            ),
                            {"q": query},
                        ).scalars()
                    )
                )
    finally:
        engine.dispose()
    assert postgres_answers == sqlite_answers
    assert sum(map(bool, sqlite_answers.values())) >= 10


def test_positions_past_postgresqls_last_one_share_it_and_a_lexeme_keeps_256() -> None:
    many = tsvector_text({"a": " ".join(f"w{index}" for index in range(16_390))})
    assert many.endswith(
        "'w16382':16383 'w16383':16383 'w16384':16383 'w16385':16383 'w16386':16383"
        " 'w16387':16383 'w16388':16383 'w16389':16383"
    )
    repeated = tsvector_text({"a": "w " * 300})
    assert repeated == "'w':" + ",".join(str(position) for position in range(1, 257))


@pytest.mark.parametrize("words", ["x" * 2048, "ohwx " + "é" * 1100, "ohwx*" + " " + "y" * 5000 + "*"])
def test_a_word_longer_than_postgresql_indexes_finds_nothing_with_exit_0(
    any_store: tuple[str, Engine], words: str
) -> None:
    """PostgreSQL cannot hold a token over 2,047 bytes, so none is stored: such a word matches nothing there."""
    target, engine = any_store
    write_sync(engine, {"short": {"finetune_comment": "ohwx portrait"}}, now=day(1))
    result = CliRunner().invoke(cli, ["--db", target, "query", "--text", words, "--format", "ids"])
    assert (result.exit_code, result.output) == (0, ""), result.output


def test_text_of_twenty_thousand_words_is_answered_on_both_engines(any_store: tuple[str, Engine]) -> None:
    target, engine = any_store
    write_sync(engine, {"short": {"finetune_comment": "ohwx portrait"}}, now=day(1))
    for words in (" ".join(f"w{number}" for number in range(20_000)), "ohwx portrait " * 20_000):
        result = CliRunner().invoke(cli, ["--db", target, "query", "--text", words, "--format", "ids"])
        assert result.exit_code == 0, result.output
    assert result.output == "short\n"


def test_a_lone_combining_mark_is_stored_and_searched_alike_on_both_engines(
    any_store: tuple[str, Engine],
) -> None:
    """FTS5 with remove_diacritics makes a lone accent an empty token, which no tsvector or tsquery can hold."""
    target, engine = any_store
    payloads = {"comb": {"finetune_comment": "a \u0301 b"}, "plain": {"finetune_comment": "a b"}}
    write_sync(engine, payloads, now=day(1))
    for words, expected in (
        ("a", "comb\nplain\n"),
        ("a \u0301 b", "comb\nplain\n"),
        ("\u0301", ""),
        ("\u0301*", ""),
    ):
        result = CliRunner().invoke(cli, ["--db", target, "query", "--text", words, "--format", "ids"])
        assert (result.exit_code, result.output) == (0, expected), words


def test_an_empty_token_is_left_out_of_the_tsvector_keeping_positions() -> None:
    assert tsvector_text({"a": "x \u0301 y"}) == "'x':1 'y':3"
    assert tsquery_text("x \u0301") == "'x'"
    assert tsquery_text("\u0301") is None
