"""Why a store with accounts cannot go below revision 0003_accounts, if it cannot.

Revision 0002 has one row per (source, finetune_id) and no account: two accounts' rows of one id
would have to be merged, losing history, and rows of any account but ``default`` would come back
as ``default``, tombstoned by its next sync. ``bflsync db downgrade`` asks before it writes a
backup; the migration asks again for a contributor's ``alembic downgrade``. Both ask here.
"""

from __future__ import annotations

import sqlalchemy as sa

from bflsync.config import DEFAULT_ACCOUNT
from bflsync.store.check import ACCOUNTS_REVISION


def downgrade_refusal(connection: sa.Connection) -> str | None:
    """The one-line reason the store's finetunes cannot be represented below 0003, or None."""
    shared = connection.execute(
        sa.text(
            "SELECT source, finetune_id FROM finetune GROUP BY source, finetune_id"
            " HAVING count(*) > 1 ORDER BY source, finetune_id"
        )
    ).all()
    if shared:
        source, finetune_id = shared[0]
        return (
            f"cannot downgrade below {ACCOUNTS_REVISION}: {len(shared)} finetune id(s) are stored for several "
            f"accounts (e.g. {finetune_id!r} at {source}), which older revisions cannot represent; "
            "nothing was changed"
        )
    labelled = connection.execute(
        sa.text("SELECT source, account FROM finetune WHERE account <> :default ORDER BY source, account"),
        {"default": DEFAULT_ACCOUNT},
    ).all()
    if labelled:
        source, account = labelled[0]
        return (
            f"cannot downgrade below {ACCOUNTS_REVISION}: {len(labelled)} finetune(s) are stored for accounts "
            f"other than {DEFAULT_ACCOUNT!r} (e.g. {account!r} at {source}), which older revisions cannot "
            "represent; nothing was changed"
        )
    return None
