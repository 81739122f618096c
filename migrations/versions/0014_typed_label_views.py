"""Typed labels in the views: ``finetunes.labels`` keeps each value's JSON type; ``labels`` gains ``value_json``.

Since 0011_iso_times ``finetune_label.value`` is plain text (``acme``, ``3``), so the ``finetunes``
view built from it turned ``3`` into ``"3"``: a SQL user summing a numeric label, or pandas reading
the object, got strings. The view now builds the object from ``value_json`` (the canonical JSON the
queries compare), so numbers stay numbers and booleans booleans; ``labels`` keeps the plain
``value`` for ``value='acme'`` and adds ``value_json`` next to it for typed comparisons.

Both views are dropped and created again (PostgreSQL cannot insert a column into a view in place).
The downgrade restores the definitions of 0012_views, frozen here as they were.

Revision ID: 0014_typed_label_views
Revises: 0011_iso_times
Create Date: 2026-12-05 08:30:00
"""

from collections.abc import Sequence

from alembic import op


revision: str = "0014_typed_label_views"
down_revision: str | None = "0011_iso_times"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = ("finetunes", "labels")

_TYPED_LABELS_OBJECT = {
    "sqlite": "(SELECT json_group_object(l.key, json(l.value_json)) FROM"
    " (SELECT key, value_json FROM finetune_label WHERE finetune_pk = f.id ORDER BY key) AS l)",
    "postgresql": "(SELECT coalesce(jsonb_object_agg(l.key, CAST(l.value_json AS jsonb)), '{}'::jsonb)"
    " FROM finetune_label AS l WHERE l.finetune_pk = f.id)",
}
_PLAIN_LABELS_OBJECT = {
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


def _finetunes(labels_object: str, label_list: str) -> str:
    return f"""
        SELECT f.finetune_id, f.finetune_comment, f.mode, f.finetune_type, f.learning_rate,
            f.iterations, f.lora_rank, f.status, {labels_object} AS labels, f.last_changed_at,
            f.priority, f.trigger_word, f.captioning, f.progress, f.ready_at, f.first_seen_at,
            f.last_seen_at, f.remote_timestamp, f.version, f.account, f.source,
            {label_list} AS label_list, f.details
        FROM finetune AS f
        WHERE f.deleted_at IS NULL"""


def _labels(*, typed: bool) -> str:
    value_json = " l.value_json," if typed else ""
    return f"""
        SELECT f.finetune_id, l.key, l.value,{value_json} l.set_by, l.set_at, f.account, f.source
        FROM finetune_label AS l JOIN finetune AS f ON f.id = l.finetune_pk"""


def _replace(*, typed: bool) -> None:
    dialect = op.get_bind().dialect.name
    labels_object = (_TYPED_LABELS_OBJECT if typed else _PLAIN_LABELS_OBJECT)[dialect]
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.execute(f"CREATE VIEW finetunes AS {_finetunes(labels_object, _LABELS_LIST[dialect]).strip()}")
    op.execute(f"CREATE VIEW labels AS {_labels(typed=typed).strip()}")


def upgrade() -> None:
    _replace(typed=True)


def downgrade() -> None:
    _replace(typed=False)
