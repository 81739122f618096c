"""The files of a SQLite store on disk, and what bflsync may create, adopt or must refuse there.

A store often lives in a directory other people can write to (a team share, a group
directory). So bflsync never follows a symlink it did not expect, never writes through a
file someone else owns, and never leaves files beside a store it only read:

* the store file is created ``O_EXCL | O_NOFOLLOW`` with mode 0600 (SQLite gives its
  ``-wal`` and ``-shm`` files the same mode); an existing empty file is adopted as a new
  store only if it is a regular file of ours, and is made 0600 whatever its mode was;
* a symlink at the store path may name an existing store, but a dangling one is refused:
  following it would create a store wherever it points;
* before SQLite writes, its journals beside the store (``-wal``, ``-shm``, ``-journal``)
  must be regular files of ours with one name, or absent;
* a read-only connection to a store whose ``-wal`` does not exist would create ``-wal`` and
  ``-shm``: where that would leave files next to someone else's file, or next to a file that
  is being refused, :func:`read_immutable` says to read it as immutable instead.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Annotations only: the read path calls read_immutable() with a str and never imports pathlib.
    from pathlib import Path

from bflsync.errors import NotAStoreError, StoreMissingError, StoreWriteError

JOURNAL_SUFFIXES = ("-wal", "-shm", "-journal")
PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def journal_path(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def refuse_dangling_symlink(path: Path) -> None:
    """A symlink at the store path whose target does not exist: creating the store would follow it."""
    if path.is_symlink() and not path.exists():
        raise NotAStoreError(
            f"{path} is a symlink to {path.readlink()}, which does not exist; "
            "refusing to create a store there"
        )


def open_store_file(path: Path, *, create: bool) -> tuple[int, bool]:
    """A read-only descriptor on the store file (to lock it), and whether this call created it.

    Symlinks to an existing store are followed (two spellings of one store are one store); a
    missing file is created private, only when ``create``, and never through a symlink.
    """
    refuse_dangling_symlink(path)
    created = False
    try:
        if create and not path.exists():
            path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
            try:
                flags = os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(path, flags, PRIVATE_FILE_MODE)
                created = True
            except FileExistsError:
                # Someone created it (or planted a symlink) in between: judge it like any existing file.
                refuse_dangling_symlink(path)
                fd = _open_existing(path)
        else:
            fd = _open_existing(path)
    except FileNotFoundError:
        raise StoreMissingError(f"no bflsync store at {path} - run `bflsync sync` first") from None
    except OSError as exc:
        raise StoreWriteError(f"cannot create the store at {path}: {exc.strerror}") from exc
    try:
        _require_own_regular_file(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd, created


def _open_existing(path: Path) -> int:
    # O_NONBLOCK: opening a FIFO planted at the store path must not hang; fstat refuses it next.
    return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)


def _require_own_regular_file(path: Path, info: os.stat_result) -> None:
    if stat.S_ISDIR(info.st_mode):
        raise NotAStoreError(f"{path} is a directory, not a bflsync store")
    if not stat.S_ISREG(info.st_mode):
        raise NotAStoreError(f"{path} is not a regular file; refusing to touch it")
    if info.st_uid != os.geteuid():
        raise StoreWriteError(
            f"the store at {path} belongs to uid {info.st_uid}, not to you (uid {os.geteuid()}); "
            "bflsync writes only files you own"
        )


def adopt_empty_store_file(path: Path) -> None:
    """Make an empty file of ours, about to become a new store, private (its journals too)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        # A symlink to an empty file of ours: the checks that follow symlinks apply.
        fd = _open_existing(path)
    try:
        _require_own_regular_file(path, os.fstat(fd))
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)
    check_journals(path)
    for suffix in JOURNAL_SUFFIXES:
        journal = journal_path(path, suffix)
        if journal.exists():
            journal.chmod(PRIVATE_FILE_MODE)


def check_journals(path: str | Path) -> None:
    """Refuse to let SQLite write journals beside the store that are not plain files of ours.

    Readers need it too: a connection that is not immutable writes the ``-shm`` file. Plain
    ``os`` calls, so the read path can call it with a str without importing pathlib.
    """
    real = os.path.realpath(path)
    for suffix in JOURNAL_SUFFIXES:
        journal = real + suffix
        try:
            info = os.lstat(journal)
        except FileNotFoundError:
            continue
        problem = None
        if stat.S_ISLNK(info.st_mode):
            problem = "is a symlink"
        elif not stat.S_ISREG(info.st_mode):
            problem = "is not a regular file"
        elif info.st_uid != os.geteuid():
            problem = f"belongs to uid {info.st_uid}, not to you"
        elif info.st_nlink != 1:
            problem = f"has {info.st_nlink} hard links"
        if problem:
            raise StoreWriteError(f"{journal} {problem}; refusing to let SQLite write it")


def read_immutable(path: str | Path, *, inspecting: bool = False) -> bool:
    """Whether a read-only connection must open the file as immutable so it creates no journals.

    Without a ``-wal`` no writer is mid-way, and a read-only connection would create ``-wal``
    and ``-shm``. That is harmless beside our own store, where our next sync reuses them, but
    not beside a file of someone else's, nor beside a file that is only being inspected
    (``inspecting``: it may turn out foreign or too new, and must then be left as found). An
    immutable read sees the file as it is; if its owner starts writing during the read, the
    read may fail and can simply be repeated.
    """
    real = os.path.realpath(path)
    if os.path.exists(real + "-wal"):
        return False
    if inspecting:
        return True
    try:
        return os.stat(real).st_uid != os.geteuid()
    except OSError:
        return False
