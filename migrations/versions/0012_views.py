"""Views for SQL users: ``finetunes``, ``changes``, ``status_changes`` and ``labels``, on both engines.

The tables are shaped for the sync (surrogate keys, one row per ``(source, account)``, the raw
details as the source of truth); people who open the store in sqlite-utils, Datasette, DuckDB or
pandas ask simpler questions. These views answer them with finetune ids rather than surrogate
keys, the useful columns first and the raw details last:

* ``finetunes``: the live finetunes (``deleted_at IS NULL``), their labels as a JSON object
  (``labels``) and as a JSON array of ``key=value`` texts (``label_list``, what Datasette's
  array facet reads);
* ``changes``: one row per version, with the change kind, the changed keys (a JSON list) and when
  it was observed;
* ``status_changes``: one row per observed change of a training status or progress;
* ``labels``: one row per label currently set, with its value.

Timestamps and label values pass through exactly as the tables hold them, so the views follow
whatever text form the store's revision writes and never need rewriting for it.

A later revision that rebuilds ``finetune`` or another table a view reads (SQLite batch mode
renames a copy into place; PostgreSQL refuses to drop a column a view uses) must drop these views
first and create them again after.

Revision ID: 0012_views
Revises: 0009_search_text
Create Date: 2026-12-04 16:00:00
"""

from collections.abc import Sequence

from alembic import op


revision: str = "0012_views"
down_revision: str | None = "0010_hash_chain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = ("finetunes", "changes", "status_changes", "labels")

_LABELS_OBJECT = {
    "sqlite": "(SELECT json_group_object(l.key, l.value) FROM"
    " (SELECT key, value FROM finetune_label WHERE finetune_pk = f.id ORDER BY key) AS l)",
    "postgresql": "(SELECT coalesce(jsonb_object_agg(l.key, l.value), '{}'::jsonb)"
    " FROM finetune_label AS l WHERE l.finetune_pk = f.id)",
}
_LABELS_LIST = {
    "sqlite": "(SELECT json_group_array(l.key || '=' || l.value) FROM"
    " (SELECT key, value FROM finetune_label WHERE finetune_pk = f.id ORDER BY key) AS l)",
    "postgresql": "(SELECT coalesce(jsonb_agg(l.key || '=' || l.value ORDER BY l.key), '[]'::jsonb)"
    " FROM finetune_label AS l WHERE l.finetune_pk = f.id)",
}


def _definitions(dialect: str) -> dict[str, str]:
    return {
        "finetunes": f"""
            SELECT f.finetune_id, f.finetune_comment, f.mode, f.finetune_type, f.learning_rate,
                f.iterations, f.lora_rank, f.status, {_LABELS_OBJECT[dialect]} AS labels, f.last_changed_at,
                f.priority, f.trigger_word, f.captioning, f.progress, f.ready_at, f.first_seen_at,
                f.last_seen_at, f.remote_timestamp, f.version, f.account, f.source,
                {_LABELS_LIST[dialect]} AS label_list, f.details
            FROM finetune AS f
            WHERE f.deleted_at IS NULL""",
        "changes": """
            SELECT f.finetune_id, v.version, v.change, v.changed_keys, v.observed_at, v.sync_run_id,
                f.account, f.source
            FROM finetune_version AS v JOIN finetune AS f ON f.id = v.finetune_pk""",
        "status_changes": """
            SELECT f.finetune_id, s.status, s.progress, s.observed_at, s.sync_run_id, f.account, f.source
            FROM finetune_status AS s JOIN finetune AS f ON f.id = s.finetune_pk""",
        "labels": """
            SELECT f.finetune_id, l.key, l.value, l.set_by, l.set_at, f.account, f.source
            FROM finetune_label AS l JOIN finetune AS f ON f.id = l.finetune_pk""",
    }


def upgrade() -> None:
    for name, select in _definitions(op.get_bind().dialect.name).items():
        op.execute(f"CREATE VIEW {name} AS {select.strip()}")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
