"""``bflsync status``: is every account's sync running, and succeeding? A check for cron hosts nobody watches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from bflsync.cli import render
from bflsync.cli.common import CliContext, pass_cli_context
from bflsync.cli.read_common import account_option
from bflsync.cli.stdout import write_stdout
from bflsync.errors import StaleError
from bflsync.monitor import health
from bflsync.monitor.durations import parse_duration, spell_duration
from bflsync.read.reader import open_reader
from bflsync.timeform import iso_utc


def _max_age(_ctx: click.Context, _param: click.Parameter, value: str | None) -> timedelta | None:
    return None if value is None else parse_duration(value, option="--max-age")


@click.command()
@account_option("Only this account (the label of `sync --account`).")
@click.option("--source", metavar="HOST", help="Only the finetunes synced from this API host.")
@click.option(
    "--max-age",
    metavar="DURATION",
    callback=_max_age,
    help="Exit 5 when an account's last successful sync ended longer ago than this (2h, 90m, 1d), "
    "or never happened.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("text", "json")),
    default="text",
    show_default=True,
)
@pass_cli_context
def status(
    cli_context: CliContext,
    account: str | None,
    source: str | None,
    max_age: timedelta | None,
    output_format: str,
) -> None:
    """Show each account's last sync and last successful one, the finetunes, the lock holder and the schema.

    Per source and account: the newest run (its status, when it ended, its counts), the
    newest run with status ok, the finetunes live, deleted and still training, and the last
    balance read. For the store: where it is, its schema revision and the sync holding its
    lock, if any. It only reads the store, and can run while a sync does.

    With --max-age, exits 5 when any account shown has no successful sync that recent (a
    store without runs counts as stale): a check for Nagios-style monitors, a systemd
    OnFailure= hook or a Kubernetes probe. A partial run (exit 1 of sync) is not a success.

    \b
    Example:
        bflsync status --max-age 2h --format json
    """
    now = datetime.now(UTC)
    with open_reader(cli_context.db) as reader:
        where = str(getattr(reader, "where", ""))
        revision = health.schema_revision(reader)
        lock = health.lock_state(reader, path=where if reader.dialect == "sqlite" else None)
        found = health.accounts(reader, source=source, account=account)
        engine = reader.dialect
    stale = [item for item in found if max_age is not None and item.is_stale(now, max_age)]
    if not found and max_age is not None:
        stale_message = (
            "no sync of " + ("this account" if account or source else "any account") + " in the store"
        )
    else:
        stale_message = "; ".join(_stale_reason(item, now) for item in stale)
    if output_format == "json":
        render.write_json(
            {
                "store": where,
                "engine": engine,
                "schema_revision": revision,
                "lock": lock.as_json(),
                "checked_at": now,
                "max_age_s": max_age.total_seconds() if max_age is not None else None,
                "accounts": [
                    {**item.as_json(), "stale": item.is_stale(now, max_age) if max_age is not None else None}
                    for item in found
                ],
            }
        )
    else:
        write_stdout(_text(where, engine, revision, lock, found, now, scope=_scope(source, account)))
    if stale_message:
        raise StaleError(f"stale: {stale_message} (--max-age {spell_duration(max_age or timedelta())})")


def _stale_reason(item: health.AccountHealth, now: datetime) -> str:
    age = item.age(now)
    who = _who(item, between=" ")
    if age is None:
        return f"{who} never synced successfully"
    return f"{who} last synced successfully {spell_duration(age)} ago"


def _who(item: health.AccountHealth, *, between: str) -> str:
    """``SOURCE, account NAME`` on one line: the store may hold names bflsync did not write (another tool, a
    team store's other roles), and a line break or escape code in them must not forge or hide a line."""
    return f"{render.one_line(item.source)}{between}account {render.one_line(item.account)}"


def _text(
    where: str,
    engine: str,
    revision: str | None,
    lock: health.LockState,
    found: list[health.AccountHealth],
    now: datetime,
    *,
    scope: str | None,
) -> str:
    lines = [f"store: {render.one_line(where)} ({engine}, schema {revision or 'unstamped'})"]
    lines.append(f"lock: {_lock_text(lock)}")
    if not found:
        lines.append(
            f"no sync of {scope} in the store" if scope else "no syncs and no finetunes in the store"
        )
    for item in found:
        lines.append("")
        lines.append(_who(item, between=", "))
        lines.append(f"  last run:      {_run_text(item.last_run, now, counts=True)}{_abandoned(item, lock)}")
        lines.append(f"  last success:  {_run_text(item.last_success, now, counts=False)}")
        training = f", {item.training} training" if item.training else ""
        lines.append(f"  finetunes:     {item.live} live, {item.deleted} deleted{training}")
        if item.credits is not None:
            lines.append(f"  credits:       {item.credits:g}")
    return "".join(f"{line}\n" for line in lines)


def _abandoned(item: health.AccountHealth, lock: health.LockState) -> str:
    """A note for a run still marked running while no sync holds the lock: its process was killed
    (SIGKILL, power loss) before it could record its end, and it will never end."""
    if item.last_run is None or item.last_run["status"] != "running" or lock.held is not False:
        return ""
    return "; abandoned: no sync holds the lock"


def _scope(source: str | None, account: str | None) -> str | None:
    """What --account and --source asked for, so an empty answer names it rather than the whole store."""
    parts = [
        *([f"account {render.one_line(account)!r}"] if account is not None else []),
        *([f"source {render.one_line(source)!r}"] if source is not None else []),
    ]
    return " at ".join(parts) or None


def _lock_text(lock: health.LockState) -> str:
    if lock.held is None:
        return "unknown"
    if not lock.held:
        return "free"
    return f"held by a sync (pid {lock.pid})" if lock.pid is not None else "held by a sync"


def _run_text(run: dict[str, Any] | None, now: datetime, *, counts: bool) -> str:
    if run is None:
        return "never"
    at: datetime | None = run["finished_at"] or run["started_at"]
    when = f"{iso_utc(at)} ({spell_duration(now - at)} ago)" if at is not None else "unknown time"
    text = (
        f"run {run['id']} {render.one_line(str(run['status']))}, ended {when}"
        if run["finished_at"]
        else f"run {run['id']} {render.one_line(str(run['status']))}, started {when}"
    )
    if counts:
        text += (
            f"; listed {run['listed']}, created {run['created']}, updated {run['updated']},"
            f" deleted {run['deleted']}, failed {run['failed']}"
        )
        if run["error"]:
            text += f"; error: {render.one_line(str(run['error']))}"
    return text
