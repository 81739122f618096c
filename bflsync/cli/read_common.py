"""What the read commands share: opening the store read-only, and the warnings they print.

Every read command opens the store read-only through the Python API (:func:`bflsync.api.open_store`):
it never creates, migrates or writes the database and never touches the network. On a SQLite store
no read command imports SQLAlchemy, pydantic or rich (tables on a terminal are drawn by cli/table).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click

from bflsync.api import Store, open_store
from bflsync.bfl.server_text import printable
from bflsync.cli import completion
from bflsync.cli.common import CliContext, Int64Range
from bflsync.read.records import FinetuneRecord

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

# One vocabulary (docs/queries.md, "Output formats"): json, jsonl and csv wherever records are listed,
# and table and markdown wherever they make a table.
RECORD_FORMATS = ("json", "jsonl", "csv")
LIST_FORMATS = ("table", *RECORD_FORMATS, "markdown")
TABLE_LIMIT = 50
"""Rows a listing shows on a terminal unless --limit says otherwise; piped output has every row."""


def row_limit(limit: int | None, output_format: str) -> int | None:
    """The rows to list: ``--limit N``; ``0`` for no limit; when not given, :data:`TABLE_LIMIT` for a table
    on a terminal and every row otherwise (``bflsync query | grep -c`` counts them all)."""
    if limit == 0:
        return None
    if limit is None:
        return TABLE_LIMIT if output_format == "table" and sys.stdout.isatty() else None
    return limit


def cut(items: Sequence[T], limit: int | None) -> tuple[list[T], bool]:
    """The first ``limit`` items (every one for ``None``) and whether any were left out."""
    return (list(items) if limit is None else list(items[:limit])), limit is not None and len(items) > limit


def limit_option(what: str) -> Callable[[F], F]:
    """``--limit N`` of every listing command, with one meaning everywhere (:func:`row_limit`)."""
    return click.option(
        "--limit",
        metavar="N",
        type=Int64Range(min=0),
        help=f"At most N {what}; 0 for all [default: {TABLE_LIMIT} in a table on a terminal, all otherwise].",
    )


def note_withheld(cli_context: CliContext, *, shown: int, limit: int | None, more: bool) -> None:
    """Say on stderr that a listing stopped at its limit, and how to see the rest."""
    if more and limit is not None and not cli_context.quiet:
        click.echo(f"(first {shown} {'row' if shown == 1 else 'rows'} shown; --limit 0 for all)", err=True)


def _checked_account(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from bflsync.config import validate_account_name

    return validate_account_name(value)


def account_option(help_text: str) -> Callable[[F], F]:
    """``--account NAME`` of the read commands, validated like ``sync --account``."""
    return click.option(
        "--account",
        metavar="NAME",
        callback=_checked_account,
        help=help_text,
        shell_complete=completion.complete_accounts,
    )


def reading(cli_context: CliContext) -> Store:
    """The --db store, read-only; a context manager that closes it."""
    return open_store(cli_context.db)


def warn_unknown_scope(
    cli_context: CliContext, store: Store, *, source: str | None = None, account: str | None = None
) -> None:
    """Say when --source or --account names nothing in the store: a typo there answers empty."""
    if cli_context.quiet:
        return
    for note in store.unknown_scope(source=source, account=account):
        click.echo(f"bflsync: warning: {printable(note)}", err=True)


def warn_unreadable(cli_context: CliContext, finetune_ids: Iterable[str]) -> None:
    """Name the finetunes whose stored details the database cannot read as JSON."""
    if cli_context.quiet:
        return
    for finetune_id in finetune_ids:
        from bflsync.cli import render  # only when warning: `query --format ids` renders nothing

        click.echo(
            f"bflsync: warning: finetune {render.one_line(finetune_id)!r} has stored details that are not "
            "valid JSON (NaN or Infinity, written by another tool?): left out of this answer",
            err=True,
        )


def warn_not_json(cli_context: CliContext, records: Iterable[FinetuneRecord]) -> None:
    """Name the finetunes whose details held NaN or Infinity, shown as null."""
    if cli_context.quiet:
        return
    for record in records:
        if record.details_not_json:
            from bflsync.cli import render

            click.echo(
                f"bflsync: warning: finetune {render.one_line(record.finetune_id)!r} stores NaN or "
                "Infinity in its details, which JSON cannot hold: shown as null",
                err=True,
            )


def write_records(output_format: str, headers: Sequence[str], items: Sequence[dict[str, Any]]) -> None:
    """Listed records as one JSON array, JSON lines, or CSV with a header row (missing keys empty)."""
    from bflsync.cli import render

    if output_format == "json":
        render.write_json(list(items))
    elif output_format == "jsonl":
        render.write_jsonl(items)
    else:
        render.write_csv(headers, [[item.get(name) for name in headers] for item in items])
