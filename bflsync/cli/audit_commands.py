"""``show``, ``history``, ``runs``, ``credits``, ``diff`` and ``accounts``: one finetune (with its labels,
notes and the request that retrains it), its audit trail, the sync log, the credit balance and the accounts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from bflsync.api import history_kind, history_time
from bflsync.cli import completion, render, values
from bflsync.cli.common import CliContext, pass_cli_context
from bflsync.cli.read_common import (
    LIST_FORMATS,
    RECORD_FORMATS,
    account_option,
    cut,
    limit_option,
    note_withheld,
    reading,
    row_limit,
    warn_not_json,
    warn_unknown_scope,
    write_records,
)
from bflsync.columns import COLUMN_NAMES, LIFECYCLE_COLUMNS, RUN_COUNTERS
from bflsync.errors import InputError
from bflsync.extract import INT64_MAX, INT64_MIN, MISSING, canonical_json
from bflsync.read import audit_trail, label_reads
from bflsync.read.records import FinetuneRecord
from bflsync.timeform import iso_utc

if TYPE_CHECKING:
    from bflsync.api import HistoryEntry
    from bflsync.read.retrain import RetrainRequest

HISTORY_FORMATS = ("text", *LIST_FORMATS)
NOTES_SHOWN = 5
# CSV columns of history, those the listed kinds of entry (version, status, label, note) have.
HISTORY_COLUMNS = (
    "kind",
    "finetune_id",
    "source",
    "account",
    "version",
    "change",
    "observed_at",
    "sync_run_id",
    "changes",
    "details",
    "status",
    "progress",
    "key",
    "old",
    "new",
    "changed_by",
    "changed_by_role",
    "changed_as",
    "text",
    "written_by",
    "written_by_role",
    "written_as",
)

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
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("text", "json", "request")),
    default="text",
    show_default=True,
    help="request: the JSON body of POST /v1/finetune that trains it again (without file_data).",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="With --format request: another value for a training input, typed as in filters; KEY=null drops it.",
)
@click.option(
    "--keep-webhook",
    is_flag=True,
    help="With --format request: keep the stored webhook_url and webhook_secret (left out by default).",
)
@pass_cli_context
def show(
    cli_context: CliContext,
    finetune_id: str,
    source: str | None,
    account: str | None,
    output_format: str,
    overrides: tuple[str, ...],
    keep_webhook: bool,
) -> None:
    """Show one finetune's current record: extracted fields, bookkeeping, labels, notes and raw details.

    Finetunes the API no longer lists are shown too, marked as deleted. --format request
    prints the body of POST /v1/finetune with every training input the details hold (keys
    that are not inputs are named on stderr); add file_data, the base64-encoded ZIP of the
    images, before sending it. bflsync never sends it.

    \b
    Example:
        bflsync show acme-labs/portrait-lora-3 --format json
        bflsync show acme-labs/portrait-lora-3 --format request --set learning_rate=2e-5
    """
    if overrides and output_format != "request":
        raise InputError("--set changes the retraining request: use it with --format request")
    if keep_webhook and output_format != "request":
        raise InputError("--keep-webhook changes the retraining request: use it with --format request")
    if output_format == "request":
        # Here, not at the top: the request's typing (dataclasses) is not for the other formats.
        from bflsync.read import retrain

        changes = retrain.parse_overrides(overrides)
    with reading(cli_context) as store:
        if output_format == "request":
            record = store.finetune(finetune_id, source=source, account=account)
        else:
            record, timeline, notes = store.show(finetune_id, source=source, account=account)
    warn_not_json(cli_context, [record])
    if output_format == "request":
        _write_request(cli_context, retrain.request_body(record.details, changes, keep_webhook=keep_webhook))
        return
    labels = record.labels
    if output_format == "json":
        entries = [{k: v for k, v in e.as_dict().items() if k not in _SAME_RECORD} for e in timeline]
        render.write_json(
            {**record.as_dict(), "status_timeline": entries, "notes": [note.as_dict() for note in notes]}
        )
        return
    status = (
        "live"
        if record.deleted_at is None
        else f"DELETED (no longer listed since {iso_utc(record.deleted_at)})"
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
    if labels:
        click.echo("labels:")
        for key, value in labels.items():
            click.echo(f"  {key} = {render.one_line(render.cell(value))}")
    if notes:
        earlier = len(notes) - NOTES_SHOWN
        more = f", {earlier} earlier in `bflsync history`" if earlier > 0 else ""
        click.echo(f"notes (newest last{more}):")
        for note in notes[-NOTES_SHOWN:]:
            stamp = iso_utc(note.written_at)
            by = label_reads.author_text(note.written_by, note.written_by_role, note.written_as)
            click.echo(f"  {stamp}  {render.one_line(by)}: {render.one_line(note.text)}")
    click.echo("details:")
    click.echo(render.json_for_terminal(render.dumps(item["details"], indent=2)))


def _write_request(cli_context: CliContext, request: RetrainRequest) -> None:
    """The body on stdout; what was left out of it on stderr, so the JSON stays pipeable."""
    from bflsync.read import filters

    render.write_json(request.body)
    if cli_context.quiet:
        return
    if request.not_inputs:
        names = ", ".join(filters.format_path((key,)) for key in request.not_inputs)
        click.echo(render.one_line(f"left out, not inputs of POST /v1/finetune: {names}"), err=True)
    for key, value in request.unusable.items():
        shown = render.json_for_terminal(canonical_json(value))
        click.echo(
            render.one_line(f"left out {key}: the stored value {shown} is not of the type the API takes"),
            err=True,
        )
    for key, reason in request.withheld.items():
        click.echo(f"left out {key}: {reason}", err=True)


CHANGES = ("created", "updated", "deleted", "restored")
KINDS = ("version", "status", "label", "note")


def _choices(
    allowed: tuple[str, ...],
) -> Callable[[click.Context, click.Parameter, str | None], frozenset[str] | None]:
    """A click callback for a comma-separated subset of ``allowed``."""

    def parse(_ctx: click.Context, _param: click.Parameter, value: str | None) -> frozenset[str] | None:
        if value is None:
            return None
        picked = frozenset(part.strip() for part in value.split(",") if part.strip())
        unknown = sorted(picked - set(allowed))
        if unknown or not picked:
            raise click.BadParameter(
                f"{', '.join(map(repr, unknown)) or 'nothing'}: pick from {','.join(allowed)}"
            )
        return picked

    return parse


@click.command()
@click.argument("finetune_id", metavar="[ID]", required=False, shell_complete=completion.complete_ids)
@click.option(
    "--since",
    metavar="TIMESTAMP",
    help="Only changes observed at or after this time: ISO 8601, or relative (7d, 12h, yesterday).",
)
@click.option(
    "--change",
    "changes",
    metavar="LIST",
    callback=_choices(CHANGES),
    help=f"Only versions with these changes ({','.join(CHANGES)}); implies --kind version unless given.",
)
@click.option(
    "--kind",
    "kinds",
    metavar="LIST",
    callback=_choices(KINDS),
    help=f"Only these kinds of entry ({','.join(KINDS)}) [default: all].",
)
@click.option("--source", metavar="HOST", help="Which source, when the id is stored for several.")
@account_option("Which account, when the id is stored for several (without ID: only this account's changes).")
@limit_option("entries")
@click.option(
    "--format", "output_format", type=click.Choice(HISTORY_FORMATS), default="text", show_default=True
)
@pass_cli_context
def history(
    cli_context: CliContext,
    finetune_id: str | None,
    since: str | None,
    changes: frozenset[str] | None,
    kinds: frozenset[str] | None,
    source: str | None,
    account: str | None,
    limit: int | None,
    output_format: str,
) -> None:
    """List what changed, oldest first: one line per change with old -> new for each changed key.

    Versions (created, updated, deleted, restored), training status changes, labels and notes
    are listed together; a created version is one line, and a status shows only when it
    changed (progress alone is in json). Without ID, --since lists every change in the account
    since then. A summary of the counts follows on stderr. json, jsonl and csv hold every stored
    entry, whole (details and every status poll included).

    \b
    Example:
        bflsync history --since 7d
        bflsync history --since yesterday --change deleted,restored
        bflsync history acme-labs/portrait-lora-3 --kind version,label --format table
    """
    if finetune_id is None and since is None:
        raise InputError("history needs a finetune ID, or --since TIMESTAMP for the account-wide log")
    from bflsync.read import filters  # here, not at the top: `show` parses no filter language

    start = filters.parse_timestamp(since, now=datetime.now(UTC)) if since is not None else None
    with reading(cli_context) as store:
        if finetune_id is None:
            warn_unknown_scope(cli_context, store, source=source, account=account)
        entries = store.history(
            finetune_id, since=start, source=source, account=account, kinds=kinds, changes=changes
        )
        before = store.statuses_before(start, source=source, account=account) if start is not None else {}
    if output_format not in RECORD_FORMATS:
        entries = _status_changes_only(entries, before)
    limit = row_limit(limit, output_format)
    more = limit is not None and len(entries) > limit
    shown = entries[:limit] if limit is not None else entries
    if output_format in RECORD_FORMATS:
        items = [_history_object(entry) for entry in shown]
        present = [name for name in HISTORY_COLUMNS if any(name in item for item in items)]
        write_records(output_format, present or HISTORY_COLUMNS, items)
    elif output_format == "text":
        for entry, (what, detail) in zip(shown, _history_parts(shown, before), strict=True):
            who = "" if finetune_id is not None else f"{render.one_line(entry.finetune_id)}  "
            click.echo(f"{who}{what}  {iso_utc(history_time(entry))}" + (f"  {detail}" if detail else ""))
    else:
        render.write_grid(
            output_format,
            ("observed_at", "finetune_id", "change", "what"),
            [
                [history_time(entry), entry.finetune_id, what, detail]
                for entry, (what, detail) in zip(shown, _history_parts(shown, before), strict=True)
            ],
        )
    note_withheld(cli_context, shown=len(shown), limit=limit, more=more)
    if not cli_context.quiet and output_format not in RECORD_FORMATS:
        scope = f" since {iso_utc(start)}" if start is not None else ""
        click.echo(f"{_summary(entries)}{scope}", err=True)


def _status_changes_only(
    entries: list[HistoryEntry], before: dict[tuple[str, str, str], str]
) -> list[HistoryEntry]:
    """Status entries whose status differs from the one before (a poll that only moved progress is dropped)."""
    last = dict(before)
    kept: list[HistoryEntry] = []
    for entry in entries:
        if isinstance(entry, audit_trail.StatusEntry):
            key = (entry.finetune_id, entry.source, entry.account)
            if last.get(key) == entry.status:
                continue
            last[key] = entry.status
        kept.append(entry)
    return kept


def _history_parts(
    entries: list[HistoryEntry], before: dict[tuple[str, str, str], str]
) -> list[tuple[str, str]]:
    """Per entry, what happened (``v2 updated``, ``status``, ``label set``, ``note``) and its detail:
    old -> new for each changed key, the new status, the note's text."""
    last = dict(before)
    parts = []
    for entry in entries:
        if isinstance(entry, audit_trail.StatusEntry):
            key = (entry.finetune_id, entry.source, entry.account)
            old = last.get(key)
            last[key] = entry.status
            was = f"{render.one_line(old)} {values.ARROW} " if old is not None else ""
            parts.append(("status", f"{was}{render.one_line(entry.status)}{_run(entry.sync_run_id)}"))
        elif isinstance(entry, audit_trail.VersionEntry):
            changed = "" if entry.change in ("created", "deleted") else _changed_leaves(entry.changes)
            parts.append((f"v{entry.version} {entry.change}", f"{changed}{_run(entry.sync_run_id)}".strip()))
        elif isinstance(entry, label_reads.LabelEvent):
            old_value = MISSING if entry.old is None else entry.old
            new_value = entry.new if entry.change == "set" else MISSING
            by = render.one_line(
                label_reads.author_text(entry.changed_by, entry.changed_by_role, entry.changed_as)
            )
            parts.append(
                (
                    f"label {entry.change}",
                    f"{values.change_text(render.one_line(f'label.{entry.key}'), old_value, new_value)}  by {by}",
                )
            )
        else:
            by = render.one_line(
                label_reads.author_text(entry.written_by, entry.written_by_role, entry.written_as)
            )
            parts.append(("note", f"by {by}: {render.one_line(entry.text)}"))
    return parts


def _run(run_id: int | None) -> str:
    return f"  run {run_id}" if run_id is not None else ""


def _changed_leaves(changes: dict[str, dict[str, Any]]) -> str:
    return ", ".join(text for key, change in changes.items() for text in values.leaf_changes(key, change))


def _summary(entries: list[HistoryEntry]) -> str:
    """``3 updated, 1 deleted, 1 created, 2 status changes``: the counts, most first."""
    counts: dict[str, int] = {}
    for entry in entries:
        if isinstance(entry, audit_trail.VersionEntry):
            name = entry.change
        else:
            name = {"status": "status change", "label": "label change", "note": "note"}[history_kind(entry)]
        counts[name] = counts.get(name, 0) + 1
    if not counts:
        return "no changes"
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(
        f"{count} {name}{'s' if count != 1 and name in ('status change', 'label change', 'note') else ''}"
        for name, count in ordered
    )


def _history_object(entry: HistoryEntry) -> dict[str, Any]:
    """One history entry as JSON, ``kind`` saying which; ``observed_at`` is when it happened, for all kinds."""
    if isinstance(entry, audit_trail.VersionEntry | audit_trail.StatusEntry):
        return {"kind": history_kind(entry), **entry.as_dict()}
    common = {
        "kind": history_kind(entry),
        "finetune_id": entry.finetune_id,
        "source": entry.source,
        "account": entry.account,
    }
    if isinstance(entry, label_reads.LabelEvent):
        return {
            **common,
            "observed_at": entry.changed_at,
            "key": entry.key,
            "change": entry.change,
            "old": entry.old,
            "new": entry.new,
            "changed_by": entry.changed_by,
            "changed_by_role": entry.changed_by_role,
            "changed_as": entry.changed_as,
        }
    return {
        **common,
        "observed_at": entry.written_at,
        "text": entry.text,
        "written_by": entry.written_by,
        "written_by_role": entry.written_by_role,
        "written_as": entry.written_as,
    }


@click.command()
@click.argument("run_id", metavar="[RUN_ID]", type=click.IntRange(INT64_MIN, INT64_MAX), required=False)
@limit_option("runs, newest first")
@account_option("Only the runs of this account.")
@click.option(
    "--format", "output_format", type=click.Choice(LIST_FORMATS), default="table", show_default=True
)
@pass_cli_context
def runs(
    cli_context: CliContext, run_id: int | None, limit: int | None, account: str | None, output_format: str
) -> None:
    """List sync runs, newest first, or show one run with its per-finetune errors.

    \b
    Example:
        bflsync runs --limit 5
        bflsync runs 42
    """
    limit = row_limit(limit, output_format)
    with reading(cli_context) as store:
        warn_unknown_scope(cli_context, store, account=account)
        if run_id is None:
            # One extra run tells whether the listing stopped at the limit.
            listed = store.runs(limit=None if limit is None else limit + 1, account=account)
        else:
            run, errors = store.run(run_id)
    if run_id is None:
        more = limit is not None and len(listed) > limit
        listed = listed[:limit] if limit is not None else listed
        if output_format in RECORD_FORMATS:
            write_records(output_format, list(listed[0]) if listed else list(RUN_COLUMNS), listed)
        else:
            render.write_grid(
                output_format,
                [_run_label(name) for name in RUN_COLUMNS],
                [[_run_cell(run, name) for name in RUN_COLUMNS] for run in listed],
            )
        note_withheld(cli_context, shown=len(listed), limit=limit, more=more)
        return
    if output_format == "json":
        render.write_json({**run, "errors": errors})
        return
    if output_format in RECORD_FORMATS:
        # One run as a record, its errors as a JSON list (a CSV cell holds them as JSON text).
        write_records(output_format, [*run, "errors"], [{**run, "errors": errors}])
        return
    width = max(len(name) for name in run)
    for name in run:
        click.echo(f"{_run_label(name).ljust(width)}  {render.one_line(_run_cell(run, name))}")
    if errors:
        click.echo("errors:")
        headers = ("finetune_id", "kind", "http_status", "attempts", "message")
        render.write_table(headers, [[error[name] for name in headers] for error in errors])


@click.command()
@click.argument("first", metavar="A", shell_complete=completion.complete_ids)
@click.argument("second", metavar="[B]", required=False, shell_complete=completion.complete_ids)
@click.option("--source", metavar="HOST", help="Which source, when an id is stored for several.")
@account_option("Which account, when an id is stored for several.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice((*LIST_FORMATS, "text")),
    default="table",
    show_default=True,
    help="table (text is the same); json is one object; jsonl and csv list the differences.",
)
@pass_cli_context
def diff(
    cli_context: CliContext,
    first: str,
    second: str | None,
    source: str | None,
    account: str | None,
    output_format: str,
) -> None:
    """Compare the parameters of two finetunes, or two versions of one (ID@VERSION), side by side.

    Nested objects are compared key by key; only differing keys are shown. With one ID, its
    previous version is compared with the current one (what the last change did).

    \b
    Example:
        bflsync diff acme-labs/portrait-lora-3
        bflsync diff acme-labs/portrait-lora-3 studio-nord/portrait-lora-20
        bflsync diff acme-labs/portrait-lora-3@1 acme-labs/portrait-lora-3@2
    """
    with reading(cli_context) as store:
        result = store.diff(first, second, source=source, account=account)
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
    if output_format in RECORD_FORMATS:
        write_records(output_format, [values.FIELD_HEADER, "a", "b"], result.differences)
        return
    headers = [values.FIELD_HEADER, *(f"{side.finetune_id}@{side.version}" for side in sides.values())]
    rows = [
        [row["field"], *(values.value_text(row.get(side, MISSING)) for side in ("a", "b"))]
        for row in result.differences
    ]
    render.write_grid(output_format, headers, rows)


@click.command()
@limit_option("accounts")
@click.option(
    "--format", "output_format", type=click.Choice(LIST_FORMATS), default="table", show_default=True
)
@pass_cli_context
def accounts(cli_context: CliContext, limit: int | None, output_format: str) -> None:
    """List each (source, account) in the store: live and deleted finetunes, last sync, key fingerprint.

    An account is the label a sync ran under (sync --account, default "default"); the
    fingerprint identifies the key that last synced it without revealing it (empty until a
    sync records one, e.g. right after upgrading an older store).

    \b
    Example:
        bflsync accounts --format json
    """
    with reading(cli_context) as store:
        every = store.accounts()
    limit = row_limit(limit, output_format)
    listed, more = cut(every, limit)
    if output_format in RECORD_FORMATS:
        write_records(output_format, list(listed[0]) if listed else list(ACCOUNT_COLUMNS), listed)
    else:
        render.write_grid(
            output_format, ACCOUNT_COLUMNS, [[item[name] for name in ACCOUNT_COLUMNS] for item in listed]
        )
    note_withheld(cli_context, shown=len(listed), limit=limit, more=more)


@click.command()
@account_option("Only this account's balance (the label of `sync --account`).")
@click.option("--source", metavar="HOST", help="Only the balance read from this API host.")
@click.option(
    "--since",
    metavar="TIMESTAMP",
    help="Only runs started at or after this time (ISO 8601, or 7d, 12h, yesterday).",
)
@limit_option("readings, oldest first")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(LIST_FORMATS),
    default="table",
    show_default=True,
)
@pass_cli_context
def credits(
    cli_context: CliContext,
    account: str | None,
    source: str | None,
    since: str | None,
    limit: int | None,
    output_format: str,
) -> None:
    """Show the account's credit balance over time, as each sync read it, oldest first.

    Each row is a run that read the balance: the drop since the previous reading (positive
    when credits were spent) and the finetunes first seen in between, the trainings that
    the drop paid for (counted in tables; their ids in csv, json and jsonl).

    \b
    Example:
        bflsync credits --since 2026-11-01 --format csv
    """
    from bflsync.read import filters

    start = filters.parse_timestamp(since, now=datetime.now(UTC)) if since is not None else None
    with reading(cli_context) as store:
        warn_unknown_scope(cli_context, store, source=source, account=account)
        every = store.credits(source=source, account=account, since=start)
    limit = row_limit(limit, output_format)
    intervals, more = cut(every, limit)
    if output_format in ("json", "jsonl"):
        write_records(output_format, CREDIT_COLUMNS, [interval.as_dict() for interval in intervals])
    else:
        # A table holds the count (the ids can be hundreds); CSV, json and jsonl the ids.
        rows = [[interval.as_dict()[name] for name in CREDIT_COLUMNS] for interval in intervals]
        for row in rows:
            row[-1] = " ".join(row[-1]) if output_format == "csv" else len(row[-1])
        render.write_grid(output_format, CREDIT_COLUMNS, rows)
    note_withheld(cli_context, shown=len(intervals), limit=limit, more=more)


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
        parts.append(f"checked {iso_utc(checked)}")
    ready = record.column("ready_at")
    if ready is not None:
        parts.append(f"ready since {iso_utc(ready)}")
    return ", ".join(parts)


def _status_line(entry: audit_trail.StatusEntry) -> str:
    run = f"run {entry.sync_run_id}" if entry.sync_run_id is not None else "no run"
    progress = f" {entry.progress:g}" if entry.progress is not None else ""
    return f"status  {render.one_line(entry.status)}{progress}  {iso_utc(entry.observed_at)}  {run}"


def _run_label(name: str) -> str:
    return "duration" if name == "duration_s" else name


def _run_cell(run: dict[str, Any], name: str) -> str:
    """A run's value for people: durations rounded (``12.3 s``, ``4 min 05 s``); JSON keeps the seconds."""
    return render.human_duration(run[name]) if name == "duration_s" else render.cell(run[name])
