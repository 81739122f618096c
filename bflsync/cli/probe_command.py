"""``bflsync probe``: which of BFL's finetune endpoints still answer, for a monitor; never opens a store."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import click

from bflsync.bfl.client import BflClient, RetryPolicy, load_api_key, resolve_base_url
from bflsync.bfl.probe import GONE, OK, EndpointAnswer, probe, verdict
from bflsync.bfl.server_text import printable
from bflsync.cli import render
from bflsync.cli.common import FiniteFloatRange
from bflsync.config import DEFAULT_CONNECT_TIMEOUT_S, REGION_URLS, api_key_file_warning
from bflsync.errors import ExitCode, InputError

DEFAULT_PROBE_TIMEOUT_S = 10.0
HEADERS = ("source", "endpoint", "answer", "status", "latency_ms", "listed")


@click.command()
@click.option(
    "--region",
    "regions",
    multiple=True,
    type=click.Choice(sorted(REGION_URLS)),
    help="Probe this region (repeatable) [default: every region, unless --base-url or BFL_API_URL is given].",
)
@click.option(
    "--base-url",
    "base_urls",
    multiple=True,
    envvar="BFL_API_URL",
    metavar="URL",
    help="Probe this base URL too (repeatable), e.g. a gateway or the mock [env BFL_API_URL].",
)
@click.option(
    "--api-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the API key from this file instead of BFL_API_KEY.",
)
@click.option(
    "--id",
    "finetune_id",
    metavar="ID",
    help="Ask the details and status of this finetune [default: the first one the listing names].",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=FiniteFloatRange(min=0.1),
    default=DEFAULT_PROBE_TIMEOUT_S,
    show_default=True,
    metavar="SECONDS",
    help="Longest wait for each answer; a probe never retries.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table, or one JSON object for machines.",
)
@click.pass_context
def probe_command(
    ctx: click.Context,
    regions: tuple[str, ...],
    base_urls: tuple[str, ...],
    api_key_file: Path | None,
    finetune_id: str | None,
    timeout_s: float,
    output_format: str,
) -> None:
    """Check which finetune endpoints answer for this key: status, latency and count listed.

    For each region (and each --base-url) one request, without retries, to the listing
    (GET /v1/my_finetunes), then to the details and the training status of the first
    finetune it names (or --id). Each answer is ok, gone (410; 404 from the listing or
    the details; a listing body that is not a listing), refused (401/403) or error
    (timeout, no connection, 5xx, a malformed answer). A get_result 404 counts as ok:
    BFL forgets finished tasks. No store is opened, read or written.

    Exit codes, for monitoring: 0 every endpoint answered ok; 1 an endpoint is gone
    (the API looks retired: time to `bflsync export`); 2 bad input or no key; 3 no
    endpoint is gone but some could not be judged (refused, error).

    \b
    Example:
        BFL_API_KEY=... bflsync probe --format json
    """
    api_key = load_api_key(env_value=os.environ.get("BFL_API_KEY"), key_file=api_key_file)
    if api_key_file is not None and (warning := api_key_file_warning(api_key_file)):
        click.echo(f"bflsync: warning: {warning}", err=True)
    urls = [resolve_base_url(region=region, base_url=None) for region in regions]
    urls += [resolve_base_url(region=None, base_url=url) for url in base_urls]
    if not urls:
        urls = [resolve_base_url(region=region, base_url=None) for region in sorted(REGION_URLS)]
    if finetune_id is not None and not finetune_id:
        raise InputError("--id is empty")

    async def probe_all() -> list[EndpointAnswer]:
        answers: list[EndpointAnswer] = []
        for url in dict.fromkeys(urls):
            async with BflClient(
                api_key=api_key,
                base_url=url,
                connect_timeout_s=min(DEFAULT_CONNECT_TIMEOUT_S, timeout_s),
                read_timeout_s=timeout_s,
                retry=RetryPolicy(max_retries=0, max_consecutive_failures=0),
            ) as client:
                answers.extend(await probe(client, finetune_id=finetune_id))
        return answers

    answers = asyncio.run(probe_all())
    seen = verdict(answers)
    if output_format == "json":
        click.echo(json.dumps({"verdict": seen, "endpoints": [answer.as_json() for answer in answers]}))
    else:
        rows = [
            [
                answer.source,
                answer.endpoint,
                answer.answer,
                answer.status,
                None if answer.latency_ms is None else round(answer.latency_ms),
                answer.listed,
            ]
            for answer in answers
        ]
        render.write_table(HEADERS, rows)
        for answer in answers:
            if answer.answer not in (OK, "not_probed") and answer.detail:
                line = printable(f"{answer.source} {answer.endpoint}: {answer.detail}")
                click.echo(f"bflsync: warning: {line}", err=True)
    code = {OK: ExitCode.OK, GONE: ExitCode.PARTIAL}.get(seen, ExitCode.CANNOT_RUN)
    ctx.exit(int(code))
