"""Scrubbing the key out of server text and escaping what could drive a terminal."""

from __future__ import annotations

import base64
import html
from urllib.parse import quote, quote_plus

import pytest

from bflsync.bfl.key_forms import Scrubber
from bflsync.bfl.server_text import printable, truncate

KEY = "sk-Ab/c+d=e&f<g>h\"i'j"


@pytest.mark.parametrize(
    "echo",
    [
        KEY,
        KEY.upper(),
        KEY.swapcase(),
        quote(KEY, safe=""),
        quote_plus(KEY),
        "".join(f"%{b:02X}" for b in KEY.encode()),
        html.escape(KEY),
        "".join(f"&#{ord(c)};" for c in KEY),
        KEY.encode().hex(),
        *(base64.b64encode((p + KEY).encode()).decode() for p in ("", "u", "us", "user:")),
        *(base64.urlsafe_b64encode((p + KEY).encode()).decode() for p in ("", "u", "us")),
    ],
)
def test_every_known_encoding_of_the_key_is_scrubbed(echo: str) -> None:
    scrubbed = Scrubber(KEY)(f"received [{echo}] instead")
    assert "***" in scrubbed
    assert len(scrubbed) < len(f"received [{echo}] instead")
    assert scrubbed.startswith("received [") and scrubbed.endswith("] instead")
    # Left: at most what encodes the neighbours ("user:" is 7 base64 characters) and the edge ones they share.
    leftover = scrubbed.removeprefix("received [").removesuffix("] instead").replace("***", "")
    assert len(leftover) <= 10


def test_short_derived_forms_do_not_eat_ordinary_text() -> None:
    assert Scrubber("x")("Connection refused; x marks it") == "Connection refused; *** marks it"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain text, ünïcode ok", "plain text, ünïcode ok"),
        ("two\nlines\r\tend", "two\\nlines\\r\\tend"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("\x9b2J", "\\x9b2J"),
        ("abc\u202edcba", "abc\\u202edcba"),
        ("\u2066iso\u2069 \u202a\u202b\u202c\u202d", "\\u2066iso\\u2069 \\u202a\\u202b\\u202c\\u202d"),
        ("lone \ud83d surrogate", "lone \\ud83d surrogate"),
        ("para\u2029sep", "para\\u2029sep"),
    ],
)
def test_printable_escapes_control_format_and_bidi_characters(text: str, expected: str) -> None:
    assert printable(text) == expected


def test_clean_scrubs_before_it_cuts_and_escapes() -> None:
    clean = Scrubber(KEY).clean("x" * 290 + KEY + "\n\x1b[2J", max_chars=300)
    assert clean == truncate("x" * 290 + "***\\n\\x1b[2J", 300)
    assert "\n" not in clean and "\x1b" not in clean
