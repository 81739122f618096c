"""The charts of ``bflsync serve``: a datasette-dashboards configuration over the views of 0012_views.

Every query aggregates in SQL (a few hundred rows at most, whatever the store's size), so the
charts draw in well under a second at 20,000 finetunes; Vega-Lite comes bundled with the plugin,
so nothing is fetched from the network. Weeks start on Monday and are computed from the first ten
characters of a timestamp, which every stored text form of a time begins with.
"""

from __future__ import annotations

from typing import Any

SLUG = "bflsync"


def _week(day: str) -> str:
    """The Monday of the week of ``day`` (a ``YYYY-MM-DD`` text)."""
    return f"date({day}, '-' || ((CAST(strftime('%w', {day}) AS integer) + 6) % 7) || ' days')"


def _per_week(count: str, kinds: str, where: str) -> str:
    """Rows of ``changes`` counted per day first (dates are computed once a day, not once a row), then per week."""
    return (
        f"SELECT {_week('day')} AS week{kinds and ', ' + kinds}, sum(n) AS {count} FROM"
        f" (SELECT substr(observed_at, 1, 10) AS day{kinds and ', ' + kinds}, count(*) AS n FROM changes"
        f" WHERE {where} GROUP BY day{kinds and ', ' + kinds})"
        f" GROUP BY week{kinds and ', ' + kinds} ORDER BY week"
    )


FILTERS_SQL = "[[ AND account = :account ]] [[ AND label_list LIKE '%' || json_quote(:label) || '%' ]]"


def dashboards(database: str) -> dict[str, Any]:
    """``plugins.datasette-dashboards`` of the metadata: one dashboard, filterable by account and label."""
    charts: dict[str, Any] = {
        "rate-by-iterations": {
            "title": "Learning rate by iterations (size: finetunes, colour: mode)",
            "db": database,
            "query": "SELECT learning_rate, iterations, mode, count(*) AS finetunes FROM finetunes"
            f" WHERE learning_rate IS NOT NULL AND iterations IS NOT NULL {FILTERS_SQL}"
            " GROUP BY learning_rate, iterations, mode",
            "library": "vega-lite",
            "display": {
                "mark": {"type": "circle", "tooltip": True, "opacity": 0.7},
                "encoding": {
                    "x": {"field": "iterations", "type": "quantitative"},
                    "y": {"field": "learning_rate", "type": "quantitative", "scale": {"type": "log"}},
                    "color": {"field": "mode", "type": "nominal"},
                    "size": {"field": "finetunes", "type": "quantitative"},
                },
            },
        },
        "status-by-mode": {
            "title": "Finetunes by status and mode",
            "db": database,
            "query": "SELECT coalesce(status, '(unknown)') AS status, coalesce(mode, '(none)') AS mode,"
            f" count(*) AS finetunes FROM finetunes WHERE 1 = 1 {FILTERS_SQL} GROUP BY 1, 2",
            "library": "vega-lite",
            "display": {
                "mark": {"type": "bar", "tooltip": True},
                "encoding": {
                    "x": {"field": "mode", "type": "nominal"},
                    "y": {"field": "finetunes", "type": "quantitative"},
                    "color": {"field": "status", "type": "nominal"},
                },
            },
        },
        "created-per-week": {
            "title": "Finetunes created per week",
            "db": database,
            "query": _per_week("finetunes", "", "change = 'created' [[ AND account = :account ]]"),
            "library": "vega-lite",
            "display": {
                "mark": {"type": "bar", "tooltip": True},
                "encoding": {
                    "x": {"field": "week", "type": "temporal", "timeUnit": "yearmonthdate"},
                    "y": {"field": "finetunes", "type": "quantitative"},
                },
            },
        },
        "credits": {
            "title": "Credits over time per account",
            "db": database,
            "query": "SELECT started_at AS at, account, credits FROM sync_run WHERE credits IS NOT NULL"
            " [[ AND account = :account ]] ORDER BY started_at",
            "library": "vega-lite",
            "display": {
                "mark": {"type": "line", "point": True, "tooltip": True},
                "encoding": {
                    "x": {"field": "at", "type": "temporal"},
                    "y": {"field": "credits", "type": "quantitative"},
                    "color": {"field": "account", "type": "nominal"},
                },
            },
        },
        "changes-per-week": {
            "title": "Changes per week",
            "db": database,
            "query": _per_week("versions", "change", "1 = 1 [[ AND account = :account ]]"),
            "library": "vega-lite",
            "display": {
                "mark": {"type": "bar", "tooltip": True},
                "encoding": {
                    "x": {"field": "week", "type": "temporal", "timeUnit": "yearmonthdate"},
                    "y": {"field": "versions", "type": "quantitative"},
                    "color": {"field": "change", "type": "nominal"},
                },
            },
        },
    }
    return {
        SLUG: {
            "title": "bflsync: your finetunes",
            "description": "Training parameters, statuses, credits and changes, from the store's views.",
            "layout": [
                ["rate-by-iterations", "status-by-mode"],
                ["created-per-week", "changes-per-week"],
                ["credits", "credits"],
            ],
            "filters": {
                "account": {
                    "name": "Account",
                    "type": "select",
                    "db": database,
                    "query": "SELECT DISTINCT account FROM finetunes ORDER BY 1",
                },
                "label": {
                    "name": "Label (key=value)",
                    "type": "select",
                    "db": database,
                    "query": "SELECT DISTINCT key || '=' || value FROM labels ORDER BY 1",
                },
            },
            "charts": charts,
        }
    }
