"""What the read commands share: opening the store read-only, and the warnings they print.

Every read command opens the store read-only through the Python API (:func:`bflsync.api.open_store`):
it never creates, migrates or writes the database and never touches the network. On a SQLite store
no read command imports SQLAlchemy, pydantic or rich (tables on a terminal are drawn by cli/table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click

from bflsync.api import Store, open_store
from bflsync.cli import completion
from bflsync.cli.common import CliContext
from bflsync.extract import canonical_json
from bflsync.read.records import FinetuneRecord

F = TypeVar("F", bound=Callable[..., Any])

# One vocabulary (docs/reading.md, "Output formats"): json, jsonl and csv wherever records are listed.
RECORD_FORMATS = ("json", "jsonl", "csv")
LIST_FORMATS = ("table", *RECORD_FORMATS)


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


def shown_json(values: dict[str, Any], side: str) -> str:
    """A value as compact JSON for a terminal line (control characters escaped)."""
    from bflsync.cli import render

    return render.json_for_terminal(canonical_json(values[side])) if side in values else "(missing)"


def write_records(output_format: str, headers: Sequence[str], items: Sequence[dict[str, Any]]) -> None:
    """Listed records as one JSON array, JSON lines, or CSV with a header row (missing keys empty)."""
    from bflsync.cli import render

    if output_format == "json":
        render.write_json(list(items))
    elif output_format == "jsonl":
        render.write_jsonl(items)
    else:
        render.write_csv(headers, [[item.get(name) for name in headers] for item in items])
