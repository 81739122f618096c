"""Helpers shared by the sync tests: payloads, store reads and ways to run ``bflsync sync``."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

KEY = "sync-test-key-4f1c"

# Small, hand-written payloads so whole rows can be spelled out in assertions.
ALPHA: dict[str, Any] = {
    "finetune_comment": "portrait",
    "trigger_word": "TOK",
    "mode": "character",
    "finetune_type": "lora",
    "iterations": 300,
    "lora_rank": 32,
    "learning_rate": 1e-05,
    "priority": "quality",
    "captioning": True,
    "timestamp": "2024-09-01T10:00:00",
}
BETA: dict[str, Any] = {"trigger_word": "SKS", "mode": "style", "iterations": "500", "finetune_type": "full"}
GAMMA: dict[str, Any] = {"mode": "product", "captioning": False}


class AnyTimestamp:
    """Equal to any stored timestamp text: the CLI stamps rows with the real clock."""

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, str)
            and len(other) == 27
            and other[4] == "-"
            and other[10] == "T"
            and other[-1] == "Z"
        )

    def __repr__(self) -> str:
        return "<any timestamp>"


ANY_TIME = AnyTimestamp()


class AnyRowHash:
    """Equal to any SHA-256 hex digest: a row's link in the hash chain (bflsync.store.chain)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and len(other) == 64 and all(c in "0123456789abcdef" for c in other)

    def __repr__(self) -> str:
        return "<any row hash>"


ANY_ROW_HASH = AnyRowHash()


def rows(db_path: Path, query: str, *params: Any) -> list[dict[str, Any]]:
    """Rows of a query, read through a read-only connection so the test never changes the store."""
    connection = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in connection.execute(query, params)]
    finally:
        connection.close()


def integrity(db_path: Path) -> str:
    return str(rows(db_path, "PRAGMA integrity_check")[0]["integrity_check"])


def rows_out_of_step(db_path: Path) -> list[dict[str, Any]]:
    """Finetune rows whose version, content hash or deleted state disagree with their latest version."""
    return rows(
        db_path,
        """
        SELECT f.finetune_id, f.version, v.version AS latest_version, f.content_hash, v.content_hash AS
               latest_hash, f.deleted_at, v.change
        FROM finetune AS f
        LEFT JOIN finetune_version AS v
          ON v.finetune_pk = f.id
         AND v.version = (SELECT max(version) FROM finetune_version WHERE finetune_pk = f.id)
        WHERE v.id IS NULL
           OR f.version != v.version
           OR (v.change = 'deleted') != (f.deleted_at IS NOT NULL)
           OR (v.change != 'deleted' AND f.content_hash != v.content_hash)
        """,
    )


def file_bytes(path: Path) -> bytes:
    return path.read_bytes()


def sync_argv(db_path: Path, base_url: str, *args: str, quiet: bool = False) -> list[str]:
    group = ["--db", str(db_path), *(["--quiet"] if quiet else [])]
    return [sys.executable, "-m", "bflsync", *group, "sync", "--base-url", base_url, *args]


def process_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "BFL_API_KEY": KEY, **extra}


def run_sync_process(
    db_path: Path, base_url: str, *args: str, quiet: bool = False, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sync_argv(db_path, base_url, *args, quiet=quiet),
        env=process_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_until_running(db_path: Path, process: subprocess.Popen[str], *, timeout: float = 60.0) -> None:
    """Until the sync ``process`` has its running run row: it then holds the store's lock and is fetching.

    Waits for that state rather than for a guessed time; the generous default leaves room for a
    loaded machine and costs nothing when the sync starts promptly.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if db_path.exists():
            try:
                if rows(db_path, "SELECT id FROM sync_run WHERE status = 'running' AND pid = ?", process.pid):
                    return
            except sqlite3.OperationalError:
                pass  # the store is being created
        time.sleep(0.02)
    raise AssertionError(f"the sync never started its run within {timeout:g} s")
