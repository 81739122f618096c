"""``bflsync audit``: verify the store's hash chain, print checkpoints of it, make signing keys."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from sqlalchemy.engine import Connection, Engine

from bflsync.audit import checkpoint as checkpoints
from bflsync.audit.checkpoint import current_checkpoint
from bflsync.audit.verify import verify as verify_store
from bflsync.cli.common import CliContext, pass_cli_context
from bflsync.errors import InputError
from bflsync.store import access

DEFAULT_KEY_NAME = "bflsync-checkpoint"
KEY_FILE = click.Path(dir_okay=False, path_type=Path)


@click.group()
def audit() -> None:
    """Verify the store's tamper-evident history and keep checkpoints of it.

    \b
    Example:
        bflsync audit checkpoint > /elsewhere/store.checkpoint && bflsync audit verify --checkpoint /elsewhere/store.checkpoint
    """


@contextmanager
def _snapshot(cli_context: CliContext) -> Iterator[Connection]:
    """A read-only connection seeing one consistent state of the store, even while a sync writes."""
    location = access.locate_store(cli_context.db)
    engine = access.open_store_for_read(location)
    try:
        with access.translate_errors(location), engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                yield connection
    finally:
        engine.dispose()


# A key file holds one line of about a hundred characters.
MAX_KEY_BYTES = 64 * 1024


def _read_bounded(path: Path, what: str, *, noun: str, limit: int, private: bool = False) -> bytes:
    """The bytes of a small regular file, refused (InputError) before more than ``limit`` are read.

    Opened without blocking, so a FIFO with no writer is refused rather than waited on, and a
    device or a huge file is never read whole. A ``private`` key must be its owner's alone, as ssh
    requires of a private key: anyone else who can read it can sign checkpoints.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise InputError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"{what} {str(path)!r} is not a regular file")
        if private and info.st_mode & 0o077:
            raise InputError(
                f"{what} {str(path)!r} is open to other users (mode {stat.S_IMODE(info.st_mode):04o}): chmod 600 it"
            )
        too_large = InputError(f"{what} {str(path)!r} is larger than {limit} bytes: not a {noun}")
        if info.st_size > limit:
            raise too_large
        try:
            data = handle.read(limit + 1)  # the file may grow after fstat: never more than this
        except OSError as exc:
            raise InputError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise too_large
    return data


def _read_key(path: Path, what: str, *, private: bool = False) -> str:
    try:
        return _read_bounded(path, what, noun="key", limit=MAX_KEY_BYTES, private=private).decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{what} {str(path)!r} is not UTF-8 text") from None


@audit.command()
@click.option(
    "--checkpoint",
    "checkpoint_file",
    type=KEY_FILE,
    help="Also prove the chain extends this checkpoint (`bflsync audit checkpoint` output, kept elsewhere).",
)
@click.option(
    "--public-key",
    "public_key_file",
    type=KEY_FILE,
    help="Require the checkpoint to carry a good signature by this key (the .pub file of `audit keygen`).",
)
@pass_cli_context
def verify(cli_context: CliContext, checkpoint_file: Path | None, public_key_file: Path | None) -> None:
    """Recompute the hash chain and check the current tables against the history.

    Exits 0 with a one-line summary when intact; exits 6 naming the first broken link (table, row,
    what differs) when a row was edited, deleted, inserted or moved, when a finetune's current row or
    labels disagree with their history, when the chain does not extend --checkpoint, or when its
    signature is not good. A checkpoint kept where the store's writers cannot reach also proves that
    no rows were removed from the end and that the chain was not recomputed.

    \b
    Example:
        bflsync audit verify --checkpoint ~/audit/store.checkpoint --public-key ~/audit/key.pub
    """
    if public_key_file is not None and checkpoint_file is None:
        raise InputError("--public-key checks a checkpoint's signature: give --checkpoint FILE too")
    wanted = None
    if checkpoint_file is not None:
        data = _read_bounded(
            checkpoint_file, "the checkpoint", noun="checkpoint", limit=checkpoints.MAX_NOTE_BYTES
        )
        note = checkpoints.parse_note(data)
        if public_key_file is not None:
            checkpoints.check_signature(note, _read_key(public_key_file, "the public key"))
        wanted = checkpoints.parse_checkpoint(note.text)
    with _snapshot(cli_context) as connection:
        verified = verify_store(connection, checkpoint=wanted)
    click.echo(verified.summary())


@audit.command()
@click.option(
    "--sign-key",
    "sign_key_file",
    type=KEY_FILE,
    help="Sign the checkpoint with this Ed25519 signer key (from `bflsync audit keygen`).",
)
@pass_cli_context
def checkpoint(cli_context: CliContext, sign_key_file: Path | None) -> None:
    """Print the chain's size and head hash as a C2SP tlog-checkpoint (origin, size, base64 hash).

    Keep the output where the store's writers cannot change it (another host, a git repository):
    `bflsync audit verify --checkpoint FILE` later proves the store's history still begins with it.

    \b
    Example:
        bflsync audit checkpoint --sign-key ~/.config/bflsync/audit.key > store.checkpoint
    """
    signer = _read_key(sign_key_file, "the signer key", private=True) if sign_key_file is not None else None
    with _snapshot(cli_context) as connection:
        click.echo(render_checkpoint(connection, signer_key=signer), nl=False)


def render_checkpoint(connection: Connection, *, signer_key: str | None) -> str:
    """The store's current checkpoint as note text, signed when a signer key is given."""
    current = current_checkpoint(connection)
    return checkpoints.sign(current, signer_key) if signer_key is not None else current.text()


@audit.command()
@click.argument("key_file", type=KEY_FILE)
@click.option(
    "--name",
    default=DEFAULT_KEY_NAME,
    show_default=True,
    help="The key's name, written in each signature line (no spaces or '+').",
)
def keygen(key_file: Path, name: str) -> None:
    """Make an Ed25519 key pair for signing checkpoints: KEY_FILE (private, mode 0600) and KEY_FILE.pub.

    Neither file may exist already. The public key is printed too; keep it with the checkpoints.

    \b
    Example:
        bflsync audit keygen ~/.config/bflsync/audit.key
    """
    signer, verifier = checkpoints.generate_keys(name)
    public_file = key_file.with_name(key_file.name + ".pub")
    _write_new(key_file, signer + "\n", mode=0o600)
    try:
        _write_new(public_file, verifier + "\n", mode=0o644)
    except InputError:
        key_file.unlink()  # ours, made just now: a key pair is written whole or not at all
        raise
    click.echo(verifier)


def _write_new(path: Path, text: str, *, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise InputError(f"{str(path)!r} exists already: keygen never overwrites a key") from None
    except OSError as exc:
        raise InputError(f"cannot create {str(path)!r}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def save_run_checkpoint(engine: Engine, directory: Path, *, run_id: int) -> Path:
    """Write the checkpoint as it stands after run ``run_id`` to ``directory/run-NNNNNN.checkpoint``.

    Written to a temporary name and renamed, so a reader (git, rsync) never sees half a checkpoint.
    The temporary name is random and created exclusively: in a directory others can write to, a link
    planted at a name the next run would use could otherwise make the sync overwrite any file of ours.
    """
    with engine.connect() as connection:
        text = render_checkpoint(connection, signer_key=None)
    target = directory / f"run-{run_id:06d}.checkpoint"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".partial")
        partial = Path(name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o644)  # a checkpoint is public: mkstemp made it 0600
                handle.write(text)
            partial.replace(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise InputError(f"--checkpoint-dir: cannot write {str(target)!r}: {exc.strerror or exc}") from None
    return target
