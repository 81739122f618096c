"""bflsync's Datasette hooks: the guards, the finetune page, the CLI's search, links and quiet errors.

Registered by :mod:`bflsync.web.server` in the process it serves from; what it needs to know (the
database name, the allowed hosts, ``--allow-sql``) is in the ``bflsync`` plugin configuration of
the metadata it builds, so no state lives in this module.
"""

from __future__ import annotations

import json
import logging
import shlex
import sqlite3
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from datasette import hookimpl
from datasette.filters import FilterArguments
from datasette.utils import tilde_decode, tilde_encode
from datasette.utils.asgi import Base400, NotFound, Response
from datasette.views.base import DatasetteError
from markupsafe import Markup

from bflsync.errors import InputError
from bflsync.read.filters import Query
from bflsync.read.reader import SqliteReader
from bflsync.read.search import search_ids
from bflsync.web import guard
from bflsync.web.compare_page import cell, comparison
from bflsync.web.timeline import finetune_page

PLUGIN = "bflsync"
FINETUNE_PATH = "/-/finetunes/"
COMPARE_PATH = "/-/compare"
ID_COLUMN = "finetune_id"
# Tables and views whose finetune_id cell links to the finetune's page.
LINKED = frozenset({"finetunes", "changes", "status_changes", "labels", "finetune", "sync_error"})
TEXT_PARAMETER = "_text"
# Everything Datasette answers otherwise (POST to a table, to /-/permissions, …) writes or checks
# permissions to write; a read-only server has no use for it.
READ_METHODS = ("GET", "HEAD")
log = logging.getLogger("bflsync.serve")

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def _config(datasette: Any) -> dict[str, Any]:
    return datasette.plugin_config(PLUGIN) or {}


@hookimpl
def prepare_connection(conn: Any, database: str, datasette: Any) -> None:
    conn.set_authorizer(guard.authorize)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, guard.MAX_VALUE_BYTES)


@hookimpl
def startup(datasette: Any) -> None:
    for database in datasette.databases.values():
        _quiet_sql_errors(database)


def _quiet_sql_errors(database: Any) -> None:
    """Datasette writes every failed statement to stderr, SQL and all, before answering 400; a bad
    ``_facet=`` or ``_where=`` from a visitor is then several lines of the server's log. The error
    goes to the visitor and the access log line is the one line the server keeps."""
    execute = database.execute

    async def execute_quietly(sql: str, params: Any = None, **options: Any) -> Any:
        return await execute(sql, params, **{**options, "log_sql_errors": False})

    database.execute = execute_quietly


@hookimpl
def asgi_wrapper(datasette: Any) -> Callable[[ASGIApp], ASGIApp]:
    config = _config(datasette)
    dashboards = (datasette.plugin_config("datasette-dashboards") or {}).values()
    charts = guard.chart_statements(
        chart["query"]
        for board in dashboards
        for chart in board.get("charts", {}).values()
        if "query" in chart
    )

    def wrap(app: ASGIApp) -> ASGIApp:
        async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                refusal = _refusal(scope, config, charts)
                if refusal is not None:
                    log.warning("refused %s %s: %s", scope["method"], scope["path"], refusal)
                    await Response.text(refusal + "\n", status=403).asgi_send(send)
                    return
                if scope["method"] not in READ_METHODS:
                    # The access log line says it all: one line, as for a 404.
                    await Response.text(
                        "bflsync serve is read-only: GET and HEAD only\n",
                        status=405,
                        headers={"Allow": ", ".join(READ_METHODS)},
                    ).asgi_send(send)
                    return
            await app(scope, receive, send)

        return guarded

    return wrap


def _refusal(scope: dict[str, Any], config: dict[str, Any], charts: frozenset[str]) -> str | None:
    if config.get("check_host", True):
        host = dict(scope["headers"]).get(b"host")
        decoded = host.decode("latin-1") if host is not None else None
        if not guard.host_allowed(
            decoded, config["hosts"], port=config["port"], wildcard=config.get("wildcard", False)
        ):
            return f"Host {decoded!r} is not the address bflsync serve is bound to"
    params = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return guard.sql_refusal(params, allow_sql=config.get("allow_sql", False), charts=charts)


@hookimpl
def register_routes(datasette: Any) -> list[tuple[str, Any]]:
    return [
        (r"^/$", index),
        (rf"^{FINETUNE_PATH}(?P<finetune_id>.+)$", finetune_view),
        (rf"^{COMPARE_PATH}$", compare_view),
    ]


async def index(datasette: Any) -> Response:
    """The first screen is the live finetunes, newest change first."""
    database = _config(datasette)["database"]
    return Response.redirect(datasette.urls.table(database, "finetunes"))


def finetune_href(datasette: Any, finetune_id: str) -> str:
    """The link to a finetune's page, tilde-encoded as Datasette encodes table names: nothing in it
    that a browser rewrites (``..`` resolved away, ``%2F`` turned into ``/`` by some proxies)."""
    return str(datasette.urls.path(FINETUNE_PATH + tilde_encode(finetune_id)))


def shell_command(command: str, ids: Sequence[str], *, options: Sequence[str] = ()) -> str:
    """The ``bflsync COMMAND`` line a page suggests for ``ids``, as a POSIX shell must be given it:
    a finetune id is data from the API, and one copied into a terminal must never run as code
    (``x; rm …``) nor be read as an option (``--db=…``, hence ``--`` before the ids then)."""
    if any(finetune_id.startswith("-") for finetune_id in ids):
        words = [*options, "--", *ids]
    else:
        words = [*ids, *options]
    return " ".join(shlex.quote(word) for word in ["bflsync", command, *words])


def page_finetune_id(raw: str) -> str:
    """The id in a finetune page's path: tilde-encoded as :func:`finetune_href` writes it, or
    percent-encoded as typed (links never hold ``%``, so the two never mix)."""
    return urllib.parse.unquote(raw) if "%" in raw else tilde_decode(raw)


async def finetune_view(datasette: Any, request: Any) -> Response:
    finetune_id = page_finetune_id(request.url_vars["finetune_id"])
    database = _config(datasette)["database"]
    source, account = request.args.get("source"), request.args.get("account")

    def build(connection: Any) -> Any:
        return finetune_page(
            SqliteReader(connection, where=database), finetune_id, source=source, account=account
        )

    try:
        page = await datasette.get_database(database).execute_fn(build)
    except InputError as exc:
        raise NotFound(str(exc)) from None
    return Response.html(
        await datasette.render_template(
            "bflsync_finetune.html",
            {
                "page": page,
                "database": database,
                "compare_path": datasette.urls.path(COMPARE_PATH),
                "show_command": shell_command("show", [page.finetune_id], options=["--format", "request"]),
                "compare_command": shell_command("compare", [page.finetune_id, "OTHER_ID"]),
            },
            request=request,
        )
    )


async def compare_view(datasette: Any, request: Any) -> Response:
    """``/-/compare?id=A&id=B…``: ``bflsync compare`` in the browser (``&only_changed=1`` for the differences)."""
    database = _config(datasette)["database"]
    ids = [value.strip() for value in request.args.getlist("id") if value.strip()]
    if not ids:
        raise DatasetteError("compare needs at least one finetune id (?id=A&id=B)", status=400)
    only_changed = request.args.get("only_changed") == "1"

    def build(connection: Any) -> Any:
        return comparison(SqliteReader(connection, where=database), ids, only_changed=only_changed)

    try:
        result = await datasette.get_database(database).execute_fn(build)
    except InputError as exc:
        raise NotFound(str(exc)) from None
    query = [("id", value) for value in ids]
    return Response.html(
        await datasette.render_template(
            "bflsync_compare.html",
            {
                "database": database,
                "ids": [entry.heading for entry in result.entries],
                "command": shell_command("compare", [entry.heading for entry in result.entries]),
                "rows": [
                    {
                        "name": row.field.name,
                        "cells": [cell(value) for value in row.values],
                        "changed": row.changed,
                    }
                    for row in result.rows
                ],
                "only_changed": only_changed,
                "all_query": urllib.parse.urlencode(query),
                "changed_query": urllib.parse.urlencode([*query, ("only_changed", "1")]),
                "headings": [
                    (entry.heading, finetune_href(datasette, entry.finetune_id)) for entry in result.entries
                ],
            },
            request=request,
        )
    )


@hookimpl
def render_cell(value: Any, column: str, table: str | None, database: str, datasette: Any) -> Any:
    if column != ID_COLUMN or table not in LINKED or not isinstance(value, str):
        return None
    return Markup('<a href="{}">{}</a>').format(finetune_href(datasette, value), value)


@hookimpl
def filters_from_request(request: Any, database: str, table: str, datasette: Any) -> Any:
    """``?_text=`` on ``finetunes`` is ``query --text``: the same search, so the same ids."""
    words = request.args.get(TEXT_PARAMETER, "").strip()
    if table != "finetunes" or not words:
        return None

    async def inner() -> FilterArguments:
        def ids(connection: Any) -> list[str]:
            return search_ids(SqliteReader(connection, where=database), Query(text=words))[0]

        try:
            found = await datasette.get_database(database).execute_fn(ids)
        except InputError as exc:
            raise DatasetteError(str(exc), status=400) from None
        return FilterArguments(
            ["finetune_id IN (SELECT value FROM json_each(:bflsync_text_ids))"],
            params={"bflsync_text_ids": json.dumps(found)},
            human_descriptions=[f"text matches {words!r} (as query --text)"],
        )

    return inner


@hookimpl
def handle_exception(datasette: Any, request: Any, exception: Exception) -> Any:
    """One log line per error, never a traceback with locals in the terminal."""

    async def inner() -> Response:
        if isinstance(exception, Base400):
            status, message = exception.status, str(exception.args[0]) if exception.args else "error"
        elif isinstance(exception, DatasetteError):
            # Datasette raises it without a status (so 500) only for requests it cannot answer as
            # asked (`_sort=` an unknown column, `_sort` with `_sort_desc`, a bad `_through`).
            status, message = exception.status if exception.status != 500 else 400, str(exception.message)
        else:
            status, message = 500, f"{type(exception).__name__}: {exception}"
            log.error("%s %s: %s", request.method, request.path, message)
        if request.path.endswith(".json"):
            return Response.json({"ok": False, "error": message, "status": status}, status=status)
        template = datasette.jinja_env.select_template([f"{status}.html", "error.html"])
        body = await template.render_async(
            {
                "ok": False,
                "error": message,
                "status": status,
                "title": None,
                "urls": datasette.urls,
                "app_css_hash": datasette.app_css_hash(),
                "menu_links": lambda: [],
            }
        )
        return Response.html(body, status=status)

    return inner
