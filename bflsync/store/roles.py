"""The grants of a team store on PostgreSQL: one owner, writers, readers (see docs/postgresql-roles.md).

* The **owner** owns the schema's tables (it ran ``db upgrade``) and alone changes the schema.
* A **writer** runs ``sync``, ``label``, ``note`` and ``db reextract``: it reads and writes rows
  and may take the sync lock (UPDATE on ``bflsync_lock``), and creates nothing.
* A **reader** runs the read commands: SELECT only. It cannot take the sync lock, so it cannot
  stop the writers.

No role but the owner may create objects in the store's schema: a function or operator planted
there would run with the rights of whoever runs bflsync (``bflsync.store.pg_session`` refuses to
work in such a schema), hence the REVOKE that every set of grants starts with.
"""

from __future__ import annotations

from bflsync.errors import InputError
from bflsync.store.pg_session import SCHEMA, quote_ident

ROLES = ("reader", "writer")


def grant_statements(kind: str, role: str, *, database: str, schema: str = SCHEMA) -> list[str]:
    """The statements that make ``role`` a ``reader`` or a ``writer`` of the store, run by its owner.

    ``ALTER DEFAULT PRIVILEGES`` covers the tables later revisions add (the owner creates them).
    """
    if kind not in ROLES:
        raise InputError(f"unknown kind of role {kind!r}: expected one of {', '.join(ROLES)}")
    if not role or "\x00" in role:
        raise InputError("a role name is needed")
    who, where = quote_ident(role), quote_ident(schema)
    table_rights = "SELECT" if kind == "reader" else "SELECT, INSERT, UPDATE, DELETE"
    statements = [
        f"REVOKE CREATE ON SCHEMA {where} FROM PUBLIC",
        f"GRANT CONNECT ON DATABASE {quote_ident(database)} TO {who}",
        f"GRANT USAGE ON SCHEMA {where} TO {who}",
        f"GRANT {table_rights} ON ALL TABLES IN SCHEMA {where} TO {who}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {where} GRANT {table_rights} ON TABLES TO {who}",
    ]
    if kind == "writer":
        statements += [
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {where} TO {who}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {where} GRANT USAGE, SELECT ON SEQUENCES TO {who}",
        ]
    return statements
