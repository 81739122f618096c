"""The filter language of ``bflsync query`` and ``facets``, parsed into a small intermediate form.

One filter is one command-line argument; several are ANDed::

    filter   := field WS* op WS* value
    field    := segment ("." segment)*           dotted: a key nested in an object
    segment  := bare | "`" (any char but "`" | "``")* "`"
    bare     := word-char (word-char | "-")*     (unicode letters, digits, "_")
    op       := "!=" | "<=" | ">=" | "=" | "==" | "<" | ">" | "~"   ("==" is "=")
    value    := '"' chars '"'    a string, always ("\\" escapes the next char)
              | null | true | false
              | number           1e-5, 300, -2.5 (ASCII digits): compared numerically
              | anything else    a string (surrounding spaces dropped)

A field that is one bare segment naming a column (:data:`bflsync.columns.COLUMN_KINDS`)
reads that column: typed, indexed, and compared on the value :mod:`bflsync.extract` derived
(so ``iterations=300`` also finds ``"300"``, and a value extraction could not type counts as
null). ``label.KEY`` (two bare segments, the first ``label``) is a label that ``bflsync label``
set, compared exactly as a details key holding the same JSON value. Any other field, and any
field whose first segment is backticked, is a key of the raw details, so keys BFL adds later
need no migration. ``!=`` is the exact complement of ``=`` (it
matches missing and null values); ``~`` is a case-insensitive substring test on text, with
``%`` and ``_`` as plain characters.

:func:`predicate` checks a parsed filter against its field's type and turns it into a
:class:`Predicate`, the form :mod:`bflsync.read.search` renders as SQL for each database. Nothing
here knows SQL or click; errors are :class:`~bflsync.errors.FilterError`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from bflsync.columns import COLUMN_KINDS, Kind
from bflsync.errors import FilterError, InputError
from bflsync.extract import EXTRACTED_FIELDS, INT64_MAX, INT64_MIN, as_float
from bflsync.read import reltime
from bflsync.timeform import iso_utc

Scalar = str | int | float | bool | None

OPERATORS = ("!=", "<=", ">=", "=", "<", ">", "~")
COMPARISONS = ("=", "<", "<=", ">", ">=")
_BARE = re.compile(r"\w[\w-]*")
_OPERATOR = re.compile(r"\s*(!=|<=|>=|==|=|<|>|~)\s*")
# An unquoted value starting with an operator character is almost always a slip (`!==`, `=>`, `<>`).
_OPERATOR_SLIP = re.compile(r"[=<>!~]+")
SHELL_HINT = (
    "an unquoted > or < is a shell redirection, which eats the rest of the filter: "
    "quote it ('learning_rate>1e-4')"
)
_INTEGER = re.compile(r"[+-]?[0-9]+")
# SQLite's JSON path parser (3.40) compares the key as it is escaped in the JSON text and
# ends a quoted key at the first '"': keys needing JSON escapes cannot be addressed safely.
_UNADDRESSABLE = re.compile(r'["\\\x00-\x1f]')


# `label.KEY` names a label (bflsync label); `` `label`.KEY `` a details key called "label".
LABEL_PREFIX = "label"


class FieldRef(NamedTuple):
    """A parsed field: a column, a path of keys into the raw details, or a label."""

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


class Filter(NamedTuple):
    field: FieldRef
    op: str
    value: Scalar
    text: str
    """The value as written, quotes removed: the needle of ``~`` and the text of a timestamp."""


class Sort(NamedTuple):
    field: FieldRef
    descending: bool = False


class Query(NamedTuple):
    """What to search for; the CLI builds one from arguments and options."""

    filters: Sequence[Filter] = ()
    text: str | None = None
    include_deleted: bool = False
    source: str | None = None
    account: str | None = None
    as_of: datetime | None = None
    sort: Sort | None = None
    limit: int | None = None


class Test(enum.Enum):
    """What a :class:`Predicate` asks of its field's value."""

    IS_NULL = "is null"
    """Missing or null (a column that extraction could not type is null)."""
    COMPARE = "compare"
    """``op`` against ``value``, whose Python type says how: str text, int/float number,
    bool a JSON boolean or boolean column, datetime a timestamp column."""
    CONTAINS = "contains"
    """A text value containing ``value`` (already case-folded)."""


class Predicate(NamedTuple):
    """One filter checked against its field's type: what the SQL renderers consume."""

    field: FieldRef
    test: Test
    op: str
    value: str | int | float | bool | datetime | None
    negated: bool
    """``!=``: true where the positive test is false or unknown (missing and null included)."""


def predicate(item: Filter) -> Predicate:
    """The typed test a filter stands for; a value its field cannot hold is a :class:`FilterError`."""
    negated = item.op == "!="
    op = "=" if negated else item.op
    field = item.field

    def make(test: Test, value: str | int | float | bool | datetime | None) -> Predicate:
        return Predicate(field=field, test=test, op=op, value=value, negated=negated)

    if op != "~" and op != "=" and (item.value is None or isinstance(item.value, bool)):
        raise FilterError(f"bad filter on {field.name}: {item.text} can only be compared with = or !=")
    if op == "~":
        kind = COLUMN_KINDS[field.column] if field.column is not None else Kind.TEXT
        if kind is Kind.TIME:
            raise FilterError(f"bad filter on {field.name}: ~ needs a text field; it holds timestamps")
        if kind is Kind.NUMBER:
            raise FilterError(f"bad filter on {field.name}: it holds numbers; {item.text!r} is not a number")
        if kind is Kind.BOOL:
            raise FilterError(f"bad filter on {field.name}: it is true or false; compare with = or !=")
        return make(Test.CONTAINS, item.text.casefold())
    if item.value is None:
        return make(Test.IS_NULL, None)
    if field.column is None:
        return make(Test.COMPARE, item.value)
    kind = COLUMN_KINDS[field.column]
    if kind is Kind.TIME:
        return make(Test.COMPARE, parse_timestamp(item.text))
    if kind is Kind.BOOL:
        if not isinstance(item.value, bool) or op != "=":
            raise FilterError(f"bad filter on {field.name}: it is true or false; compare with = or !=")
        return make(Test.COMPARE, item.value)
    if kind is Kind.NUMBER:
        if isinstance(item.value, str | bool):
            raise FilterError(f"bad filter on {field.name}: it holds numbers; {item.text!r} is not a number")
        return make(Test.COMPARE, item.value)
    if isinstance(item.value, bool):
        raise FilterError(f'bad filter on {field.name}: it holds text; write "{item.text}" to compare text')
    return make(Test.COMPARE, item.value)


def parse_filter(text: str) -> Filter:
    """Parse one ``FIELD OP VALUE`` argument; errors name the position of the bad part."""
    field, end = _scan_field(text, 0, context="filter")
    match = _OPERATOR.match(text, end)
    if match is None:
        got = f"{text[end:]!r}" if end < len(text) else "the end"
        hint = f" ({SHELL_HINT})" if end >= len(text.rstrip()) else ""
        raise FilterError(
            f"bad filter {text!r}: expected an operator ({' '.join(OPERATORS)}) "
            f"after {text[:end].strip()!r}, got {got} at position {end + 1}{hint}"
        )
    op = "=" if match.group(1) == "==" else match.group(1)
    slip = _OPERATOR_SLIP.match(text, match.end())
    if slip is not None:
        written = text[end : slip.end()].strip()
        raise FilterError(
            f"bad filter {text!r}: {written!r} is not an operator; use one of {' '.join(OPERATORS)} "
            '(== also means =; quote a value that starts with one: field="=x")'
        )
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

    Given ``now``, the relative forms of :mod:`bflsync.read.reltime` (``7d``, ``yesterday``) count too.
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
        forms = f"; or relative: {reltime.FORMS}"
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


def resolve_relative_times(item: Filter, *, now: datetime) -> Filter:
    """A filter on a time column with a relative value (``7d``, ``yesterday``) made absolute.

    So ``last_changed_at>=7d`` means what ``--since 7d`` does; the moment is written in the one
    time form, which :func:`predicate` reads back.
    """
    if item.field.column is None or COLUMN_KINDS[item.field.column] is not Kind.TIME or item.value is None:
        return item
    try:
        moment = reltime.parse_relative(item.text, now=now)
    except OverflowError:
        raise InputError(f"timestamp out of range: {item.text!r} reaches before year 1") from None
    if moment is None:
        return item
    text = iso_utc(moment)
    return item._replace(value=text, text=text)


# A details key that an extracted column is read from under another name goes by the column's name
# (``timestamp`` is ``remote_timestamp``), as filters, --columns and compare call it.
_COLUMN_OF_KEY = {key: column for column, (key, _) in EXTRACTED_FIELDS.items() if key != column}


def field_name(path: Sequence[str]) -> str:
    """The one name diff, compare and history print for a details key path: the column's name where an
    extracted column reads the top-level key, else the path in filter syntax."""
    if len(path) == 1 and path[0] in _COLUMN_OF_KEY:
        return _COLUMN_OF_KEY[path[0]]
    return format_path(path)


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
