"""``show``, ``history``, ``runs``, ``credits``, ``diff`` and ``accounts``: one finetune, its audit trail,
the sync log, the credit balance and the accounts."""

from __future__ import annotations

import click

from bflsync import audit, lookup
from bflsync.cli import completion, render
from bflsync.cli.common import CliContext, pass_cli_context
from bflsync.cli.read_common import account_option, reading, shown_json, warn_not_json
from bflsync.columns import COLUMN_NAMES, LIFECYCLE_COLUMNS, RUN_COUNTERS
from bflsync.errors import InputError
from bflsync.extract import INT64_MAX, INT64_MIN
from bflsync.records import FinetuneRecord

RUN_COLUMNS = (
    "id",
    "started_at",
    "duration_s",
    "status",
    "source",
    "account",
    *RUN_COUNTERS,
    "credits",
    "credits_change",
)
CREDIT_COLUMNS = ("run_id", "started_at", "source", "account", "credits", "drop", "new_finetunes")
ACCOUNT_COLUMNS = ("source", "account", "live", "deleted", "last_synced_at", "last_status", "key_fingerprint")


@click.command()
@click.argument("finetune_id", metavar="ID", shell_complete=completion.complete_ids)
@click.option("--source", metavar="HOST", help="Which source, when the id is stored for several.")
@account_option("Which account, when the id is stored for several.")
@click.option("--format", "output_format", type=click.Choice(("text", "json")), default="text")
@pass_cli_context
def show(
    cli_context: CliContext, finetune_id: str, source: str | None, account: str | None, output_format: str
) -> None:
    """Show one finetune's current record: extracted fields, bookkeeping and raw details.

    Finetunes the API no longer lists are shown too, marked as deleted.

    \b
    Example:
        bflsync show acme-labs/portrait-lora-3 --format json
    """
    with reading(cli_context) as reader:
        found = lookup.find_finetune(reader, finetune_id, source=source, account=account)
        timeline = audit.status_timeline(reader, found.pk)
    record = found.record
    warn_not_json(cli_context, [record])
    if output_format == "json":
        entries = [{k: v for k, v in e.as_dict().items() if k not in _SAME_RECORD} for e in timeline]
        render.write_json({**record.as_dict(), "status_timeline": entries})
        return
    status = (
        "live"
        if record.deleted_at is None
        else f"DELETED (no longer listed since {record.deleted_at.isoformat()})"
    )
    item = record.as_dict()
    names = [name for name in COLUMN_NAMES if name not in LIFECYCLE_COLUMNS]
    lines = [("status", status), *((name, item[name]) for name in names)]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        click.echo(f"{name.ljust(width)}  {render.one_line(render.cell(value))}")
    click.echo(f"{'training'.ljust(width)}  {_training(record)}")
    if timeline:
        click.echo("status timeline:")
        for entry in timeline:
            click.echo(f"    {_status_line(entry)}")
    click.echo("details:")
    click.echo(render.json_for_terminal(render.dumps(item["details"], indent=2)))


@click.command()
@click.argument("finetune_id", metavar="[ID]", required=False, shell_complete=completion.complete_ids)
@click.option("--since", metavar="TIMESTAMP", help="Only changes observed at or after this time (ISO 8601).")
@click.option("--source", metavar="HOST", help="Which source, when the id is stored for several.")
@account_option("Which account, when the id is stored for several (without ID: only this account's changes).")
@click.option("--format", "output_format", type=click.Choice(("text", "json")), default="text")
@pass_cli_context
def history(
    cli_context: CliContext,
    finetune_id: str | None,
    since: str | None,
    source: str | None,
    account: str | None,
    output_format: str,
) -> None:
    """List every stored version of a finetune, oldest first, with old and new values per changed key.

    Training status changes are listed among the versions, each line marked "status".
    Without ID, --since lists every change in the account since then.

    \b
    Example:
        bflsync history acme-labs/portrait-lora-3
        bflsync history --since 2026-01-01 --format json
    """
    if finetune_id is None and since is None:
        raise InputError("history needs a finetune ID, or --since TIMESTAMP for the account-wide log")
    from bflsync import filters  # here, not at the top: `show` parses no filter language

    start = filters.parse_timestamp(since) if since is not None else None
    with reading(cli_context) as reader:
        entries = audit.history(reader, finetune_id=finetune_id, source=source, account=account, since=start)
    if output_format == "json":
        render.write_json([entry.as_dict() for entry in entries])
        return
    for entry in entries:
        who = "" if finetune_id is not None else f"{render.one_line(entry.finetune_id)}  "
        if isinstance(entry, audit.StatusEntry):
            click.echo(f"{who}{_status_line(entry)}")
            continue
        run = f"run {entry.sync_run_id}" if entry.sync_run_id is not None else "no run"
        click.echo(f"{who}v{entry.version}  {entry.change}  {entry.observed_at.isoformat()}  {run}")
        for key, change in entry.changes.items():
            path = render.one_line(filters.format_path((key,)))
            click.echo(f"    {path}: {shown_json(change, 'old')} -> {shown_json(change, 'new')}")


@click.command()
@click.argument("run_id", metavar="[RUN_ID]", type=click.IntRange(INT64_MIN, INT64_MAX), required=False)
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=INT64_MAX),
    default=20,
    show_default=True,
    help="Newest N runs.",
)
@account_option("Only the runs of this account.")
@click.option("--format", "output_format", type=click.Choice(("table", "json")), default="table")
@pass_cli_context
def runs(
    cli_context: CliContext, run_id: int | None, limit: int, account: str | None, output_format: str
) -> None:
    """List sync runs, newest first, or show one run with its per-finetune errors.

    \b
    Example:
        bflsync runs --limit 5
        bflsync runs 42
    """
    with reading(cli_context) as reader:
        if run_id is None:
            listed = audit.runs(reader, limit=limit, account=account)
        else:
            run, errors = audit.run_with_errors(reader, run_id)
    if run_id is None:
        if output_format == "json":
            render.write_json(listed)
        else:
            render.write_table(RUN_COLUMNS, [[run[name] for name in RUN_COLUMNS] for run in listed])
        return
    if output_format == "json":
        render.write_json({**run, "errors": errors})
        return
    width = max(len(name) for name in run)
    for name, value in run.items():
        click.echo(f"{name.ljust(width)}  {render.one_line(render.cell(value))}")
    if errors:
        click.echo("errors:")
        headers = ("finetune_id", "kind", "http_status", "attempts", "message")
        render.write_table(headers, [[error[name] for name in headers] for error in errors])


@click.command()
@click.argument("first", metavar="A", shell_complete=completion.complete_ids)
@click.argument("second", metavar="B", shell_complete=completion.complete_ids)
@click.option("--source", metavar="HOST", help="Which source, when an id is stored for several.")
@account_option("Which account, when an id is stored for several.")
@click.option("--format", "output_format", type=click.Choice(("text", "json")), default="text")
@pass_cli_context
def diff(
    cli_context: CliContext,
    first: str,
    second: str,
    source: str | None,
    account: str | None,
    output_format: str,
) -> None:
    """Compare the parameters of two finetunes, or two versions of one (ID@VERSION), side by side.

    Nested objects are compared key by key; only differing keys are shown.

    \b
    Example:
        bflsync diff acme-labs/portrait-lora-3 studio-nord/portrait-lora-20
        bflsync diff acme-labs/portrait-lora-3@1 acme-labs/portrait-lora-3@2
    """
    with reading(cli_context) as reader:
        result = audit.diff(
            reader, audit.VersionRef(first), audit.VersionRef(second), source=source, account=account
        )
    sides = {"a": result.a, "b": result.b}
    if output_format == "json":
        render.write_json(
            {
                **{
                    name: {
                        "finetune_id": side.finetune_id,
                        "source": side.source,
                        "account": side.account,
                        "version": side.version,
                    }
                    for name, side in sides.items()
                },
                "differences": result.differences,
            }
        )
        return
    headers = ["key", *(f"{side.finetune_id}@{side.version}" for side in sides.values())]
    rows = [[row["key"], shown_json(row, "a"), shown_json(row, "b")] for row in result.differences]
    render.write_table(headers, rows)


@click.command()
@click.option(
    "--format", "output_format", type=click.Choice(("table", "json")), default="table", show_default=True
)
@pass_cli_context
def accounts(cli_context: CliContext, output_format: str) -> None:
    """List each (source, account) in the store: live and deleted finetunes, last sync, key fingerprint.

    An account is the label a sync ran under (sync --account, default "default"); the
    fingerprint identifies the key that last synced it without revealing it (empty until a
    sync records one, e.g. right after upgrading an older store).

    \b
    Example:
        bflsync accounts --format json
    """
    with reading(cli_context) as reader:
        listed = audit.accounts(reader)
    if output_format == "json":
        render.write_json(listed)
        return
    render.write_table(ACCOUNT_COLUMNS, [[item[name] for name in ACCOUNT_COLUMNS] for item in listed])


@click.command()
@account_option("Only this account's balance (the label of `sync --account`).")
@click.option("--source", metavar="HOST", help="Only the balance read from this API host.")
@click.option("--since", metavar="TIMESTAMP", help="Only runs started at or after this time (ISO 8601).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("table", "json", "csv")),
    default="table",
    show_default=True,
)
@pass_cli_context
def credits(
    cli_context: CliContext, account: str | None, source: str | None, since: str | None, output_format: str
) -> None:
    """Show the account's credit balance over time, as each sync read it, oldest first.

    Each row is a run that read the balance: the drop since the previous reading (positive
    when credits were spent) and the finetunes first seen in between, the trainings that
    the drop paid for.

    \b
    Example:
        bflsync credits --since 2026-11-01 --format csv
    """
    from bflsync import filters

    start = filters.parse_timestamp(since) if since is not None else None
    with reading(cli_context) as reader:
        intervals = audit.credit_history(reader, source=source, account=account, since=start)
    if output_format == "json":
        render.write_json([interval.as_dict() for interval in intervals])
        return
    rows = [[interval.as_dict()[name] for name in CREDIT_COLUMNS] for interval in intervals]
    for row in rows:
        row[-1] = " ".join(row[-1])
    if output_format == "csv":
        render.write_csv(list(CREDIT_COLUMNS), rows)
    else:
        render.write_table(CREDIT_COLUMNS, rows)


_SAME_RECORD = ("finetune_id", "source", "change")


def _training(record: FinetuneRecord) -> str:
    """The training status in one line: NULL means no sync has asked yet."""
    status = record.column("status")
    if status is None:
        return "not checked yet"
    parts = [render.one_line(status)]
    progress = record.column("progress")
    if progress is not None:
        parts.append(f"progress {progress:g}")
    checked = record.column("status_checked_at")
    if checked is not None:
        parts.append(f"checked {checked.isoformat()}")
    ready = record.column("ready_at")
    if ready is not None:
        parts.append(f"ready since {ready.isoformat()}")
    return ", ".join(parts)


def _status_line(entry: audit.StatusEntry) -> str:
    run = f"run {entry.sync_run_id}" if entry.sync_run_id is not None else "no run"
    progress = f" {entry.progress:g}" if entry.progress is not None else ""
    return f"status  {render.one_line(entry.status)}{progress}  {entry.observed_at.isoformat()}  {run}"
