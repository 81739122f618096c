"""Named defaults and the settings objects built once per command and passed down.

Nothing here reads the environment: only the CLI does, so every other module can be
driven from tests and library code with explicit values.
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path

from bflsync.errors import InputError

APP_NAME = "bflsync"
DB_FILENAME = "bflsync.db"

REGION_URLS: dict[str, str] = {
    "us1": "https://api.us1.bfl.ai",
    "eu1": "https://api.eu1.bfl.ai",
}
DEFAULT_REGION = "us1"
DEFAULT_BASE_URL = REGION_URLS[DEFAULT_REGION]

# The account label of a sync without --account, and of every row a store held before accounts.
DEFAULT_ACCOUNT = "default"
_ACCOUNT_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")

DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 16
DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 30.0
DEFAULT_MAX_RETRIES = 4
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
RETRY_AFTER_CAP_S = 60.0
# A request stops retrying once its waits would add up to more than this.
DEFAULT_MAX_TOTAL_SLEEP_S = 120.0
# A cron run must end: past this no request starts and no retry waits (override with --max-duration).
DEFAULT_MAX_DURATION_S = 3600.0
# Requests in a row that fail after their retries before the run stops as failed (0: never).
DEFAULT_MAX_CONSECUTIVE_FAILURES = 10
# Bodies are counted after decompression; a bigger one is refused and never held whole in memory.
MAX_LISTING_BYTES = 64 * 1024 * 1024
MAX_ANSWER_BYTES = 16 * 1024 * 1024
MAX_API_KEY_CHARS = 4096
"""BFL keys are a few dozen characters; anything longer is a wrong file (or /dev/zero), refused before use."""


def default_db_path() -> Path:
    """The store's home when neither --db nor BFLSYNC_DB says otherwise (platform user-data dir)."""
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, appauthor=False) / DB_FILENAME


def api_key_file_warning(path: Path) -> str | None:
    """What to tell the user when group or others can read the key file, as ssh does for private keys.

    A warning rather than a refusal: the key still works, and refusing would break a cron job
    that worked yesterday; but a key others can read should never pass in silence.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return None
    return (
        f"the API key file {path} can be read by others (mode {mode:04o}); make it private: chmod 600 {path}"
    )


def validate_account_name(name: str, *, option: str = "--account") -> str:
    """An account label as given, or InputError (exit 2): 1-64 of ``A-Z a-z 0-9 . _ -``.

    The label ends up in file-like contexts (crontabs, log lines, CSV), so it stays plain.
    """
    if _ACCOUNT_NAME.fullmatch(name) is None:
        raise InputError(
            f"{option} {name!a}: an account name is 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-'"
        )
    return name


class Secret:
    """A string that never shows itself in a repr, str, log line or traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    """How to reach the BFL API; built by the CLI from options and environment."""

    api_key: Secret
    base_url: str = DEFAULT_BASE_URL
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    max_retries: int = DEFAULT_MAX_RETRIES
    concurrency: int = DEFAULT_CONCURRENCY
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S
    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES
