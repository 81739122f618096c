"""Keeping the API key out of the store when the server echoes it back inside an answer.

The store promises never to hold the key. An answer is stored as received, so a server (or a
proxy, or a finetune comment someone pasted the key into) that puts the key anywhere in a body
would break that promise: every string of the answer, keys of objects included, has each
occurrence of the key replaced by :data:`MARKER` before anything is hashed or stored, and the
version row records ``redacted = true``. The caller passes the pattern that finds the key in
every form an echo uses (base64, hex, percent-encoded, case-changed:
:func:`bflsync.bfl.key_forms.key_pattern`), not only as sent. The walk is iterative: an answer nested thousands of
levels deep is redacted like any other.
"""

from __future__ import annotations

import re
from typing import Any

MARKER = "[redacted: BFL API key]"


def redact(value: Any, secret: re.Pattern[str]) -> tuple[Any, bool]:
    """``value`` with every match of ``secret`` in its strings replaced by :data:`MARKER`, and whether any was.

    Returns ``value`` itself (not a copy) when the secret is nowhere in it.
    """
    if not _contains(value, secret):
        return value, False
    return _replace(value, secret), True


def _contains(value: Any, secret: re.Pattern[str]) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if secret.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def _replace(value: Any, secret: re.Pattern[str]) -> Any:
    """A copy of ``value`` with the secret replaced, built without recursion."""
    if not isinstance(value, dict | list | tuple):
        return secret.sub(MARKER, value) if isinstance(value, str) else value
    root: list[Any] = [None]
    # Each task: the source container, the target container, and where the target goes.
    pending: list[tuple[Any, list[Any] | dict[str, Any], Any, Any]] = []

    def place(source: Any, parent: Any, slot: Any) -> None:
        if isinstance(source, dict):
            target: list[Any] | dict[str, Any] = {}
        elif isinstance(source, list | tuple):
            target = []
        else:
            parent[slot] = secret.sub(MARKER, source) if isinstance(source, str) else source
            return
        parent[slot] = target
        pending.append((source, target, parent, slot))

    place(value, root, 0)
    while pending:
        source, target, _, _ = pending.pop()
        if isinstance(source, dict):
            assert isinstance(target, dict)
            for key, item in source.items():
                name = secret.sub(MARKER, key) if isinstance(key, str) else key
                target[name] = None
                place(item, target, name)
        else:
            assert isinstance(target, list)
            target.extend([None] * len(source))
            for index, item in enumerate(source):
                place(item, target, index)
    return root[0]
