"""``bflsync mock-api``: a BFL-compatible finetune API on loopback, as a process."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from bflsync.bfl.net import is_loopback_host
from bflsync.errors import InputError
from bflsync.mock.server import (
    DEFAULT_CREDITS,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MOCK_API_KEY,
    GONE_STATUS,
    RETIRABLE,
    AccountSpec,
    MockBFL,
    account_finetunes,
    generate_finetunes,
    generate_statuses,
    load_data_file,
    parse_account_spec,
)


def _loopback(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not is_loopback_host(value):
        raise click.BadParameter(
            f"{value!r} is not a loopback address; the mock API only listens on loopback"
        )
    # Bind exactly what was checked: the check ignores spaces and IPv6 brackets, bind() would not.
    return value.strip().removeprefix("[").removesuffix("]")


def _gone(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str]:
    names = [name.strip() for name in (value or "").split(",") if name.strip()]
    unknown = sorted(set(names) - set(RETIRABLE))
    if unknown:
        raise click.BadParameter(
            f"unknown endpoint {unknown[0]!r}: expected some of {','.join(sorted(RETIRABLE))}"
        )
    return names


def _account_specs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[AccountSpec]:
    try:
        return [parse_account_spec(value) for value in values]
    except InputError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("mock-api")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    callback=_loopback,
    help="Loopback address to bind (127.0.0.0/8, ::1 or localhost).",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="Port; 0 picks a free one."
)
@click.option(
    "--count",
    type=click.IntRange(min=0),
    default=25,
    show_default=True,
    help="How many finetunes to generate.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for generated data and random errors."
)
@click.option(
    "--data",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Serve the finetunes of this JSON file, shaped {id: details}, instead of generated ones.",
)
@click.option(
    "--api-key",
    default=DEFAULT_MOCK_API_KEY,
    show_default=True,
    help="The key the mock accepts in x-key (a wrong key gets 401, none gets 403).",
)
@click.option(
    "--account",
    "accounts",
    multiple=True,
    metavar="KEY=COUNT[:SEED]",
    callback=_account_specs,
    help="Also accept KEY, listing COUNT generated finetunes of its own (repeatable): another account.",
)
@click.option(
    "--shared",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Every --account key also lists the first N finetunes of --api-key's (same ids and details).",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Added to every answer, without serializing requests.",
)
@click.option(
    "--error-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Fraction of answers that are a random 500/502/503 (some with HTML bodies).",
)
@click.option(
    "--max-in-flight",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_IN_FLIGHT,
    show_default=True,
    help="Above this many concurrent requests, answer 429 with Retry-After.",
)
@click.option(
    "--forget-after",
    "forget_after_s",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="A Ready finetune's status answers 'Task not found' this long after it first said Ready "
    "(as BFL forgets finished tasks) [default: never].",
)
@click.option(
    "--credits",
    type=float,
    default=DEFAULT_CREDITS,
    show_default=True,
    help="The account's balance before the served finetunes were trained; each costs a credit per 100 iterations.",
)
@click.option(
    "--gone",
    metavar="ENDPOINT,...",
    callback=_gone,
    help="Retire these endpoints (my_finetunes, finetune_details, get_result, credits): every request "
    "to them answers --gone-status, as after a shutdown.",
)
@click.option(
    "--gone-status",
    type=click.Choice(["410", "404"]),
    default=str(GONE_STATUS),
    show_default=True,
    help="What a retired endpoint answers: 410 Gone, or 404 as a removed route does.",
)
def mock_api(
    host: str,
    port: int,
    count: int,
    seed: int,
    data: Path | None,
    api_key: str,
    accounts: list[AccountSpec],
    shared: int,
    latency_ms: float,
    error_rate: float,
    max_in_flight: int,
    forget_after_s: float | None,
    credits: float,
    gone: list[str],
    gone_status: str,
) -> None:
    """Serve a BFL-compatible finetune API on loopback, to try bflsync without an account.

    Prints its base URL as the first line of stdout, then serves until interrupted
    (Ctrl-C or SIGTERM exit 0). The default key it accepts is "mock-key"; each
    --account KEY=COUNT[:SEED] adds a key with finetunes of its own, and --shared N
    makes the first N of mock-key's listed by every key, to try `sync --account`.

    Generated finetunes also have a training status (GET /v1/get_result?id=ID): a quarter
    are still Pending, their progress rising with each poll until they are Ready, and a
    few end in Error or a moderated status. GET /v1/credits answers the balance.

    --gone my_finetunes,finetune_details,get_result rehearses the end of BFL's finetune
    API: those endpoints answer 410 Gone (or --gone-status 404) to every request.

    \b
    Example:
        bflsync mock-api --port 8123 --count 200 --latency-ms 50 &
        BFL_API_KEY=mock-key BFL_API_URL=http://127.0.0.1:8123 bflsync sync
    """
    if shared and not accounts:
        raise InputError("--shared N shares finetunes with --account keys; give at least one")
    finetunes = load_data_file(data) if data is not None else generate_finetunes(count, seed=seed)
    extra = account_finetunes(accounts, default=finetunes, shared=shared, seed=seed)
    if api_key in extra:
        raise InputError(f"--account {api_key!r}: that is already the --api-key")
    mock = MockBFL(
        finetunes,
        api_key=api_key,
        latency_ms=latency_ms,
        error_rate=error_rate,
        max_in_flight=max_in_flight,
        seed=seed,
        host=host,
        port=port,
        statuses=None if data is not None else generate_statuses(finetunes, seed=seed),
        credits=credits,
        forget_after_s=forget_after_s,
    )
    for key, served in extra.items():
        mock.add_account(key, served)
    for name in gone:
        mock.retire(name, status=int(gone_status))

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for the serve loop, which runs in this very thread: ask from another one.
        threading.Thread(target=mock.shutdown, daemon=True).start()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        click.echo(mock.base_url)
        sys.stdout.flush()
        others = "".join(f", {len(items)} to another key" for items in extra.values())
        shared_note = f" ({shared} shared by every key)" if shared else ""
        shared_note += f"; retired ({gone_status}): {', '.join(gone)}" if gone else ""
        click.echo(
            f"bflsync mock-api: serving {len(finetunes)} finetunes{others}{shared_note}; Ctrl-C stops",
            err=True,
        )
        mock.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        mock.close()
