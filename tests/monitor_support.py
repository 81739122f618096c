"""Helpers of the monitoring tests: a sync through the CLI, and the metrics file read by Prometheus' parser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families
from sync_support import KEY

from bflsync.cli import cli
from bflsync.mock.server import MockBFL


def sync(db: str, mock: MockBFL, *args: str, key: str = KEY, env: dict[str, str] | None = None) -> Result:
    """``bflsync --db DB sync --base-url MOCK ARGS`` in-process; the exit code is the caller's to check."""
    return CliRunner().invoke(
        cli,
        ["--db", db, "sync", "--base-url", mock.base_url, *args],
        env={"BFL_API_KEY": key, **(env or {})},
        catch_exceptions=False,
    )


def samples(path: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a metrics file as Prometheus' own text parser reads it: (name, labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> Any:
    """One sample's value, or None when the file has no such series."""
    return found.get((name, frozenset(labels.items())))
