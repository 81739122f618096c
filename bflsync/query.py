"""The filter language of ``bflsync query`` and ``facets``, and the searches it drives.

One filter is one command-line argument; several are ANDed::

    filter   := field WS* op WS* value
    field    := segment ("." segment)*           dotted: a key nested in an object
    segment  := bare | "`" (any char but "`" | "``")* "`"
    bare     := word-char (word-char | "-")*     (unicode letters, digits, "_")
    op       := "!=" | "<=" | ">=" | "=" | "<" | ">" | "~"
    value    := '"' chars '"'    a string, always ("\\" escapes the next char)
              | null | true | false
              | number           1e-5, 300, -2.5 (ASCII digits): compared numerically
              | anything else    a string (surrounding spaces dropped)

A field that is one bare segment naming a column (:data:`COLUMN_KINDS`) reads that column:
typed, indexed, and compared on the value :mod:`bflsync.extract` derived (so
``iterations=300`` also finds ``"300"``, and a value extraction could not type counts as
null). Any other field, and any field whose first segment is backticked, is a key of the raw
details, read with ``json_extract`` so keys BFL adds later need no migration. ``!=`` is the
exact complement of ``=`` (it matches missing and null values); ``~`` is a case-insensitive
substring test on text, with ``%`` and ``_`` as plain characters.

User input reaches SQL only as bound parameters: values, the ``~`` needle, the JSON path
(built from validated key names) and the full-text query (every word quoted for FTS5).
Nothing here prints or knows about click; errors are :class:`~bflsync.errors.InputError`.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.elements import ColumnElement

from bflsync import reltime, textsearch
from bflsync.errors import AmbiguousIdError, FilterError, InputError
from bflsync.extract import EXTRACTED_FIELDS, INT64_MAX, INT64_MIN, as_float, extract_fields, loads_stored
from bflsync.models import Finetune, FinetuneLabel, FinetuneStatus, FinetuneVersion, UTCDateTime

logger = logging.getLogger("bflsync.query")

Scalar = str | int | float | bool | None

_finetune: sa.Table = Finetune.__table__  # type: ignore[attr-defined]
_version: sa.Table = FinetuneVersion.__table__  # type: ignore[attr-defined]
_label: sa.Table = FinetuneLabel.__table__  # type: ignore[attr-defined]
_status: sa.Table = FinetuneStatus.__table__  # type: ignore[attr-defined]

OPERATORS = ("!=", "<=", ">=", "=", "<", ">", "~")
_BARE = re.compile(r"\w[\w-]*")
_OPERATOR = re.compile(r"\s*(!=|<=|>=|=|<|>|~)\s*")
_INTEGER = re.compile(r"[+-]?[0-9]+")
# SQLite's JSON path parser (3.40) compares the key as it is escaped in the JSON text and
# ends a quoted key at the first '"': keys needing JSON escapes cannot be addressed safely.
_UNADDRESSABLE = re.compile(r'["\\\x00-\x1f]')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# The store's own decoding of its timestamp columns; its zone rule does not consult the dialect.
_TIME_TYPE = UTCDateTime()
_SQLITE = sqlite.dialect()

_COMPARE: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


class Kind(enum.Enum):
    TEXT = "text"
    NUMBER = "number"
    BOOL = "bool"
    TIME = "time"


def _kind_of(column: sa.Column[Any]) -> Kind:
    if isinstance(column.type, UTCDateTime):
        return Kind.TIME
    if isinstance(column.type, sa.Boolean):
        return Kind.BOOL
    if isinstance(column.type, sa.Integer | sa.Float):
        return Kind.NUMBER
    return Kind.TEXT


# The training status as get_result last reported it (NULL: not checked yet).
LIFECYCLE_COLUMNS = ("status", "progress", "status_checked_at", "ready_at")
# Every column a filter, sort or --columns may name (the rest of the names are details keys),
# in the order of a FinetuneRecord's row and of its JSON object.
RECORD_COLUMNS = (
    "finetune_id",
    "source",
    "account",
    *EXTRACTED_FIELDS,
    "version",
    "content_hash",
    "first_seen_at",
    "last_seen_at",
    "last_changed_at",
    "deleted_at",
    *LIFECYCLE_COLUMNS,
)
COLUMN_KINDS: dict[str, Kind] = {name: _kind_of(_finetune.c[name]) for name in RECORD_COLUMNS}
_INDEX = {name: index for index, name in enumerate((*RECORD_COLUMNS, "details", "labels"))}
# `label.KEY` names a label (bflsync label); `` `label`.KEY `` a details key called "label".
LABEL_PREFIX = "label"


@dataclass(frozen=True, slots=True)
class FieldRef:
    """A parsed field: a column, or a path of keys into the raw details."""

    path: tuple[str, ...]
    column: str | None
    label: str | None = None
    """The label key of a ``label.KEY`` field; ``path`` is then ``("label", KEY)``."""

    @property
    def name(self) -> str:
        """The field as the user would write it, backticks where needed."""
        if self.label is not None:
            return format_path(self.path)
        details_key_like_other = self.path[0] in COLUMN_KINDS or (
            len(self.path) == 2 and self.path[0] == LABEL_PREFIX
        )
        return format_path(self.path, force_key=self.column is None and details_key_like_other)


@dataclass(frozen=True, slots=True)
class Filter:
    field: FieldRef
    op: str
    value: Scalar
    text: str
    """The value as written, quotes removed: the needle of ``~`` and the text of a timestamp."""


@dataclass(frozen=True, slots=True)
class Sort:
    field: FieldRef
    descending: bool = False


@dataclass(frozen=True, kw_only=True)
class Query:
    """What to search for; the CLI builds one from arguments and options."""

    filters: Sequence[Filter] = ()
    text: str | None = None
    include_deleted: bool = False
    source: str | None = None
    account: str | None = None
    as_of: datetime | None = None
    sort: Sort | None = None
    limit: int | None = None


class FinetuneRecord:
    """One finetune as a query answers it: current state, or its state at ``--as-of``.

    A view over the result row, decoding a value only when it is read: ``--format ids`` and
    tables touch a few fields of thousands of rows, and building every value of every row
    cost more than running the query.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Sequence[Any]) -> None:
        self._values = values

    @property
    def finetune_id(self) -> str:
        return str(self._values[0])

    @property
    def source(self) -> str:
        return str(self._values[1])

    @property
    def account(self) -> str:
        return str(self._values[2])

    @property
    def version(self) -> int:
        return int(self._values[_INDEX["version"]])

    @property
    def deleted_at(self) -> datetime | None:
        return _utc(self._values[_INDEX["deleted_at"]])

    @property
    def details_json(self) -> str:
        return str(self._values[_INDEX["details"]])

    @property
    def details(self) -> Any:
        return loads_stored(self.details_json)

    @property
    def labels(self) -> dict[str, Any]:
        """The finetune's current labels (``bflsync label``), keys sorted."""
        value = self._values[_INDEX["labels"]]
        labels = json.loads(value) if isinstance(value, str) else (value or {})
        return dict(sorted(labels.items()))

    def column(self, name: str) -> Any:
        """The value of a column (see :data:`COLUMN_KINDS`): timestamps aware UTC, booleans bool."""
        value = self._values[_INDEX[name]]
        kind = COLUMN_KINDS[name]
        if kind is Kind.TIME:
            return _utc(value)
        if kind is Kind.BOOL and value is not None:
            return bool(value)
        return value

    def value(self, field: FieldRef) -> Any:
        """The field's value, ``None`` when missing; details keys are looked up in the raw JSON."""
        if field.column is not None:
            return self.column(field.column)
        if field.label is not None:
            return self.labels.get(field.label)
        return lookup(self.details, field.path)

    def as_dict(self) -> dict[str, Any]:
        """The documented output record: ids, extracted fields, bookkeeping, raw details, labels."""
        return {
            **{name: self.column(name) for name in RECORD_COLUMNS},
            "details": self.details,
            "labels": self.labels,
        }


@dataclass(frozen=True, slots=True)
class FacetCount:
    value: Any
    count: int


# -- parsing ---------------------------------------------------------------------------------


def parse_filter(text: str) -> Filter:
    """Parse one ``FIELD OP VALUE`` argument; errors name the position of the bad part."""
    field, end = _scan_field(text, 0, context="filter")
    match = _OPERATOR.match(text, end)
    if match is None:
        got = f"{text[end:]!r}" if end < len(text) else "the end"
        raise FilterError(
            f"bad filter {text!r}: expected an operator ({' '.join(OPERATORS)}) "
            f"after {text[:end].strip()!r}, got {got} at position {end + 1}"
        )
    op = match.group(1)
    value, raw = _parse_value(text, match.end(), op=op)
    return Filter(field=field, op=op, value=value, text=raw)


def parse_field(text: str) -> FieldRef:
    """Parse a whole argument as a field name (for --sort, --columns and facets)."""
    field, end = _scan_field(text, 0, context="field")
    if end != len(text):
        raise FilterError(f"bad field {text!r}: unexpected {text[end:]!r} at position {end + 1}")
    return field


def parse_fields(text: str) -> list[FieldRef]:
    """Parse a comma-separated list of fields (``--columns``); commas inside backticks are kept."""
    fields = []
    position = 0
    while True:
        field, position = _scan_field(text, position, context="field")
        fields.append(field)
        if position == len(text):
            return fields
        if text[position] != ",":
            raise FilterError(f"bad field list {text!r}: expected ',' at position {position + 1}")
        position += 1


def parse_sort(text: str) -> Sort:
    """``FIELD`` sorts ascending, ``-FIELD`` descending; missing values always come last."""
    if text.startswith("-"):
        return Sort(parse_field(text[1:]), descending=True)
    return Sort(parse_field(text))


def is_filter(text: str) -> bool:
    """Whether an argument is a filter rather than a bare field name (it has an operator after a field)."""
    try:
        _, end = _scan_field(text, 0, context="field")
    except FilterError:
        return any(op in text for op in OPERATORS)
    return end != len(text)


def parse_timestamp(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO 8601 date or datetime as aware UTC (a naive one is taken to be UTC).

    Given ``now``, the relative forms of :mod:`bflsync.reltime` (``7d``, ``yesterday``) count too.
    """
    try:
        relative = reltime.parse_relative(text, now=now) if now is not None else None
    except OverflowError:
        raise InputError(f"timestamp out of range: {text!r} reaches before year 1") from None
    if relative is not None:
        return relative
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        forms = f"; or relative: {reltime.FORMS}" if now is not None else ""
        raise InputError(
            f"not an ISO 8601 date or datetime: {text!r} (try 2026-01-31 or 2026-01-31T12:00:00Z{forms})"
        ) from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 9999-12-31T23:00-05:00 is a valid ISO 8601 time whose UTC is past year 9999.
        raise InputError(f"timestamp out of range: {text!r} falls outside years 1-9999 in UTC") from None


def fts_query(words: str) -> str:
    """The word-index (FTS5) query for ``words``: each one a quoted phrase, ``word*`` a prefix.

    ``--text`` itself also searches unspaced scripts as substrings (:mod:`bflsync.textsearch`).
    """
    return textsearch.word_query(words)


def format_path(path: Sequence[str], *, force_key: bool = False) -> str:
    """Render a key path in filter syntax, so any name printed can be pasted back into a filter."""
    parts = []
    for index, key in enumerate(path):
        plain = _BARE.fullmatch(key) and not (index == 0 and force_key)
        parts.append(key if plain else "`" + key.replace("`", "``") + "`")
    return ".".join(parts)


def _scan_field(text: str, position: int, *, context: str) -> tuple[FieldRef, int]:
    segments: list[str] = []
    first_quoted = False
    while True:
        start = position
        if text.startswith("`", position):
            key, position = _scan_backticked(text, position, context=context)
            if not segments:
                first_quoted = True
        else:
            match = _BARE.match(text, position)
            if match is None:
                where = f"{text[position:]!r}" if position < len(text) else "the end"
                raise FilterError(
                    f"bad {context} {text!r}: expected a field name at position {position + 1}, got {where} "
                    "(quote odd key names in backticks: `my key`)"
                )
            key, position = match.group(), match.end()
        if _UNADDRESSABLE.search(key):
            raise FilterError(
                f"bad {context} {text!r}: the key at position {start + 1} contains a quote, backslash "
                "or control character, which cannot be queried"
            )
        segments.append(key)
        if not text.startswith(".", position):
            break
        position += 1
    path = tuple(segments)
    column = path[0] if len(path) == 1 and not first_quoted and path[0] in COLUMN_KINDS else None
    if len(path) == 2 and not first_quoted and path[0] == LABEL_PREFIX:
        return FieldRef(path=path, column=None, label=path[1]), position
    return FieldRef(path=path, column=column), position


def _scan_backticked(text: str, position: int, *, context: str) -> tuple[str, int]:
    pieces = []
    cursor = position + 1
    while True:
        close = text.find("`", cursor)
        if close == -1:
            raise FilterError(f"bad {context} {text!r}: backtick at position {position + 1} is never closed")
        pieces.append(text[cursor:close])
        if text.startswith("``", close):
            pieces.append("`")
            cursor = close + 2
            continue
        return "".join(pieces), close + 1


def _parse_value(text: str, position: int, *, op: str) -> tuple[Scalar, str]:
    raw = text[position:].strip()
    if raw.startswith('"'):
        chars = []
        index = 1
        while index < len(raw) and raw[index] != '"':
            if raw[index] == "\\" and index + 1 < len(raw):
                index += 1
            chars.append(raw[index])
            index += 1
        if index >= len(raw):
            raise FilterError(f"bad filter {text!r}: the quoted value after {op!r} is never closed")
        if index != len(raw) - 1:
            raise FilterError(f"bad filter {text!r}: unexpected {raw[index + 1 :]!r} after the quoted value")
        string = "".join(chars)
        return string, string
    if not raw:
        raise FilterError(f'bad filter {text!r}: missing value after {op!r} (write "" for an empty string)')
    if raw in ("null", "true", "false"):
        return {"null": None, "true": True, "false": False}[raw], raw
    # Only ASCII digits make a number: float() also reads Arabic-Indic and fullwidth digits.
    number = as_float(raw) if raw.isascii() else None
    if number is not None:
        if _INTEGER.fullmatch(raw) and INT64_MIN <= int(raw) <= INT64_MAX:
            return int(raw), raw
        return number, raw
    return raw, raw


# -- SQL -------------------------------------------------------------------------------------


def search(connection: Connection, query: Query) -> list[FinetuneRecord]:
    """The finetunes matching ``query``, sorted and limited as it says."""
    _prepare(connection)
    _refuse_sightings_as_of(query, [query.sort.field] if query.sort is not None else [])
    relation = _relation(query.as_of)
    sort_key = _order(relation, query.sort) if query.sort is not None else []

    def statement(*guard: ColumnElement[bool]) -> sa.Select[Any]:
        return (
            sa.select(*_record_columns(relation, dialect="sqlite"))
            .where(*guard, *_conditions(relation, query))
            # finetune_id, source, account: the default order, and the tie-break of any --sort.
            .order_by(*sort_key, relation.c.finetune_id, relation.c.source, relation.c.account)
            .limit(query.limit)
        )

    rows = _skipping_unparsable(
        connection, relation, lambda *guard: connection.execute(statement(*guard)).all()
    )
    return [FinetuneRecord(row) for row in rows]


def _skipping_unparsable(
    connection: Connection, relation: sa.FromClause, run: Callable[..., Sequence[sa.Row[Any]]]
) -> Sequence[sa.Row[Any]]:
    """Run a statement; if SQLite finds details it cannot parse as JSON (another tool wrote ``NaN``
    into a row, say), name those finetunes in a warning and run it again without them."""
    try:
        return run()
    except OperationalError as exc:
        if "malformed JSON" not in str(exc):
            raise
    valid = sa.func.json_valid(relation.c.details)
    unparsable = connection.execute(
        sa.select(relation.c.finetune_id).where(relation.c.details.is_not(None), sa.not_(valid)).distinct()
    ).scalars()
    for finetune_id in sorted(unparsable):
        logger.warning(
            "finetune %s: its stored details are not valid JSON; left out of this answer", finetune_id
        )
    return run(sa.or_(relation.c.details.is_(None), valid))


def facet_counts(
    connection: Connection, fields: Sequence[FieldRef], query: Query
) -> dict[str, list[FacetCount]]:
    """Per field, how many matching finetunes hold each value, most common first.

    Details keys are grouped by their JSON text, so ``"300"`` and ``300`` stay apart and
    objects and arrays count as values too. Missing and null both count as ``None``.
    """
    _prepare(connection)
    _refuse_sightings_as_of(query, fields)
    relation = _relation(query.as_of)
    conditions = _conditions(relation, query)
    counts: dict[str, list[FacetCount]] = {}
    for field in fields:
        if field.column is not None:
            value: ColumnElement[Any] = relation.c[field.column]
        else:
            document, path = (
                (_label_value(relation, field.label), "$")
                if field.label is not None
                else (relation.c.details, _json_path(field.path))
            )
            # '->' gives SQL NULL for a missing key but the text 'null' for a JSON null:
            # fold the second into the first so both count as one value, None.
            value = sa.case(
                (sa.func.json_type(document, path) == "null", sa.null()),
                else_=document.op("->")(sa.literal(path)),
            )

        def statement(*guard: ColumnElement[bool], value: ColumnElement[Any] = value) -> sa.Select[Any]:
            total = sa.func.count().label("n")
            return (
                sa.select(value.label("value"), total)
                .where(*guard, *conditions)
                .group_by(value)
                .order_by(total.desc(), value.nulls_first())
            )

        rows = _skipping_unparsable(
            connection, relation, lambda *guard: connection.execute(statement(*guard)).all()
        )
        counts[field.name] = [
            FacetCount(
                value=row.value if field.column is not None or row.value is None else loads_stored(row.value),
                count=row.n,
            )
            for row in rows
        ]
    return counts


def find_finetune(
    connection: Connection, finetune_id: str, *, source: str | None = None, account: str | None = None
) -> FinetuneRecord:
    """The current record of one finetune, tombstoned or not.

    Raises :class:`InputError` for an unknown id and :class:`AmbiguousIdError` when the id is
    stored for several (source, account) and ``source``/``account`` do not pick one.
    """
    return FinetuneRecord(_find_row(connection, finetune_id, source=source, account=account)[1:])


def finetune_pk(
    connection: Connection, finetune_id: str, *, source: str | None = None, account: str | None = None
) -> tuple[int, str, str]:
    """The primary key, source and account of one finetune, with the errors of :func:`find_finetune`."""
    row = _find_row(connection, finetune_id, source=source, account=account)
    return row.id, row.source, row.account


def _find_row(
    connection: Connection, finetune_id: str, *, source: str | None, account: str | None
) -> sa.Row[Any]:
    columns = _record_columns(_finetune, dialect=connection.dialect.name)
    statement = sa.select(_finetune.c.id, *columns).where(_finetune.c.finetune_id == finetune_id)
    if source is not None:
        statement = statement.where(_finetune.c.source == source)
    if account is not None:
        statement = statement.where(_finetune.c.account == account)
    rows = connection.execute(statement.order_by(_finetune.c.source, _finetune.c.account)).all()
    if not rows:
        where = "".join(
            f" {label} {value!r}"
            for label, value in (("from source", source), ("of account", account))
            if value
        )
        raise InputError(f"no finetune {finetune_id!r}{where} in the store")
    if len(rows) > 1:
        raise AmbiguousIdError(_ambiguity(finetune_id, [(row.source, row.account) for row in rows]))
    return rows[0]


def _ambiguity(finetune_id: str, candidates: Sequence[tuple[str, str]]) -> str:
    """Which (source, account) rows hold the id, and the option(s) that pick one."""
    listed = ", ".join(f"{source} (account {account})" for source, account in candidates)
    options = [
        option
        for option, position in (("--source HOST", 0), ("--account NAME", 1))
        if len({candidate[position] for candidate in candidates}) > 1
    ]
    return (
        f"finetune {finetune_id!r} is stored several times: {listed}; pick one with {' and '.join(options)}"
    )


def lookup(details: Any, path: Sequence[str]) -> Any:
    """The value at a key path of parsed details, ``None`` when any step is missing."""
    value = details
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _prepare(connection: Connection) -> None:
    """Give the SQLite connection the functions the filters use (numbers and case folding as Python does).

    Registered per call because the pool hands out connections opened before this module
    was imported; registering is cheap and leaves the database untouched.
    """
    if connection.dialect.name != "sqlite":
        raise InputError("query and facets need a SQLite store (JSON functions and FTS5)")
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.create_function("bflsync_number", 1, _sql_number, deterministic=True)
    raw.create_function("bflsync_casefold", 1, _sql_casefold, deterministic=True)
    raw.create_function("bflsync_extract", 2, _sql_extract, deterministic=True)


def _sql_number(value: Any) -> float | None:
    return as_float(value) if isinstance(value, str) else None


def _sql_casefold(value: Any) -> str | None:
    return value.casefold() if isinstance(value, str) else None


def _sql_extract(details: Any, column: Any) -> Any:
    return _extracted(details)[column] if isinstance(details, str) else None


@lru_cache(maxsize=64)
def _extracted(details: str) -> dict[str, Any]:
    """One parse per version row however many extracted columns the statement reads."""
    try:
        return extract_fields(loads_stored(details))
    except ValueError:
        return extract_fields(None)


def _relation(as_of: datetime | None) -> sa.FromClause:
    """``finetune`` itself, or a subquery with the same columns holding each row as known at ``as_of``.

    At ``as_of`` a finetune has the details of its latest version observed by then that has
    details, and is deleted if that moment's latest version is a deletion. Extracted fields
    are computed from those details with :func:`~bflsync.extract.extract_fields`, exactly as
    the store computes its columns.
    """
    if as_of is None:
        return _finetune
    seen = (
        sa.select(
            _version.c.finetune_pk.label("pk"),
            sa.func.max(_version.c.version).label("latest"),
            sa.func.max(sa.case((_version.c.details.is_not(None), _version.c.version))).label("live"),
        )
        .where(_version.c.observed_at <= as_of)
        .group_by(_version.c.finetune_pk)
        .subquery("seen")
    )
    latest = _version.alias("latest_version")
    live = _version.alias("live_version")
    extracted = [
        sa.func.bflsync_extract(live.c.details, name, type_=_finetune.c[name].type).label(name)
        for name in EXTRACTED_FIELDS
    ]
    return (
        sa.select(
            _finetune.c.id,
            _finetune.c.source,
            _finetune.c.account,
            _finetune.c.finetune_id,
            live.c.details,
            *extracted,
            latest.c.version,
            live.c.content_hash,
            _finetune.c.first_seen_at,
            live.c.observed_at.label("last_seen_at"),
            latest.c.observed_at.label("last_changed_at"),
            sa.case((latest.c.change == "deleted", latest.c.observed_at)).label("deleted_at"),
            *_lifecycle_as_of(as_of),
        )
        .join(seen, seen.c.pk == _finetune.c.id)
        .join(latest, sa.and_(latest.c.finetune_pk == seen.c.pk, latest.c.version == seen.c.latest))
        .join(live, sa.and_(live.c.finetune_pk == seen.c.pk, live.c.version == seen.c.live))
        .subquery("as_of")
    )


def _lifecycle_as_of(as_of: datetime) -> list[ColumnElement[Any]]:
    """The status columns as the timeline knew them at ``as_of``: its latest row observed by then.

    Like ``last_seen_at``, ``status_checked_at`` is then when that status was first observed.
    """

    def latest(column: sa.Column[Any]) -> ColumnElement[Any]:
        return (
            sa.select(column)
            .where(_status.c.finetune_pk == _finetune.c.id, _status.c.observed_at <= as_of)
            .order_by(_status.c.observed_at.desc(), _status.c.id.desc())
            .limit(1)
            .correlate(_finetune)
            .scalar_subquery()
        )

    return [
        latest(_status.c.status).label("status"),
        latest(_status.c.progress).label("progress"),
        latest(_status.c.observed_at).label("status_checked_at"),
        sa.case((_finetune.c.ready_at <= as_of, _finetune.c.ready_at)).label("ready_at"),
    ]


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


def _record_columns(relation: sa.FromClause, *, dialect: str) -> list[ColumnElement[Any]]:
    """The columns of a :class:`FinetuneRecord`, in its order, as the driver returns them (undecoded)."""
    return [
        *(
            sa.type_coerce(relation.c[name], sa.types.NullType()).label(name)
            for name in (*RECORD_COLUMNS, "details")
        ),
        _labels_object(relation, dialect=dialect).label("labels"),
    ]


def _labels_object(relation: sa.FromClause, *, dialect: str) -> ColumnElement[Any]:
    """The finetune's labels as one JSON object (NULL when it has none)."""
    if dialect == "sqlite":
        aggregate = sa.func.json_group_object(_label.c.key, sa.func.json(_label.c.value))
    else:
        aggregate = sa.func.json_object_agg(_label.c.key, sa.cast(_label.c.value, sa.JSON))
    return (
        sa.select(sa.type_coerce(aggregate, sa.types.NullType()))
        .where(_label.c.finetune_pk == relation.c.id)
        .scalar_subquery()
    )


def _label_value(relation: sa.FromClause, key: str) -> ColumnElement[Any]:
    """A label's value (canonical JSON text) on each row, NULL where the finetune does not have it."""
    return (
        sa.select(_label.c.value)
        .where(_label.c.finetune_pk == relation.c.id, _label.c.key == key)
        .scalar_subquery()
    )


def _utc(value: str | datetime | None) -> datetime | None:
    """A stored timestamp as aware UTC, as ``models.UTCDateTime`` decodes it.

    Record columns are fetched undecoded (see :func:`_record_columns`): SQLite gives the
    naive-UTC text it keeps, which is parsed here; other drivers give a datetime.
    """
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return _TIME_TYPE.process_result_value(moment, _SQLITE)


def _conditions(relation: sa.FromClause, query: Query) -> list[ColumnElement[bool]]:
    conditions = [_condition(relation, item) for item in query.filters]
    if not query.include_deleted:
        conditions.append(relation.c.deleted_at.is_(None))
    if query.source is not None:
        conditions.append(relation.c.source == query.source)
    if query.account is not None:
        conditions.append(relation.c.account == query.account)
    if query.text is not None:
        if query.as_of is not None:
            raise FilterError("--text searches the current details and cannot be combined with --as-of")
        condition, params = textsearch.sqlite_condition(
            query.text, id_column="finetune.id", details_column="finetune.details"
        )
        conditions.append(sa.and_(sa.text(condition).bindparams(**params)))
    return conditions


def _order(relation: sa.FromClause, sort: Sort) -> list[ColumnElement[Any]]:
    if sort.field.column is not None:
        key: ColumnElement[Any] = relation.c[sort.field.column]
    elif sort.field.label is not None:
        key = sa.func.json_extract(_label_value(relation, sort.field.label), "$")
    else:
        key = sa.func.json_extract(relation.c.details, _json_path(sort.field.path))
    return [(key.desc() if sort.descending else key.asc()).nulls_last()]


def _condition(relation: sa.FromClause, item: Filter) -> ColumnElement[bool]:
    if item.op == "!=":
        # The exact complement of '=': a missing or null value is "not equal" too.
        positive = _positive(relation, Filter(item.field, "=", item.value, item.text))
        return sa.not_(sa.func.coalesce(positive, sa.false()))
    return _positive(relation, item)


def _positive(relation: sa.FromClause, item: Filter) -> ColumnElement[bool]:
    field = item.field
    if item.op != "~" and item.op != "=" and (item.value is None or isinstance(item.value, bool)):
        raise FilterError(f"bad filter on {field.name}: {item.text} can only be compared with = or !=")
    if field.label is not None:
        # A label holds one JSON value, compared exactly as a details key would be.
        return _details_condition(_label_value(relation, field.label), "$", item)
    if field.column is None:
        return _details_condition(relation.c.details, _json_path(field.path), item)
    column = relation.c[field.column]
    kind = COLUMN_KINDS[field.column]
    if item.value is None and item.op != "~":
        return column.is_(None)
    if kind is Kind.TIME:
        if item.op == "~":
            raise FilterError(f"bad filter on {field.name}: ~ needs a text field; it holds timestamps")
        return _COMPARE[item.op](column, parse_timestamp(item.text))
    if kind is Kind.BOOL:
        if not isinstance(item.value, bool) or item.op != "=":
            raise FilterError(f"bad filter on {field.name}: it is true or false; compare with = or !=")
        return column == item.value
    if kind is Kind.NUMBER:
        if item.op == "~" or isinstance(item.value, str | bool):
            raise FilterError(f"bad filter on {field.name}: it holds numbers; {item.text!r} is not a number")
        return _COMPARE[item.op](column, item.value)
    if item.op == "~":
        return _contains(column, item.text)
    if isinstance(item.value, bool):
        raise FilterError(f'bad filter on {field.name}: it holds text; write "{item.text}" to compare text')
    if isinstance(item.value, str):
        return _COMPARE[item.op](column, item.value)
    return _COMPARE[item.op](sa.func.bflsync_number(column), item.value)


def _details_condition(details: ColumnElement[Any], path: str, item: Filter) -> ColumnElement[bool]:
    value = sa.func.json_extract(details, path)
    json_type = sa.func.json_type(details, path)
    if item.op == "~":
        return sa.and_(json_type == "text", _contains(value, item.text))
    if item.value is None:
        return value.is_(None)
    if isinstance(item.value, bool):
        return json_type == ("true" if item.value else "false")
    if isinstance(item.value, str):
        return sa.and_(json_type == "text", _COMPARE[item.op](value, item.value))
    number = sa.case(
        (json_type.in_(("integer", "real")), value),
        (json_type == "text", sa.func.bflsync_number(value)),
    )
    return _COMPARE[item.op](number, item.value)


def _contains(text: ColumnElement[Any], needle: str) -> ColumnElement[bool]:
    # instr, not LIKE: '%' and '_' in the needle are ordinary characters.
    return sa.func.instr(sa.func.bflsync_casefold(text), needle.casefold()) > 0


def _json_path(path: Sequence[str]) -> str:
    """A SQLite JSON path with every key double-quoted; keys were validated by :func:`_scan_field`."""
    return "$" + "".join(f'."{key}"' for key in path)
