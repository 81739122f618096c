"""docs/monitoring.md: its alert rules, ping setup and systemd and cron recipes are the ones bflsync runs and writes."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from monitor_support import samples, sync
from ping_server import PingReceiver, ping_receiver
from sync_support import ALPHA, KEY
from test_schedule import verify

from bflsync.cli import cli
from bflsync.mock.server import MockBFL

DOC = Path(__file__).resolve().parents[1] / "docs" / "monitoring.md"
RULES_TEST = Path(__file__).resolve().parent / "fixtures" / "alert_rules_test.yml"
needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed here")


def block(name: str) -> str:
    """The fenced block right after ``<!-- check: NAME -->`` in the page."""
    match = re.search(rf"<!-- check: {name} -->\n```[a-z]*\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert match is not None, name
    return match.group(1)


def run_documented(command: str, *, db: str | None = None) -> str:
    """A documented ``bflsync ...`` command line, through the CLI; its stdout."""
    argv = shlex.split(command)
    assert argv[0] == "bflsync"
    result = CliRunner().invoke(
        cli, argv[1:] if db is None else ["--db", db, *argv[1:]], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": ALPHA}, api_key=KEY) as server:
        yield server


@pytest.fixture
def metrics_file(tmp_path: Path, mock: MockBFL) -> Path:
    """A metrics file as a real ok sync writes it."""
    path = tmp_path / "bflsync.prom"
    assert sync(str(tmp_path / "store.db"), mock, "--metrics-file", str(path)).exit_code == 0
    return path


def test_the_alert_rules_use_only_metrics_and_labels_the_file_has(metrics_file: Path) -> None:
    written = {name for name, _ in samples(metrics_file)}
    rules = yaml.safe_load(block("alert-rules"))["groups"][0]["rules"]
    assert [rule["alert"] for rule in rules] == [
        "BflsyncNoRecentSuccess",
        "BflsyncNotRunning",
        "BflsyncNeverSucceeded",
        "BflsyncLastRunNotOk",
        "BflsyncMetricsMissing",
    ]
    for rule in rules:
        assert set(re.findall(r"bflsync_[a-z_]+", rule["expr"])) <= written, rule["alert"]
        assert set(re.findall(r"\$labels\.(\w+)", rule["annotations"]["summary"])) <= {"source", "account"}


def test_every_metric_the_file_has_is_documented(metrics_file: Path) -> None:
    page = DOC.read_text(encoding="utf-8")
    for name in {name for name, _ in samples(metrics_file)}:
        short = "_" + name.removeprefix("bflsync_last_run_")
        assert name in page or short in page, name


@needs_promtool
def test_promtool_checks_and_unit_tests_the_alert_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(block("alert-rules"))
    shutil.copy(RULES_TEST, tmp_path / "rules_test.yml")
    checked = subprocess.run(
        ["promtool", "check", "rules", "rules.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        ["promtool", "test", "rules", "rules_test.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
def test_promtool_accepts_the_metrics_file(metrics_file: Path) -> None:
    checked = subprocess.run(
        ["promtool", "check", "metrics"], input=metrics_file.read_text(), capture_output=True, text=True
    )
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def test_the_documented_ping_setup_pings_start_then_the_exit_code(tmp_path: Path, mock: MockBFL) -> None:
    command = block("ping").strip()
    with ping_receiver() as receiver:
        documented = "https://hc-ping.com/your-check-uuid"
        assert documented in command
        argv = shlex.split(command.replace(documented, receiver.url))
        result = sync(str(tmp_path / "store.db"), mock, *argv[2:])
        assert result.exit_code == 0
        assert _suffixes(receiver) == ["start", "0"]


def _suffixes(receiver: PingReceiver) -> list[str]:
    return [path.rsplit("/", 1)[1] for path in receiver.paths]


def test_the_documented_systemd_units_are_what_schedule_prints() -> None:
    assert run_documented(block("schedule-systemd").strip()) == block("systemd-units")


def test_the_documented_crontab_line_is_what_schedule_prints() -> None:
    assert run_documented(block("schedule-cron").strip()) == block("crontab-line")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_analyze_verify_accepts_the_documented_units_and_failure_hook(tmp_path: Path) -> None:
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    printed = block("systemd-units")
    service, timer = printed.split("\n# bflsync-sync-work.timer\n")
    executable = shutil.which("true")
    assert executable is not None
    # The documented paths do not exist here: systemd checks that the executable does.
    (unit_dir / "bflsync-sync-work.service").write_text(service.replace("/usr/local/bin/bflsync", executable))
    (unit_dir / "bflsync-sync-work.timer").write_text(timer)
    hook = block("on-failure-unit")
    (unit_dir / "notify-failure@.service").write_text(hook)
    verify(runtime, unit_dir / "bflsync-sync-work.service", unit_dir / "bflsync-sync-work.timer")
    verify(runtime, unit_dir / "notify-failure@bflsync-sync-work.service.service")
