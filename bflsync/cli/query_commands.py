"""``query`` and ``facets``: searches over the stored training parameters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from bflsync.api import QueryOptions, Store, make_query
from bflsync.bfl.server_text import printable
from bflsync.cli import completion
from bflsync.cli.common import CliContext, pass_cli_context
from bflsync.cli.read_common import (
    LIST_FORMATS,
    RECORD_FORMATS,
    account_option,
    cut,
    limit_option,
    note_withheld,
    reading,
    row_limit,
    warn_not_json,
    warn_unknown_scope,
    warn_unreadable,
    write_records,
)
from bflsync.cli.stdout import write_stdout
from bflsync.columns import COLUMN_NAMES
from bflsync.errors import FilterError, InputError
from bflsync.extract import INT64_MAX
from bflsync.read import filters, search
from bflsync.read.records import ALL_COLUMNS, DETAILS, LABELS, FinetuneRecord

QUERY_FORMATS = (*LIST_FORMATS, "ids", "ids0")
TABLE_FORMATS = ("table", "markdown")
TABLE_COLUMNS = (
    "finetune_id",
    "mode",
    "finetune_type",
    "trigger_word",
    "iterations",
    "learning_rate",
    "lora_rank",
    "status",
    "last_changed_at",
)


def search_options(command: Any) -> Any:
    """The options ``query`` and ``facets`` share."""
    options = (
        click.option(
            "--text", "words", metavar="WORDS", help="Full-text search over all text in the details."
        ),
        click.option(
            "--include-deleted", is_flag=True, help="Include finetunes no longer listed by the API."
        ),
        click.option("--source", metavar="HOST", help="Only finetunes synced from this API host."),
        account_option("Only finetunes of this account (sync --account)."),
        click.option(
            "--as-of",
            metavar="TIMESTAMP",
            help=(
                "Answer as the store knew things then: ISO 8601 (naive means UTC) or relative, 7d, 12h, "
                "yesterday. The history "
                "records changes, not every sighting: last_seen_at then shows when that version "
                "was first observed, and cannot be filtered, sorted or counted."
            ),
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def build_query(
    filter_texts: Sequence[str],
    *,
    words: str | None,
    include_deleted: bool,
    source: str | None,
    account: str | None,
    as_of: str | None,
    sort: str | None = None,
    limit: int | None = None,
) -> filters.Query:
    options = QueryOptions(
        text=words,
        include_deleted=include_deleted,
        source=source,
        account=account,
        as_of=as_of,
        sort=sort,
        limit=limit,
    )
    return make_query(filter_texts, options)


@click.command()
@click.argument("filter_texts", nargs=-1, metavar="[FILTER]...", shell_complete=completion.complete_field)
@search_options
@click.option(
    "--sort",
    metavar="[-]FIELD",
    help="Sort by any field, '-' for descending (default finetune_id).",
    shell_complete=completion.complete_sort,
)
@limit_option("rows")
@click.option(
    "--columns",
    metavar="A,B,C",
    help="The fields to show (any field, details keys included).",
    shell_complete=completion.complete_columns,
)
@click.option(
    "--format", "output_format", type=click.Choice(QUERY_FORMATS), default="table", show_default=True
)
@pass_cli_context
def query(
    cli_context: CliContext,
    filter_texts: tuple[str, ...],
    words: str | None,
    include_deleted: bool,
    source: str | None,
    account: str | None,
    as_of: str | None,
    sort: str | None,
    limit: int | None,
    columns: str | None,
    output_format: str,
) -> None:
    """Search the stored training parameters with FIELD OP VALUE filters (ANDed).

    \b
    OP: = != < <= > >=, and ~ (case-insensitive substring).
    FIELD: an extracted column (mode, learning_rate, iterations, ...), a bookkeeping
    column (source, account, version, first_seen_at, last_changed_at, deleted_at, ...) or any key
    of the raw details, dotted for nesting (extra.images), `backticks` for odd names.
    VALUE: numbers compare numerically (numeric strings count), true/false, null (missing
    or null), "quoted" is always a string, anything else is a string. != also matches
    missing and null values.

    --format ids prints one id per line and refuses (exit 2, nothing printed) ids that
    contain a newline; --format ids0 ends each id with a NUL byte instead (for xargs -0).

    \b
    Example:
        bflsync query mode=character 'learning_rate>=1e-5' --sort -iterations
        bflsync query --text ohwx --format ids0 | xargs -0 -n1 bflsync show
    """
    fields = _parse_columns(columns) if columns is not None else None
    limit = row_limit(limit, output_format)
    tabled = output_format in TABLE_FORMATS
    question = build_query(
        filter_texts,
        words=words,
        include_deleted=include_deleted,
        source=source,
        account=account,
        as_of=as_of,
        sort=sort,
        # One extra row tells whether the listing was cut short, in every format.
        # (Capped: SQLite cannot bind more than a signed 64-bit LIMIT, and there are never that many.)
        limit=min(limit + 1, INT64_MAX) if limit is not None else None,
    )
    shown_fields = fields
    if tabled and fields is None:
        shown_fields = [filters.parse_field(name) for name in _table_columns(include_deleted=include_deleted)]
    ids_only = output_format in ("ids", "ids0")
    with reading(cli_context) as store:
        # A --sort or --columns key nobody has is a mistake (exit 2); a filter on one is a valid,
        # empty question (a warning).
        named = [
            *([question.sort.field] if question.sort is not None else []),
            *(field for field in fields or [] if isinstance(field, filters.FieldRef)),
        ]
        for field in dict.fromkeys(named):
            note = store.unknown_field(field)
            if note is not None:
                raise FilterError(note)
        ids: list[str] = []
        found: search.Found | None = None
        if ids_only:
            ids, unreadable = store.ids(question)
        else:
            found = store.query(question, columns=_needed_columns(output_format, shown_fields))
            unreadable = found.unreadable
        matched = bool(ids) or (found is not None and bool(found.records))
        warn_unknown_scope(cli_context, store, source=source, account=account)
        warn_unknown(cli_context, store, _unproven_fields(question, matched=matched))
        if not matched and not cli_context.quiet:
            notes = [*store.unmatched_values(question), store.before_the_record(question.as_of)]
            for note in filter(None, notes):
                click.echo(f"bflsync: warning: {printable(note)}", err=True)
    warn_unreadable(cli_context, unreadable)
    if found is None:
        ids, more = cut(ids, limit)
        _write_ids(ids, nul=output_format == "ids0")
        note_withheld(cli_context, shown=len(ids), limit=limit, more=more)
        return
    from bflsync.cli import render  # after the ids have gone: they need no renderer

    records, more = cut(found.records, limit)
    warn_not_json(cli_context, records)
    if output_format in ("json", "jsonl"):
        items = [_record_object(record, fields) for record in records]
        render.write_json(items) if output_format == "json" else render.write_jsonl(items)
    elif output_format == "csv":
        if fields is None:
            rows = [[*(record.column(name) for name in COLUMN_NAMES), record.details] for record in records]
            render.write_csv([*COLUMN_NAMES, DETAILS], rows)
        else:
            render.write_csv(*_field_rows(records, fields))
    else:
        assert shown_fields is not None
        if fields is None:
            # Source and account only when the result mixes them.
            for name in ("account", "source"):
                if len({record.column(name) for record in records}) > 1:
                    shown_fields.insert(1, filters.parse_field(name))
        render.write_grid(output_format, *_field_rows(records, shown_fields))
    note_withheld(cli_context, shown=len(records), limit=limit, more=more)


@click.command()
@click.argument(
    "arguments",
    nargs=-1,
    required=True,
    metavar="FIELD... [FILTER]...",
    shell_complete=completion.complete_field,
)
@search_options
@limit_option("values")
@click.option(
    "--format", "output_format", type=click.Choice(LIST_FORMATS), default="table", show_default=True
)
@pass_cli_context
def facets(
    cli_context: CliContext,
    arguments: tuple[str, ...],
    words: str | None,
    include_deleted: bool,
    source: str | None,
    account: str | None,
    as_of: str | None,
    limit: int | None,
    output_format: str,
) -> None:
    """Count the finetunes per value of each FIELD, most common first.

    Arguments with an operator are filters, as in `bflsync query`; the others are fields.
    Missing and null values are counted together as an empty value.

    \b
    Example:
        bflsync facets mode finetune_type 'iterations>=300'
    """
    filter_texts = [argument for argument in arguments if filters.is_filter(argument)]
    fields = [filters.parse_field(argument) for argument in arguments if not filters.is_filter(argument)]
    if not fields:
        raise InputError("facets needs at least one FIELD to count (arguments with an operator are filters)")
    question = build_query(
        filter_texts,
        words=words,
        include_deleted=include_deleted,
        source=source,
        account=account,
        as_of=as_of,
    )
    with reading(cli_context) as store:
        warn_unknown_scope(cli_context, store, source=source, account=account)
        warn_unknown(cli_context, store, [*fields, *(item.field for item in question.filters)])
        counts, unreadable = store.facets(fields, question)
    warn_unreadable(cli_context, unreadable)
    limit = row_limit(limit, output_format)
    rows, more = cut(
        [
            {"field": name, "value": c.value, "count": c.finetunes}
            for name, values in counts.items()
            for c in values
        ],
        limit,
    )
    if output_format in RECORD_FORMATS:
        write_records(output_format, ["field", "value", "count"], rows)
    else:
        from bflsync.cli import render

        render.write_grid(output_format, ("field", "value", "count"), [list(row.values()) for row in rows])
    note_withheld(cli_context, shown=len(rows), limit=limit, more=more)


def _unproven_fields(question: filters.Query, *, matched: bool) -> list[filters.FieldRef]:
    """The filter fields whose existence the answer does not prove, to be checked against the store.

    A finetune that matched ``key=value``, ``key>n`` or ``key~text`` holds ``key``: when the answer
    is not empty, only ``!=`` and ``=null`` filters (which missing keys match too) need a look.
    """
    if not matched:
        return [item.field for item in question.filters]
    proven = {
        item.field
        for item in map(filters.predicate, question.filters)
        if not item.negated and item.test is not filters.Test.IS_NULL
    }
    return [item.field for item in question.filters if item.field not in proven]


def _write_ids(ids: list[str], *, nul: bool) -> None:
    """One id per line (or per NUL), in one write; an id holding the separator would forge a second id,
    so it is refused, and nothing is written."""
    separator = "\0" if nul else "\n"
    text = separator.join(ids)
    if text.count(separator) != len(ids) - 1 and ids:
        forged = next(finetune_id for finetune_id in ids if separator in finetune_id)
        hint = "" if nul else "; --format ids0 separates ids with NUL bytes instead"
        raise InputError(
            f"finetune id {printable(repr(forged))} contains a {'NUL byte' if nul else 'newline'}{hint}"
        )
    if ids:
        write_stdout(text + separator)


Column = filters.FieldRef | str
"""A ``--columns`` entry: a field, or ``details``/``labels``, the whole objects the JSON output has."""
WHOLE_OBJECTS = (DETAILS, LABELS)


def _parse_columns(text: str) -> list[Column]:
    """``--columns``: fields, and the bare names ``details`` and ``labels`` for the whole raw details
    and the labels object (every key of the JSON output is a column; `` `details` `` is a key)."""
    return [
        field.path[0] if field.path in ((DETAILS,), (LABELS,)) and not _backticked(text, field) else field
        for field in filters.parse_fields(text)
    ]


def _backticked(text: str, field: filters.FieldRef) -> bool:
    return f"`{field.path[0]}`" in text


def _name(field: Column) -> str:
    return field if isinstance(field, str) else field.name


def _value(record: FinetuneRecord, field: Column) -> Any:
    if isinstance(field, str):
        return record.details if field == DETAILS else record.labels
    return record.value(field)


def _record_object(record: FinetuneRecord, fields: Sequence[Column] | None) -> dict[str, Any]:
    if fields is None:
        return record.as_dict()
    return {
        "finetune_id": record.finetune_id,
        "source": record.source,
        "account": record.account,
        **{_name(field): _value(record, field) for field in fields},
    }


def _field_rows(
    records: Sequence[FinetuneRecord], fields: Sequence[Column]
) -> tuple[list[str], list[list[Any]]]:
    return [_name(field) for field in fields], [
        [_value(record, field) for field in fields] for record in records
    ]


def _table_columns(*, include_deleted: bool) -> list[str]:
    """The default table; deleted_at only when deleted rows were asked for (source only when mixed)."""
    return [*TABLE_COLUMNS, "deleted_at"] if include_deleted else list(TABLE_COLUMNS)


def _needed_columns(output_format: str, fields: Sequence[Column] | None) -> tuple[str, ...]:
    """The columns the output reads, so the SQL selects nothing more (``details`` is the costly one).

    ``--format ids`` and ``ids0`` never get here: they read through :meth:`Store.ids`.
    """
    if fields is None:
        # The CSV of whole records has no labels column (name label.KEY in --columns for one).
        return (
            ALL_COLUMNS if output_format != "csv" else tuple(name for name in ALL_COLUMNS if name != LABELS)
        )
    named = {field for field in fields if isinstance(field, str)}
    refs = [field for field in fields if isinstance(field, filters.FieldRef)]
    named.update(field.column for field in refs if field.column is not None)
    if any(field.column is None and field.label is None for field in refs):
        named.add(DETAILS)
    if any(field.label is not None for field in refs):
        named.add(LABELS)
    return ("finetune_id", "source", "account", *sorted(named))


def warn_unknown(cli_context: CliContext, store: Store, fields: Sequence[filters.FieldRef]) -> None:
    """One warning per field that is neither a column nor a key any stored finetune has.

    With ``--quiet`` the store is not asked at all: each look may scan every stored version.
    """
    if cli_context.quiet:
        return
    for field in dict.fromkeys(fields):
        note = store.unknown_field(field)
        if note is not None:
            click.echo(f"bflsync: warning: {note}", err=True)
