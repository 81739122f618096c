"""``bflsync serve``: browse the store in Datasette, read-only: finetunes first, one page per finetune, charts."""

from __future__ import annotations

import importlib.util
import json
import webbrowser
from pathlib import Path

import click

from bflsync.cli.common import CliContext, pass_cli_context
from bflsync.errors import InputError
from bflsync.read.reader import SqliteReader, open_reader
from bflsync.store.check import is_server_url
from bflsync.web import metadata

DEFAULT_PORT = 8001  # Datasette's own default
LOOPBACK = "127.0.0.1"


@click.command()
@click.option(
    "--host",
    default=LOOPBACK,
    show_default=True,
    help="Address to listen on. Anything but loopback makes the store readable by the network.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port; 0 picks a free one (the URL printed says which).",
)
@click.option(
    "--uds",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Serve on this Unix socket instead, created 0600: only you can connect, even on a shared machine.",
)
@click.option(
    "--allow-host",
    "allow_hosts",
    multiple=True,
    metavar="NAME",
    help="Also answer requests for this host name (a reverse proxy's); others are refused (DNS rebinding).",
)
@click.option(
    "--allow-sql", is_flag=True, help="Let visitors run their own SQL (?sql=); secrets still read as NULL."
)
@click.option("--open", "open_browser", is_flag=True, help="Open the store in a web browser.")
@click.option(
    "--print-metadata",
    is_flag=True,
    help="Print Datasette metadata (JSON) for the store and exit, for a Datasette you run yourself.",
)
@pass_cli_context
def serve(
    cli_context: CliContext,
    host: str,
    port: int,
    uds: Path | None,
    allow_hosts: tuple[str, ...],
    allow_sql: bool,
    open_browser: bool,
    print_metadata: bool,
) -> None:
    """Browse the store in Datasette: live finetunes first, a page per finetune, charts; read-only.

    Needs the optional extra: pipx install '.[serve]'. The store is opened read-only but not
    immutable, so pages stay correct while `bflsync sync` writes. The fingerprint secret and the
    key fingerprints are never served.

    \b
    Example:
        bflsync serve --open
        bflsync serve --uds ~/bflsync.sock
        bflsync serve --print-metadata > metadata.json && datasette bflsync.db -m metadata.json
    """
    if cli_context.db is not None and is_server_url(cli_context.db):
        raise InputError("bflsync serve needs a SQLite store; Datasette cannot open a server database")
    # Same checks as every read command (a bflsync store at head, never created or migrated), by
    # the read side's sqlite3 path: SQLAlchemy (0.5 s) is not imported before a busy port answers.
    with open_reader(cli_context.db) as store:
        if not isinstance(store, SqliteReader):
            raise InputError("bflsync serve needs a SQLite store; Datasette cannot open a server database")
        path = Path(store.where)
    if print_metadata:
        config = metadata.datasette_metadata(
            path.stem, metadata.table_columns(path), views=list(metadata.table_columns(path, kind="view"))
        )
        click.echo(json.dumps(config, indent=2, ensure_ascii=False))
        return
    # Found, not imported: importing Datasette takes a second, and a busy port must answer at once.
    if importlib.util.find_spec("datasette") is None:
        raise InputError(
            "bflsync serve needs Datasette: install bflsync with it, `pipx install '.[serve]'` "
            "(or `pip install datasette datasette-dashboards` into bflsync's environment)"
        )
    from bflsync.web import server

    bound = server.bind(host=host, port=port, uds=uds)

    def cleanup() -> None:
        bound.sock.close()
        if uds is not None:
            uds.unlink(missing_ok=True)

    try:
        config = server.build_metadata(path, bound, allow_sql=allow_sql, allow_hosts=allow_hosts)

        def announce(url: str) -> None:
            if host != LOOPBACK and uds is None:
                click.echo(
                    f"bflsync: warning: serving on {host}: anyone who can reach this address can read the store",
                    err=True,
                )
            if not cli_context.quiet:
                click.echo(f"serving {path} read-only at {url} (Ctrl-C stops)", err=True)
            if open_browser and uds is None:
                webbrowser.open(url)

        server.serve(
            path,
            bound,
            config,
            log_level="warning" if cli_context.quiet else "info",
            announce=announce,
            cleanup=cleanup,
        )
    finally:
        cleanup()
