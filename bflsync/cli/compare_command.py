"""``bflsync compare``: a parameter x finetune matrix of any number of finetunes or versions."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click

from bflsync.cli import completion, render, values
from bflsync.cli.common import CliContext, pass_cli_context
from bflsync.cli.read_common import LIST_FORMATS, account_option, reading
from bflsync.errors import InputError
from bflsync.extract import MISSING
from bflsync.read import compare, filters

FORMATS = LIST_FORMATS


@click.command()
@click.argument("ids", nargs=-1, required=True, metavar="ID...", shell_complete=completion.complete_ids)
@click.option("--source", metavar="HOST", help="Which source, when an id is stored for several.")
@account_option("Which account, when an id is stored for several.")
@click.option("--only-changed", is_flag=True, help="Only the fields whose values differ.")
@click.option(
    "--columns",
    metavar="A,B,C",
    help="The fields to compare, in this order (any field, label.KEY).",
    shell_complete=completion.complete_columns,
)
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="table", show_default=True)
@pass_cli_context
def compare_command(
    cli_context: CliContext,
    ids: tuple[str, ...],
    source: str | None,
    account: str | None,
    only_changed: bool,
    columns: str | None,
    output_format: str,
) -> None:
    """Line up the parameters of several finetunes (or versions, ID@VERSION), one column each.

    Rows are the extracted fields, the other details keys (dotted when nested), the labels
    (label.KEY) and the status when recorded. `-` reads more ids from stdin, one per line.
    An empty cell has no value. Markdown pastes into a pull request or a chat.

    \b
    Example:
        bflsync query mode=product --format ids | bflsync compare - --only-changed
        bflsync compare acme-labs/portrait-lora-3@1 acme-labs/portrait-lora-3 --format markdown
    """
    texts = _expand(ids, sys.stdin)
    fields = filters.parse_fields(columns) if columns is not None else None
    with reading(cli_context) as store:
        result = store.compare(
            texts, fields=fields, only_changed=only_changed, source=source, account=account
        )
    if output_format == "json":
        render.write_json(_as_json(result))
        return
    if output_format == "jsonl":
        # One line per field, as the "rows" of the json form.
        render.write_jsonl(_as_json(result)["rows"])
        return
    headers = [values.FIELD_HEADER, *(entry.heading for entry in result.entries)]
    if output_format == "csv":
        render.write_csv(headers, [[row.field.name, *map(_shown, row.values)] for row in result.rows])
        return
    # What people read: the vocabulary diff and history share (JSON values, (missing)).
    rows = [[row.field.name, *map(values.value_text, row.values)] for row in result.rows]
    if output_format == "markdown":
        render.write_markdown(headers, rows)
    else:
        render.write_table(headers, rows)


def _expand(ids: Sequence[str], stdin: Iterable[str]) -> list[str]:
    """Ids in the order given, ``-`` replaced by the lines of stdin; repeats dropped, blank lines skipped."""
    texts: dict[str, None] = {}
    for text in ids:
        if text == "-":
            for number, line in enumerate(stdin, start=1):
                if not _is_utf8(line):
                    raise InputError(f"line {number} of stdin is not valid UTF-8 text")
                if line.strip():
                    texts.setdefault(line.strip())
        else:
            texts.setdefault(text)
    if not texts:
        raise InputError("compare needs at least one finetune id (stdin gave none)")
    return list(texts)


def _is_utf8(line: str) -> bool:
    """Undecodable bytes reach a text stream as lone surrogates (``surrogateescape``)."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(value: Any) -> Any:
    return None if value is MISSING else value


def _as_json(result: compare.Matrix) -> dict[str, Any]:
    """Values keyed by column heading; a field an entry lacks is left out of its ``values``."""
    return {
        "finetunes": [
            {
                "column": entry.heading,
                "finetune_id": entry.finetune_id,
                "source": entry.source,
                "account": entry.account,
                "version": entry.version,
            }
            for entry in result.entries
        ],
        "rows": [
            {
                "field": row.field.name,
                "changed": row.changed,
                "values": {
                    entry.heading: value
                    for entry, value in zip(result.entries, row.values, strict=True)
                    if value is not MISSING
                },
            }
            for row in result.rows
        ],
    }
