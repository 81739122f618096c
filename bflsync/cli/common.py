"""What every command shares: the per-invocation context and the helpers to read it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from bflsync.extract import INT64_MAX

if TYPE_CHECKING:
    from bflsync.store.access import OpenedStore, StoreLocation


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


class Int64Range(click.IntRange):
    """A whole number from ``min`` up to SQLite's 64-bit cap, whose help shows only ``x>=min``.

    The cap keeps a huge ``--limit`` from overflowing a bound parameter; it is no limit anyone
    meets, so ``[0<=x<=9223372036854775807]`` in the help would be noise.
    """

    def __init__(self, min: int) -> None:
        super().__init__(min=min, max=INT64_MAX)

    def _describe_range(self) -> str:
        return f"x>={self.min}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.INT.convert(value, param, ctx)
        if number > INT64_MAX:
            self.fail(f"{number} is larger than the largest value bflsync takes ({INT64_MAX}).", param, ctx)
        return super().convert(value, param, ctx)


class FiniteFloatRange(click.FloatRange):
    """A ``FloatRange`` that also refuses ``nan`` and ``inf``: click lets both through its bounds."""

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds.", param, ctx)
        return number
