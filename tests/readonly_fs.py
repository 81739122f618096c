"""Making a path read-only for a subprocess, even for root (who ignores file modes)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def read_only_argv(path: Path, argv: list[str]) -> list[str]:
    """Run argv with ``path`` read-only: a private read-only bind mount as root, plain modes otherwise."""
    if os.geteuid() != 0:
        path.chmod(0o555 if path.is_dir() else 0o444)
        return argv
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: no way to make a file read-only for root")
    script = 'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" "$1" && shift && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(path), *argv]
