"""The ``bflsync`` group: top-level options, lazy sub-commands and the error boundary.

Sub-commands are imported only when invoked, so ``bflsync query`` never pays for httpx,
alembic or the mock server at start-up. Read commands (:data:`READ_COMMANDS`) also skip
configuring logging (they log nothing) and the interpreter's teardown (see :func:`main`):
at a few hundred finetunes start-up and exit are most of a query's time.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from bflsync.bfl.server_text import printable
from bflsync.cli.common import CliContext
from bflsync.errors import BflsyncError, ExitCode
from bflsync.version import __version__

LAZY_COMMANDS: dict[str, str] = {
    "accounts": "bflsync.cli.audit_commands:accounts",
    "audit": "bflsync.cli.audit_group:audit",
    "compare": "bflsync.cli.compare_command:compare_command",
    "completion": "bflsync.cli.completion:completion_command",
    "db": "bflsync.cli.db_commands:db",
    "credits": "bflsync.cli.audit_commands:credits",
    "diff": "bflsync.cli.audit_commands:diff",
    "export": "bflsync.cli.archive_commands:export_command",
    "facets": "bflsync.cli.query_commands:facets",
    "history": "bflsync.cli.audit_commands:history",
    "import": "bflsync.cli.archive_commands:import_command",
    "label": "bflsync.cli.label_commands:label",
    "mock-api": "bflsync.cli.mock_command:mock_api",
    "note": "bflsync.cli.label_commands:note",
    "probe": "bflsync.cli.probe_command:probe_command",
    "query": "bflsync.cli.query_commands:query",
    "runs": "bflsync.cli.audit_commands:runs",
    "serve": "bflsync.cli.serve_command:serve",
    "schedule": "bflsync.cli.schedule_command:schedule",
    "show": "bflsync.cli.audit_commands:show",
    "status": "bflsync.cli.status_command:status",
    "sync": "bflsync.cli.sync_command:sync",
}
# What `bflsync --help` lists for each command (its whole first sentence), so listing them imports
# none of them (a test keeps these equal to the commands' own short help).
COMMAND_SUMMARIES: dict[str, str] = {
    "accounts": (
        "List each (source, account) in the store: live and deleted finetunes, last sync, key fingerprint."
    ),
    "audit": "Verify the store's tamper-evident history and keep checkpoints of it.",
    "compare": "Line up the parameters of several finetunes (or versions, ID@VERSION), one column each.",
    "completion": "Print the shell completion script for bash, zsh or fish.",
    "credits": "Show the account's credit balance over time, as each sync read it, oldest first.",
    "db": "Create, migrate and check the store's schema.",
    "diff": "Compare the parameters of two finetunes, or two versions of one (ID@VERSION), side by side.",
    "export": "Write the store to a new directory PATH as a portable archive: a JSON Lines file per table.",
    "facets": "Count the finetunes per value of each FIELD, most common first.",
    "history": "List what changed, oldest first: one line per change with old -> new for each changed key.",
    "import": "Load an archive written by `bflsync export` into an empty store, on SQLite or PostgreSQL.",
    "label": "Set or remove local labels on a finetune; every change is kept with who made it and when.",
    "mock-api": "Serve a BFL-compatible finetune API on loopback, to try bflsync without an account.",
    "note": "Append a note to a finetune, kept with who wrote it and when; a sync never changes notes.",
    "probe": "Check which finetune endpoints answer for this key: status, latency and count listed.",
    "query": "Search the stored training parameters with FIELD OP VALUE filters (ANDed).",
    "runs": "List sync runs, newest first, or show one run with its per-finetune errors.",
    "serve": "Browse the store in Datasette: live finetunes first, a page per finetune, charts; read-only.",
    "schedule": "Print (or install) a systemd timer or a crontab line that runs the sync unattended.",
    "show": (
        "Show one finetune's current record: extracted fields, bookkeeping, labels, notes and raw details."
    ),
    "status": (
        "Show each account's last sync and last successful one, the finetunes, the lock holder and the schema."
    ),
    "sync": (
        "Fetch every finetune's details from the BFL API into the store, with an audit version per change."
    ),
}


# Commands that only read the store: no logging, no threads, nothing to clean up at exit.
READ_COMMANDS = frozenset(
    {
        "query",
        "facets",
        "show",
        "history",
        "runs",
        "diff",
        "accounts",
        "credits",
        "compare",
        "status",
        "completion",
    }
)


class BflsyncGroup(click.Group):
    """A group that loads commands on demand and turns every failure into one line and an exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = LAZY_COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, attr = target.split(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        _accept_top_level_options(command)
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """As click's, and an unknown command names the nearest one (``bflsync shwo``: did you mean show?)."""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            name = args[0] if args else ""
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.7)
            if not close or name.startswith("-"):
                raise
            raise click.UsageError(f"no such command {name!r}; did you mean {close[0]!r}?", ctx) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from :data:`COMMAND_SUMMARIES`: help imports no command module."""
        rows = [(name, COMMAND_SUMMARIES[name]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        if click.formatting.FORCED_WIDTH is None:
            extra.setdefault("terminal_width", _help_width())
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise OneLineUsageError.of(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise OneLineUsageError.of(exc) from None
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except BflsyncError as exc:
            _fail(ctx, str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail(ctx, "interrupted", ExitCode.INTERRUPTED)
        except BrokenPipeError:
            _stop_writing_stdout()
            # As if killed by SIGPIPE, like other Unix tools whose reader (`| head`) went away.
            ctx.exit(ExitCode.BROKEN_PIPE)
        except RecursionError:
            # JSON nested deeper than a recursive step can walk (a row another tool wrote).
            _fail(ctx, "a stored value nests too deeply for bflsync to process", ExitCode.CANNOT_RUN)
        except UnicodeEncodeError as exc:
            if "surrogates not allowed" not in str(exc):
                _fail_internal(ctx, exc)
            _fail(ctx, "an argument is not valid UTF-8 text", ExitCode.INPUT)
        except Exception as exc:
            _fail_internal(ctx, exc)


def _accept_top_level_options(command: click.Command) -> None:
    """Let ``--db``, ``-v`` and ``-q`` come after the command too (``bflsync query --db x``).

    Added once to each command (and a group's subcommands) as it is loaded; they update the
    invocation's CliContext exactly as the same options before the command do.
    """
    if any(getattr(param, "_bflsync_top_level", False) for param in command.params):
        return
    for param in _top_level_options():
        param._bflsync_top_level = True  # type: ignore[attr-defined]
        command.params.append(param)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_top_level_options(sub)


def _top_level_options() -> list[click.Option]:
    return [
        click.Option(
            ["--db"],
            metavar="PATH|URL",
            expose_value=False,
            callback=_late_db,
            help="The store, as before the command.",
        ),
        click.Option(
            ["-v", "--verbose"],
            count=True,
            expose_value=False,
            callback=_late_verbose,
            help="More logging on stderr.",
        ),
        click.Option(
            ["-q", "--quiet"],
            is_flag=True,
            expose_value=False,
            callback=_late_quiet,
            help="Only errors on stderr.",
        ),
    ]


def _update_context(ctx: click.Context, **changes: Any) -> None:
    """Replace the CliContext on this context and every one above it (the root's is read on errors)."""
    current: click.Context | None = ctx
    while current is not None:
        if isinstance(current.obj, CliContext):
            current.obj = current.obj._replace(**changes)
        current = current.parent
    root = ctx.find_root().obj
    if isinstance(root, CliContext):
        _configure_logging(root.verbosity, root.quiet)


def _non_empty_db(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """An empty ``--db ''`` would name the current directory: refuse it rather than guess."""
    if value == "":
        raise click.BadParameter("is empty: give a SQLite file path or a database URL")
    return value


def _late_db(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if _non_empty_db(ctx, param, value) is not None:
        _update_context(ctx, db=value)


def _late_verbose(ctx: click.Context, param: click.Parameter, value: int) -> None:
    if value:
        obj = ctx.find_object(CliContext)
        _update_context(ctx, verbosity=(obj.verbosity if obj else 0) + value)


def _late_quiet(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _update_context(ctx, quiet=True)


class OneLineUsageError(click.UsageError):
    """A usage error shown as one ``bflsync: error:`` line (click prints four), exit 2."""

    @classmethod
    def of(cls, error: click.UsageError) -> OneLineUsageError:
        return cls(error.format_message(), error.ctx)

    def show(self, file: Any = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"bflsync: error: {printable(self.format_message())}{hint}", err=True)


def _help_width() -> int:
    """The width click's help formatter would pick, without its ``import shutil``.

    ``shutil`` (with zlib, bz2 and lzma) is most of what ``bflsync --help`` imports beyond click;
    this is ``shutil.get_terminal_size``'s rule (``COLUMNS``, else the terminal, else 80) and click's
    (at most 80 columns, minus 2, at least 50). Sub-commands inherit the width.
    """
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 80
    return max(min(columns, 80) - 2, 50)


def _fail_internal(ctx: click.Context, exc: Exception) -> None:
    if _verbosity(ctx) > 0:
        import traceback

        traceback.print_exc(file=sys.stderr)
    # Driver errors carry the SQL and its parameters on further lines: the first says what broke.
    summary = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    _fail(
        ctx,
        f"internal error: {type(exc).__name__}: {summary} (rerun with -v for the traceback)",
        ExitCode.INTERNAL,
    )


def _stop_writing_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _verbosity(ctx: click.Context) -> int:
    obj = ctx.find_root().obj
    return obj.verbosity if isinstance(obj, CliContext) else 0


def _fail(ctx: click.Context, message: str, code: int) -> None:
    # One line whatever the message holds: server text and ids must not drive the terminal.
    click.echo(f"bflsync: error: {printable(message)}", err=True)
    ctx.exit(int(code))


def _configure_logging(verbosity: int, quiet: bool) -> None:
    import logging

    class _EscapingFormatter(logging.Formatter):
        """Log lines carry finetune ids and server text: each message is escaped to one visible line."""

        def formatMessage(self, record: logging.LogRecord) -> str:
            record.message = printable(record.message)
            record.level = record.levelname.lower()
            return super().formatMessage(record)

    # Warnings read like every other bflsync message; -v adds the time and where they came from.
    form = (
        "%(asctime)s %(levelname)s %(name)s: %(message)s" if verbosity else "bflsync: %(level)s: %(message)s"
    )

    level = logging.WARNING
    if quiet:
        level = logging.ERROR
    elif verbosity >= 2:
        level = logging.DEBUG
    elif verbosity == 1:
        level = logging.INFO
    logger = logging.getLogger("bflsync")
    logger.setLevel(level)
    if not any(getattr(h, "_bflsync", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler._bflsync = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    for h in logger.handlers:
        if getattr(h, "_bflsync", False):
            assert isinstance(h, logging.StreamHandler)
            h.setFormatter(_EscapingFormatter(form))
            h.setStream(sys.stderr)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: the version, and where the store is unless ``--db`` says otherwise."""
    if not value or ctx.resilient_parsing:
        return
    from bflsync.config import default_db_path

    click.echo(f"bflsync, version {__version__}")
    click.echo(f"default store: {default_db_path()}")
    configured = os.environ.get("BFLSYNC_DB")
    if configured:
        click.echo(f"BFLSYNC_DB: {printable(configured)}")
    ctx.exit(0)


@click.group(
    cls=BflsyncGroup,
    invoke_without_command=True,
    no_args_is_help=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--db",
    envvar="BFLSYNC_DB",
    metavar="PATH|URL",
    callback=_non_empty_db,
    help="SQLite file or SQLAlchemy URL of the store [env BFLSYNC_DB; default: the user data dir].",
)
@click.option("-v", "--verbose", "verbosity", count=True, help="More logging on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version and where the default store is, and exit.",
)
@click.pass_context
def cli(ctx: click.Context, db: str | None, verbosity: int, quiet: bool) -> None:
    """Keep a local, queryable, audited record of your BFL finetunes.

    \b
    Example:
        BFL_API_KEY=... bflsync sync && bflsync query mode=character 'learning_rate>=2e-5'
    """
    if ctx.invoked_subcommand is None:
        # Bare `bflsync` is a question, not a mistake: help on stdout, exit 0 (as gh and git do).
        click.echo(ctx.get_help())
        ctx.exit(0)
    if ctx.invoked_subcommand not in READ_COMMANDS:
        _configure_logging(verbosity, quiet)
    ctx.obj = CliContext(db=db, verbosity=verbosity, quiet=quiet)


def main() -> None:
    """Console-script entry point.

    After a read command the process ends with ``os._exit`` once stdout and stderr are
    flushed: such a command holds no thread, lock or open file of its own by then, and the
    interpreter's orderly teardown (finalising every module and object) only adds time.
    """
    read_only = _command_of(sys.argv[1:]) in READ_COMMANDS
    try:
        cli(prog_name="bflsync")
    except SystemExit as exc:
        if not read_only:
            raise
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BrokenPipeError:
            code = ExitCode.BROKEN_PIPE
        os._exit(code)


def _command_of(args: list[str]) -> str | None:
    """The sub-command named on a command line (the first argument after the group's options)."""
    takes_value = {"--db"}
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in takes_value:
            index += 2
        elif arg.startswith("-"):
            index += 1
        else:
            return arg
    return None
