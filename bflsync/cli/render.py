"""Writing results to stdout: aligned tables, JSON, JSON lines and CSV.

On a terminal, tables are fitted to its width (:mod:`bflsync.cli.table`); piped output is plain
aligned text, every value whole, so ``bflsync query | less`` and scripts never see escape codes
or cut values. Timestamps are written in the one form the store holds
(:mod:`bflsync.timeform`, ``2026-12-04T13:18:17.637556Z``) everywhere, so a printed time pasted
into SQL finds the same rows.
"""

from __future__ import annotations

import numbers
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bflsync.cli.stdout import write_stdout
from bflsync.cli.table import Column, write_columns
from bflsync.extract import canonical_json
from bflsync.timeform import iso_utc

# C0 controls, DEL and C1 controls (U+009B is a one-character CSI on some terminals): values come
# from the API, and an escape sequence in a comment must not reach the user's terminal. Bidi overrides
# and isolates reorder what follows them, and line separators break the line, so they count too.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_JSON_UNESCAPED_CONTROL = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_ONE_LINE = {"\n": "\\n", "\r": "\\r", "\t": " "}
_BACKTICKS = re.compile(r"`+")
# A number in any spelling bflsync writes (1e-05, 2000, 0.5), or a rounded duration (4 min 05 s).
_NUMBER_LIKE = re.compile(r"[-+]?\d[\d.,eE+\-]*(?: (?:\d+ )?(?:ms|s|min|h))*")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}\S*")


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso_utc(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def dumps(value: Any, *, indent: int | None = None) -> str:
    """JSON as bflsync writes it: UTF-8 kept, timestamps ISO 8601."""
    import json  # here: `query --format ids` writes no JSON and should not load it

    return json.dumps(value, default=json_default, ensure_ascii=False, indent=indent)


def cell(value: Any) -> str:
    """One value as text for a table or CSV cell: JSON spelling for booleans, objects and arrays."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, dict | list):
        return canonical_json(value)
    return str(value)


def write_json(value: Any) -> None:
    write_stdout(dumps(value, indent=2) + "\n")


def write_jsonl(items: Sequence[Any]) -> None:
    sys.stdout.writelines(dumps(item) + "\n" for item in items)


def write_csv(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows([cell(value) for value in row] for row in rows)


def styled() -> bool:
    """Whether escape codes (bold headers, progress bars) may be written: not under ``NO_COLOR``
    (https://no-color.org) nor to a ``TERM=dumb`` terminal."""
    return not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def write_grid(output_format: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A listing as a table, a Markdown table or CSV: the formats every table-shaped output takes."""
    if output_format == "markdown":
        write_markdown(headers, rows)
    elif output_format == "csv":
        write_csv(headers, rows)
    else:
        write_table(headers, rows)


def write_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Columns fitted to the terminal on a TTY (see :mod:`bflsync.cli.table`), plain and whole otherwise.

    Both pad by display width (a CJK character takes two cells), so columns line up either way.
    """
    from bflsync.cli.table import cells, pad

    if sys.stdout.isatty():
        # shutil (with its compression modules) only here: piped output never pays for it.
        import shutil

        columns = [
            Column(
                one_line(header), [terminal_text(row[index]) for row in rows], is_rigid(header, rows, index)
            )
            for index, header in enumerate(headers)
        ]
        write_columns(columns, width=shutil.get_terminal_size().columns, styled=styled())
        return
    headers = [one_line(header) for header in headers]
    texts = [[one_line(cell(value)) for value in row] for row in rows]
    widths = [
        max([cells(header), *(cells(row[index]) for row in texts)]) for index, header in enumerate(headers)
    ]
    for row in [list(headers), *texts]:
        sys.stdout.write(
            "  ".join(pad(text, width) for text, width in zip(row, widths, strict=True)).rstrip()
        )
        sys.stdout.write("\n")


def is_rigid(header: str, rows: Sequence[Sequence[Any]], index: int) -> bool:
    """Ids, and columns where every value is a number, timestamp or duration, are never cut."""
    if header == "id" or header.endswith("_id"):
        return True
    values = [row[index] for row in rows if row[index] is not None and row[index] != ""]
    return bool(values) and all(_is_number_like(value) for value in values)


def _is_number_like(value: Any) -> bool:
    # numbers.Number covers PostgreSQL's NUMERIC (a Decimal) without importing decimal on every read.
    if isinstance(value, numbers.Number | datetime):
        return True
    return isinstance(value, str) and (
        _NUMBER_LIKE.fullmatch(value) is not None or _as_timestamp(value) is not None
    )


def terminal_text(value: Any) -> str:
    moment = value if isinstance(value, datetime) else _as_timestamp(value)
    if moment is not None:
        return iso_utc(moment)
    return one_line(cell(value))


def _as_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 timestamp written as text (the audit helpers hand some over so), else None."""
    if not isinstance(value, str) or _TIMESTAMP.fullmatch(value) is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def write_markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A GitHub-flavoured Markdown table, to paste into a pull request or a chat."""
    lines = [[markdown_cell(header) for header in headers], ["---"] * len(headers)]
    lines += [[markdown_cell(cell(value)) for value in row] for row in rows]
    sys.stdout.writelines("| " + " | ".join(line) + " |\n" for line in lines)


def markdown_cell(text: str) -> str:
    """A value as a code span, so it renders as itself (GitHub, GitLab and chat apps alike).

    The fence is one backtick longer than any run inside; ``|`` is escaped, which GitHub
    honours even inside a code span in a table; newlines and controls are shown escaped.
    """
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return fence + pad + one_line(text).replace("|", "\\|") + pad + fence


def one_line(text: str) -> str:
    """Text safe for one line of a terminal: newlines shown as ``\\n``, other control characters as ``\\xNN``,
    bidi overrides and line separators as ``\\uNNNN``."""
    return _CONTROL.sub(_escape_control, text)


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _ONE_LINE.get(char) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def json_for_terminal(text: str) -> str:
    """JSON text with DEL, C1 controls, bidi overrides and line separators escaped too (json escapes only
    C0); still the same JSON value."""
    return _JSON_UNESCAPED_CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def human_duration(seconds: float | None) -> str:
    """A duration as people read it: ``0.3 s``, ``42 s``, ``4 min 05 s``, ``2 h 03 min``; empty when unknown."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"
