"""Dynamic shell completion: finetune ids, field names and account names, read from the store.

click drives completion through ``_BFLSYNC_COMPLETE`` (see the README for bash, zsh and fish);
it runs the program on every TAB, so the candidates are read through the lean read path and
any failure (no store yet, a bad ``--db``) simply offers nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import click
from click.shell_completion import CompletionItem

from bflsync import fieldnames, lookup
from bflsync.filters import OPERATORS
from bflsync.reading import Reader, open_reader

MAX_CANDIDATES = 200


def _from_store(ctx: click.Context, read: Callable[[Reader], list[str]]) -> list[str]:
    db = ctx.find_root().params.get("db")
    try:
        with open_reader(db) as reader:
            return read(reader)[:MAX_CANDIDATES]
    except Exception:  # completion must never print a traceback into the user's shell
        return []


def complete_ids(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Stored finetune ids starting with what was typed (``show``, ``history``, ``diff``)."""
    ids = _from_store(ctx, lambda reader: lookup.ids_starting_with(reader, incomplete, limit=MAX_CANDIDATES))
    return [CompletionItem(finetune_id) for finetune_id in ids]


def complete_accounts(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    names = _from_store(ctx, lookup.account_names)
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def complete_field(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Field names (``facets`` fields and the field part of a filter); nothing once an operator is typed."""
    if any(op in incomplete for op in OPERATORS):
        return []
    names = _from_store(ctx, lambda reader: fieldnames.field_names(reader, incomplete))
    return [CompletionItem(name) for name in names]


def complete_sort(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """``--sort [-]FIELD``: field names, keeping a leading ``-``."""
    sign = "-" if incomplete.startswith("-") else ""
    names = _from_store(ctx, lambda reader: fieldnames.field_names(reader, incomplete[len(sign) :]))
    return [CompletionItem(sign + name) for name in names]


def complete_columns(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """``--columns a,b,c``: the field being typed after the last comma, the ones before kept."""
    head, comma, last = incomplete.rpartition(",")
    done = head + comma
    names = _from_store(ctx, lambda reader: fieldnames.field_names(reader, last))
    return [CompletionItem(done + name) for name in names]
