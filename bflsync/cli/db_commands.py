"""``bflsync db``: schema management on the --db database."""

from __future__ import annotations

import click


@click.group()
def db() -> None:
    """Create, migrate and check the store's schema."""
