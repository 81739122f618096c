"""The metrics file of ``sync --metrics-file``: Prometheus text format for node_exporter's textfile collector.

A one-shot job is invisible to a scraper, so each run leaves its outcome in a file the collector
reads (Prometheus' advice for batch jobs, rather than a Pushgateway). The file is replaced
atomically (written beside it, fsynced, renamed, directory fsynced): the collector, or anyone
reading it, sees the previous file or the new one, never half of one.

Every series carries ``source`` and ``account`` labels. Several accounts may share one file: a
writer takes an ``flock`` on ``PATH.lock``, reads the file, replaces only its own
``(source, account)`` series and writes the whole file back, so syncs of other accounts keep
theirs. The lock file is not ``*.prom``, so the collector ignores it, and so does it ignore the
temporary file (a dot file ending in ``.tmp``).

The directory may be shared by several users (each syncing as themselves into one collector
directory). The lock file then belongs to whoever made it first, and ``flock`` needs no write
permission: a writer that may not open it for writing opens it read-only. The replaced file keeps
the existing file's mode, so what an administrator chose for the collector stays. A writer killed
between writing its temporary file and renaming it leaves that file behind; the next writer,
holding the lock (so no other writer is mid-write), removes it.

The path may hold something else, by mistake (``--metrics-file`` naming the store) or planted by
another user of a shared directory. The file is replaced only when what it holds is the text of
a metrics file bflsync wrote (or nothing); anything else (binary data, another exporter's series,
a FIFO, a device, a file over :data:`MAX_FILE_BYTES`) is left as it is and the writer gives up
with :class:`~bflsync.errors.NotMetricsFileError`. A symlink at the path, or at ``PATH.lock``, is
never followed: the link itself is replaced, or the lock refused.

Values a run cannot know (the last success of a run that failed, the finetune counts of a run
refused by the lock, the balance of a run that did not read it) are carried over from the
series already in the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, TypeVar

from bflsync.columns import RUN_COUNTERS
from bflsync.errors import NotMetricsFileError

PREFIX: Final = "bflsync_"
# The values bflsync_last_run_status has a series for: the run statuses, and a sync refused by the lock.
LOCKED: Final = "locked"
STATUSES: Final = ("ok", "partial", "failed", "interrupted", LOCKED)
FINETUNE_STATES: Final = ("live", "deleted")
FILE_MODE: Final = 0o644  # a new file's mode: node_exporter usually runs as another user
# Writers hold PATH.lock for one read-and-rename: a holder for longer than this is stuck.
LOCK_WAIT_S: Final = 10.0
LOCK_POLL_S: Final = 0.02
# Far above a file of many accounts (a few KB each), far below what would strain a small host.
MAX_FILE_BYTES: Final = 16 << 20

_T = TypeVar("_T")
Key = tuple[str, str]
"""(source, account): whose series these are."""


@dataclass(frozen=True, kw_only=True)
class AccountMetrics:
    """What the file says about one (source, account): its last run, last success and store figures.

    Timestamps are Unix seconds. ``None`` means unknown: the series is left out of the file.
    """

    source: str
    account: str
    last_run_at: float | None = None
    status: str | None = None
    exit_code: int | None = None
    duration_s: float | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    last_success_at: float | None = None
    live: int | None = None
    deleted: int | None = None
    credits: float | None = None

    @property
    def key(self) -> Key:
        return (self.source, self.account)

    def carried_over(self, previous: AccountMetrics | None) -> AccountMetrics:
        """These metrics with what this run could not know taken from the file's previous series."""
        if previous is None:
            return self
        return replace(
            self,
            last_success_at=_first(self.last_success_at, previous.last_success_at),
            live=_first(self.live, previous.live),
            deleted=_first(self.deleted, previous.deleted),
            credits=_first(self.credits, previous.credits),
        )


def _first(value: _T | None, fallback: _T | None) -> _T | None:
    return value if value is not None else fallback


@dataclass(frozen=True)
class _Family:
    name: str
    help: str


_FAMILIES: Final = (
    _Family("last_run_timestamp_seconds", "When the last sync of this source and account ended, Unix time."),
    _Family("last_success_timestamp_seconds", "When the last sync with status ok ended, Unix time."),
    _Family(
        "last_run_status", "1 for the last sync's status (locked: refused, another sync held the store)."
    ),
    _Family("last_run_exit_code", "The exit code of the last sync."),
    _Family("last_run_duration_seconds", "How long the last sync ran."),
    *(
        _Family(f"last_run_{name}", f"The last sync's {name} count (see bflsync runs).")
        for name in RUN_COUNTERS
    ),
    _Family("finetunes", "Finetunes stored for this source and account, live or marked deleted."),
    _Family("credits", "The account's credit balance as last read by a sync."),
)


def render(items: Iterable[AccountMetrics]) -> str:
    """The whole file: each family's HELP and TYPE once, then its series sorted by source and account."""
    ordered = sorted(items, key=lambda item: item.key)
    lines: list[str] = []
    for family in _FAMILIES:
        samples = [sample for item in ordered for sample in _samples(family.name, item)]
        if not samples:
            continue
        lines.append(f"# HELP {PREFIX}{family.name} {family.help}")
        lines.append(f"# TYPE {PREFIX}{family.name} gauge")
        lines.extend(samples)
    return "".join(f"{line}\n" for line in lines)


def _samples(name: str, item: AccountMetrics) -> list[str]:
    values: list[tuple[dict[str, str], float | int | None]]
    if name == "last_run_timestamp_seconds":
        values = [({}, item.last_run_at)]
    elif name == "last_success_timestamp_seconds":
        values = [({}, item.last_success_at)]
    elif name == "last_run_status":
        values = [({"status": s}, int(s == item.status)) for s in STATUSES] if item.status else []
    elif name == "last_run_exit_code":
        values = [({}, item.exit_code)]
    elif name == "last_run_duration_seconds":
        values = [({}, item.duration_s)]
    elif name.startswith("last_run_"):
        values = [({}, item.counts.get(name.removeprefix("last_run_")))]
    elif name == "finetunes":
        values = [({"state": "live"}, item.live), ({"state": "deleted"}, item.deleted)]
    else:
        values = [({}, item.credits)]
    return [
        f"{PREFIX}{name}{_labels({'source': item.source, 'account': item.account, **extra})} {_number(value)}"
        for extra, value in values
        if value is not None
    ]


def _labels(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float | int) -> str:
    if isinstance(value, bool | int):
        return str(int(value))
    return repr(float(value))


_SAMPLE = re.compile(r"(?P<name>bflsync_[a-z_]+)\{(?P<labels>.*)\} (?P<value>\S+)")
_LABEL = re.compile(r'(?P<key>[a-z_]+)="(?P<value>(?:[^"\\]|\\.)*)",?')


def parse(text: str) -> dict[Key, AccountMetrics]:
    """The series of a file this module wrote, per (source, account); lines it does not know are skipped."""
    found: dict[Key, dict[str, Any]] = {}
    for line in text.splitlines():
        sample = _SAMPLE.fullmatch(line)
        if sample is None:
            continue
        labels = {m["key"]: _unescape(m["value"]) for m in _LABEL.finditer(sample["labels"])}
        try:
            value = float(sample["value"])
        except ValueError:
            continue
        if "source" not in labels or "account" not in labels:
            continue
        fields = found.setdefault((labels["source"], labels["account"]), {"counts": {}})
        _read_sample(fields, sample["name"].removeprefix(PREFIX), labels, value)
    return {key: AccountMetrics(source=key[0], account=key[1], **fields) for key, fields in found.items()}


def _read_sample(fields: dict[str, Any], name: str, labels: Mapping[str, str], value: float) -> None:
    simple = {
        "last_run_timestamp_seconds": "last_run_at",
        "last_success_timestamp_seconds": "last_success_at",
        "last_run_duration_seconds": "duration_s",
        "credits": "credits",
    }
    if name in simple:
        fields[simple[name]] = value
    elif name == "last_run_exit_code":
        fields["exit_code"] = int(value)
    elif name == "last_run_status":
        if value == 1:
            fields["status"] = labels.get("status")
    elif name == "finetunes" and labels.get("state") in FINETUNE_STATES:
        fields[labels["state"]] = int(value)
    elif name.removeprefix("last_run_") in RUN_COUNTERS:
        fields["counts"][name.removeprefix("last_run_")] = int(value)


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], value)


def update_file(path: Path, item: AccountMetrics, *, lock_wait_s: float = LOCK_WAIT_S) -> None:
    """Replace ``item``'s series in the metrics file at ``path``, keeping every other account's.

    Writers of one file take turns on ``PATH.lock``; the file itself is replaced atomically.
    """
    with _locked(path.with_name(path.name + ".lock"), wait_s=lock_wait_s):
        existing = parse(read_own(path))
        existing[item.key] = item.carried_over(existing.get(item.key))
        _remove_left_temporaries(path)
        write_atomically(path, render(existing.values()))


def read_own(path: Path) -> str:
    """The text of the metrics file at ``path`` ("" when there is none, or only a symlink), if it may be replaced.

    Raises :class:`NotMetricsFileError` for anything whose replacement could lose data or that
    could stall the reader (a FIFO blocks an open, ``/dev/zero`` never ends).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return ""  # a symlink: replacing it by rename leaves its target alone
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotMetricsFileError("it is not a regular file; it was left as it is")
        if info.st_size > MAX_FILE_BYTES:
            raise NotMetricsFileError(f"it is larger than {MAX_FILE_BYTES >> 20} MiB; it was left as it is")
        data = handle.read(MAX_FILE_BYTES + 1)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or len(data) > MAX_FILE_BYTES or not _only_ours(text):
        raise NotMetricsFileError(
            "it is not a bflsync metrics file (not Prometheus text); it was left as it is"
        )
    return text


_OURS: Final = (f"# HELP {PREFIX}", f"# TYPE {PREFIX}", PREFIX)


def _only_ours(text: str) -> bool:
    """Whether every line of ``text`` is blank or one :func:`render` writes: bflsync's HELP, TYPE or sample."""
    return all(not line.strip() or line.startswith(_OURS) for line in text.splitlines())


def _temporary_name(path: Path) -> re.Pattern[str]:
    """The names :func:`write_atomically` gives its temporary files beside ``path`` (mkstemp's)."""
    return re.compile(re.escape(f".{path.name}.") + r"[A-Za-z0-9_]+\.tmp")


def _remove_left_temporaries(path: Path) -> None:
    """Remove temporary files of ``path`` that killed writers left; the caller holds the writers' lock."""
    pattern = _temporary_name(path)
    try:
        left = [entry for entry in path.parent.iterdir() if pattern.fullmatch(entry.name)]
    except OSError:
        return
    for entry in left:
        with contextlib.suppress(OSError):  # gone already, or not ours to remove: harmless
            entry.unlink()


@contextlib.contextmanager
def _locked(lock_path: Path, *, wait_s: float) -> Iterator[None]:
    """The writers' turn on ``lock_path``; a writer that never lets go costs a warning, not a hung sync."""
    fd = _open_lock(lock_path)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OSError(errno.EAGAIN, f"{lock_path} stayed locked for {wait_s:g} s") from None
                time.sleep(LOCK_POLL_S)
        yield
    finally:
        os.close(fd)


def _open_lock(lock_path: Path) -> int:
    """A descriptor of the lock file, which must be a regular file: a FIFO planted there would block an
    open for reading (hence ``O_NONBLOCK``), and a symlink could point anywhere."""
    flags = os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | flags, FILE_MODE)
        except PermissionError as refused:
            # Another user's lock file: flock works on a descriptor open for reading alone.
            # None at all: the directory refused to create it, which is what the user must hear.
            try:
                fd = os.open(lock_path, os.O_RDONLY | flags)
            except FileNotFoundError:
                raise refused from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotMetricsFileError(f"{lock_path.name} is a symlink; nothing was written") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotMetricsFileError(f"{lock_path.name} is not a regular file; nothing was written")
    return fd


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` beside ``path``, fsync it, rename it over ``path`` and fsync the directory.

    The new file has the mode of the one it replaces, or :data:`FILE_MODE` when there was none.
    """
    try:
        existing = path.lstat()
    except FileNotFoundError:
        existing = None
    # A symlink's own mode says nothing: the file it is replaced by gets the default.
    mode = stat.S_IMODE(existing.st_mode) if existing and stat.S_ISREG(existing.st_mode) else FILE_MODE
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        Path(temporary).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
