"""``bflsync serve``: browse the store in Datasette, read-only, with metadata bflsync generates."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import click

from bflsync.cli.common import CliContext, pass_cli_context
from bflsync.errors import InputError
from bflsync.store import access
from bflsync.web import metadata

DEFAULT_PORT = 8001  # Datasette's own default


@click.command()
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback by default)."
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Port; 0 picks a free one.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the store in a web browser.")
@click.option(
    "--print-metadata",
    is_flag=True,
    help="Print Datasette metadata (JSON) for the store and exit, for a Datasette you run yourself.",
)
@pass_cli_context
def serve(cli_context: CliContext, host: str, port: int, open_browser: bool, print_metadata: bool) -> None:
    """Browse the store in Datasette: search, facets, canned queries; read-only, safe during a sync.

    Needs the optional extra: pipx install '.[serve]'. The store is opened read-only but not
    immutable, so pages stay correct while `bflsync sync` writes.

    \b
    Example:
        bflsync serve --open
        bflsync serve --print-metadata > metadata.json && datasette bflsync.db -m metadata.json
    """
    location = access.locate_store(cli_context.db)
    if location.path is None:
        raise InputError("bflsync serve needs a SQLite store; Datasette cannot open a server database")
    # Same checks as every read command: a bflsync store, at head; never created or migrated.
    access.open_store_for_read(location).dispose()
    path = location.path
    config = metadata.datasette_metadata(path.stem, metadata.table_columns(path))
    if print_metadata:
        click.echo(json.dumps(config, indent=2, ensure_ascii=False))
        return
    try:
        from datasette.cli import cli as datasette_cli
    except ImportError:
        raise InputError(
            "bflsync serve needs Datasette: install bflsync with it, `pipx install '.[serve]'` "
            "(or `pip install datasette` into bflsync's environment)"
        ) from None
    with tempfile.TemporaryDirectory(prefix="bflsync-serve-") as directory:
        metadata_file = Path(directory) / "metadata.json"
        metadata_file.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
        # No --immutable: Datasette then opens the file with mode=ro and sees each committed sync batch.
        args = ["serve", str(path), "--metadata", str(metadata_file), "--host", host, "--port", str(port)]
        if open_browser:
            args.append("--open")
        if not cli_context.quiet:
            click.echo(f"serving {path} read-only on http://{host}:{port}/ (Ctrl-C stops)", err=True)
        sys.stdout.flush()
        datasette_cli.main(args=args, prog_name="datasette", standalone_mode=False)
