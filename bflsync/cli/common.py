"""What every command shares: the per-invocation context and the helpers to read it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import click

if TYPE_CHECKING:
    from bflsync.db import OpenedStore, StoreLocation


class CliContext(NamedTuple):
    """Top-level options, built once by the group and handed to each command."""

    db: str | None
    verbosity: int
    quiet: bool


pass_cli_context = click.make_pass_decorator(CliContext)


def report_opened(cli_context: CliContext, location: StoreLocation, opened: OpenedStore) -> None:
    """Tell the user, on stderr, when opening the store created or upgraded it."""
    if cli_context.quiet:
        return
    if opened.created:
        click.echo(f"created a new bflsync store at {location.display}", err=True)
    if opened.upgraded_from:
        backup = f"; backup at {opened.backup_path}" if opened.backup_path else ""
        click.echo(
            f"upgraded the store at {location.display} from schema {opened.upgraded_from}{backup}", err=True
        )


class FiniteFloatRange(click.FloatRange):
    """A ``FloatRange`` that also refuses ``nan`` and ``inf``: click lets both through its bounds."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds.", param, ctx)
        return number
