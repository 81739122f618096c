"""``bflsync schedule``: what a hostile or unlucky path, URL or edit does to the units and crontab line.

systemd reads each setting its own way (systemd.syntax(7), systemd.service(5), systemd.exec(5)):
``ExecStart=`` unquotes words, expands ``$VAR`` and specifiers (``%d``); ``ReadWritePaths=``
unquotes words and expands specifiers, not variables; ``LoadCredential=ID:PATH`` takes the path
as it stands, specifiers expanded. A line break in any value would start a new directive.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sync_support import KEY
from test_schedule import service_settings, split_units, verify

from bflsync.cli import cli
from bflsync.errors import ExitCode

BFLSYNC = str(Path(sys.executable).with_name("bflsync"))


def schedule(db: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--db", db, "schedule", *args], env=env)


@pytest.fixture
def odd_dir(tmp_path: Path) -> Path:
    """A directory whose name holds what systemd would otherwise read as a specifier, variable or quote."""
    path = tmp_path / "100% $HOME it's"
    path.mkdir()
    return path


def test_percent_dollar_space_and_quote_are_escaped_as_each_setting_reads_them(
    odd_dir: Path, tmp_path: Path
) -> None:
    key = odd_dir / "api-key"
    result = schedule(str(odd_dir / "store.db"), "--systemd", "--key-file", str(key), "--command", BFLSYNC)
    assert result.exit_code == 0, result.output
    service = service_settings(split_units(result.stdout)["bflsync-sync.service"])
    escaped = f"{tmp_path}/100%% $$HOME it's"
    assert service["ExecStart"] == (
        f'{BFLSYNC} -q --db "{escaped}/store.db" sync --api-key-file %d/bfl-api-key'
    )
    assert service["ReadWritePaths"] == f'"{tmp_path}/100%% $HOME it\'s"'
    assert service["LoadCredential"] == f"bfl-api-key:{tmp_path}/100%% $HOME it's/api-key"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_accepts_units_for_odd_paths(odd_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "config"
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    key = odd_dir / "api-key"
    key.write_text(KEY)
    result = schedule(
        str(odd_dir / "store.db"),
        "--systemd",
        "--install",
        "--key-file",
        str(key),
        "--metrics-file",
        str(odd_dir / "bflsync.prom"),
        "--command",
        BFLSYNC,
        env={"XDG_CONFIG_HOME": str(config)},
    )
    assert result.exit_code == 0, result.output
    unit_dir = config / "systemd" / "user"
    verify(runtime, unit_dir / "bflsync-sync.service", unit_dir / "bflsync-sync.timer")


@pytest.mark.parametrize("kind", ["--systemd", "--cron"])
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--db", "/srv/store.db\nExecStartPre=/bin/evil"),
        ("--key-file", "/srv/key\nExecStartPre=/bin/evil"),
        ("--metrics-file", "/srv/m.prom\rx"),
        ("--command", "/usr/bin/bflsync\n* * * * * evil"),
        ("--ping-url", "https://hc-ping.com/x\nExecStartPre=/bin/evil"),
    ],
)
def test_a_control_character_in_any_value_is_refused_with_exit_2(
    tmp_path: Path, kind: str, option: str, value: str
) -> None:
    db = value if option == "--db" else str(tmp_path / "store.db")
    args = [] if option == "--db" else [option, value]
    result = schedule(db, kind, *args)
    assert result.exit_code == ExitCode.INPUT
    assert result.stdout == ""
    assert result.stderr.startswith(f"bflsync: error: {option} ")
    assert result.stderr.endswith(" contains a control character (a line break would add to the job)\n")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("kind", ["--systemd", "--cron"])
@pytest.mark.parametrize(
    "url",
    [
        "postgresql://me:s3cret@db.example.com/bflsync",
        "postgresql+psycopg://me@db.example.com/bflsync?password=s3cret",
        "postgresql://me@db.example.com/bflsync?sslmode=verify-full&sslpassword=s3cret",
    ],
)
def test_a_store_url_carrying_a_password_is_refused_for_a_job(kind: str, url: str) -> None:
    result = schedule(url, kind, "--command", BFLSYNC)
    assert result.exit_code == ExitCode.INPUT
    assert "s3cret" not in result.output
    assert result.stderr == (
        "bflsync: error: --db: the job would show the database password in its unit or crontab; "
        "keep it in ~/.pgpass or a service file (PGSERVICEFILE) and give the URL without it\n"
    )


def install(db_path: Path, config: Path, *args: str) -> Result:
    return schedule(
        str(db_path),
        "--systemd",
        "--install",
        "--command",
        BFLSYNC,
        *args,
        env={"XDG_CONFIG_HOME": str(config)},
    )


def test_install_refuses_to_overwrite_a_unit_the_user_edited(db_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "config"
    assert install(db_path, config).exit_code == 0
    service = config / "systemd" / "user" / "bflsync-sync.service"
    edited = service.read_text().replace("Type=oneshot\n", "Type=oneshot\nNice=10\n")
    service.write_text(edited)
    result = install(db_path, config, "--every", "30m")
    assert (result.exit_code, result.stdout) == (ExitCode.INPUT, "")
    assert result.stderr == (
        f"bflsync: error: {service} was changed since bflsync wrote it; "
        "keep your edits, or pass --force to replace it\n"
    )
    assert service.read_text() == edited
    assert "OnUnitActiveSec=1h\n" in service.with_suffix(".timer").read_text()


def test_install_refuses_to_overwrite_a_unit_bflsync_did_not_write(db_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "config"
    service = config / "systemd" / "user" / "bflsync-sync.service"
    service.parent.mkdir(parents=True)
    service.write_text("[Service]\nExecStart=/usr/local/bin/my-own-sync\n")
    result = install(db_path, config)
    assert result.exit_code == ExitCode.INPUT
    assert result.stderr.startswith(f"bflsync: error: {service} was changed since bflsync wrote it")
    assert service.read_text() == "[Service]\nExecStart=/usr/local/bin/my-own-sync\n"
    assert not service.with_suffix(".timer").exists()


def test_install_with_force_replaces_an_edited_unit(db_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "config"
    assert install(db_path, config).exit_code == 0
    service = config / "systemd" / "user" / "bflsync-sync.service"
    service.write_text(service.read_text() + "Nice=10\n")
    result = install(db_path, config, "--force")
    assert result.exit_code == 0, result.output
    assert "Nice=10" not in service.read_text()


def test_install_replaces_units_it_wrote_when_the_options_change(db_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "config"
    assert install(db_path, config).exit_code == 0
    result = install(db_path, config, "--every", "30m")
    assert result.exit_code == 0, result.output
    timer = config / "systemd" / "user" / "bflsync-sync.timer"
    assert "OnUnitActiveSec=30m\n" in timer.read_text()
