"""``bflsync schedule``: the systemd timer or crontab line of an unattended sync, printed or installed."""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bflsync.cli.common import CliContext, pass_cli_context
from bflsync.cli.stdout import write_stdout
from bflsync.config import REGION_URLS, validate_account_name
from bflsync.errors import InputError
from bflsync.monitor import schedule as schedule_units
from bflsync.monitor.durations import parse_duration
from bflsync.store import access

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

# A unit name, systemd specifiers (%n, %i) allowed: no spaces or line breaks that would add settings.
_UNIT_NAME = re.compile(r"[A-Za-z0-9:_.@%\\-]{1,255}")


@click.command()
@click.option("--systemd", "kind", flag_value="systemd", help="A systemd user service and timer.")
@click.option("--cron", "kind", flag_value="cron", help="A crontab line.")
@click.option(
    "--every", default="1h", show_default=True, metavar="DURATION", help="How often: 15m, 1h, 6h, 1d."
)
@click.option(
    "--account", metavar="NAME", help="The account to sync (sync --account); one timer per account."
)
@click.option("--region", type=click.Choice(sorted(REGION_URLS)), help="The BFL region to sync from.")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The private file holding the API key [default: ~/.config/bflsync/api-key, or ...-ACCOUNT].",
)
@click.option(
    "--metrics-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Pass --metrics-file to the sync (the service may write its directory).",
)
@click.option("--ping-url", metavar="URL", help="Pass --ping-url to the sync.")
@click.option(
    "--on-failure", metavar="UNIT", help="systemd: a unit started when the sync fails (OnFailure=)."
)
@click.option(
    "--command",
    "executable",
    metavar="PATH",
    help="The bflsync executable the job runs [default: the one on PATH, by its full path].",
)
@click.option(
    "--install",
    is_flag=True,
    help="systemd: write the units to ~/.config/systemd/user instead of printing them.",
)
@click.option(
    "--force",
    is_flag=True,
    help="With --install: replace unit files even if they were edited since bflsync wrote them.",
)
@pass_cli_context
def schedule(
    cli_context: CliContext,
    kind: str | None,
    every: str,
    account: str | None,
    region: str | None,
    key_file: Path | None,
    metrics_file: Path | None,
    ping_url: str | None,
    on_failure: str | None,
    executable: str | None,
    install: bool,
    force: bool,
) -> None:
    """Print (or install) a systemd timer or a crontab line that runs the sync unattended.

    --systemd prints a service and a timer for the user's service manager: the key is
    handed to the sync by LoadCredential= from --key-file (it is never in the unit), the
    service is sandboxed and may write only the store's directory (and the metrics file's).
    --install writes them to ~/.config/systemd/user; then run `systemctl --user daemon-reload
    && systemctl --user enable --now UNIT.timer`. It never replaces a unit file edited since
    bflsync wrote it, unless --force. --cron prints one crontab line, the
    executable by its full path and the sync run with -q so cron mails only errors.

    The store is the --db of this command (the default store without it), made absolute.
    See docs/monitoring.md for alerting on the runs these start.

    \b
    Example:
        bflsync schedule --systemd --every 1h --account work --install
    """
    if kind is None:
        raise InputError("choose --systemd or --cron")
    if install and kind != "systemd":
        raise InputError("--install writes systemd units; for --cron, add the printed line with `crontab -e`")
    if on_failure and kind != "systemd":
        raise InputError("--on-failure is a systemd setting; it cannot be combined with --cron")
    if account is not None:
        validate_account_name(account)
    if on_failure is not None and not _UNIT_NAME.fullmatch(on_failure):
        raise InputError(
            f"--on-failure {on_failure!a}: expected a unit name such as notify-failure@%n.service"
        )
    if ping_url is not None:
        from bflsync.monitor.ping import validate_ping_url

        _refuse_control_characters("--ping-url", ping_url)  # urlsplit would quietly drop a line break
        validate_ping_url(ping_url)
    location = access.locate_store(cli_context.db)
    if location.path is None and _carries_password(location.url):
        raise InputError(
            "--db: the job would show the database password in its unit or crontab; "
            "keep it in ~/.pgpass or a service file (PGSERVICEFILE) and give the URL without it"
        )
    db = (
        str(location.path)
        if location.path is not None
        else location.url.render_as_string(hide_password=False)
    )
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    # `--key-file=~/k` reaches us with the tilde (no shell expands it after `=`): read it as --db reads it.
    key = (
        key_file.expanduser()
        if key_file
        else config_home / "bflsync" / f"api-key{f'-{account}' if account else ''}"
    ).absolute()
    writable = [location.path.parent] if location.path is not None else []
    if metrics_file is not None:
        metrics_file = metrics_file.expanduser().absolute()
        writable.append(metrics_file.parent)
    command = _command(executable)
    for option, value in (
        ("--db", db),
        ("--key-file", str(key)),
        ("--metrics-file", str(metrics_file or "")),
        ("--command", " ".join(command)),
    ):
        _refuse_control_characters(option, value)
    job = schedule_units.Job(
        command=command,
        db=db,
        writable_dirs=tuple(dict.fromkeys(str(path) for path in writable)),
        key_file=str(key),
        account=account,
        region=region,
        every=parse_duration(every, option="--every"),
        metrics_file=str(metrics_file) if metrics_file is not None else None,
        ping_url=ping_url,
        on_failure=on_failure,
    )
    if kind == "cron":
        try:
            line = schedule_units.crontab_line(job)
        except ValueError as exc:
            raise InputError(f"--every {every}: {exc}") from None
        _warn_missing_key(key)
        write_stdout(line)
        return
    units = schedule_units.systemd_units(job)
    if not install:
        _warn_missing_key(key)
        write_stdout("\n".join(f"# {name}\n{text}" for name, text in units.items()))
        return
    unit_dir = config_home / "systemd" / "user"
    if not force:
        for name, text in units.items():
            _refuse_edited(unit_dir / name, text)
    unit_dir.mkdir(parents=True, exist_ok=True)
    for name, text in units.items():
        _write_private(unit_dir / name, text)
        click.echo(f"wrote {unit_dir / name}", err=True)
    _warn_missing_key(key)
    click.echo(
        f"next: systemctl --user daemon-reload && systemctl --user enable --now {job.unit_name}.timer",
        err=True,
    )


def _full_path(executable: str) -> str:
    """``--command`` by its full path: a path made absolute, a name found on PATH (exit 2 if it is not)."""
    _refuse_control_characters("--command", executable)
    if os.sep in executable:
        return str(Path(executable).absolute())
    found = shutil.which(executable)
    if found is None:
        raise InputError(f"--command {executable}: not found on PATH; give the executable's full path")
    return str(Path(found).absolute())


def _warn_missing_key(key: Path) -> None:
    """A job whose key file is missing fails at every run; say so on stderr (stdout may feed crontab).

    A key exported in this shell is the usual mix-up: the job runs without it.
    """
    if key.exists():
        return
    unseen = "; the job does not see BFL_API_KEY" if os.environ.get("BFL_API_KEY") else ""
    click.echo(
        f"bflsync: warning: put the API key in {key} (chmod 600) before the job runs{unseen}", err=True
    )


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` readable by its owner alone: a --ping-url in it holds the check's secret, and a
    unit readable by others would let them send its pings. The user's service manager reads it as them."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # a unit installed before keeps its mode through O_CREAT
        handle.write(text)


def _refuse_control_characters(option: str, value: str) -> None:
    """A line break (or any control character) in a value would add a directive to a unit or a line to a crontab."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise InputError(
            f"{option} {value!a} contains a control character (a line break would add to the job)"
        )


def _carries_password(url: URL) -> bool:
    """A password in the URL itself or in its query (libpq's ``password=`` and ``sslpassword=``)."""
    return url.password is not None or any(name.lower() in ("password", "sslpassword") for name in url.query)


def _refuse_edited(path: Path, text: str) -> None:
    """Refuse to replace ``path`` if it holds anything but a unit bflsync wrote (or ``text`` itself)."""
    try:
        existing = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError):
        existing = None
    if existing != text and (existing is None or not schedule_units.as_written(existing)):
        raise InputError(
            f"{path} was changed since bflsync wrote it; keep your edits, or pass --force to replace it"
        )


def _command(executable: str | None) -> tuple[str, ...]:
    """The bflsync to run by its full path: --command, else the one on PATH, else this Python's module.

    A job runs from another directory (cron: the home directory) with a minimal PATH, so a relative
    --command is made absolute and a bare name is looked up now, on this PATH.
    """
    if executable is not None:
        return (_full_path(executable),)
    script = Path(sys.argv[0])
    if script.name == "bflsync" and script.is_file():
        return (str(script.absolute()),)
    found = shutil.which("bflsync")
    if found is not None:
        return (str(Path(found).absolute()),)
    return (sys.executable, "-m", "bflsync")
