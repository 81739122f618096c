"""What every command shares: the per-invocation context and the helpers to read it."""

from __future__ import annotations

from dataclasses import dataclass

import click


@dataclass(frozen=True, kw_only=True)
class CliContext:
    """Top-level options, built once by the group and handed to each command."""

    db: str | None
    verbosity: int
    quiet: bool


def get_cli_context(ctx: click.Context) -> CliContext:
    obj = ctx.find_root().obj
    assert isinstance(obj, CliContext)
    return obj


pass_cli_context = click.make_pass_decorator(CliContext)
