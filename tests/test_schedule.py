"""``bflsync schedule``: systemd units (checked by systemd-analyze where installed) and a crontab line that run."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sync_support import ALPHA, KEY, rows

from bflsync.cli import cli
from bflsync.errors import ExitCode
from bflsync.mock.server import MockBFL
from bflsync.monitor import schedule as units

BFLSYNC = str(Path(sys.executable).with_name("bflsync"))


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": ALPHA}, api_key=KEY) as server:
        yield server


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "api-key"
    path.parent.mkdir()
    path.write_text(KEY + "\n")
    path.chmod(0o600)
    return path


def schedule(db: str, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["--db", db, "schedule", *args], env=env)


def split_units(text: str) -> dict[str, str]:
    """The printed units by name: each starts with a ``# NAME`` line, blank-line separated."""
    found = {}
    for chunk in text.split("\n# bflsync-sync"):
        name, _, body = chunk.removeprefix("# ").partition("\n")
        found[name if name.startswith("bflsync-sync") else "bflsync-sync" + name] = body
    return found


def service_settings(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_systemd_prints_a_hardened_oneshot_service_and_its_timer(db_path: Path, key_file: Path) -> None:
    result = schedule(
        str(db_path),
        "--systemd",
        "--every",
        "30m",
        "--account",
        "work",
        "--key-file",
        str(key_file),
        "--command",
        BFLSYNC,
    )
    assert result.exit_code == 0, result.output
    printed = split_units(result.stdout)
    assert sorted(printed) == ["bflsync-sync-work.service", "bflsync-sync-work.timer"]
    service = service_settings(printed["bflsync-sync-work.service"])
    assert service["ExecStart"] == (
        f"{BFLSYNC} -q --db {db_path} sync --account work --api-key-file %d/bfl-api-key"
    )
    assert service["LoadCredential"] == f"bfl-api-key:{key_file}"
    assert service["ReadWritePaths"] == str(db_path.parent)
    for setting in units.HARDENING:
        assert setting in printed["bflsync-sync-work.service"].splitlines()
    timer = service_settings(printed["bflsync-sync-work.timer"])
    assert (timer["OnUnitActiveSec"], timer["Unit"], timer["WantedBy"]) == (
        "30m",
        "bflsync-sync-work.service",
        "timers.target",
    )


def test_the_key_is_never_in_the_units_or_the_crontab_line(db_path: Path, key_file: Path) -> None:
    for kind in ("--systemd", "--cron"):
        result = schedule(str(db_path), kind, "--key-file", str(key_file), env={"BFL_API_KEY": KEY})
        assert result.exit_code == 0
        assert KEY not in result.stdout


def test_a_postgresql_store_needs_no_writable_path_and_its_password_is_refused(tmp_path: Path) -> None:
    result = schedule("postgresql+psycopg://me@db.example.com/bflsync", "--systemd", "--command", BFLSYNC)
    assert result.exit_code == 0
    assert "ReadWritePaths" not in result.stdout
    assert "--db postgresql+psycopg://me@db.example.com/bflsync sync" in result.stdout
    refused = schedule("postgresql+psycopg://me:s3cret@db.example.com/bflsync", "--cron")
    assert refused.exit_code == ExitCode.INPUT
    assert "s3cret" not in refused.output
    assert "password" in refused.stderr


def test_install_writes_the_units_to_the_user_systemd_directory(db_path: Path, tmp_path: Path) -> None:
    config = tmp_path / "config"
    result = schedule(str(db_path), "--systemd", "--install", env={"XDG_CONFIG_HOME": str(config)})
    assert result.exit_code == 0
    written = config / "systemd" / "user"
    assert sorted(path.name for path in written.iterdir()) == ["bflsync-sync.service", "bflsync-sync.timer"]
    assert (
        f"LoadCredential=bfl-api-key:{config}/bflsync/api-key"
        in (written / "bflsync-sync.service").read_text()
    )
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "next: systemctl --user daemon-reload && systemctl --user enable --now bflsync-sync.timer"
    )


def test_installed_units_carrying_the_ping_url_are_readable_by_their_owner_alone(
    db_path: Path, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    old = os.umask(0o022)
    try:
        result = schedule(
            str(db_path),
            "--systemd",
            "--install",
            "--ping-url",
            "https://hc-ping.com/secret-check-uuid",
            env={"XDG_CONFIG_HOME": str(config)},
        )
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    written = config / "systemd" / "user"
    assert {path.name: path.stat().st_mode & 0o777 for path in written.iterdir()} == {
        "bflsync-sync.service": 0o600,
        "bflsync-sync.timer": 0o600,
    }


@pytest.mark.parametrize(
    ("every", "fields"),
    [
        ("15m", "{m15}-59/15 * * * *"),
        ("1h", "{m} * * * *"),
        ("6h", "{m} {h6}-23/6 * * *"),
        ("1d", "{m} {h24}-23/24 * * *"),
    ],
)
def test_cron_runs_on_a_fixed_minute_spread_per_account(db_path: Path, every: str, fields: str) -> None:
    result = schedule(str(db_path), "--cron", "--every", every, "--account", "work", "--command", BFLSYNC)
    assert result.exit_code == 0
    spread = zlib.crc32(b"bflsync-sync-work")
    expected = fields.format(m15=spread % 15, m=spread % 60, h6=spread // 60 % 6, h24=spread // 60 % 24)
    assert result.stdout.startswith(expected + f" {BFLSYNC} -q --db {db_path} sync --account work ")


def test_cron_refuses_an_interval_it_cannot_keep(db_path: Path) -> None:
    result = schedule(str(db_path), "--cron", "--every", "7h")
    assert result.exit_code == ExitCode.INPUT
    assert result.stderr.startswith("bflsync: error: --every 7h: cron cannot run every 7h evenly")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "choose --systemd or --cron"),
        (["--cron", "--install"], "--install writes systemd units"),
        (["--cron", "--on-failure", "x.service"], "--on-failure is a systemd setting"),
        (["--systemd", "--on-failure", "x.service\nExecStartPre=/bin/evil"], "--on-failure"),
        (["--systemd", "--ping-url", "http://hc.example.com/x"], "refusing plain http://"),
        (["--systemd", "--every", "0m"], "more than zero"),
    ],
)
def test_schedule_refuses_what_it_cannot_write(db_path: Path, args: list[str], message: str) -> None:
    result = schedule(str(db_path), *args)
    assert result.exit_code == ExitCode.INPUT
    assert message in result.stderr


def test_the_crontab_line_runs_the_sync(db_path: Path, key_file: Path, mock: MockBFL) -> None:
    result = schedule(
        str(db_path), "--cron", "--key-file", str(key_file), "--command", BFLSYNC, "--region", "eu1"
    )
    command = result.stdout.split(" ", 5)[5].replace("--region eu1", f"--base-url {mock.base_url}")
    ran = subprocess.run(
        ["/bin/sh", "-c", command], capture_output=True, text=True, timeout=60, env=_clean_env()
    )
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "", "")
    assert [row["finetune_id"] for row in rows(db_path, "SELECT finetune_id FROM finetune")] == ["alpha"]


def test_the_service_command_runs_the_sync_with_the_key_from_the_credentials_directory(
    db_path: Path, key_file: Path, mock: MockBFL, tmp_path: Path
) -> None:
    result = schedule(str(db_path), "--systemd", "--key-file", str(key_file), "--command", BFLSYNC)
    service = service_settings(split_units(result.stdout)["bflsync-sync.service"])
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    shutil.copy(key_file, credentials / service["LoadCredential"].split(":", 1)[0])
    argv = shlex.split(service["ExecStart"].replace("%d", str(credentials)))
    ran = subprocess.run(
        [*argv, "--base-url", mock.base_url], capture_output=True, text=True, timeout=60, env=_clean_env()
    )
    assert (ran.returncode, ran.stderr) == (0, "")
    assert len(rows(db_path, "SELECT * FROM finetune")) == 1


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_accepts_the_units(db_path: Path, key_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "config"
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    metrics = tmp_path / "metrics" / "bflsync.prom"
    result = schedule(
        str(db_path),
        "--systemd",
        "--install",
        "--account",
        "work",
        "--key-file",
        str(key_file),
        "--command",
        BFLSYNC,
        "--metrics-file",
        str(metrics),
        "--ping-url",
        "https://hc-ping.com/5f1e-%41",
        env={"XDG_CONFIG_HOME": str(config)},
    )
    assert result.exit_code == 0
    unit_dir = config / "systemd" / "user"
    verify(runtime, unit_dir / "bflsync-sync-work.service", unit_dir / "bflsync-sync-work.timer")


def verify(runtime: Path, *paths: Path) -> None:
    """``systemd-analyze --user verify``: exit 0 and not one warning."""
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    ran = subprocess.run(
        ["systemd-analyze", "--user", "verify", "--man=no", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    if "Failed to initialize manager" in ran.stderr:
        pytest.skip(f"systemd-analyze cannot run its manager here: {ran.stderr.strip()}")
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "", "")


def _clean_env() -> dict[str, str]:
    """The environment of a timer or cron job: no key, no store, no API URL in it."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("BFL_", "BFLSYNC_"))}


def test_a_relative_command_is_written_by_its_full_path_and_runs_from_any_directory(
    db_path: Path, key_file: Path, mock: MockBFL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "bflsync").symlink_to(BFLSYNC)
    monkeypatch.chdir(tmp_path)
    result = schedule(str(db_path), "--cron", "--key-file", str(key_file), "--command", "bin/bflsync")
    command = result.stdout.split(" ", 5)[5].replace("\n", f" --base-url {mock.base_url}")
    assert command.startswith(f"{tmp_path / 'bin' / 'bflsync'} -q ")
    ran = subprocess.run(
        ["/bin/sh", "-c", command], capture_output=True, text=True, timeout=60, env=_clean_env(), cwd="/"
    )
    assert (ran.returncode, ran.stderr) == (0, "")


def test_a_command_given_by_name_is_written_by_the_full_path_it_has_on_path(
    db_path: Path, key_file: Path, tmp_path: Path
) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "bflsync").symlink_to(BFLSYNC)
    result = schedule(
        str(db_path),
        "--systemd",
        "--key-file",
        str(key_file),
        "--command",
        "bflsync",
        env={"PATH": str(tmp_path / "bin")},
    )
    service = service_settings(split_units(result.stdout)["bflsync-sync.service"])
    assert service["ExecStart"].startswith(f"{tmp_path / 'bin' / 'bflsync'} -q ")


def test_a_command_name_not_on_path_is_refused(db_path: Path, key_file: Path, tmp_path: Path) -> None:
    result = schedule(
        str(db_path),
        "--cron",
        "--key-file",
        str(key_file),
        "--command",
        "bflsync",
        env={"PATH": str(tmp_path)},
    )
    assert (result.exit_code, result.stderr) == (
        ExitCode.INPUT,
        "bflsync: error: --command bflsync: not found on PATH; give the executable's full path\n",
    )


@pytest.mark.parametrize("kind", ["--cron", "--systemd"])
def test_printing_a_job_whose_key_file_is_missing_warns_on_stderr_and_keeps_stdout_clean(
    db_path: Path, tmp_path: Path, kind: str
) -> None:
    missing = tmp_path / "no-such-key"
    result = schedule(str(db_path), kind, "--key-file", str(missing), env={"BFL_API_KEY": KEY})
    assert result.exit_code == 0
    assert str(missing) in result.stdout and KEY not in result.output
    assert result.stderr == (
        f"bflsync: warning: put the API key in {missing} (chmod 600) before the job runs; "
        "the job does not see BFL_API_KEY\n"
    )


def test_a_tilde_in_key_file_and_metrics_file_means_home_as_it_does_in_db(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = schedule(
        "~/store.db", "--cron", "--key-file=~/api-key", "--metrics-file=~/m/b.prom", env={"HOME": str(home)}
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.split(" -q ", 1)[1] == (
        f"--db {home}/store.db sync --api-key-file {home}/api-key --metrics-file {home}/m/b.prom\n"
    )
