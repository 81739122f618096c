"""The forms an API key takes when a server echoes it, and the scrubber that removes them all.

Apart from :mod:`bflsync.bfl.server_text` because only writers need it: its encoders (base64,
html, urllib.parse and the ipaddress module that comes with it) were ~5 ms of every read
command's start-up while they shared a module with ``printable``.
"""

from __future__ import annotations

import base64
import html
import json
import re
from typing import Final
from urllib.parse import quote, quote_plus

from bflsync.bfl.server_text import MAX_SERVER_TEXT_CHARS, printable, truncate

_MASK: Final = "***"
_MIN_DERIVED_CHARS: Final = 8


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
