"""Making text that came from a server (or any untrusted source) safe to print.

A server's text can drive the terminal (ANSI/OSC escape sequences, bidi overrides that reorder
what the user reads, newlines that forge extra log lines). ``printable`` escapes everything that
is not plainly visible, so the result is one line that shows exactly which characters the server
sent. The other danger, a server echoing the API key, is :mod:`bflsync.bfl.key_forms`'s.

Every command prints through ``printable``, so this module imports only ``typing``.
"""

from __future__ import annotations

from typing import Final

MAX_SERVER_TEXT_CHARS: Final = 300
"""Server text (BFL's ``detail``, a request id) is cut to this many characters once escaped."""

_NAMED_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with every character that is not plainly visible escaped: one line, no terminal control.

    Control characters (C0, DEL, C1: so ANSI CSI and OSC sequences lose their ESC), format
    characters (bidi overrides U+202A-U+202E and isolates U+2066-U+2069, zero-width ones), line and
    paragraph separators and lone surrogates become ``\\n``, ``\\x1b``, ``\\u202e``, ...
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    named = _NAMED_ESCAPES.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def truncate(text: str, max_chars: int = MAX_SERVER_TEXT_CHARS) -> str:
    """At most ``max_chars`` characters, an ellipsis marking a cut."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"
