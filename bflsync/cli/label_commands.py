"""``bflsync label`` and ``bflsync note``: the only writes outside ``sync`` and ``db``.

Both write to an existing store at head under the store's lock (the one a sync takes), in
one short transaction, and never touch the network. The author recorded is the OS account
of the real uid, the PostgreSQL role of the session, and ``--as`` text when given.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

import click
from sqlalchemy.engine import Engine

from bflsync import annotate
from bflsync.cli import completion, render
from bflsync.cli.common import CliContext, pass_cli_context
from bflsync.cli.read_common import account_option
from bflsync.store import access, labels
from bflsync.store.lock import sync_lock_for

T = TypeVar("T")


def os_user() -> str:
    """The OS account of the process's real uid; ``uid N`` when the system cannot name it.

    Never ``LOGNAME`` or ``USER`` (what ``getpass.getuser`` reads first): anyone can set those,
    and the history would then name whoever they like.
    """
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def author(attribution: str | None) -> labels.Author:
    """The OS account, plus ``--as`` text (checked: one line, no NUL) when given."""
    if attribution is not None:
        attribution = annotate.check_attribution(attribution)
    return labels.Author(os_user=os_user(), attribution=attribution)


@contextmanager
def editing(cli_context: CliContext, *, wait_s: float) -> Iterator[Engine]:
    """A writable engine on the existing store, held under the store's lock."""
    location = access.locate_store(cli_context.db)
    engine = access.open_store_for_edit(location)
    try:
        with sync_lock_for(location, wait_s=wait_s), access.translate_errors(location):
            yield engine
    finally:
        engine.dispose()


def _write(cli_context: CliContext, wait_s: float, action: Callable[[Engine], T]) -> T:
    with editing(cli_context, wait_s=wait_s) as engine:
        return action(engine)


def store_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options ``label`` and ``note`` share: which finetune, and how long to wait for a sync."""
    command = click.option(
        "--wait",
        "wait_s",
        type=click.FloatRange(min=0),
        default=0.0,
        show_default=True,
        metavar="SECONDS",
        help="If a sync holds the store, wait this long for it instead of exiting 4 at once.",
    )(command)
    command = click.option(
        "--as",
        "attribution",
        metavar="NAME",
        help="Also record this free-text attribution (shown as such: the OS account is always recorded).",
    )(command)
    command = account_option("Which account, when the id is stored for several.")(command)
    return click.option("--source", metavar="HOST", help="Which source, when the id is stored for several.")(
        command
    )


@click.command()
@click.argument("finetune_id", metavar="ID", shell_complete=completion.complete_ids)
@click.argument("assignments", nargs=-1, metavar="KEY=VALUE...")
@click.option("--remove", "removals", multiple=True, metavar="KEY", help="Remove this label (repeatable).")
@store_options
@pass_cli_context
def label(
    cli_context: CliContext,
    finetune_id: str,
    assignments: tuple[str, ...],
    removals: tuple[str, ...],
    source: str | None,
    account: str | None,
    wait_s: float,
    attribution: str | None,
) -> None:
    """Set or remove local labels on a finetune; every change is kept with who made it and when.

    VALUE is typed as in filters: numbers, true/false, "quoted" text, anything else text.
    Keys are letters, digits, _ and - (up to 64). Labels are filterable and sortable as
    label.KEY; a sync never changes them.

    \b
    Example:
        bflsync label acme-labs/portrait-lora-3 project=acme approved=true --remove draft
    """
    edit = annotate.build_edit(assignments, removals)
    actor = author(attribution)
    outcome = _write(
        cli_context,
        wait_s,
        lambda engine: annotate.edit_labels(
            engine, finetune_id, edit, source=source, account=account, actor=actor, now=datetime.now(UTC)
        ),
    )
    if cli_context.quiet:
        return
    done = [
        f"{change.key}={render.cell(change.new)}" if change.change == "set" else f"removed {change.key}"
        for change in outcome.changes
    ]
    what = ", ".join(done) if done else "no change"
    click.echo(render.one_line(f"{outcome.finetune_id}: {what}"), err=True)


@click.command()
@click.argument("finetune_id", metavar="ID", shell_complete=completion.complete_ids)
@click.argument("words", nargs=-1, required=True, metavar="TEXT")
@store_options
@pass_cli_context
def note(
    cli_context: CliContext,
    finetune_id: str,
    words: tuple[str, ...],
    source: str | None,
    account: str | None,
    wait_s: float,
    attribution: str | None,
) -> None:
    """Append a note to a finetune, kept with who wrote it and when; a sync never changes notes.

    Several words are joined with spaces, so quoting is optional.

    \b
    Example:
        bflsync note acme-labs/portrait-lora-3 "approved for the spring catalogue"
    """
    text = annotate.check_note(" ".join(words))
    actor = author(attribution)
    _write(
        cli_context,
        wait_s,
        lambda engine: annotate.add_note(
            engine, finetune_id, text, source=source, account=account, actor=actor, now=datetime.now(UTC)
        ),
    )
    if not cli_context.quiet:
        click.echo(render.one_line(f"{finetune_id}: note added"), err=True)
