"""``bflsync export`` and ``bflsync import``: the store as a portable archive directory, and back."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from bflsync.audit.archive import total_rows
from bflsync.cli.common import CliContext, pass_cli_context, report_opened
from bflsync.config import validate_account_name
from bflsync.store import access
from bflsync.store.lock import sync_lock_for


def _accounts(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(validate_account_name(value) for value in values)


@click.command("export")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--account",
    "accounts",
    multiple=True,
    metavar="NAME",
    callback=_accounts,
    help="Export only this account's finetunes, runs and labels (repeatable) [default: the whole store].",
)
@click.option(
    "--split",
    is_flag=True,
    help="One pretty-printed file per finetune (its versions, statuses, labels, notes), for a git repository.",
)
@click.option(
    "--include-key-fingerprints",
    is_flag=True,
    help="Keep the accounts' key fingerprints and the store's secret for them [default: left out].",
)
@pass_cli_context
def export_command(
    cli_context: CliContext,
    path: Path,
    accounts: tuple[str, ...],
    split: bool,
    include_key_fingerprints: bool,
) -> None:
    """Write the store to a new directory PATH as a portable archive: a JSON Lines file per table.

    Every row of every table is written with its primary key and every column, the raw
    details exactly as stored, in primary-key order, so two exports of the same data are
    identical whichever engine holds it. manifest.json names the schema revision, the
    row counts and the SHA-256 of every file; `bflsync import` checks them all.

    The store is read in one read transaction: a sync may run meanwhile. PATH must not
    exist or be empty; the archive appears there whole, or not at all.

    The key fingerprints and the store's secret for them are left out unless
    --include-key-fingerprints: with both, anyone holding the archive can test a guessed
    API key against a fingerprint.

    \b
    Example:
        bflsync export ~/finetunes-archive-2026-10 && bflsync export --split ~/finetunes-git/archive
    """
    from bflsync.audit.archive_export import ExportOptions, export_store

    location = access.locate_store(cli_context.db)
    engine = access.open_store_for_read(location)
    try:
        with access.translate_errors(location):
            manifest = export_store(
                engine,
                path.expanduser().absolute(),
                options=ExportOptions(
                    accounts=accounts, split=split, key_fingerprints=include_key_fingerprints
                ),
                now=datetime.now(UTC),
            )
    finally:
        engine.dispose()
    if not cli_context.quiet:
        click.echo(
            f"exported {total_rows(manifest.tables.values())} rows of {len(manifest.tables)} tables "
            f"({len(manifest.files)} files, schema {manifest.schema_revision}) to {path}",
            err=True,
        )


@click.command("import")
@click.argument("path", type=click.Path(file_okay=False, path_type=Path))
@pass_cli_context
def import_command(cli_context: CliContext, path: Path) -> None:
    """Load an archive written by `bflsync export` into an empty store, on SQLite or PostgreSQL.

    The archive is checked before the store is touched: its manifest, schema revision and
    the SHA-256 of every file; an archive holding a symbolic link is refused. The store
    (--db) is created or migrated to head if needed and must hold no finetunes, runs or
    labels; every row keeps its id, and all of it is loaded in one transaction, or nothing
    is (a line cut short, a count unlike the manifest's, a hash chain that does not verify
    against the manifest's checkpoint). The imported store answers every read command as
    the exported one did.

    Exit codes: 0 imported, 2 the archive was refused or the store is not empty, 3 the
    store cannot be written, 4 a sync holds the store.

    \b
    Example:
        bflsync --db postgresql+psycopg://me@db/finetunes import ~/finetunes-archive-2026-10
    """
    from bflsync.audit.archive_import import load_archive, read_archive

    archive = read_archive(path.expanduser().absolute())
    location = access.locate_store(cli_context.db)
    with sync_lock_for(location):
        opened = access.open_store_for_write(location)
        try:
            report_opened(cli_context, location, opened)
            with access.translate_errors(location):
                counts = load_archive(opened.engine, archive)
        finally:
            opened.engine.dispose()
    if not cli_context.quiet:
        click.echo(
            f"imported {sum(counts.values())} rows of {len(counts)} tables into {location.display}", err=True
        )
