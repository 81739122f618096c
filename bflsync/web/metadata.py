"""Datasette metadata for a bflsync store: what ``bflsync serve`` runs with and ``--print-metadata`` prints.

It is built from the database's name (Datasette names a database after its file's stem) and
the columns each table has (:func:`table_columns` reads them, read-only), so facets appear only for columns the store's revision has
(``status`` comes with a later revision). Search on ``finetune`` goes through the
word index ``finetune_fts``, keyed on ``finetune.id``; Datasette would also find it on its own
(revision ``0007_fts_discoverable``), but saying so keeps older Datasettes and copies of the
metadata right. Substrings in scripts without spaces are in ``finetune_fts_trigram``
(``?_search=風景写&_fts_table=finetune_fts_trigram``, three characters or more).
"""

from __future__ import annotations

import html
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TIMESTAMP = "UTC timestamp"
FACETS = {
    "finetune": ("mode", "finetune_type", "account", "status"),
    "finetune_version": ("change",),
    "sync_run": ("status", "source", "account"),
    "sync_error": ("kind", "http_status"),
}
# Bookkeeping (the migration revision, the sync lock's row, the secret): hidden from the lists
# (FTS internals are hidden by their prefix).
HIDDEN = ("alembic_version", "bflsync_lock", "store_meta")
FTS_PREFIX = "finetune_fts"
# Not even viewable by URL: the per-store secret of the key fingerprints (the key itself is never stored).
DENIED = ("store_meta",)
DESCRIPTIONS: dict[str, dict[str, str]] = {
    "finetune": {
        "finetune_id": "the id BFL gives the finetune; paste it into `bflsync show`",
        "source": "the API host it was synced from (finetunes are regional)",
        "details": "finetune_details exactly as received, as canonical JSON: the source of truth",
        "finetune_comment": "free-text comment given at training time",
        "trigger_word": "word that triggers the finetune in prompts",
        "mode": "training mode: character, product, style or general",
        "finetune_type": "lora or full",
        "priority": "speed, quality or high_res_only",
        "iterations": "training steps (count)",
        "lora_rank": "LoRA rank (16 or 32)",
        "learning_rate": "learning rate (dimensionless, e.g. 1e-05)",
        "captioning": "whether images were captioned automatically (1 = yes)",
        "remote_timestamp": "the timestamp BFL reports for the finetune, UTC",
        "content_hash": "SHA-256 of the canonical details; a new version when it changes",
        "version": "number of the current version (1 = as first seen)",
        "first_seen_at": f"{TIMESTAMP}: first synced",
        "last_seen_at": f"{TIMESTAMP}: last listed by the API",
        "last_changed_at": f"{TIMESTAMP}: details last changed",
        "deleted_at": f"{TIMESTAMP}: no longer listed by the API since then (empty while live)",
        "account": "the label of the API key that synced it (`bflsync sync --account`)",
        "status": "training status reported by the API",
    },
    "finetune_version": {
        "finetune_pk": "the finetune row (finetune.id)",
        "version": "1..n per finetune",
        "change": "created, updated, deleted or restored",
        "details": "the details as of this version (empty when deleted)",
        "content_hash": "SHA-256 of the canonical details",
        "changed_keys": "JSON list of the top-level keys that changed",
        "observed_at": f"{TIMESTAMP}: when the sync saw this version",
        "sync_run_id": "the run that saw it",
    },
    "sync_run": {
        "started_at": TIMESTAMP,
        "finished_at": f"{TIMESTAMP} (empty while running)",
        "status": "running, ok, partial, failed or interrupted",
        "source": "the API host synced",
        "listed": "finetunes listed by the API (count)",
        "fetched": "details fetched (count)",
        "failed": "finetunes that failed after retries (count); see sync_error",
        "error": "why the run failed, if it did",
        "pid": "process id of the sync",
    },
    "sync_error": {
        "kind": "http, timeout, bad_json, not_found, rate_limited, …",
        "http_status": "HTTP status of the last attempt",
        "attempts": "requests made, retries included (count)",
    },
}
CHANGES_SINCE = """
select f.finetune_id, f.source, v.version, v.change, v.changed_keys, v.observed_at, v.sync_run_id
from finetune_version v join finetune f on f.id = v.finetune_pk
where v.observed_at >= replace(coalesce(nullif(:since, ''), '0000'), ' ', 'T')
order by v.observed_at desc, f.finetune_id
""".strip()
BY_LEARNING_RATE = """
select learning_rate, count(*) as finetunes, group_concat(distinct mode) as modes,
  min(iterations) as min_iterations, max(iterations) as max_iterations
from finetune
where deleted_at is null and learning_rate is not null
  and (coalesce(:mode, '') = '' or mode = :mode)
group by learning_rate
order by learning_rate
""".strip()


def datasette_metadata(
    database: str, columns: Mapping[str, Sequence[str]], *, views: Sequence[str] = ()
) -> dict[str, Any]:
    """Metadata for Datasette (0.6x ``metadata.json``) over the store named ``database``.

    ``columns`` maps each table of the store to its column names, ``views`` names its views.
    """
    tables: dict[str, Any] = {
        name: {"hidden": True, **({"allow": False} if name in DENIED else {})}
        for name in HIDDEN
        if name in columns
    }
    for table, names in columns.items():
        if table in HIDDEN:
            continue
        if table.startswith(FTS_PREFIX):
            tables[table] = {"hidden": True}
            continue
        entry: dict[str, Any] = {}
        facets = [name for name in FACETS.get(table, ()) if name in names]
        if facets:
            entry["facets"] = facets
        described = {name: text for name, text in DESCRIPTIONS.get(table, {}).items() if name in names}
        if described:
            entry["columns"] = described
        tables[table] = entry
    if "finetune" in tables:
        tables["finetune"].update(
            {
                "label_column": "finetune_id",
                "fts_table": "finetune_fts",
                "fts_pk": "id",
                "sort_desc": "last_changed_at",
                "description": "One row per finetune and source; search covers every text value of the details.",
            }
        )
    if "sync_run" in tables:
        tables["sync_run"]["sort_desc"] = "started_at"
    if "finetunes" in views:
        tables["finetunes"] = finetunes_view()
    return {
        "title": "bflsync store",
        "description": "Training parameters of your BFL finetunes, with every change and every sync run.",
        "databases": {
            database: {
                "tables": tables,
                "queries": {
                    "changes_since": {
                        "title": "Changes since",
                        "description": "Every version observed at or after a moment (an ISO date or timestamp, UTC).",
                        "sql": CHANGES_SINCE,
                    },
                    "finetunes_by_learning_rate": {
                        "title": "Finetunes by learning rate",
                        "description": "Live finetunes per learning rate, optionally for one mode.",
                        "sql": BY_LEARNING_RATE,
                    },
                },
            }
        },
    }


FINETUNES_FACETS = ("status", "mode", "finetune_type", "account")
FINETUNES_COLUMNS = {
    "finetune_id": "the id BFL gives the finetune; opens its page with one timeline",
    "labels": "labels set with `bflsync label`, as a JSON object (numbers stay numbers)",
    "label_list": "the same labels as key=value texts (the labels facet)",
    "last_changed_at": f"{TIMESTAMP}: details last changed",
    "details": "finetune_details exactly as received: the source of truth",
}


def finetunes_view() -> dict[str, Any]:
    """The first screen: live finetunes, newest change first, facets, the CLI's search, descriptions folded."""
    described = "".join(
        f"<dt>{name}</dt><dd>{html.escape(text)}</dd>"
        for name, text in {**DESCRIPTIONS["finetune"], **FINETUNES_COLUMNS}.items()
    )
    return {
        "title": "Finetunes",
        "sort_desc": "last_changed_at",
        "facets": [*FINETUNES_FACETS, {"array": "label_list"}],
        "label_column": "finetune_id",
        "description_html": (
            '<form class="bflsync-search" action="" method="get">'
            '<input type="search" name="_text" placeholder="words, prefixes (fo*), 日本…" size="40"> '
            '<input type="submit" value="Search"> <small>the same search as <code>bflsync query --text</code></small>'
            "</form>"
            # Relative to the table page: Datasette tilde-encodes the database's name in its URLs
            # (`team.2026` is `team~2E2026`), which no path built from the name here would match.
            '<p>Live finetunes only: <a href="finetune?deleted_at__notnull=1">deleted '
            'finetunes</a> · <a href="/-/dashboards/bflsync">charts</a> · '
            '<a href="changes?_sort_desc=observed_at">changes</a></p>'
            f"<details><summary>Column descriptions</summary><dl>{described}</dl></details>"
        ),
    }


def table_columns(path: Path, *, kind: str = "table") -> dict[str, list[str]]:
    """Each table (or ``kind="view"``) of the SQLite store at ``path`` with its column names, read-only."""
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = ? AND name NOT LIKE 'sqlite_%' ORDER BY name",
                (kind,),
            )
        ]
        return {
            table: [row[1] for row in connection.execute("SELECT * FROM pragma_table_info(?)", (table,))]
            for table in tables
        }
    finally:
        connection.close()
