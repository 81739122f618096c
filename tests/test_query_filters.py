"""The filter language against answers computed in plain Python over the same payloads."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from filter_reference import number, value_matches
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from storebuild import day, file_digest, write_sync

from bflsync.cli import cli
from bflsync.errors import InputError
from bflsync.extract import as_float, extract_fields
from bflsync.read import filters, search
from bflsync.read.reader import Reader, SqliteReader, open_reader
from bflsync.text import matching

PAYLOADS: dict[str, dict[str, Any]] = {
    "num": {
        "mode": "character",
        "learning_rate": 1e-5,
        "iterations": 300,
        "captioning": True,
        "finetune_comment": "Portrait of Zoë",
        "extra": {"images": 12, "res": "1024"},
        "steps": 100,
    },
    "numstr": {
        "mode": "style",
        "learning_rate": "2e-5",
        "iterations": "300",
        "captioning": "false",
        "finetune_comment": "100% real_deal",
        "extra": {"images": "7"},
        "steps": "250",
    },
    "odd": {
        "mode": "Character",
        "learning_rate": "fast",
        "iterations": 300.5,
        "weird key": 1,
        "finetune_comment": "1005 realXdeal",
        "steps": "many",
        "flag": True,
        "extra": {"images": None},
    },
    "nulls": {"mode": None, "learning_rate": None, "flag": False, "steps": None, "extra": "flat"},
    "bare": {},
    "unicode": {
        "mode": "ÉTÉ",
        "trigger_word": "ohwx",
        "finetune_comment": "straße",
        "ünï": "yes",
        "weird key": "1",
        "steps": 99.5,
        "flag": "true",
    },
    "quotes": {"mode": 'say "hi"; DROP TABLE finetune; --', "finetune_comment": "a/*b*/c", "steps": -3},
}


def extracted(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda details: extract_fields(details)[name]


def nested(details: Any, *path: str) -> Any:
    for key in path:
        details = details.get(key) if isinstance(details, dict) else None
    return details


mode, comment, rate = extracted("mode"), extracted("finetune_comment"), extracted("learning_rate")

CASES: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ("mode=character", lambda d: mode(d) == "character"),
    ("mode~CHAR", lambda d: mode(d) is not None and "char" in mode(d).casefold()),
    ("mode~été", lambda d: mode(d) is not None and "été" in mode(d).casefold()),
    ("mode=null", lambda d: mode(d) is None),
    ("mode>B", lambda d: mode(d) is not None and mode(d) > "B"),
    (
        'mode="say \\"hi\\"; DROP TABLE finetune; --"',
        lambda d: mode(d) == 'say "hi"; DROP TABLE finetune; --',
    ),
    ("finetune_comment~%", lambda d: "%" in (comment(d) or "")),
    ("finetune_comment~_", lambda d: "_" in (comment(d) or "")),
    ("finetune_comment~STRASSE", lambda d: "strasse" in (comment(d) or "").casefold()),
    ("finetune_comment=a/*b*/c", lambda d: comment(d) == "a/*b*/c"),
    ("trigger_word ~ OHW", lambda d: "ohw" in (extracted("trigger_word")(d) or "")),
    ("learning_rate>=1e-5", lambda d: rate(d) is not None and rate(d) >= 1e-5),
    ("learning_rate<1", lambda d: rate(d) is not None and rate(d) < 1),
    ("learning_rate!=1e-5", lambda d: rate(d) != 1e-5),
    ("iterations=300", lambda d: extracted("iterations")(d) == 300),
    ("captioning=false", lambda d: extracted("captioning")(d) is False),
    ("steps>99", lambda d: (n := number(d.get("steps"))) is not None and n > 99),
    ("steps<0", lambda d: (n := number(d.get("steps"))) is not None and n < 0),
    ("steps!=100", lambda d: number(d.get("steps")) != 100),
    ("steps=null", lambda d: d.get("steps") is None),
    ("steps!=null", lambda d: d.get("steps") is not None),
    ("steps~MAN", lambda d: isinstance(d.get("steps"), str) and "man" in d["steps"].casefold()),
    ("extra.images>=7", lambda d: (n := number(nested(d, "extra", "images"))) is not None and n >= 7),
    ("extra.images=null", lambda d: nested(d, "extra", "images") is None),
    ("extra.res=1024", lambda d: number(nested(d, "extra", "res")) == 1024),
    ("`weird key`=1", lambda d: number(d.get("weird key")) == 1),
    ('`weird key`="1"', lambda d: d.get("weird key") == "1"),
    ("flag=true", lambda d: d.get("flag") is True),
    ("flag=false", lambda d: d.get("flag") is False),
    ('flag="true"', lambda d: d.get("flag") == "true"),
    ("flag!=true", lambda d: d.get("flag") is not True),
    ("ünï=yes", lambda d: d.get("ünï") == "yes"),
    ("no_such_key=null", lambda d: True),
    ("no_such_key!=null", lambda d: False),
    ("`mode`=Character", lambda d: d.get("mode") == "Character"),
    ("version=1", lambda d: True),
    ("source=api.us1.bfl.ai", lambda d: True),
    ("first_seen_at>=2026-01-01", lambda d: True),
    ("first_seen_at>2026-01-01T00:00:00+00:00", lambda d: False),
]


@pytest.fixture
def filter_store(any_store: tuple[str, Engine]) -> str:
    """The payloads stored on each engine; the ``--db`` value to read them."""
    target, engine = any_store
    write_sync(engine, PAYLOADS, now=day(1))
    return target


@pytest.fixture
def reader(filter_store: str) -> Iterator[Reader]:
    with open_reader(filter_store) as reader:
        yield reader


def matching_ids(connection: Reader, *texts: str) -> list[str]:
    parsed = [filters.parse_filter(text) for text in texts]
    return [record.finetune_id for record in search.search(connection, filters.Query(filters=parsed)).records]


@pytest.mark.parametrize(("text", "predicate"), CASES, ids=[text for text, _ in CASES])
def test_filter_selects_exactly_the_payloads_the_python_predicate_selects(
    reader: Reader, text: str, predicate: Callable[[dict[str, Any]], bool]
) -> None:
    expected = sorted(finetune_id for finetune_id, details in PAYLOADS.items() if predicate(details))
    assert matching_ids(reader, text) == expected


def test_several_filters_are_anded(reader: Reader) -> None:
    assert matching_ids(reader, "iterations=300", "learning_rate>1.5e-5") == ["numstr"]


def test_parse_filter_types_each_kind_of_value() -> None:
    parsed = [
        filters.parse_filter(text)
        for text in ("a=1e-5", "a=300", "a=true", "a=null", 'a="300"', "a= two words ", 'a="x\\"y"')
    ]
    assert [(item.value, item.text) for item in parsed] == [
        (1e-5, "1e-5"),
        (300, "300"),
        (True, "true"),
        (None, "null"),
        ("300", "300"),
        ("two words", "two words"),
        ('x"y', 'x"y'),
    ]


@pytest.mark.parametrize("digits", ["\u0663", "\uff13\uff10\uff10", "-\u0661e\u0662"])
def test_non_ascii_digits_in_a_filter_value_are_text_not_a_number(digits: str) -> None:
    parsed = filters.parse_filter(f"steps={digits}")
    assert (parsed.value, parsed.text) == (digits, digits)


def test_a_number_column_refuses_non_ascii_digits(reader: Reader) -> None:
    with pytest.raises(InputError, match="not a number"):
        matching_ids(reader, "iterations=\uff13\uff10\uff10")


def test_parse_filter_reads_dotted_and_backticked_paths() -> None:
    parsed = filters.parse_filter("`odd.key`.`back``tick`.plain<=2")
    assert (parsed.field, parsed.op) == (filters.FieldRef(("odd.key", "back`tick", "plain"), None), "<=")
    assert parsed.field.name == "`odd.key`.`back``tick`.plain"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mode", "expected an operator"),
        ("=x", "expected a field name at position 1"),
        ("mode=", "missing value"),
        ("mode==x y=", None),
        ('mode="open', "never closed"),
        ('mode="a"b', "unexpected 'b'"),
        ("`open=1", "never closed"),
        ('`a"b`=1', "cannot be queried"),
        ("extra.=1", "expected a field name at position 7"),
        ("iterations=abc", "not a number"),
        ("captioning=1", "true or false"),
        ("first_seen_at>yesterday", "ISO 8601"),
        ("steps<null", "only be compared with = or !="),
        ("mode=true", "holds text"),
    ],
)
def test_bad_filters_raise_input_errors_naming_the_problem(
    reader: Reader, text: str, message: str | None
) -> None:
    if message is None:
        # '==' is not an operator: the value is the text '=x y='; a valid, empty search.
        assert matching_ids(reader, text) == []
        return
    with pytest.raises(InputError, match=message):
        matching_ids(reader, text)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("ohwx", '"ohwx"'),
        ('say "hi" OR NEAR(x', '"say" """hi""" "OR" "NEAR(x"'),
        ("zo*", '"zo"*'),
        ("*", '"*"'),
    ],
)
def test_fts_query_quotes_every_word(words: str, expected: str) -> None:
    assert matching.fts5_query(matching.plan(words).words) == expected


# -- property tests ---------------------------------------------------------------------------

JSON_FIELDS = {
    "steps": ("steps",),
    "extra.images": ("extra", "images"),
    "`weird key`": ("weird key",),
    "flag": ("flag",),
    "ünï": ("ünï",),
    "`no such`": ("no such",),
}
NASTY = st.lists(st.sampled_from([*"ab_%' \";-/*\\é\x00Z1.e", "--", "/*", "ß", "😀"]), max_size=12).map(
    "".join
)


@st.composite
def json_filters(draw: st.DrawFn) -> tuple[str, tuple[str, ...], str, Any]:
    """A well-formed filter on a details key, with the value the spec gives its text."""
    field = draw(st.sampled_from(sorted(JSON_FIELDS)))
    op = draw(st.sampled_from(filters.OPERATORS))
    kind = draw(st.sampled_from(["number", "quoted", "bare", "literal"]))
    if kind == "number":
        value: Any = draw(st.one_of(st.integers(-500, 500), st.floats(-1e3, 1e3, allow_nan=False)))
        token = repr(value)
    elif kind == "quoted":
        value = draw(NASTY)
        token = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    elif kind == "literal":
        token = draw(st.sampled_from(["null", "true", "false"]))
        value = {"null": None, "true": True, "false": False}[token]
    else:
        value = draw(NASTY.map(str.strip))
        if (
            not value
            or value.startswith('"')
            or value in ("null", "true", "false")
            or as_float(value) is not None
        ):
            value = "x" + value
        token = value
    return f"{field}{op}{token}", JSON_FIELDS[field], op, (token if op == "~" and kind != "quoted" else value)


def expected_match(details: Mapping[str, Any], path: tuple[str, ...], op: str, value: Any) -> bool:
    """The spec's semantics for a details key, written independently of bflsync.read.search."""
    return value_matches(nested(details, *path), op, value)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=json_filters())
def test_random_filters_on_details_keys_match_the_reference(
    reader: Reader, case: tuple[str, tuple[str, ...], str, Any]
) -> None:
    text, path, op, value = case
    if op not in ("=", "!=", "~") and (value is None or isinstance(value, bool)):
        with pytest.raises(InputError):
            matching_ids(reader, text)
        return
    if isinstance(value, float) and not math.isfinite(value):
        return
    expected = sorted(fid for fid, details in PAYLOADS.items() if expected_match(details, path, op, value))
    assert matching_ids(reader, text) == expected


ANY_TEXT = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda field, op, value: field + op + value,
        st.sampled_from(["mode", "steps", "extra.images", "`weird key`", "`", "a.b.", "learning_rate", "ü"]),
        st.sampled_from([*filters.OPERATORS, "==", "", " ~ ", "<>"]),
        st.lists(st.sampled_from([*"\"'`;-/*\\%_\x00 é1e.", "--", "/*", "null"]), max_size=15).map("".join),
    ),
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ANY_TEXT, words=st.one_of(st.none(), st.text(max_size=20)))
def test_arbitrary_filter_text_gives_an_input_error_or_a_result(
    reader: Reader, text: str, words: str | None
) -> None:
    try:
        question = filters.Query(filters=[filters.parse_filter(text)], text=words, include_deleted=True)
        records = search.search(reader, question).records
    except InputError:
        return
    assert {record.finetune_id for record in records} <= set(PAYLOADS)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=ANY_TEXT)
def test_arbitrary_filter_text_through_the_cli_exits_0_or_2_with_one_line(
    filter_store: str, text: str
) -> None:
    result = CliRunner().invoke(cli, ["--db", filter_store, "query", "--format", "json", "--", text])
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 0:
        assert {item["finetune_id"] for item in json.loads(result.stdout)} <= set(PAYLOADS)
    else:
        assert result.stderr.startswith("bflsync: error: ")
        assert result.stderr.count("\n") == 1


def test_random_filters_leave_the_database_file_byte_identical(store_engine: Engine, db_path: Path) -> None:
    write_sync(store_engine, PAYLOADS, now=day(1))
    store_engine.dispose()
    before = file_digest(db_path)

    @settings(max_examples=300, deadline=None)
    @given(text=ANY_TEXT)
    def run(text: str) -> None:
        try:
            with open_reader(str(db_path)) as reader:
                search.search(reader, filters.Query(filters=[filters.parse_filter(text)]))
        except InputError:
            pass

    run()
    assert file_digest(db_path) == before


def test_ids_output_selects_only_the_id_and_a_limit_reads_the_id_index(
    store_engine: Engine, db_path: Path
) -> None:
    write_sync(store_engine, PAYLOADS, now=day(1))
    with open_reader(str(db_path)) as reader:
        assert isinstance(reader, SqliteReader)
        statement = search.search_sql(reader, filters.Query(limit=10), columns=("finetune_id",))
        assert statement.text.startswith('SELECT f."finetune_id" FROM finetune AS f WHERE')
        plan = [
            row[-1]
            for row in reader.connection.execute("EXPLAIN QUERY PLAN " + statement.text, statement.params)
        ]
    assert plan[0] == "SCAN f USING INDEX ix_finetune_finetune_id"
    assert "USE TEMP B-TREE FOR ORDER BY" not in plan


DOTTED_CAPITAL_I = {
    "capital": "İSTANBUL",
    "plain": "istanbul",
    "folded": "i\u0307stanbul",
    "dotless": "\u0131stanbul",
}


@pytest.mark.parametrize(
    "needle", ["İ", "i\u0307", "istanbul", "İSTANBUL", "i", "\u0307", "ISTANBUL", "\u0131"]
)
def test_tilde_folds_a_dotted_capital_i_as_python_does_on_both_engines(
    any_store: tuple[str, Engine], needle: str
) -> None:
    """U+0130 lowercases to one letter in PostgreSQL's locale but casefolds to two in Python."""
    target, engine = any_store
    write_sync(
        engine, {key: {"finetune_comment": text} for key, text in DOTTED_CAPITAL_I.items()}, now=day(1)
    )
    expected = sorted(key for key, text in DOTTED_CAPITAL_I.items() if value_matches(text, "~", needle))
    with open_reader(target) as reader:
        assert matching_ids(reader, f"finetune_comment~{needle}") == expected
