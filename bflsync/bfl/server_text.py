"""Making text that came from a server (or any untrusted source) safe to store and to print.

Two dangers: a server that echoes the API key back in some encoding, and a server whose text
drives the terminal (ANSI/OSC escape sequences, bidi overrides that reorder what the user reads,
newlines that forge extra log lines). ``Scrubber`` removes the key in every form an error body
is known to echo it; ``printable`` escapes everything that is not plainly visible, so the result
is one line that shows exactly which characters the server sent.

Standard library only: the read commands use ``printable`` too.
"""

from __future__ import annotations

import base64
import html
import json
import re
from typing import Final
from urllib.parse import quote, quote_plus

MAX_SERVER_TEXT_CHARS: Final = 300
"""Server text (BFL's ``detail``, a request id) is cut to this many characters once escaped."""

_NAMED_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_MASK: Final = "***"
_MIN_DERIVED_CHARS: Final = 8


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


class Scrubber:
    """Replaces the API key, in every encoding an echo is known to use, with ``***``.

    Forms: as sent; as inside a JSON string; percent-encoded (``quote``, ``quote_plus`` and every
    byte as ``%XX``); HTML-escaped (named, decimal and hex entities); base64 (standard and
    URL-safe alphabets, at each of the three alignments the key can have inside a longer encoded
    string, such as a Basic auth header); hex. Matching ignores case, so an upper- or lower-cased
    echo goes too.
    """

    def __init__(self, key: str) -> None:
        self._pattern = key_pattern(key)

    def __call__(self, text: str) -> str:
        return self._pattern.sub(_MASK, text)

    def clean(self, text: str, max_chars: int = MAX_SERVER_TEXT_CHARS) -> str:
        """Server text ready to store or print: key scrubbed, escaped to one line, then capped.

        Scrubbing comes first, so no cut can leave a prefix of the key behind.
        """
        return truncate(printable(self(text)), max_chars)


def key_pattern(key: str) -> re.Pattern[str]:
    """A pattern matching ``key`` in every form :class:`Scrubber` lists; one that matches nothing for no key."""
    if not key:
        return re.compile(r"(?!)")
    # Short derived forms would match ordinary text; real keys are far longer than this.
    forms = {key, *(form for form in _forms(key) if len(form) >= _MIN_DERIVED_CHARS)}
    alternatives = sorted(forms, key=len, reverse=True)
    return re.compile("|".join(re.escape(form) for form in alternatives), re.IGNORECASE)


def _forms(key: str) -> list[str]:
    raw = key.encode("utf-8")
    forms = [
        key,
        json.dumps(key)[1:-1],
        json.dumps(key, ensure_ascii=False)[1:-1],
        quote(key, safe=""),
        quote_plus(key, safe=""),
        "".join(f"%{byte:02x}" for byte in raw),
        html.escape(key, quote=True),
        "".join(f"&#{ord(ch)};" for ch in key),
        "".join(f"&#x{ord(ch):x};" for ch in key),
        raw.hex(),
    ]
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode("ascii")
        # Only the characters that depend on the key's bytes alone: the neighbours' bits differ per echo.
        start = -(-offset * 8 // 6)
        end = (offset + len(raw)) * 8 // 6
        core = encoded[start:end]
        forms += [core, core.translate(str.maketrans("+/", "-_"))]
    return forms
