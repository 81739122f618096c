"""Writing results to stdout: aligned tables, JSON, JSON lines and CSV.

Tables use rich only on a terminal (and import it only then); piped output is plain aligned
text, so ``bflsync query | less`` and scripts never see escape codes. Timestamps are written
as ISO 8601 with ``+00:00`` everywhere.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bflsync.cli.stdout import write_stdout
from bflsync.extract import canonical_json

# C0 controls, DEL and C1 controls (U+009B is a one-character CSI on some terminals): values come
# from the API, and an escape sequence in a comment must not reach the user's terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_JSON_UNESCAPED_CONTROL = re.compile(r"[\x7f-\x9f]")
_ONE_LINE = {"\n": "\\n", "\r": "\\r", "\t": " "}


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
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
        return value.isoformat()
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


def write_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table on a terminal, plain columns separated by two spaces otherwise."""
    headers = [one_line(header) for header in headers]
    texts = [[one_line(cell(value)) for value in row] for row in rows]
    if sys.stdout.isatty():
        _write_rich_table(headers, texts)
        return
    widths = [max([len(header), *(len(row[index]) for row in texts)]) for index, header in enumerate(headers)]
    for row in [list(headers), *texts]:
        sys.stdout.write(
            "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
        )
        sys.stdout.write("\n")


def one_line(text: str) -> str:
    """Text safe for one line of a terminal: newlines shown as ``\\n``, other control characters as ``\\xNN``."""
    return _CONTROL.sub(_escape_control, text)


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    return _ONE_LINE.get(char) or f"\\x{ord(char):02x}"


def json_for_terminal(text: str) -> str:
    """JSON text with DEL and C1 controls escaped too (json escapes only C0); still the same JSON value."""
    return _JSON_UNESCAPED_CONTROL.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def _write_rich_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*headers, show_edge=False, header_style="bold")
    for row in rows:
        # Text(), not str: a value like "[bold]" is data, not rich markup.
        table.add_row(*(Text(value) for value in row))
    Console().print(table)
