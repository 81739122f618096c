"""Running ``bflsync serve`` as a subprocess on loopback, as a user would, and talking HTTP to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conftest import SCRUBBED_ENV
from demostore import fill

from bflsync.store import access

ANNOUNCED = "read-only at "


def build_store(path: Path, *, count: int) -> Path:
    """A migrated store at ``path`` holding the generated finetunes of :mod:`demostore`."""
    opened = access.open_store_for_write(access.locate_store(str(path)))
    fill(opened.engine, count=count)
    opened.engine.dispose()
    return path


@dataclass
class Served:
    process: subprocess.Popen[str]
    url: str
    """The URL ``serve`` announced, without its trailing slash."""
    first_line: str
    log: list[str] = field(default_factory=list)
    drain: threading.Thread | None = None

    def __post_init__(self) -> None:
        # Read the log as it comes: a server whose stderr pipe is full (64 KB of access lines,
        # long URLs) blocks on its next log line and stops answering.
        self.drain = threading.Thread(target=self._read_log, daemon=True)
        self.drain.start()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)

    def stop(self) -> str:
        """Stop the server; everything it wrote on stderr after the announcement."""
        self.process.terminate()
        self.process.wait(timeout=30)
        assert self.drain is not None
        self.drain.join(timeout=30)
        return "".join(self.log)


def start(store: Path, *arguments: str) -> Served:
    """Start ``bflsync --db STORE serve ARGS`` and wait for the URL it announces once bound."""
    env = {key: value for key, value in os.environ.items() if key not in SCRUBBED_ENV}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-m", "bflsync", "--db", str(store), "serve", *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    lines = []
    while ANNOUNCED not in (line := process.stderr.readline()):
        if not line:
            process.wait(timeout=30)
            raise AssertionError("serve did not start: " + "".join(lines))
        lines.append(line)
    url = line.split(ANNOUNCED, 1)[1].split()[0].rstrip("/")
    return Served(process=process, url=url, first_line="".join([*lines, line]))


def fetch(url: str, *, host: str | None = None) -> tuple[int, str]:
    """Status and body of a GET (an HTTP error is an answer too)."""
    request = urllib.request.Request(url, headers={"Host": host} if host else {})  # noqa: S310 (http on loopback)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (http on loopback only)
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def get_json(url: str) -> Any:
    status, body = fetch(url)
    assert status == 200, (status, body)
    return json.loads(body)
