"""Keeping the API key out of the store when the server echoes it back inside an answer.

The store promises never to hold the key. An answer is stored as received, so a server (or a
proxy, or a finetune comment someone pasted the key into) that puts the key anywhere in a body
would break that promise: every string of the answer, keys of objects included, has each
occurrence of the key replaced by :data:`MARKER` before anything is hashed or stored, and the
version row records ``redacted = true``. The walk is iterative: an answer nested thousands of
levels deep is redacted like any other.
"""

from __future__ import annotations

from typing import Any

MARKER = "[redacted: BFL API key]"


def redact(value: Any, secret: str) -> tuple[Any, bool]:
    """``value`` with every occurrence of ``secret`` in its strings replaced by :data:`MARKER`, and whether any was.

    Returns ``value`` itself (not a copy) when the secret is nowhere in it.
    """
    if not secret or not _contains(value, secret):
        return value, False
    return _replace(value, secret), True


def _contains(value: Any, secret: str) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if secret in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def _replace(value: Any, secret: str) -> Any:
    """A copy of ``value`` with the secret replaced, built without recursion."""
    if not isinstance(value, dict | list | tuple):
        return value.replace(secret, MARKER) if isinstance(value, str) else value
    root: list[Any] = [None]
    # Each task: the source container, the target container, and where the target goes.
    pending: list[tuple[Any, list[Any] | dict[str, Any], Any, Any]] = []

    def place(source: Any, parent: Any, slot: Any) -> None:
        if isinstance(source, dict):
            target: list[Any] | dict[str, Any] = {}
        elif isinstance(source, list | tuple):
            target = []
        else:
            parent[slot] = source.replace(secret, MARKER) if isinstance(source, str) else source
            return
        parent[slot] = target
        pending.append((source, target, parent, slot))

    place(value, root, 0)
    while pending:
        source, target, _, _ = pending.pop()
        if isinstance(source, dict):
            assert isinstance(target, dict)
            for key, item in source.items():
                name = key.replace(secret, MARKER) if isinstance(key, str) else key
                target[name] = None
                place(item, target, name)
        else:
            assert isinstance(target, list)
            target.extend([None] * len(source))
            for index, item in enumerate(source):
                place(item, target, index)
    return root[0]
