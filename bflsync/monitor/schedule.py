"""The units and crontab line of ``bflsync schedule``: a sync that runs unattended, with no shell glue.

The systemd pair is a oneshot service plus a timer, for the user's own service manager. The
API key never appears in them: ``LoadCredential=`` copies it from a private file into the
service's credentials directory, which only the service can read, and the sync reads it there
(``--api-key-file %d/bfl-api-key``). The service is sandboxed (``NoNewPrivileges=``,
``ProtectSystem=strict`` and more) and may write only where the store (and the metrics file)
live. The crontab line names the executable by its full path (cron's PATH is minimal) and runs
the sync with ``-q``, so cron mails only errors.

Each setting is escaped the way systemd reads it (systemd.syntax(7)): ``ExecStart=`` unquotes
words and expands specifiers (``%%``) and variables (``$$``); ``ReadWritePaths=`` unquotes words
and expands specifiers only; ``LoadCredential=ID:PATH`` takes the path as it stands, specifiers
expanded. Values holding control characters are refused by the CLI before they get here: a line
break would start a directive of its own.

Each unit carries the SHA-256 of what bflsync wrote below its stamp line, so ``--install`` can
tell a unit it may replace from one the user has edited since (:func:`as_written`).

Everything here is pure: the CLI gives the executable, the store and the paths.
"""

from __future__ import annotations

import hashlib
import shlex
import zlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from bflsync.monitor.durations import spell_duration

CREDENTIAL: Final = "bfl-api-key"
UNIT_PREFIX: Final = "bflsync-sync"
DEFAULT_EVERY: Final = timedelta(hours=1)
HEADER: Final = "# Written by `bflsync schedule --systemd`; see docs/monitoring.md.\n"
STAMP: Final = "# bflsync-sha256: "

# The sandbox of the service: each line is documented in systemd.exec(5); see docs/monitoring.md.
HARDENING: Final = (
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=read-only",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "RestrictNamespaces=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "SystemCallArchitectures=native",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    "UMask=0077",
)


@dataclass(frozen=True, kw_only=True)
class Job:
    """One scheduled sync: what runs, against which store, as which account, how often."""

    command: tuple[str, ...]
    """The bflsync executable as an argv prefix (``/usr/bin/bflsync``, or ``python -m bflsync``)."""
    db: str | None
    """``--db`` as given to the job (an absolute path or a URL); None: the default store."""
    writable_dirs: tuple[str, ...] = ()
    """Directories the service writes: the SQLite store's, the metrics file's."""
    key_file: str
    account: str | None = None
    region: str | None = None
    every: timedelta = DEFAULT_EVERY
    metrics_file: str | None = None
    ping_url: str | None = None
    on_failure: str | None = None

    @property
    def unit_name(self) -> str:
        """``bflsync-sync``, or ``bflsync-sync-ACCOUNT``: one pair per account, side by side."""
        return f"{UNIT_PREFIX}-{self.account}" if self.account else UNIT_PREFIX

    def sync_argv(self, key_path: str) -> list[str]:
        """The sync's command line, reading the key from ``key_path``."""
        argv = [*self.command, "-q"]
        if self.db is not None:
            argv += ["--db", self.db]
        argv.append("sync")
        if self.account:
            argv += ["--account", self.account]
        if self.region:
            argv += ["--region", self.region]
        argv += ["--api-key-file", key_path]
        if self.metrics_file:
            argv += ["--metrics-file", self.metrics_file]
        if self.ping_url:
            argv += ["--ping-url", self.ping_url]
        return argv


def systemd_units(job: Job) -> dict[str, str]:
    """The service and timer files, by file name."""
    who = f"account {job.account}" if job.account else "the default account"
    key_path = f"%d/{CREDENTIAL}"
    exec_start = " ".join(
        _systemd_word(word) if word != key_path else word for word in job.sync_argv(key_path)
    )
    unit = [
        "[Unit]",
        f"Description=bflsync: sync the BFL finetunes of {who}",
        "Wants=network-online.target",
        "After=network-online.target",
    ]
    if job.on_failure:
        unit.append(f"OnFailure={job.on_failure}")
    service = [
        *unit,
        "",
        "[Service]",
        "Type=oneshot",
        f"ExecStart={exec_start}",
        f"LoadCredential={CREDENTIAL}:{_specifiers_kept(job.key_file)}",
        *HARDENING,
    ]
    if job.writable_dirs:
        service.append("ReadWritePaths=" + " ".join(_path_word(path) for path in job.writable_dirs))
    every = spell_duration(job.every)
    timer = [
        "[Unit]",
        f"Description=Run {job.unit_name}.service every {every}",
        "",
        "[Timer]",
        "OnBootSec=5min",
        f"OnUnitActiveSec={every}",
        f"RandomizedDelaySec={spell_duration(min(job.every / 10, timedelta(minutes=5)))}",
        "AccuracySec=1min",
        f"Unit={job.unit_name}.service",
        "",
        "[Install]",
        "WantedBy=timers.target",
    ]
    return {
        f"{job.unit_name}.service": _stamped("".join(f"{line}\n" for line in service)),
        f"{job.unit_name}.timer": _stamped("".join(f"{line}\n" for line in timer)),
    }


def _stamped(body: str) -> str:
    return f"{HEADER}{STAMP}{_digest(body)}\n{body}"


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def as_written(text: str) -> bool:
    """Whether ``text`` is a unit exactly as bflsync wrote it: its lines below the stamp match the stamp."""
    head, found, rest = text.partition(f"\n{STAMP}")
    if not found or "\n" in head:
        return False
    digest, _, body = rest.partition("\n")
    return digest == _digest(body)


def _systemd_word(word: str) -> str:
    """One word of an ``ExecStart=`` command line, as systemd reads it back: specifiers and variables kept literal."""
    return _quoted(word.replace("$", "$$").replace("%", "%%"))


def _path_word(path: str) -> str:
    """One path of ``ReadWritePaths=``: unquoted and specifier-expanded by systemd, never variable-expanded."""
    return _quoted(_specifiers_kept(path))


def _specifiers_kept(text: str) -> str:
    """``text`` with each ``%`` doubled, so systemd's specifier expansion gives it back unchanged."""
    return text.replace("%", "%%")


def _quoted(word: str) -> str:
    """``word`` in double quotes (C escapes inside) when systemd would otherwise split or unescape it."""
    if word and not any(char in word for char in " \t\"'\\;"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def crontab_line(job: Job) -> str:
    """One crontab line running the sync at a fixed minute (spread per account) every ``job.every``."""
    command = " ".join(shlex.quote(word) for word in job.sync_argv(job.key_file))
    # In a crontab, an unescaped % ends the command and starts its standard input.
    return f"{cron_schedule(job.every, job.unit_name)} {command.replace('%', chr(92) + '%')}\n"


def cron_schedule(every: timedelta, name: str) -> str:
    """The five time fields of ``every``, on a minute and hour derived from ``name`` so jobs spread out.

    Cron counts from the top of the hour and of the day, so only intervals that divide them are
    regular: 1-60 minutes dividing an hour, 1-24 hours dividing a day, or 1d; ValueError otherwise.
    """
    seconds = int(every.total_seconds())
    spread = zlib.crc32(name.encode())
    if seconds % 60 == 0 and seconds < 3600 and 3600 % seconds == 0:
        minutes = seconds // 60
        return f"{spread % minutes}-59/{minutes} * * * *" if minutes > 1 else "* * * * *"
    minute = spread % 60
    if seconds % 3600 == 0 and seconds <= 86400 and 86400 % seconds == 0:
        hours = seconds // 3600
        if hours == 1:
            return f"{minute} * * * *"
        return f"{minute} {spread // 60 % hours}-23/{hours} * * *"
    raise ValueError(
        f"cron cannot run every {spell_duration(every)} evenly: use minutes that divide an hour, "
        "hours that divide a day, or 1d"
    )
