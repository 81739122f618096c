"""``bflsync sync``: fetch every finetune's details from the BFL API into the local store."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import click

from bflsync import api
from bflsync.bfl.client import PROXY_ENV_VARS, check_proxy, load_api_key, resolve_base_url, source_of
from bflsync.bfl.net import is_loopback_host
from bflsync.cli import render
from bflsync.cli.common import CliContext, FiniteFloatRange, pass_cli_context, report_opened
from bflsync.config import (
    DEFAULT_ACCOUNT,
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    DEFAULT_MAX_DURATION_S,
    DEFAULT_MAX_RETRIES,
    DEFAULT_READ_TIMEOUT_S,
    MAX_CONCURRENCY,
    REGION_URLS,
    api_key_file_warning,
    validate_account_name,
)
from bflsync.errors import InputError, StoppedBySignalError
from bflsync.monitor.watch import RunWatch, check_metrics_path
from bflsync.store import access
from bflsync.sync.run import ProgressCallback, SyncResult


@click.command()
@click.option(
    "--region",
    type=click.Choice(sorted(REGION_URLS)),
    help="BFL region to sync from [default: us1, unless BFL_API_URL is set].",
)
@click.option(
    "--base-url",
    envvar="BFL_API_URL",
    metavar="URL",
    help="API base URL instead of a region, e.g. a mock on loopback [env BFL_API_URL].",
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the API key from this file instead of BFL_API_KEY.",
)
@click.option(
    "--account",
    envvar="BFLSYNC_ACCOUNT",
    default=DEFAULT_ACCOUNT,
    show_default=True,
    metavar="NAME",
    help="Label for this key's finetunes; each account is synced and tombstoned on its own "
    "[env BFLSYNC_ACCOUNT].",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, MAX_CONCURRENCY),
    default=DEFAULT_CONCURRENCY,
    show_default=True,
    help="Detail requests in flight at once.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=FiniteFloatRange(min=0, min_open=True),
    default=DEFAULT_READ_TIMEOUT_S,
    show_default=True,
    metavar="S",
    help="Seconds for each whole answer (connect, headers and body) before retrying.",
)
@click.option(
    "--max-duration",
    "max_duration_s",
    type=FiniteFloatRange(min=0, min_open=True),
    default=DEFAULT_MAX_DURATION_S,
    show_default=True,
    metavar="S",
    help="Run deadline: past it no request starts or waits, and the run ends failed (exit 3).",
)
@click.option(
    "--max-consecutive-failures",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_CONSECUTIVE_FAILURES,
    show_default=True,
    metavar="K",
    help="Stop the run as failed (exit 3) after K requests in a row failed after retries; 0: never.",
)
@click.option(
    "--max-retries",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_RETRIES,
    show_default=True,
    help="Retries of a request after 429, 5xx, timeouts and dropped connections.",
)
@click.option(
    "--id",
    "only_ids",
    multiple=True,
    metavar="ID",
    help="Sync only this finetune (repeatable); no listing, so nothing is marked deleted.",
)
@click.option(
    "--new-only",
    is_flag=True,
    help="Fetch details only for listed finetunes not stored yet; changes to known ones are not seen.",
)
@click.option("--dry-run", is_flag=True, help="Fetch and report what would change; write nothing.")
@click.option(
    "--allow-empty-listing",
    is_flag=True,
    help="Believe an empty listing and mark every stored finetune deleted (refused otherwise, exit 3).",
)
@click.option(
    "--accept-new-key",
    is_flag=True,
    help="Sync even though this key lists none of the account's stored finetunes (they are marked deleted).",
)
@click.option(
    "--refresh-status",
    is_flag=True,
    help="Ask every listed finetune's training status, settled ones (Ready, Error, moderated) too.",
)
@click.option("--no-status", is_flag=True, help="Do not ask any training status (get_result) in this run.")
@click.option(
    "--strict-status",
    is_flag=True,
    help="A status request that fails makes the run partial (exit 1); otherwise it is only counted.",
)
@click.option("--no-credits", is_flag=True, help="Do not read the account's credit balance in this run.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(("text", "json")),
    default="text",
    show_default=True,
    help="json: the run's result as one JSON object on stdout; text: a summary line on stderr.",
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option(
    "--checkpoint-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="After the run, write the hash chain's checkpoint to DIR/run-NNNNNN.checkpoint (see `bflsync audit`).",
)
@click.option(
    "--wait",
    "wait_s",
    type=FiniteFloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="If another sync holds the store, wait this long for it instead of exiting 4 at once.",
)
@click.option(
    "--metrics-file",
    envvar="BFLSYNC_METRICS_FILE",
    type=click.Path(dir_okay=True, path_type=Path),
    metavar="PATH",
    help="After every run, whatever its outcome, atomically rewrite PATH with Prometheus metrics "
    "(node_exporter textfile); other accounts' series in it are kept [env BFLSYNC_METRICS_FILE].",
)
@click.option(
    "--ping-url",
    envvar="BFLSYNC_PING_URL",
    metavar="URL",
    help="Healthcheck pings: URL/start when the run starts, URL/<exit code> with the run's JSON when it "
    "ends; a failed ping is only a warning [env BFLSYNC_PING_URL].",
)
@click.pass_context
@pass_cli_context
def sync(
    cli_context: CliContext,
    ctx: click.Context,
    region: str | None,
    base_url: str | None,
    api_key_file: Path | None,
    account: str,
    concurrency: int,
    timeout_s: float,
    max_duration_s: float,
    max_consecutive_failures: int,
    max_retries: int,
    only_ids: tuple[str, ...],
    new_only: bool,
    dry_run: bool,
    allow_empty_listing: bool,
    accept_new_key: bool,
    refresh_status: bool,
    no_status: bool,
    strict_status: bool,
    no_credits: bool,
    output_format: str,
    as_json: bool,
    checkpoint_dir: Path | None,
    wait_s: float,
    metrics_file: Path | None,
    ping_url: str | None,
) -> None:
    """Fetch every finetune's details from the BFL API into the store, with an audit version per change.

    New finetunes get version 1, changed ones a new version listing the changed keys,
    unchanged ones only a new last-seen time; finetunes the account no longer lists are
    marked deleted (rows are never removed) and restored if they come back. Finetunes
    that cannot be fetched are logged in sync_error and keep their stored data.

    Each key syncs as an account (--account NAME, default "default"): a finetune is
    stored per (source, account), so several keys and regions share one store and a
    sync only ever marks its own account's finetunes deleted. A key that lists none of
    the finetunes stored for its account (a forgotten --account) is refused with exit 2
    before anything is written; --accept-new-key overrides that.

    One sync per store at a time: a second one exits 4 (or waits up to --wait seconds).
    The store stays readable by `bflsync query`, sqlite3 and Datasette meanwhile.

    --new-only is the cheap run for frequent cron jobs: it fetches only finetunes not
    stored yet (and still marks vanished ones deleted), so edits to known finetunes are
    seen only by the next full sync.

    Each listed finetune whose training status is not settled yet (Ready, Error,
    Failed, moderated, or unknown) is asked for it (GET /v1/get_result), --new-only
    runs included; the balance is read once per run (GET /v1/credits). A failed status
    or credits request is counted and logged, and fails nothing (--strict-status makes
    failed status requests a partial run).

    Every run is bounded: --timeout per whole answer, --max-duration for the run, and
    --max-consecutive-failures stops a run whose server keeps failing; what was stored
    before a run stops is kept.

    Exit codes: 0 ok, 1 some finetunes failed (the rest stored), 2 bad input or missing
    key, 3 cannot run (listing failed, key refused, store not writable, run deadline or
    failure limit reached), 4 another sync is running, 130/143 interrupted by SIGINT/SIGTERM.

    --json prints one object for every run that started, failed ones included
    ("status": "failed"); exits 2 (bad input) and 4 (locked) come before a run starts
    and print none.

    --metrics-file and --ping-url report every run that got past option checks, refused
    by the lock (exit 4) included; a dry run reports nothing (see docs/monitoring.md).

    \b
    Example:
        BFL_API_KEY=... bflsync sync --region eu1 --json
    """
    validate_account_name(account)
    as_json = as_json or output_format == "json"
    if only_ids and new_only:
        raise InputError("--new-only filters the listing; it cannot be combined with --id")
    if no_status and (refresh_status or strict_status):
        raise InputError("--no-status cannot be combined with --refresh-status or --strict-status")
    _require_utf8_ids(only_ids)
    region_given = ctx.get_parameter_source("region") is click.core.ParameterSource.COMMANDLINE
    base_url_given = ctx.get_parameter_source("base_url") is click.core.ParameterSource.COMMANDLINE
    if region_given and base_url_given:
        raise InputError("give either --region or --base-url, not both")
    api_key = load_api_key(env_value=os.environ.get("BFL_API_KEY"), key_file=api_key_file)
    if api_key_file is not None and (warning := api_key_file_warning(api_key_file)):
        # Even with --quiet: a key others can read must not go unnoticed in a cron job either.
        click.echo(f"bflsync: warning: {warning}", err=True)
    # An explicit --region beats a base URL that only comes from the environment.
    resolved_url = resolve_base_url(region=region, base_url=None if region_given else base_url)
    _check_proxy_env(resolved_url)
    # A progress bar redraws with escape codes: none for a dumb terminal or NO_COLOR.
    show_progress = not cli_context.quiet and sys.stderr.isatty() and render.styled()
    watch = _run_watch(
        metrics_file,
        ping_url,
        source=source_of(resolved_url),
        account=account,
        quiet=cli_context.quiet,
        dry_run=dry_run,
    )
    with (
        _signals_stop_the_sync(),
        watch.watching(),
        capped_failures() as cap,
        _progress_bar(enabled=show_progress) as progress,
    ):
        result = api.sync(
            cli_context.db,
            api_key=api_key,
            base_url=resolved_url,
            account=account,
            concurrency=concurrency,
            timeout_s=timeout_s,
            max_duration_s=max_duration_s,
            max_consecutive_failures=max_consecutive_failures,
            max_retries=max_retries,
            only_ids=only_ids,
            new_only=new_only,
            dry_run=dry_run,
            allow_empty_listing=allow_empty_listing,
            accept_new_key=accept_new_key,
            status=not no_status,
            refresh_status=refresh_status,
            strict_status=strict_status,
            credits=not no_credits,
            wait_s=wait_s,
            progress=progress,
            on_open=lambda location, opened: report_opened(cli_context, location, opened),
            stop_on_signals=True,
        )
        watch.finished(result, exit_code=result.exit_code(), db=cli_context.db)
    if checkpoint_dir is not None and result.run_id is not None and not dry_run:
        _save_checkpoint(cli_context.db, checkpoint_dir, run_id=result.run_id)
    _report(result, as_json=as_json, quiet=cli_context.quiet, withheld=cap.withheld)
    ctx.exit(result.exit_code())


@contextmanager
def _signals_stop_the_sync() -> Iterator[None]:
    """SIGINT and SIGTERM outside the run (the start ping, waiting for the lock) raise
    :class:`StoppedBySignalError`, which the metrics file and pings record as interrupted; SIGTERM would
    otherwise kill the process silently. During the run, the run's own handlers stop it cleanly."""

    def stop(signum: int, _frame: object) -> None:
        raise StoppedBySignalError(signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _save_checkpoint(db: str | None, directory: Path, *, run_id: int) -> None:
    """``--checkpoint-dir``: the chain's checkpoint as the run left it (docs/audit.md)."""
    from bflsync.cli.audit_group import save_run_checkpoint

    engine = access.open_store_for_read(access.locate_store(db))
    try:
        save_run_checkpoint(engine, directory, run_id=run_id)
    finally:
        engine.dispose()


def _run_watch(
    metrics_file: Path | None, ping_url: str | None, *, source: str, account: str, quiet: bool, dry_run: bool
) -> RunWatch:
    """The metrics file and pings of this run (docs/monitoring.md), checked before the run starts.

    Checked for a dry run too, though it reports nothing: the same options must work for real.
    """
    from bflsync.monitor.ping import Pinger

    checked_file = check_metrics_path(metrics_file) if metrics_file is not None else None
    pinger = Pinger(ping_url) if ping_url else None
    if pinger is not None:
        _check_proxy_env(pinger.url)  # the ping trusts the environment's proxy where the API may not
    return RunWatch(
        source=source,
        account=account,
        metrics_file=None if dry_run else checked_file,
        pinger=None if dry_run else pinger,
        now=lambda: datetime.now(UTC),
        warn=lambda message: click.echo(f"bflsync: warning: {message}", err=True),
        warn_pings=not quiet,
    )


def _check_proxy_env(url: str) -> None:
    """A proxy variable the API client or the pinger cannot use fails now, naming the variable, not mid-run."""
    host = urlsplit(url).hostname or ""
    if is_loopback_host(host):
        return  # loopback requests never go through a proxy
    for name in PROXY_ENV_VARS:
        value = os.environ.get(name)
        if value:
            check_proxy(name, value)


def _require_utf8_ids(only_ids: tuple[str, ...]) -> None:
    """Refuse --id values that are not valid UTF-8 (they arrive as surrogates) before a run starts."""
    for finetune_id in only_ids:
        try:
            finetune_id.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"--id {_escaped(finetune_id)} is not valid UTF-8 text") from None


def _escaped(text: str) -> str:
    """``text`` printable whatever it holds, undecodable argument bytes shown as ``\\xff``."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that did not come from an undecodable byte
        return ascii(text)[1:-1]


def _report(result: SyncResult, *, as_json: bool, quiet: bool, withheld: int = 0) -> None:
    """The run's JSON on stdout (a failed run's too), then the summary line on stderr.

    A failed run's error is raised instead of the summary, inside the store's error translation:
    it becomes the one-line error and exit code any command's error would (a refused key exits 3,
    a store that stayed locked is a store error, anything unforeseen an internal error).
    """
    if as_json:
        click.echo(json.dumps(result.as_json()))
    if result.failure is not None:
        raise result.failure
    if not quiet:
        if withheld:
            look = f"; see bflsync runs {result.run_id}" if result.run_id is not None else ""
            click.echo(f"bflsync: warning: {withheld} more finetune failures not shown{look}", err=True)
        click.echo(_summary(result), err=True)
    elif result.status != "ok":
        # The one line a cron job mails: nothing at all when the run was ok.
        click.echo(quiet_line(result), err=True)


def quiet_line(result: SyncResult) -> str:
    """``bflsync: run N partial: 250 listed, 3 failed; see bflsync runs N``: a run that was not ok, in one line."""
    counts = [f"{result.listed} listed", f"{result.failed} failed"]
    if result.status_failed:
        counts.append(f"{result.status_failed} status failed")
    run = f"run {result.run_id}" if result.run_id is not None else "dry run"
    look = f"; see bflsync runs {result.run_id}" if result.run_id is not None else ""
    return f"bflsync: {run} {result.status}: {', '.join(counts)}{look}"


FAILURE_CAP = 10
"""Per-finetune failures shown on stderr during a run; the rest are counted (all are in `bflsync runs N`)."""
_FAILURE_MESSAGES = ("finetune %s not stored", "status of finetune %s not recorded")


class FailureCap(logging.Filter):
    """Lets the first :data:`FAILURE_CAP` per-finetune failure warnings of a run through and counts the rest."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(_FAILURE_MESSAGES):
            self.seen += 1
            return self.seen <= FAILURE_CAP
        return True

    @property
    def withheld(self) -> int:
        return max(self.seen - FAILURE_CAP, 0)


@contextmanager
def capped_failures() -> Iterator[FailureCap]:
    """Cap the per-finetune failure lines on every bflsync log handler for the block."""
    cap = FailureCap()
    handlers = logging.getLogger("bflsync").handlers
    for handler in handlers:
        handler.addFilter(cap)
    try:
        yield cap
    finally:
        for handler in handlers:
            handler.removeFilter(cap)


@contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[ProgressCallback | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("fetching details"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("fetch", total=None)

    def update(done: int, total: int) -> None:
        # Drawn from the first finetune fetched: not while waiting for the lock or opening the store.
        if not bar.live.is_started:
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        bar.stop()


def _summary(result: SyncResult) -> str:
    changes = (
        f"{result.created} created, {result.updated} updated, {result.deleted} deleted, "
        f"{result.restored} restored, {result.unchanged} unchanged, {result.failed} failed"
    )
    if result.dry_run:
        return f"dry run, nothing written; would be {changes} ({_where(result)})"
    listed = f"{result.listed} listed, " if result.listed else ""
    statuses = ""
    if result.status_checked or result.status_failed:
        statuses = f"; status: {result.status_checked} checked, {result.status_changed} changed"
        statuses += f", {result.status_failed} failed" if result.status_failed else ""
    credits = f"; credits {result.credits:g}" if result.credits is not None else ""
    key_note = "; the API key changed, its new fingerprint is recorded" if result.key_changed else ""
    return (
        f"sync {result.status}: {listed}{changes}{statuses}{credits} in {render.human_duration(result.duration_s)} "
        f"(run {result.run_id}, {_where(result)}){key_note}"
    )


def _where(result: SyncResult) -> str:
    """The source, and the account unless it is the default one."""
    if result.account == DEFAULT_ACCOUNT:
        return result.source
    return f"{result.source}, account {result.account}"
