"""Checkpoints of the hash chain: the C2SP tlog-checkpoint form, Ed25519 signed notes, what `audit verify
--checkpoint` proves that verify alone cannot, and `sync --checkpoint-dir`, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result
from storebuild import day, write_sync

from bflsync.audit import checkpoint
from bflsync.cli import cli
from bflsync.mock.server import MockBFL
from bflsync.store import access, chain

ALPHA = {"mode": "character", "iterations": 300}
KEY = "checkpoint-test-key"


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", url, *args])


def sync_days(url: str, *days: int) -> None:
    opened = access.open_store_for_write(access.locate_store(url))
    try:
        for number in days:
            write_sync(opened.engine, {"alpha": {**ALPHA, "iterations": 100 * number}}, now=day(number))
    finally:
        opened.engine.dispose()


def origin_of(url: str) -> str:
    engine = sa.create_engine(access.locate_store(url).url)
    try:
        with engine.connect() as connection:
            return chain.origin(connection)
    finally:
        engine.dispose()


def save_checkpoint(url: str, path: Path, *args: str) -> str:
    result = run(url, "audit", "checkpoint", *args)
    assert result.exit_code == 0, result.output
    path.write_text(result.stdout, encoding="utf-8")
    return result.stdout


def rechain(url: str) -> None:
    """What someone with write access and this source code can do: recompute every link after an edit."""
    engine = sa.create_engine(access.locate_store(url).url)
    try:
        with engine.begin() as connection:
            previous = chain.GENESIS
            for row in list(chain.chained_rows(connection)):
                previous = chain.link(previous, row.content())
                target = sa.table(row.spec.name, sa.column("id"), sa.column("row_hash"))
                connection.execute(
                    target.update().where(target.c.id == row.row_id).values(row_hash=previous.hex())
                )
    finally:
        engine.dispose()


def test_a_checkpoint_is_the_origin_the_size_and_the_base64_head(
    any_store: tuple[str, sa.Engine], tmp_path: Path
) -> None:
    url, _ = any_store
    sync_days(url, 1, 2)
    text = save_checkpoint(url, tmp_path / "cp")
    origin, size, root, end = text.split("\n")
    assert origin == origin_of(url)
    assert origin.startswith("bflsync/store/") and " " not in origin and "+" not in origin
    assert (size, end) == ("4", "")
    assert len(base64.b64decode(root, validate=True)) == 32


def test_an_empty_store_checkpoints_size_0_and_the_zero_hash(any_store: tuple[str, sa.Engine]) -> None:
    url, _ = any_store
    result = run(url, "audit", "checkpoint")
    assert result.stdout == f"{origin_of(url)}\n0\n{base64.b64encode(bytes(32)).decode()}\n"


def test_verify_proves_the_chain_extends_an_older_checkpoint(
    any_store: tuple[str, sa.Engine], tmp_path: Path
) -> None:
    url, _ = any_store
    sync_days(url, 1)
    save_checkpoint(url, tmp_path / "cp")
    sync_days(url, 2, 3)
    result = run(url, "audit", "verify", "--checkpoint", str(tmp_path / "cp"))
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("; extends the checkpoint of size 2\n")


def test_a_recomputed_chain_passes_verify_alone_but_not_the_checkpoint(
    any_store: tuple[str, sa.Engine], tmp_path: Path
) -> None:
    url, engine = any_store
    sync_days(url, 1, 2)
    save_checkpoint(url, tmp_path / "cp")
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE finetune_version SET changed_keys = '[\"forged\"]' WHERE id = 1")
    rechain(url)
    assert run(url, "audit", "verify").exit_code == 0
    result = run(url, "audit", "verify", "--checkpoint", str(tmp_path / "cp"))
    assert result.exit_code == 6
    assert result.stderr == (
        "bflsync: error: the chain's first 4 rows do not hash to the checkpoint's head:"
        " history up to the checkpoint was rewritten\n"
    )


def test_rows_removed_from_the_end_are_found_only_with_a_checkpoint(
    any_store: tuple[str, sa.Engine], tmp_path: Path
) -> None:
    url, engine = any_store
    sync_days(url, 1, 2)
    assert run(url, "note", "alpha", "the newest row").exit_code == 0
    save_checkpoint(url, tmp_path / "cp")
    with engine.begin() as connection:
        connection.exec_driver_sql("DELETE FROM finetune_note")
    assert run(url, "audit", "verify").exit_code == 0
    result = run(url, "audit", "verify", "--checkpoint", str(tmp_path / "cp"))
    assert result.exit_code == 6
    assert "the chain has 4 rows but the checkpoint has 5: rows were removed from its end" in result.stderr


def test_a_checkpoint_of_another_store_is_refused(tmp_path: Path) -> None:
    first, second = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    sync_days(first, 1)
    sync_days(second, 1)
    save_checkpoint(first, tmp_path / "cp")
    result = run(second, "audit", "verify", "--checkpoint", str(tmp_path / "cp"))
    assert result.exit_code == 6
    assert result.stderr.startswith(
        f"bflsync: error: the checkpoint is for {origin_of(first)!r}, not this store"
    )


def test_keygen_writes_a_private_key_only_its_owner_reads_and_a_public_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["audit", "keygen", str(tmp_path / "audit.key"), "--name", "me.example/log"]
    )
    assert result.exit_code == 0, result.output
    private = (tmp_path / "audit.key").read_text()
    public = (tmp_path / "audit.key.pub").read_text()
    assert stat.S_IMODE((tmp_path / "audit.key").stat().st_mode) == 0o600
    assert result.stdout == public
    name, key_id, blob = public.strip().split("+", 2)
    assert name == "me.example/log"
    raw = base64.b64decode(blob)
    assert raw[0] == 1 and len(raw) == 33
    # Go's note format: the id is the first four bytes of SHA-256(name, newline, 0x01, key).
    assert key_id == hashlib.sha256(b"me.example/log\n" + raw).digest()[:4].hex()
    assert private.startswith(f"PRIVATE+KEY+me.example/log+{key_id}+")
    again = CliRunner().invoke(cli, ["audit", "keygen", str(tmp_path / "audit.key")])
    assert again.exit_code == 2
    assert (tmp_path / "audit.key").read_text() == private


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    assert CliRunner().invoke(cli, ["audit", "keygen", str(tmp_path / "k")]).exit_code == 0
    return tmp_path / "k", tmp_path / "k.pub"


def test_a_signed_checkpoint_verifies_with_its_public_key(
    any_store: tuple[str, sa.Engine], tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    url, _ = any_store
    sync_days(url, 1)
    text = save_checkpoint(url, tmp_path / "cp", "--sign-key", str(keys[0]))
    body, signature = text.split("\n\n")
    assert signature.startswith("\u2014 bflsync-checkpoint ") and signature.endswith("\n")
    assert checkpoint.parse_checkpoint(body + "\n").size == 2
    result = run(url, "audit", "verify", "--checkpoint", str(tmp_path / "cp"), "--public-key", str(keys[1]))
    assert result.exit_code == 0, result.output


def test_an_altered_signed_checkpoint_or_another_key_exits_6(
    any_store: tuple[str, sa.Engine], tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    url, _ = any_store
    sync_days(url, 1, 2)
    text = save_checkpoint(url, tmp_path / "cp", "--sign-key", str(keys[0]))
    lines = text.split("\n")
    lines[1] = "3"  # a shorter size, with the head it would have
    (tmp_path / "altered").write_text("\n".join(lines))
    altered = run(
        url, "audit", "verify", "--checkpoint", str(tmp_path / "altered"), "--public-key", str(keys[1])
    )
    assert altered.exit_code == 6
    assert "signature by key 'bflsync-checkpoint' is not valid" in altered.stderr
    assert CliRunner().invoke(cli, ["audit", "keygen", str(tmp_path / "other")]).exit_code == 0
    other = run(
        url,
        "audit",
        "verify",
        "--checkpoint",
        str(tmp_path / "cp"),
        "--public-key",
        str(tmp_path / "other.pub"),
    )
    assert other.exit_code == 6
    assert "carries no signature by key" in other.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("just one line\n", "not a checkpoint: expected an origin line, a size line and a hash line"),
        ("o\nten\nAAAA\n", "not a checkpoint: the size line 'ten' is not a decimal number"),
        ("o\n1\nnot base64!\n", "the checkpoint's hash is not standard base64"),
        ("o\n1\nAAAA", "the checkpoint file does not end with a newline"),
    ],
)
def test_a_malformed_checkpoint_exits_2_with_one_line(
    any_store: tuple[str, sa.Engine], tmp_path: Path, content: str, message: str
) -> None:
    url, _ = any_store
    (tmp_path / "cp").write_text(content)
    result = run(url, "audit", "verify", "--checkpoint", str(tmp_path / "cp"))
    assert result.exit_code == 2
    assert result.stderr == f"bflsync: error: {message}\n"


def test_public_key_without_checkpoint_exits_2(
    any_store: tuple[str, sa.Engine], keys: tuple[Path, Path]
) -> None:
    url, _ = any_store
    result = run(url, "audit", "verify", "--public-key", str(keys[1]))
    assert result.exit_code == 2
    assert "give --checkpoint FILE too" in result.stderr


def test_sync_writes_one_checkpoint_per_run_into_checkpoint_dir(store_db: str, tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    with MockBFL.serve(finetunes={"alpha": ALPHA}, api_key=KEY) as mock:
        for _ in range(2):
            result = CliRunner().invoke(
                cli,
                ["--db", store_db, "sync", "--base-url", mock.base_url, "--checkpoint-dir", str(directory)],
                env={"BFL_API_KEY": KEY},
            )
            assert result.exit_code == 0, result.output
    assert sorted(path.name for path in directory.iterdir()) == [
        "run-000001.checkpoint",
        "run-000002.checkpoint",
    ]
    for path in directory.iterdir():
        assert run(store_db, "audit", "verify", "--checkpoint", str(path)).exit_code == 0
    latest = checkpoint.parse_checkpoint((directory / "run-000002.checkpoint").read_text())
    assert latest.text() == run(store_db, "audit", "checkpoint").stdout


def test_every_generated_key_signs_and_verifies_even_when_its_base64_holds_plus_signs() -> None:
    note = checkpoint.Checkpoint(origin="bflsync/store/x", size=7, root=bytes(range(32)))
    pairs = [checkpoint.generate_keys("k") for _ in range(40)]
    assert any("+" in verifier.split("+", 2)[2] for _, verifier in pairs)
    for signer, verifier in pairs:
        checkpoint.check_signature(checkpoint.parse_note(checkpoint.sign(note, signer).encode()), verifier)


def test_a_checkpoint_that_is_a_fifo_is_refused_without_waiting_for_a_writer(
    db_path: Path, tmp_path: Path
) -> None:
    """Reading it whole would block until something writes to it (or, for a device, never end)."""
    sync_days(str(db_path), 1)
    fifo = tmp_path / "cp.fifo"
    os.mkfifo(fifo)
    result = subprocess.run(
        [sys.executable, "-m", "bflsync", "--db", str(db_path), "audit", "verify", "--checkpoint", str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"bflsync: error: the checkpoint {str(fifo)!r} is not a regular file\n"


def test_a_checkpoint_over_the_size_limit_is_refused_with_one_line(db_path: Path, tmp_path: Path) -> None:
    sync_days(str(db_path), 1)
    huge = tmp_path / "huge.checkpoint"
    with huge.open("wb") as handle:
        handle.truncate(50_000_000)  # sparse: 50 MB that take no disk
    result = run(str(db_path), "audit", "verify", "--checkpoint", str(huge))
    assert result.exit_code == 2
    assert result.stderr == (
        f"bflsync: error: the checkpoint {str(huge)!r} is larger than {checkpoint.MAX_NOTE_BYTES} bytes:"
        " not a checkpoint\n"
    )


def test_keygen_writes_nothing_when_the_public_key_file_exists(tmp_path: Path) -> None:
    (tmp_path / "audit.key.pub").write_text("someone else's\n")
    result = CliRunner().invoke(cli, ["audit", "keygen", str(tmp_path / "audit.key")])
    assert result.exit_code == 2
    assert result.stderr == (
        f"bflsync: error: {str(tmp_path / 'audit.key.pub')!r} exists already: keygen never overwrites a key\n"
    )
    assert not (tmp_path / "audit.key").exists()
    assert (tmp_path / "audit.key.pub").read_text() == "someone else's\n"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_a_sign_key_other_users_can_reach_is_refused(
    db_path: Path, keys: tuple[Path, Path], mode: int
) -> None:
    """As ssh refuses an unprotected private key: whoever can read it can sign checkpoints."""
    sync_days(str(db_path), 1)
    keys[0].chmod(mode)
    result = run(str(db_path), "audit", "checkpoint", "--sign-key", str(keys[0]))
    assert result.exit_code == 2
    assert result.stderr == (
        f"bflsync: error: the signer key {str(keys[0])!r} is open to other users (mode {mode:04o}):"
        f" chmod 600 it\n"
    )
    assert result.stdout == ""


def test_checkpoint_dir_never_writes_through_a_link_planted_at_a_predictable_name(
    db_path: Path, tmp_path: Path
) -> None:
    """A checkpoint directory others can write to (a shared git work tree, /tmp): a link waiting
    where the next run's temporary file would go must not make the sync overwrite what it names."""
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (directory / ".run-000001.checkpoint.partial").symlink_to(victim)

    with MockBFL.serve(finetunes={"alpha": ALPHA}, api_key=KEY) as mock:
        result = CliRunner().invoke(
            cli,
            ["--db", str(db_path), "sync", "--base-url", mock.base_url, "--checkpoint-dir", str(directory)],
            env={"BFL_API_KEY": KEY},
        )

    assert result.exit_code == 0, result.output
    assert victim.read_text() == "keep me\n"
    written = (directory / "run-000001.checkpoint").read_text()
    assert written == run(str(db_path), "audit", "checkpoint").stdout
