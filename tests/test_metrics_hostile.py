"""The metrics file in a directory shared by several users, and what a killed writer leaves behind.

The second user is a real one: the tests run the writer in a subprocess under another uid, through
util-linux's ``setpriv`` (they need root and setpriv for that, and skip without them).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from monitor_support import samples, sync, value
from sync_support import ALPHA, KEY

from bflsync.cli import cli
from bflsync.mock.server import MockBFL
from bflsync.monitor import metrics

FIRST_UID = 65534
SECOND_UID = 65533
WRITE = """
import sys
from pathlib import Path
from bflsync.monitor.metrics import AccountMetrics, update_file
update_file(Path(sys.argv[1]), AccountMetrics(source="api.bfl.ai", account=sys.argv[2], last_run_at=1.5e9,
            status="ok", exit_code=0, last_success_at=1.5e9))
"""


@pytest.fixture
def mock() -> Iterator[MockBFL]:
    with MockBFL.serve({"alpha": ALPHA}, api_key=KEY) as server:
        yield server


def item(account: str) -> metrics.AccountMetrics:
    return metrics.AccountMetrics(
        source="api.bfl.ai", account=account, last_run_at=1.5e9, status="ok", exit_code=0
    )


def write_as(uid: int, path: Path, account: str) -> subprocess.CompletedProcess[str]:
    """``update_file(path, ...)`` for ``account``, run by user ``uid`` with the usual umask 022."""
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return subprocess.run(
        [*as_user, sys.executable, "-c", WRITE, str(path), account],
        umask=0o022,
        env={"PATH": os.environ.get("PATH", ""), "HOME": "/"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may write, as a textfile collector's directory shared by two users is;
    outside pytest's own temporary directory, which only its owner may enter."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a writer as two other users")
    parent = Path(tempfile.mkdtemp(prefix="bflsync-shared-"))
    try:
        parent.chmod(0o755)
        shared = parent / "textfile"
        shared.mkdir()
        shared.chmod(0o777)
        yield shared
    finally:
        shutil.rmtree(parent)


def test_a_second_user_updates_a_file_whose_lock_file_belongs_to_the_first(shared_dir: Path) -> None:
    prom = shared_dir / "bflsync.prom"
    first = write_as(FIRST_UID, prom, "alice")
    assert first.returncode == 0, first.stderr
    lock = prom.with_name(prom.name + ".lock")
    assert (lock.stat().st_uid, stat.S_IMODE(lock.stat().st_mode)) == (FIRST_UID, 0o644)
    second = write_as(SECOND_UID, prom, "bob")
    assert (second.returncode, second.stderr) == (0, "")
    found = samples(prom)
    assert [
        value(found, "bflsync_last_run_timestamp_seconds", source="api.bfl.ai", account=account)
        for account in ("alice", "bob")
    ] == [1.5e9, 1.5e9]


def test_the_replaced_file_keeps_the_mode_the_existing_file_had(tmp_path: Path) -> None:
    prom = tmp_path / "bflsync.prom"
    prom.write_text("")
    prom.chmod(0o640)
    metrics.update_file(prom, item("alice"))
    assert stat.S_IMODE(prom.stat().st_mode) == 0o640


def test_a_new_file_is_readable_by_the_node_exporter_whatever_the_umask(tmp_path: Path) -> None:
    prom = tmp_path / "bflsync.prom"
    old = os.umask(0o077)
    try:
        metrics.update_file(prom, item("alice"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644


def test_a_temp_file_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path: Path) -> None:
    prom = tmp_path / "bflsync.prom"
    left = [tmp_path / ".bflsync.prom.k1ll3d_x.tmp", tmp_path / ".bflsync.prom.zz9ab0cd.tmp"]
    others = [tmp_path / ".other.prom.k1ll3d_x.tmp", tmp_path / ".bflsync.prom.tmp.keep"]
    for path in left + others:
        path.write_text("bflsync_last_run_status{half")
    for account in ("alice", "bob", "carol"):
        metrics.update_file(prom, item(account))
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        ["bflsync.prom", "bflsync.prom.lock", *(path.name for path in others)]
    )


def test_a_temp_file_another_user_left_is_removed_too(shared_dir: Path) -> None:
    prom = shared_dir / "bflsync.prom"
    stale = shared_dir / ".bflsync.prom.k1ll3d_x.tmp"
    stale.write_text("half")
    os.chown(stale, FIRST_UID, FIRST_UID)
    stale.chmod(0o600)
    written = write_as(SECOND_UID, prom, "bob")
    assert (written.returncode, written.stderr) == (0, "")
    assert sorted(path.name for path in shared_dir.iterdir()) == ["bflsync.prom", "bflsync.prom.lock"]


FOREIGN_FILES = {
    "a SQLite store": b"SQLite format 3\x00" + bytes(range(256)) * 16,
    "a shell script": b"#!/bin/sh\nexec backup --all\n",
    "another exporter's series": b'# TYPE node_backup_ok gauge\nnode_backup_ok{job="nightly"} 1\n',
}


@pytest.mark.parametrize("content", FOREIGN_FILES.values(), ids=FOREIGN_FILES.keys())
def test_a_file_that_is_not_a_bflsync_metrics_file_is_never_replaced(tmp_path: Path, content: bytes) -> None:
    prom = tmp_path / "bflsync.prom"
    prom.write_bytes(content)
    with pytest.raises(metrics.NotMetricsFileError, match="not a bflsync metrics file"):
        metrics.update_file(prom, item("alice"))
    assert prom.read_bytes() == content


def test_a_metrics_file_naming_the_store_leaves_the_store_whole_with_one_warning(
    db_path: Path, mock: MockBFL
) -> None:
    assert sync(str(db_path), mock).exit_code == 0
    before = db_path.read_bytes()
    result = sync(str(db_path), mock, "--metrics-file", str(db_path))
    assert result.exit_code == 0
    assert [line for line in result.stderr.splitlines() if "warning" in line] == [
        f"bflsync: warning: cannot write the metrics file {db_path}: "
        "it is not a bflsync metrics file (not Prometheus text); it was left as it is"
    ]
    assert db_path.read_bytes()[:16] == before[:16] == b"SQLite format 3\x00"
    assert CliRunner().invoke(cli, ["--db", str(db_path), "status"]).exit_code == 0


def test_a_file_over_the_size_cap_is_neither_read_nor_replaced(tmp_path: Path) -> None:
    prom = tmp_path / "bflsync.prom"
    with prom.open("wb") as handle:
        handle.truncate(metrics.MAX_FILE_BYTES + 1)
    with pytest.raises(metrics.NotMetricsFileError, match="larger than"):
        metrics.update_file(prom, item("alice"))
    assert prom.stat().st_size == metrics.MAX_FILE_BYTES + 1


def run_update(path: Path, *, uid: int | None = None) -> subprocess.CompletedProcess[str]:
    """``update_file(path, ...)`` in a child process bounded in time and memory, as ``uid`` if given:
    a write that hangs or reads without end fails the test instead of stalling it."""
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] if uid is not None else []
    bounded = "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
    try:
        return subprocess.run(
            [*as_user, sys.executable, "-c", bounded + WRITE, str(path), "alice"],
            umask=0o022,
            env={"PATH": os.environ.get("PATH", ""), "HOME": "/"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"updating {path} hung")


def test_a_fifo_planted_at_the_path_is_refused_without_a_hang(tmp_path: Path) -> None:
    prom = tmp_path / "bflsync.prom"
    os.mkfifo(prom)
    written = run_update(prom)
    assert "NotMetricsFileError" in written.stderr and "not a regular file" in written.stderr
    assert stat.S_ISFIFO(prom.lstat().st_mode)


def test_a_symlink_planted_at_the_path_is_replaced_not_followed(tmp_path: Path) -> None:
    prom = tmp_path / "bflsync.prom"
    prom.symlink_to("/dev/zero")
    written = run_update(prom)
    assert (written.returncode, written.stderr) == (0, "")
    assert stat.S_ISREG(prom.lstat().st_mode)
    assert metrics.parse(prom.read_text())[("api.bfl.ai", "alice")].status == "ok"


def test_a_fifo_another_user_planted_at_the_lock_path_is_refused_without_a_hang(shared_dir: Path) -> None:
    prom = shared_dir / "bflsync.prom"
    lock = shared_dir / "bflsync.prom.lock"
    os.mkfifo(lock)
    os.chown(lock, FIRST_UID, FIRST_UID)
    lock.chmod(0o644)
    written = run_update(prom, uid=SECOND_UID)
    assert "not a regular file" in written.stderr
    assert not prom.exists()


def test_a_directory_the_writer_may_not_write_is_reported_as_permission_denied(shared_dir: Path) -> None:
    shared_dir.chmod(0o555)
    written = run_update(shared_dir / "bflsync.prom", uid=SECOND_UID)
    assert written.stderr.splitlines()[-1].startswith("PermissionError: [Errno 13] Permission denied")
