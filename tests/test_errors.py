"""The error classes: all in bflsync.errors, each drawn in its docstring tree with its true exit code."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import bflsync
from bflsync import errors
from bflsync.errors import BflsyncError, ExitCode


def every_error_class() -> set[type[BflsyncError]]:
    for module in pkgutil.walk_packages(bflsync.__path__, "bflsync."):
        if module.name != "bflsync.__main__":
            importlib.import_module(module.name)
    found: set[type[BflsyncError]] = set()
    pending: list[type[BflsyncError]] = [BflsyncError]
    while pending:
        cls = pending.pop()
        found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_class_is_defined_in_the_errors_module() -> None:
    assert {cls.__name__ for cls in every_error_class() if cls.__module__ != "bflsync.errors"} == set()


def test_the_docstring_tree_draws_every_class_under_its_parent_with_its_exit_code() -> None:
    doc = errors.__doc__ or ""
    lines = doc.splitlines()
    for cls in every_error_class():
        [line] = [line for line in lines if re.search(rf"(^|── ){cls.__name__}\b", line.strip())]
        stated = re.search(r"\(exit (\d+)\)", line)
        if stated and cls is not errors.RunFailedError:
            assert int(stated.group(1)) == cls.exit_code, cls.__name__
        if cls is not BflsyncError:
            parent = cls.__mro__[1].__name__
            above = lines[: lines.index(line)]
            depth = line.index(cls.__name__)
            owner = next(
                row for row in reversed(above) if cls.__mro__[1].__name__ in row and row.index(parent) < depth
            )
            assert parent in owner, cls.__name__


def test_signal_exits_are_named_once() -> None:
    assert (ExitCode.INTERRUPTED, ExitCode.BROKEN_PIPE, ExitCode.TERMINATED) == (130, 141, 143)


def test_signal_exit_codes_are_128_plus_the_signal_number() -> None:
    import signal

    assert ExitCode.INTERRUPTED == 128 + signal.SIGINT
    assert ExitCode.BROKEN_PIPE == 128 + signal.SIGPIPE
    assert ExitCode.TERMINATED == 128 + signal.SIGTERM


DOCS = Path(__file__).resolve().parents[1] / "docs"


def exit_table(page: str, heading: str) -> dict[int, str]:
    """The rows of the first exit-code table after ``heading`` on a docs page: code -> meaning."""
    text = (DOCS / page).read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    rows: dict[int, str] = {}
    for line in section.splitlines():
        if rows and not line.startswith("|"):
            break
        if match := re.match(r"\| (\d+)(?: / (\d+))? \| (.*)", line):
            for code in filter(None, match.group(1, 2)):
                rows[int(code)] = match.group(3)
    return rows


def test_the_exit_code_table_of_the_guarantees_page_lists_every_exit_code() -> None:
    assert sorted(exit_table("guarantees.md", "## Exit codes")) == sorted(code.value for code in ExitCode)


def test_each_audit_archive_and_probe_exit_the_docs_state_is_the_one_errors_py_gives() -> None:
    assert exit_table("audit.md", "## `bflsync audit verify`").keys() == {
        ExitCode.OK,
        errors.InputError.exit_code,
        errors.StoreUnreachableError.exit_code,
        errors.AuditError.exit_code,
    }
    guarantees = exit_table("guarantees.md", "## Exit codes")
    assert "`audit verify`" in guarantees[errors.AuditError.exit_code]
    assert "import" in guarantees[errors.ArchiveError.exit_code]
    assert "`probe`" in guarantees[ExitCode.PARTIAL]
    assert exit_table("shutdown.md", "Exit codes, for monitoring").keys() == {
        ExitCode.OK,
        ExitCode.PARTIAL,
        errors.InputError.exit_code,
        ExitCode.CANNOT_RUN,
    }
