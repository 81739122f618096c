"""Canonical numbers: stored details rewritten with integral floats as integers and -0.0 as 0.

Earlier releases stored ``300.0`` and ``-0.0`` as sent, and hashed that text; the canonical
form now writes them ``300`` and ``0`` (see :func:`bflsync.extract.canonical_json`). Without
this revision the first sync after upgrading would see a new hash for every finetune whose
details hold such a number and write a spurious ``updated`` version for each. So the
``details`` text and ``content_hash`` of every row and every version whose text changes are
recomputed here; the JSON values are the same numbers, so nothing a reader sees changes.
Rows whose details no JSON parser accepts are left as they are.

The downgrade changes nothing: the new form is valid input for every earlier release.

Revision ID: 0004_canonical_numbers
Revises: 0003_accounts
Create Date: 2026-12-01 10:30:00
"""

import json
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

from bflsync.extract import canonical_json, hash_canonical


revision: str = "0004_canonical_numbers"
down_revision: str | None = "0003_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PAGE = 2000


def _recanonicalise(table: sa.TableClause) -> None:
    """Rewrite, a page of primary keys at a time, the rows whose canonical text differs."""
    bind = op.get_bind()
    update = (
        table.update()
        .where(table.c.id == sa.bindparam("pk"))
        .values(details=sa.bindparam("new_details"), content_hash=sa.bindparam("new_hash"))
    )
    last_pk = 0
    while True:
        page = bind.execute(
            sa.select(table.c.id, table.c.details)
            .where(table.c.id > last_pk, table.c.details.is_not(None))
            .order_by(table.c.id)
            .limit(PAGE)
        ).all()
        if not page:
            return
        last_pk = page[-1].id
        changes = []
        for pk, details in page:
            try:
                canonical = canonical_json(json.loads(details))
            except ValueError:
                continue
            if canonical != details:
                changes.append({"pk": pk, "new_details": canonical, "new_hash": hash_canonical(canonical)})
        if changes:
            bind.execute(update, changes)


def upgrade() -> None:
    for name in ("finetune", "finetune_version"):
        _recanonicalise(sa.table(name, sa.column("id"), sa.column("details"), sa.column("content_hash")))


def downgrade() -> None:
    pass
