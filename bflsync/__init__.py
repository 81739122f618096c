"""bflsync: keep a local, queryable, audited record of BFL finetune training parameters.

The Python API (see docs/python-api.md)::

    import bflsync

    with bflsync.open_store("bflsync.db") as store:
        print(store.ids(["mode=character"]).ids)

Its names are loaded from :mod:`bflsync.api` on first use (PEP 562), so ``import bflsync`` (and so
every command's start-up) loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bflsync.version import __version__

# The package bflsync.sync (one sync run) would shadow the function bflsync.sync the moment it is
# first imported (the import system binds a subpackage on its parent). So it is imported here,
# first (its __init__ is a docstring), and the function below takes the name for good.
importlib.import_module("bflsync.sync")

if TYPE_CHECKING:
    from bflsync.api import QueryOptions, Store, make_query, open_store, sync
    from bflsync.errors import BflsyncError
    from bflsync.sync.run import SyncResult
else:

    def sync(*args: Any, **kwargs: Any) -> Any:
        """Run one sync into a store and return its result: :func:`bflsync.api.sync`."""
        from bflsync.api import sync as run

        return run(*args, **kwargs)


# Each public name and the module that defines it.
_EXPORTS = {
    "open_store": "bflsync.api",
    "make_query": "bflsync.api",
    "QueryOptions": "bflsync.api",
    "Store": "bflsync.api",
    "SyncResult": "bflsync.sync.run",
    "BflsyncError": "bflsync.errors",
}

__all__ = [
    "BflsyncError",
    "QueryOptions",
    "Store",
    "SyncResult",
    "__version__",
    "make_query",
    "open_store",
    "sync",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bflsync' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
