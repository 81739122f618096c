"""Searches: the filter language's intermediate form rendered as SQL for SQLite and PostgreSQL.

:mod:`bflsync.read.filters` parses and types the user's filters into :class:`~bflsync.read.filters.Predicate`
values; this module renders them, with ``--text``, ``--sort``, ``--as-of`` and the columns an
output needs, into one statement per dialect and runs it through a
:class:`~bflsync.read.reader.Reader`. Every value the user typed (filter values, the ``~`` needle,
JSON key paths, ``--text`` words) is a bound parameter in both dialects.

Where the engines differ, the SQL is written so that they answer the same:

* details keys: SQLite's ``json_extract``/``json_type`` on the canonical JSON text;
  PostgreSQL's ``jsonb`` operators on ``details_jsonb`` when the store has that column (else
  on ``CAST(details AS jsonb)``), equality through ``@>`` so a GIN index serves it;
* numbers in text: Python's own reading (``bflsync_number``) on SQLite, the same grammar as
  a regular expression with range guards on PostgreSQL;
* ``~``: Python's ``casefold`` on SQLite (ASCII text takes SQLite's ``lower`` on the way);
  on PostgreSQL ``lower`` in the database's (UTF-8) locale plus the full case foldings that
  differ from lowercase (``ß`` → ``ss``, ``ﬁ`` → ``fi``, …);
* text comparisons and orderings use code-point order (``COLLATE "C"`` on PostgreSQL,
  SQLite's default);
* ``--text``: one plan (:mod:`bflsync.text.matching`): on SQLite the FTS5 word and trigram
  indexes; on PostgreSQL ``search_tsv``, a ``tsvector`` of FTS5's own tokens, and
  ``search_text``, the trigram index's text folded as it folds, for substrings.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple

from bflsync.columns import COLUMN_KINDS, Kind
from bflsync.errors import DetailsNotJsonError, FilterError, InputError
from bflsync.extract import EXTRACTED_FIELDS, as_bool, as_float, as_int, as_text, extract_fields
from bflsync.read.filters import FieldRef, Predicate, Query, Sort, Test, predicate
from bflsync.read.label_reads import label_value_sql, labels_object_sql
from bflsync.read.reader import Reader, SqliteReader
from bflsync.read.records import (
    ALL_COLUMNS,
    DETAILS,
    LABELS,
    FinetuneRecord,
    decode_details,
    decode_value,
    record_index,
)
from bflsync.read.sqltext import Param, Sql, join, sql
from bflsync.text import matching
from bflsync.text.casefold import fold_tables, lowercase_expansions
from bflsync.text.tokens import trigram_fold, tsquery_of_terms


class FacetCount(NamedTuple):
    value: Any
    finetunes: int
    """How many matching finetunes hold ``value``."""


class Found(NamedTuple):
    """What a search found, and the finetunes it had to set aside."""

    records: list[FinetuneRecord]
    unreadable: tuple[str, ...] = ()
    """Finetunes whose stored details the database cannot read as JSON (NaN from another tool):
    no details-key filter, sort or count can match them."""


def search(reader: Reader, query: Query, *, columns: Sequence[str] = ALL_COLUMNS) -> Found:
    """The finetunes matching ``query``, sorted and limited as it says, with only ``columns`` read."""
    wanted = [name for name in ALL_COLUMNS if name in columns]
    statement = _search_statement(query, wanted)
    rows, unreadable = _run(reader, query.as_of, statement)
    index = record_index(wanted)
    return Found([FinetuneRecord(row, index) for row in rows], unreadable)


def search_ids(reader: Reader, query: Query) -> tuple[list[str], tuple[str, ...]]:
    """The ids of the finetunes matching ``query``, in its order, and those set aside (see :class:`Found`).

    What ``--format ids`` prints: the statement selects the id alone, and no record is built per row.
    """
    rows, unreadable = _run(reader, query.as_of, _search_statement(query, ["finetune_id"]))
    return [row[0] for row in rows], unreadable


def search_sql(reader: Reader, query: Query, *, columns: Sequence[str] = ALL_COLUMNS) -> Sql:
    """The statement :func:`search` runs (for benchmarks and ``EXPLAIN``)."""
    wanted = [name for name in ALL_COLUMNS if name in columns]
    return _search_statement(query, wanted)(renderer_for(reader, as_of=query.as_of))


def _search_statement(query: Query, wanted: Sequence[str]) -> Callable[[Renderer], Sql]:
    _refuse_sightings_as_of(query, [query.sort.field] if query.sort is not None else [])
    predicates = [predicate(item) for item in query.filters]

    def statement(renderer: Renderer) -> Sql:
        relation = renderer.relation()
        order = [*(renderer.sort_keys(query.sort) if query.sort is not None else []), *renderer.tie_break()]
        limit = sql(" LIMIT {}", Param(query.limit)) if query.limit is not None else Sql("")
        return sql(
            "SELECT {} FROM {} AS f WHERE {} ORDER BY {}{}",
            ", ".join(renderer.selected(name) for name in wanted),
            relation,
            renderer.where(predicates, query),
            join(", ", order),
            limit,
        )

    return statement


def facet_counts(
    reader: Reader, fields: Sequence[FieldRef], query: Query
) -> tuple[dict[str, list[FacetCount]], tuple[str, ...]]:
    """Per field, how many matching finetunes hold each value, most common first.

    Details keys are grouped by their JSON text, so ``"300"`` and ``300`` stay apart and
    objects and arrays count as values too. Missing and null both count as ``None``.
    Also returns the finetunes set aside as in :attr:`Found.unreadable`.
    """
    _refuse_sightings_as_of(query, fields)
    predicates = [predicate(item) for item in query.filters]
    counts: dict[str, list[FacetCount]] = {}
    unreadable: set[str] = set()
    for field in fields:

        def statement(renderer: Renderer, field: FieldRef = field) -> Sql:
            return sql(
                "SELECT {} AS value, count(*) AS n FROM {} AS f WHERE {} GROUP BY 1 ORDER BY 2 DESC, 1 NULLS FIRST",
                renderer.facet_value(field),
                renderer.relation(),
                renderer.where(predicates, query),
            )

        rows, skipped = _run(reader, query.as_of, statement)
        unreadable.update(skipped)
        counts[field.name] = [FacetCount(_facet_value(field, value), count) for value, count in rows]
    return counts, tuple(sorted(unreadable))


def _facet_value(field: FieldRef, value: Any) -> Any:
    if field.column is not None:
        return decode_value(COLUMN_KINDS[field.column], value)
    return None if value is None else decode_details(value)[0]


def _run(
    reader: Reader, as_of: datetime | None, statement: Callable[[Renderer], Sql]
) -> tuple[list[tuple[Any, ...]], tuple[str, ...]]:
    """Run a statement; if some details are not JSON to the database, again without them, naming them."""
    built = statement(renderer_for(reader, as_of=as_of))
    try:
        return reader.rows(built.text, built.params), ()
    except DetailsNotJsonError:
        guarded = renderer_for(reader, as_of=as_of, guarded=True)
        built = statement(guarded)
        rows = reader.rows(built.text, built.params)
        return rows, tuple(row[0] for row in reader.rows(guarded.unreadable_ids()))


def renderer_for(reader: Reader, *, as_of: datetime | None = None, guarded: bool = False) -> Renderer:
    """The SQL renderer for the reader's database (registering SQLite's helper functions)."""
    if isinstance(reader, SqliteReader):
        _register_functions(reader.connection)
        return SqliteRenderer(reader, as_of=as_of, guarded=guarded)
    if reader.dialect == "postgresql":
        return PostgresRenderer(reader, as_of=as_of, guarded=guarded)
    raise InputError(f"cannot search a {reader.dialect} store")


def _refuse_sightings_as_of(query: Query, fields: Sequence[FieldRef]) -> None:
    """Refuse selecting or ordering by ``last_seen_at`` at ``--as-of``: it would silently answer wrong.

    The audit history has a row per change, not per sighting, so at ``as_of`` the best
    ``last_seen_at`` can be is when that version was first observed, not the last sync
    that saw it. Shown as a column it is documented as such; filtered on, sorted by or
    counted it would quietly differ from the live query at the same moment.
    """
    if query.as_of is None:
        return
    if any(field.column == "last_seen_at" for field in (*(item.field for item in query.filters), *fields)):
        raise FilterError(
            "last_seen_at cannot be filtered, sorted or counted with --as-of: the audit history records "
            "changes, not every sync that saw a finetune (filter on last_changed_at instead)"
        )
    if query.text is not None:
        raise FilterError("--text searches the current details and cannot be combined with --as-of")


_COMPARISON_SQL = {"=": "=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


class Renderer:
    """What both dialects share: the shape of the statement; subclasses spell each piece."""

    def __init__(self, reader: Reader, *, as_of: datetime | None, guarded: bool) -> None:
        self.reader = reader
        self.as_of = as_of
        self.guarded = guarded

    def where(self, predicates: Sequence[Predicate], query: Query) -> Sql:
        conditions = [self.condition(item) for item in predicates]
        if not query.include_deleted:
            conditions.append(self.live_only())
        if query.source is not None:
            conditions.append(sql("f.source = {}", Param(query.source)))
        if query.account is not None:
            conditions.append(sql("f.account = {}", Param(query.account)))
        if query.text is not None:
            conditions.append(self.text_match(query.text))
        if self.guarded:
            # A finetune whose details the database cannot read is left out, never answered wrongly.
            conditions.append(self.readable_only())
        return join(" AND ", conditions) if conditions else Sql("1 = 1")

    def condition(self, item: Predicate) -> Sql:
        positive = self.positive(item)
        if item.negated:
            # The exact complement of '=': a missing or null value is "not equal" too.
            return sql("NOT COALESCE(({}), FALSE)", positive)
        return positive

    def positive(self, item: Predicate) -> Sql:
        field, value = item.field, item.value
        if field.column is None:
            return self.key_condition(field, item)
        column = Sql(f'f."{field.column}"')
        kind = COLUMN_KINDS[field.column]
        op = _COMPARISON_SQL.get(item.op, "=")
        if item.test is Test.IS_NULL:
            return sql("{} IS NULL", column)
        if item.test is Test.CONTAINS:
            assert isinstance(value, str)
            return self.contains(column, value)
        if isinstance(value, datetime):
            return sql(f"{{}} {op} {{}}", column, Param(self.reader.time_param(value)))
        if isinstance(value, bool):
            return sql("{} = {}", column, Param(self.reader.bool_param(value)))
        if isinstance(value, str):
            return self.text_compare(column, op, value)
        if kind is Kind.TEXT:
            return sql(f"{{}} {op} {{}}", self.number_of_text(column), Param(value))
        return sql(f"{{}} {op} {{}}", column, Param(value))

    def tie_break(self) -> list[Sql]:
        """finetune_id, source, account: the default order, and the tie-break of any --sort."""
        return [self.text_order(Sql(f"f.{name}")) for name in ("finetune_id", "source", "account")]

    def sort_keys(self, sort: Sort) -> list[Sql]:
        direction = "DESC" if sort.descending else "ASC"
        if sort.field.column is not None:
            column = Sql(f'f."{sort.field.column}"')
            if COLUMN_KINDS[sort.field.column] is Kind.TEXT:
                column = self.text_order(column)
            return [sql(f"{{}} {direction} NULLS LAST", column)]
        return [sql(f"{{}} {direction} NULLS LAST", key) for key in self.key_sort(sort.field)]

    def facet_value(self, field: FieldRef) -> Sql:
        if field.column is not None:
            column = Sql(f'f."{field.column}"')
            return self.text_order(column) if COLUMN_KINDS[field.column] is Kind.TEXT else column
        return self.key_json_text(field)

    def selected(self, name: str) -> str:
        """A column of the record as selected from the relation ``f``; the labels are always current."""
        if name == LABELS:
            return labels_object_sql(self.reader.dialect, pk="f.id")
        return f'f."{name}"'

    @staticmethod
    def label_value(field: FieldRef) -> Sql:
        """A label's value on each row, as canonical JSON text (NULL where the finetune lacks it)."""
        return Sql(label_value_sql(pk="f.id"), (field.label,))

    def relation(self) -> Sql:
        """``finetune`` itself, or a subquery with the same columns holding each row as known at ``as_of``.

        At ``as_of`` a finetune has the details of its latest version observed by then that has
        details, and is deleted if that moment's latest version is a deletion. Extracted fields
        are computed from those details as :func:`~bflsync.extract.extract_fields` computes the
        stored columns; the training status comes from ``finetune_status``; other bookkeeping
        columns are the current ones.
        """
        if self.as_of is None:
            return Sql("finetune")
        moment = self.reader.time_param(self.as_of)
        special = {
            DETAILS: Sql("lv.details"),
            "version": Sql("latest.version"),
            "content_hash": Sql("lv.content_hash"),
            "last_seen_at": Sql("lv.observed_at"),
            "last_changed_at": Sql("latest.observed_at"),
            "deleted_at": Sql("CASE WHEN latest.change = 'deleted' THEN latest.observed_at END"),
            # The training status from its timeline's latest row observed by then; like
            # last_seen_at, status_checked_at is then when that status was first observed.
            **{
                name: sql(
                    f"(SELECT s.{column} FROM finetune_status s WHERE s.finetune_pk = f0.id"
                    " AND s.observed_at <= {} ORDER BY s.observed_at DESC, s.id DESC LIMIT 1)",
                    Param(moment),
                )
                for name, column in (
                    ("status", "status"),
                    ("progress", "progress"),
                    ("status_checked_at", "observed_at"),
                )
            },
            "ready_at": sql("CASE WHEN f0.ready_at <= {} THEN f0.ready_at END", Param(moment)),
        }
        selected = [Sql("f0.id AS id"), *self.as_of_extra_columns()]
        for name in ALL_COLUMNS:
            if name == LABELS:
                continue
            if name in EXTRACTED_FIELDS:
                expression = self.extracted_at(name, Sql("lv.details"))
            else:
                expression = special.get(name, Sql(f'f0."{name}"'))
            selected.append(sql(f'{{}} AS "{name}"', expression))
        return sql(
            "(SELECT {} FROM finetune f0"
            " JOIN (SELECT finetune_pk AS pk, max(version) AS latest,"
            " max(CASE WHEN details IS NOT NULL THEN version END) AS live"
            " FROM finetune_version WHERE observed_at <= {} GROUP BY finetune_pk) seen ON seen.pk = f0.id"
            " JOIN finetune_version latest ON latest.finetune_pk = seen.pk AND latest.version = seen.latest"
            " JOIN finetune_version lv ON lv.finetune_pk = seen.pk AND lv.version = seen.live)",
            join(", ", selected),
            Param(moment),
        )

    # -- what each dialect spells its own way ----------------------------------------------
    def as_of_extra_columns(self) -> list[Sql]:
        return []

    def live_only(self) -> Sql:
        return Sql("f.deleted_at IS NULL")

    def extracted_at(self, name: str, details: Sql) -> Sql:
        raise NotImplementedError

    def key_condition(self, field: FieldRef, item: Predicate) -> Sql:
        """A details key's or a label's test: both hold one JSON value, compared the same way."""
        raise NotImplementedError

    def key_sort(self, field: FieldRef) -> list[Sql]:
        raise NotImplementedError

    def key_json_text(self, field: FieldRef) -> Sql:
        raise NotImplementedError

    def contains(self, text: Sql, needle: str) -> Sql:
        raise NotImplementedError

    def text_compare(self, text: Sql, op: str, value: str) -> Sql:
        raise NotImplementedError

    def text_order(self, text: Sql) -> Sql:
        return text

    def number_of_text(self, text: Sql) -> Sql:
        raise NotImplementedError

    def text_match(self, words: str) -> Sql:
        raise NotImplementedError

    def unreadable_ids(self) -> str:
        raise NotImplementedError

    def readable_only(self) -> Sql:
        return Sql("1 = 1")


class SqliteRenderer(Renderer):
    """SQLite: JSON functions on the canonical text, FTS5, Python for numbers and case folding."""

    def details(self) -> Sql:
        if self.guarded:
            return Sql("(CASE WHEN json_valid(f.details) THEN f.details END)")
        return Sql("f.details")

    def extracted_at(self, name: str, details: Sql) -> Sql:
        return sql("bflsync_extract({}, {})", details, Param(name))

    def live_only(self) -> Sql:
        # Unary + keeps the planner off ix_finetune_deleted_at: nearly every row is live, and
        # without that index the default order (finetune_id) can come from its index, so a
        # --limit returns after reading that many rows instead of sorting every match.
        return Sql("+f.deleted_at IS NULL")

    def _document(self, field: FieldRef) -> tuple[Sql, Param]:
        """The JSON text holding the field's value and the path to it there."""
        if field.label is not None:
            return self.label_value(field), Param("$")
        return self.details(), Param(_sqlite_path(field.path))

    def key_condition(self, field: FieldRef, item: Predicate) -> Sql:
        document, json_path = self._document(field)
        value = sql("json_extract({}, {})", document, json_path)
        json_type = sql("json_type({}, {})", document, json_path)
        op = _COMPARISON_SQL.get(item.op, "=")
        if item.test is Test.IS_NULL:
            return sql("{} IS NULL", value)
        if item.test is Test.CONTAINS:
            assert isinstance(item.value, str)
            return sql("({} = 'text' AND {})", json_type, self.contains(value, item.value))
        if isinstance(item.value, bool):
            return sql("{} = {}", json_type, Param("true" if item.value else "false"))
        if isinstance(item.value, str):
            return sql(f"({{}} = 'text' AND {{}} {op} {{}})", json_type, value, Param(item.value))
        number = sql(
            "CASE WHEN {} IN ('integer', 'real') THEN {} WHEN {} = 'text' THEN bflsync_number({}) END",
            json_type,
            value,
            json_type,
            value,
        )
        return sql(f"{{}} {op} {{}}", number, Param(item.value))

    def key_sort(self, field: FieldRef) -> list[Sql]:
        return [sql("json_extract({}, {})", *self._document(field))]

    def key_json_text(self, field: FieldRef) -> Sql:
        # JSON text of the value, so "300" and 300 stay apart; a JSON null counts as missing.
        # ``->`` gives the stored text itself: json_extract would turn true into 1, cut a string
        # at U+0000 and round an integer past 64 bits to a float.
        document, json_path = self._document(field)
        return sql(
            "CASE WHEN json_type({}, {}) <> 'null' THEN {} -> {} END",
            document,
            json_path,
            document,
            json_path,
        )

    def contains(self, text: Sql, needle: str) -> Sql:
        # instr, not LIKE: '%' and '_' in the needle are ordinary characters. ASCII-only text
        # folds the same under SQLite's lower(); only other text needs Python's casefold.
        if needle.isascii():
            return sql(
                "(instr(lower({}), {}) > 0 OR (length({}) <> length(CAST({} AS BLOB))"
                " AND instr(bflsync_casefold({}), {}) > 0))",
                text,
                Param(needle),
                text,
                text,
                text,
                Param(needle),
            )
        return sql("instr(bflsync_casefold({}), {}) > 0", text, Param(needle))

    def text_compare(self, text: Sql, op: str, value: str) -> Sql:
        return sql(f"{{}} {op} {{}}", text, Param(value))

    def number_of_text(self, text: Sql) -> Sql:
        return sql("bflsync_number({})", text)

    def text_match(self, words: str) -> Sql:
        # Words through the word index, unspaced scripts (CJK, Thai, ...) as substrings (trigrams).
        return Sql(*matching.sqlite_condition(words, id_column="f.id", details_column="f.details"))

    def readable_only(self) -> Sql:
        return Sql("(f.details IS NULL OR json_valid(f.details))")

    def unreadable_ids(self) -> str:
        return (
            "SELECT finetune_id FROM finetune WHERE NOT json_valid(details) UNION"
            " SELECT f.finetune_id FROM finetune_version v JOIN finetune f ON f.id = v.finetune_pk"
            " WHERE v.details IS NOT NULL AND NOT json_valid(v.details) ORDER BY 1"
        )


class PostgresRenderer(Renderer):
    """PostgreSQL: ``jsonb`` operators (GIN-served equality), a ``tsvector`` for ``--text``."""

    def _json(self) -> Sql:
        if self.as_of is not None or "details_jsonb" in self.reader.finetune_columns:
            return Sql("f.details_jsonb")
        return Sql("CAST(f.details AS jsonb)")

    def _jsonb_of(self, details: Sql) -> Sql:
        """The ``jsonb`` copy of a ``details`` column (``finetune_version`` has one too, U+0000 as
        U+FFFD, which ``jsonb`` refuses); a cast on a store without the copies."""
        if "details_jsonb" in self.reader.finetune_columns:
            return Sql(f"{details.text}_jsonb")
        return sql("CAST({} AS jsonb)", details)

    def as_of_extra_columns(self) -> list[Sql]:
        # The version's details as jsonb, under the name the current table gives them.
        return [sql("{} AS details_jsonb", self._jsonb_of(Sql("lv.details")))]

    def extracted_at(self, name: str, details: Sql) -> Sql:
        key, convert = EXTRACTED_FIELDS[name]
        value = sql("({} -> {})", self._jsonb_of(details), Param(key))
        return _pg_converter(convert)(value)

    def _located(self, field: FieldRef) -> tuple[Sql, Sql, Sql, tuple[str, ...]]:
        """The jsonb document holding the field's value, the value as jsonb and as text, and its path."""
        if field.label is not None:
            document = sql("CAST({} AS jsonb)", self.label_value(field))
            return document, document, sql("({} #>> {})", document, "'{}'"), ()
        document, path = self._json(), list(field.path)
        return (
            document,
            sql("({} #> {})", document, Param(path)),
            sql("({} #>> {})", document, Param(path)),
            field.path,
        )

    def key_condition(self, field: FieldRef, item: Predicate) -> Sql:
        document, found, text, path = self._located(field)
        json_type = sql("jsonb_typeof({})", found)
        op = _COMPARISON_SQL.get(item.op, "=")
        if item.test is Test.IS_NULL:
            return sql("COALESCE({}, 'null') = 'null'", json_type)
        if item.test is Test.CONTAINS:
            assert isinstance(item.value, str)
            return sql("({} = 'string' AND {})", json_type, self.contains(text, item.value))
        if isinstance(item.value, bool) or (
            isinstance(item.value, str) and op == "=" and "\x00" not in item.value
        ):
            # Containment lets a GIN index (jsonb_path_ops) find the rows; the type test keeps
            # an array holding the value from counting as the value.
            wanted = "boolean" if isinstance(item.value, bool) else "string"
            return sql(
                f"({{}} @> CAST({{}} AS jsonb) AND {{}} = '{wanted}')",
                document,
                Param(_containing(path, item.value)),
                json_type,
            )
        if isinstance(item.value, str):
            return sql("({} = 'string' AND {})", json_type, self.text_compare(text, op, item.value))
        number = sql(
            "CASE {} WHEN 'number' THEN CAST({} AS double precision) WHEN 'string' THEN {} END",
            json_type,
            text,
            self.number_of_text(text),
        )
        return sql(f"{{}} {op} {{}}", number, Param(item.value))

    def key_sort(self, field: FieldRef) -> list[Sql]:
        # SQLite's order for json_extract values: numbers (booleans as 0 and 1) before text.
        _, found, text, _ = self._located(field)
        json_type = sql("jsonb_typeof({})", found)
        return [
            sql(
                "CASE {} WHEN 'number' THEN 0 WHEN 'boolean' THEN 0 WHEN 'string' THEN 1"
                " WHEN 'object' THEN 1 WHEN 'array' THEN 1 END",
                json_type,
            ),
            sql(
                "CASE {} WHEN 'number' THEN CAST({} AS double precision)"
                " WHEN 'boolean' THEN CASE WHEN {} = 'true' THEN 1 ELSE 0 END END",
                json_type,
                text,
                text,
            ),
            sql(
                "CASE WHEN {} IN ('string', 'object', 'array') THEN {} END", json_type, self.text_order(text)
            ),
        ]

    def key_json_text(self, field: FieldRef) -> Sql:
        found = self._located(field)[1]
        return sql(
            "CASE WHEN jsonb_typeof({}) <> 'null' THEN CAST({} AS text) END COLLATE \"C\"", found, found
        )

    def contains(self, text: Sql, needle: str) -> Sql:
        if "\x00" in needle:
            return Sql("FALSE")  # PostgreSQL text holds no U+0000, so nothing contains one
        # Text of ASCII only (as many bytes as characters) folds exactly by lower(); only other
        # text pays for the full fold's translate() and replace() calls.
        return sql(
            "strpos(CASE WHEN octet_length({}) = length({}) THEN lower({}) ELSE {} END, {}) > 0",
            text,
            text,
            text,
            _pg_fold(text, needle),
            Param(needle),
        )

    def text_compare(self, text: Sql, op: str, value: str) -> Sql:
        if "\x00" in value:
            # Stored text holds no U+0000, the smallest character: against P + NUL + rest, a
            # string is smaller exactly when it is at most P, and never equal.
            if op == "=":
                return Sql("FALSE")
            value, op = value[: value.index("\x00")], "<=" if op in ("<", "<=") else ">"
        if op == "=":
            # Equality under a deterministic collation compares bytes whatever the collation,
            # and without COLLATE "C" the column's own index can answer it.
            return sql("{} = CAST({} AS text)", text, Param(value))
        return sql(f'{{}} {op} CAST({{}} AS text) COLLATE "C"', text, Param(value))

    def text_order(self, text: Sql) -> Sql:
        return sql('{} COLLATE "C"', text)

    def number_of_text(self, text: Sql) -> Sql:
        return _pg_number_of_text(text)

    def text_match(self, words: str) -> Sql:
        # SQLite's plan (bflsync.text.matching) on copies of SQLite's indexes: words in search_tsv
        # (FTS5's own tokens), unspaced-script substrings in search_text (the trigram index's text,
        # folded as it folds), so both engines match the same rows.
        if "search_text" not in self.reader.finetune_columns:
            raise InputError("--text on PostgreSQL needs the store at head: run `bflsync db upgrade`")
        chosen = matching.plan(words)
        parts: list[Sql] = []
        if chosen.words:
            query = tsquery_of_terms(chosen.words)
            if query is None:
                return Sql("FALSE")
            parts.append(sql("f.search_tsv @@ CAST({} AS tsquery)", Param(query)))
        for needle in chosen.trigrams:
            # LIKE rather than strpos: a pg_trgm index on search_text (0009_search_text) serves it.
            parts.append(sql("f.search_text LIKE {}", Param(_like_containing(trigram_fold(needle)))))
        for needle in chosen.substrings:
            parts.append(_short_substring(needle))
        return join(" AND ", parts)

    def unreadable_ids(self) -> str:
        return "SELECT finetune_id FROM finetune WHERE false"


def _like_containing(needle: str) -> str:
    """A ``LIKE`` pattern matching text that contains ``needle``, its ``%``, ``_`` and ``\\`` literal."""
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _short_substring(needle: str) -> Sql:
    """PostgreSQL's test for a substring too short for trigrams: SQLite's exact ``instr`` per value.

    ``search_text`` is case-folded, so it answers alone only for a needle without case (CJK, kana,
    Thai, digits, punctuation); a needle with a cased letter is checked exactly against the string
    values of ``details_jsonb`` too, behind the cheap folded test.
    """

    folded = trigram_fold(needle)
    cheap = sql("strpos(f.search_text, {}) > 0", Param(folded))
    if folded == needle and needle.lower() == needle.upper():
        return cheap
    exact = sql(
        "EXISTS (SELECT 1 FROM jsonb_path_query(f.details_jsonb, 'strict $.**') AS v (value)"
        " WHERE jsonb_typeof(v.value) = 'string' AND strpos(v.value #>> {}, {}) > 0)",
        "'{}'",
        Param(needle),
    )
    return sql("({} AND {})", cheap, exact)


def _sqlite_path(path: Sequence[str]) -> str:
    """A SQLite JSON path with every key double-quoted; keys were validated by the parser."""
    return "$" + "".join(f'."{key}"' for key in path)


def _containing(path: Sequence[str], value: Any) -> str:
    """The JSON object that holds ``value`` at ``path``: the right side of ``@>``."""

    document: Any = value
    for key in reversed(path):
        document = {key: document}
    return json.dumps(document, ensure_ascii=False)


# A number as Python's float() reads the text (see extract.as_float); written with {0,1} for
# "optional" because a literal '?' would read as a placeholder.
_PG_NUMBER_PATTERN = r"^\s*[+-]{0,1}([0-9]+\.{0,1}[0-9]*|\.[0-9]+)([eE][+-]{0,1}[0-9]{1,4}){0,1}\s*$"


def _pg_number_of_text(text: Sql) -> Sql:
    """Numeric text as a double, NULL when it is not a finite number (range-guarded: no errors)."""
    number = sql("CAST(btrim({}) AS numeric)", text)
    return sql(
        f"CASE WHEN {{}} ~ '{_PG_NUMBER_PATTERN}' THEN"
        " CASE WHEN abs({}) >= 1.7976931348623157e308 THEN NULL"
        " WHEN abs({}) < 2.2250738585072014e-308 THEN 0.0"
        " ELSE CAST({} AS double precision) END END",
        text,
        number,
        number,
        number,
    )


def _pg_fold(text: Sql, needle: str) -> Sql:
    """``text`` folded as far as finding the (casefolded) ``needle`` in it needs.

    lower() in the database's UTF-8 locale, then the foldings that differ from lowercase
    (``ß`` → ``ss``, ``ﬁ`` → ``fi``, …). Only those whose result shares a character with the
    needle are spelled out: the needle is casefolded, so it holds none of the characters they
    replace, and a character that ends up outside the needle cannot be part of a match
    whether it is folded or not.
    """
    wanted = set(needle)
    singles, expansions = fold_tables()
    relevant = [(char, folded) for char, folded in singles if folded in wanted]
    folded_text = "{}"
    for char, replacement in lowercase_expansions():
        if wanted.intersection(replacement):
            folded_text = f"replace({folded_text}, '{char}', '{replacement}')"
    folded_text = f"lower({folded_text})"
    if relevant:
        sources, targets = ("".join(pair[index] for pair in relevant) for index in (0, 1))
        folded_text = f"translate({folded_text}, '{sources}', '{targets}')"
    for char, replacement in expansions:
        if wanted.intersection(replacement):
            folded_text = f"replace({folded_text}, '{char}', '{replacement}')"
    return sql(folded_text, text)


def _pg_converter(convert: Callable[[Any], Any]) -> Callable[[Sql], Sql]:
    """The SQL, on a jsonb value, of one converter of :data:`bflsync.extract.EXTRACTED_FIELDS`."""
    if convert is as_text:
        return lambda v: sql("CASE WHEN jsonb_typeof({}) = 'string' THEN {} END", v, _scalar_text(v))
    if convert is as_float:
        return lambda v: sql(
            "CASE jsonb_typeof({}) WHEN 'number' THEN CAST({} AS double precision) WHEN 'string' THEN {} END",
            v,
            _scalar_text(v),
            _pg_number_of_text(_scalar_text(v)),
        )
    if convert is as_int:

        def integer(v: Sql) -> Sql:
            number = sql(
                "CASE jsonb_typeof({}) WHEN 'number' THEN CAST({} AS numeric) WHEN 'string' THEN"
                f" CASE WHEN {{}} ~ '{_PG_NUMBER_PATTERN}' THEN CAST(btrim({{}}) AS numeric) END END",
                v,
                _scalar_text(v),
                _scalar_text(v),
                _scalar_text(v),
            )
            return sql(
                "CASE WHEN {} = trunc({}) AND {} BETWEEN -9223372036854775808 AND 9223372036854775807"
                " THEN CAST({} AS bigint) END",
                number,
                number,
                number,
                number,
            )

        return integer
    if convert is as_bool:
        return lambda v: sql(
            "CASE jsonb_typeof({}) WHEN 'boolean' THEN CAST({} AS boolean)"
            " WHEN 'number' THEN CASE {} WHEN '0' THEN false WHEN '1' THEN true END"
            " WHEN 'string' THEN CASE lower(btrim({})) WHEN 'true' THEN true WHEN 'false' THEN false END END",
            v,
            _scalar_text(v),
            _scalar_text(v),
            _scalar_text(v),
        )
    # as_timestamp_text and any converter added later: its text, as the sync would keep a string.
    return lambda v: sql("CASE WHEN jsonb_typeof({}) IN ('string', 'number') THEN {} END", v, _scalar_text(v))


def _scalar_text(value: Sql) -> Sql:
    """The text of a jsonb scalar (a string unquoted, a number as written)."""
    return sql("(jsonb_build_array({}) ->> 0)", value)


# -- SQLite helper functions ------------------------------------------------------------------


def _register_functions(connection: sqlite3.Connection) -> None:
    """Give the connection the functions the filters use (numbers and case folding as Python does)."""
    connection.create_function("bflsync_number", 1, _sql_number, deterministic=True)
    connection.create_function("bflsync_casefold", 1, _sql_casefold, deterministic=True)
    connection.create_function("bflsync_extract", 2, _sql_extract, deterministic=True)


def _sql_number(value: Any) -> float | None:
    return as_float(value) if isinstance(value, str) else None


def _sql_casefold(value: Any) -> str | None:
    return value.casefold() if isinstance(value, str) else None


def _sql_extract(details: Any, column: Any) -> Any:
    return _extracted(details)[column] if isinstance(details, str) else None


@lru_cache(maxsize=64)
def _extracted(details: str) -> Mapping[str, Any]:
    """One parse per version row however many extracted columns the statement reads."""

    try:
        return extract_fields(json.loads(details))
    except ValueError:
        return extract_fields(None)
