"""Dynamic shell completion: finetune ids, field names and account names, read from the store.

click drives completion through ``_BFLSYNC_COMPLETE`` (see docs/reading.md for bash, zsh and fish);
it runs the program on every TAB, so the candidates are read through the lean read path and
any failure (no store yet, a bad ``--db``) simply offers nothing. Candidates are plain strings
(click wraps them), and the store is imported only when completing: every command names these
callbacks, and none should pay for them at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from bflsync.read.reader import Reader

MAX_CANDIDATES = 200


def _from_store(ctx: click.Context, read: Callable[[Reader], list[str]]) -> list[str]:
    from bflsync.read.reader import open_reader

    db = ctx.find_root().params.get("db")
    try:
        with open_reader(db) as reader:
            return read(reader)[:MAX_CANDIDATES]
    except Exception:  # completion must never print a traceback into the user's shell
        return []


def complete_ids(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Stored finetune ids starting with what was typed (``show``, ``history``, ``diff``)."""
    from bflsync.read import lookup

    return _from_store(ctx, lambda reader: lookup.ids_starting_with(reader, incomplete, limit=MAX_CANDIDATES))


def complete_accounts(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    from bflsync.read import lookup

    return [name for name in _from_store(ctx, lookup.account_names) if name.startswith(incomplete)]


def complete_field(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Field names (``facets`` fields and the field part of a filter); after ``FIELD=`` (or ``!=``)
    the values stored for a field that holds a small set of them (``status=Pe`` -> ``status=Pending``)."""
    from bflsync.read import fieldnames
    from bflsync.read.filters import OPERATORS

    if any(op in incomplete for op in OPERATORS):
        return _from_store(ctx, lambda reader: _stored_values(reader, incomplete))
    return _from_store(ctx, lambda reader: fieldnames.field_names(reader, incomplete))


def _stored_values(reader: Reader, incomplete: str) -> list[str]:
    """``FIELD=VALUE`` candidates for ``incomplete`` (``FIELD=`` or ``FIELD!=`` and a start of a value)."""
    from bflsync.errors import FilterError
    from bflsync.read import filters, search, suggest

    field_text, op, typed = incomplete.partition("!=") if "!=" in incomplete else incomplete.partition("=")
    try:
        field = filters.parse_field(field_text)
    except FilterError:
        return []
    counts, _ = search.facet_counts(reader, [field], filters.Query())
    values = [count.value for count in counts[field.name] if isinstance(count.value, str)]
    if len(counts[field.name]) > suggest.ENUMERATION_LIMIT:
        return []
    spelled = [
        value if _PLAIN.fullmatch(value) and value not in _WORDS else _quoted(value) for value in values
    ]
    return sorted(f"{field_text}{op}{value}" for value in spelled if value.startswith(typed))


# Values that a filter reads as the same text and a shell passes as one word.
_PLAIN = re.compile(r"[A-Za-z_][\w.@/:+-]*")
_WORDS = ("null", "true", "false")


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


SHELLS = ("bash", "zsh", "fish")


@click.command("completion")
@click.argument("shell", type=click.Choice(SHELLS))
def completion_command(shell: str) -> None:
    """Print the shell completion script for bash, zsh or fish.

    Completion offers commands, options, stored finetune ids, field names and, after
    FIELD=, the values stored for fields that hold a small set of them (status, mode, ...).

    \b
    Example:
        eval "$(bflsync completion bash)"      # in ~/.bashrc
        bflsync completion fish > ~/.config/fish/completions/bflsync.fish
    """
    from click.shell_completion import get_completion_class

    from bflsync.cli.app import cli

    completer = get_completion_class(shell)
    assert completer is not None
    # The script ends in a newline already, as click prints it for _BFLSYNC_COMPLETE=SHELL_source.
    click.echo(completer(cli, {}, "bflsync", "_BFLSYNC_COMPLETE").source(), nl=False)


def complete_sort(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    """``--sort [-]FIELD``: field names, keeping a leading ``-``."""
    from bflsync.read import fieldnames

    sign = "-" if incomplete.startswith("-") else ""
    names = _from_store(ctx, lambda reader: fieldnames.field_names(reader, incomplete[len(sign) :]))
    return [sign + name for name in names]


def complete_columns(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """``--columns a,b,c``: the field being typed after the last comma, the ones before kept."""
    head, comma, last = incomplete.rpartition(",")
    from bflsync.read import fieldnames

    done = head + comma
    return [done + name for name in _from_store(ctx, lambda reader: fieldnames.field_names(reader, last))]
