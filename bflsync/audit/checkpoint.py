"""Checkpoints of the hash chain, as C2SP ``tlog-checkpoint`` notes, optionally signed (C2SP ``signed-note``).

A checkpoint is three lines: the origin (the store's ``chain_origin``, a random name made when the
chain was), the chain's size in decimal, and the head hash in standard base64::

    bflsync/store/5f0c…
    1234
    q8Uo5zv5cQ0m0JrUdZ4RWz2rDdbVQ1i9ZKcB7ogCT4s=

Kept somewhere the store's writers cannot reach, it proves later that the chain still begins with
those ``size`` rows: a rewritten history no longer hashes to that head, however carefully every
``row_hash`` was recomputed. The head of an empty chain is 32 zero bytes.

Signed, the note is followed by an empty line and one signature line per key,
``— NAME BASE64(key id || Ed25519 signature)``, in the format of Go's ``golang.org/x/mod/sumdb/note``
(and so of ``sigsum``, ``litetlog`` and friends): a key id is the first four bytes of
SHA-256(NAME, newline, 0x01, public key); a verifier key is ``NAME+HEXID+BASE64(0x01 || public key)``
and a signer key ``PRIVATE+KEY+NAME+HEXID+BASE64(0x01 || seed)``. Ed25519 comes from the
``cryptography`` library (the ``audit`` extra), imported only to sign, verify or make keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bflsync.errors import AuditError, InputError
from bflsync.store import chain

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from sqlalchemy.engine import Connection

ED25519 = 0x01
SIGNATURE_DASH = "\u2014"  # the em dash that starts a signature line
MAX_NOTE_BYTES = 1_000_000


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain's ``size`` and head hash (``root``) for one store (``origin``)."""

    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        """The checkpoint body: origin, size and base64 head, each line ending in a newline."""
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode('ascii')}\n"


def current_checkpoint(connection: Connection) -> Checkpoint:
    """The chain as it stands in this transaction: this store's origin, its size and head hash."""
    size, root = chain.head(connection)
    return Checkpoint(origin=chain.origin(connection), size=size, root=root)


@dataclass(frozen=True, slots=True)
class SignedNote:
    """A note's text and its signature lines (NAME, key id, signature)."""

    text: str
    signatures: tuple[tuple[str, int, bytes], ...]


def parse_note(data: bytes) -> SignedNote:
    """Split a (possibly signed) note into its text and signatures; refuse what is not a note."""
    if len(data) > MAX_NOTE_BYTES:
        raise InputError("the checkpoint file is too large to be a checkpoint")
    try:
        whole = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the checkpoint file is not UTF-8 text") from None
    if not whole.endswith("\n"):
        raise InputError("the checkpoint file does not end with a newline")
    text, separator, tail = whole.rpartition("\n\n")
    if not separator or not tail.startswith(SIGNATURE_DASH):
        return SignedNote(text=whole, signatures=())
    signatures = []
    for line in tail.splitlines():
        signatures.append(_parse_signature_line(line))
    return SignedNote(text=text + "\n", signatures=tuple(signatures))


def _parse_signature_line(line: str) -> tuple[str, int, bytes]:
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != SIGNATURE_DASH:
        raise InputError(f"the checkpoint has a malformed signature line: {line[:80]!r}")
    blob = _b64(parts[2], "a signature")
    if len(blob) < 5:
        raise InputError("the checkpoint has a signature too short to hold a key id")
    (key_id,) = struct.unpack(">I", blob[:4])
    return parts[1], key_id, blob[4:]


def parse_checkpoint(text: str) -> Checkpoint:
    """The checkpoint in a note's text: origin, size and base64 hash lines (extension lines ignored)."""
    lines = text.split("\n")[:-1]
    if len(lines) < 3 or not lines[0]:
        raise InputError("not a checkpoint: expected an origin line, a size line and a hash line")
    origin, size_text, root_text = lines[:3]
    if not size_text.isascii() or not size_text.isdigit() or (size_text.startswith("0") and size_text != "0"):
        raise InputError(f"not a checkpoint: the size line {size_text[:40]!r} is not a decimal number")
    root = _b64(root_text, "the checkpoint's hash")
    if len(root) != 32:
        raise InputError("not a checkpoint: the hash is not 32 bytes (SHA-256)")
    return Checkpoint(origin=origin, size=int(size_text), root=root)


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InputError(f"{what} is not standard base64") from None


def key_id(name: str, public_key: bytes) -> int:
    """The four-byte id of a key: the first bytes of SHA-256(name, newline, algorithm, key)."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + public_key).digest()
    value: int = struct.unpack(">I", digest[:4])[0]
    return value


def _check_key_name(name: str) -> str:
    if not name or any(ch.isspace() or ch == "+" for ch in name):
        raise InputError(f"a key name needs at least one character and no spaces or '+': {name!r}")
    return name


def _ed25519() -> type[Ed25519PrivateKey]:
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        raise InputError(
            "signing and checking signatures need the cryptography library: pip install 'bflsync[audit]'"
        ) from None
    return Ed25519PrivateKey


def generate_keys(name: str) -> tuple[str, str]:
    """A new Ed25519 signer key and its verifier key, in the note formats (see the module docstring)."""
    from cryptography.hazmat.primitives import serialization

    private = _ed25519().generate()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    name = _check_key_name(name)
    hex_id = f"{key_id(name, public):08x}"
    signer = f"PRIVATE+KEY+{name}+{hex_id}+{base64.b64encode(bytes([ED25519]) + seed).decode('ascii')}"
    verifier = f"{name}+{hex_id}+{base64.b64encode(bytes([ED25519]) + public).decode('ascii')}"
    return signer, verifier


def _parse_key(text: str, *, private: bool) -> tuple[str, int, bytes]:
    # Base64 may hold '+' too: only the leading fields are split off, as Go's note package does.
    fields = text.strip().split("+", 4 if private else 2)
    if private:
        if len(fields) != 5 or fields[:2] != ["PRIVATE", "KEY"]:
            raise InputError("not a signer key: expected PRIVATE+KEY+NAME+ID+KEY (bflsync audit keygen)")
        fields = fields[2:]
    elif len(fields) != 3:
        raise InputError("not a verifier key: expected NAME+ID+KEY (the .pub file of bflsync audit keygen)")
    name, hex_id, blob_text = fields
    blob = _b64(blob_text, "the key")
    if len(blob) != 33 or blob[0] != ED25519:
        raise InputError("the key is not an Ed25519 key")
    try:
        stated = int(hex_id, 16)
    except ValueError:
        raise InputError("the key's id is not hexadecimal") from None
    return _check_key_name(name), stated, blob[1:]


def _private_key(text: str) -> tuple[str, int, Ed25519PrivateKey]:
    from cryptography.hazmat.primitives import serialization

    name, stated, seed = _parse_key(text, private=True)
    private = _ed25519().from_private_bytes(seed)
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if key_id(name, public) != stated:
        raise InputError("the signer key's id does not match its name and key")
    return name, stated, private


def _public_key(text: str) -> tuple[str, int, Ed25519PublicKey]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    _ed25519()
    name, stated, public = _parse_key(text, private=False)
    if key_id(name, public) != stated:
        raise InputError("the verifier key's id does not match its name and key")
    return name, stated, Ed25519PublicKey.from_public_bytes(public)


def sign(checkpoint: Checkpoint, signer_key: str) -> str:
    """The checkpoint as a signed note: its text, an empty line, one signature line."""
    name, stated, private = _private_key(signer_key)
    text = checkpoint.text()
    signature = private.sign(text.encode("utf-8"))
    blob = base64.b64encode(struct.pack(">I", stated) + signature).decode("ascii")
    return f"{text}\n{SIGNATURE_DASH} {name} {blob}\n"


def check_signature(note: SignedNote, verifier_key: str) -> None:
    """Raise AuditError unless ``note`` carries a good signature by ``verifier_key``."""
    from cryptography.exceptions import InvalidSignature

    name, stated, public = _public_key(verifier_key)
    mine = [signature for key, kid, signature in note.signatures if key == name and kid == stated]
    if not mine:
        raise AuditError(f"the checkpoint carries no signature by key {name!r}")
    for signature in mine:
        try:
            public.verify(signature, note.text.encode("utf-8"))
        except InvalidSignature:
            continue
        return
    raise AuditError(f"the checkpoint's signature by key {name!r} is not valid: the checkpoint was altered")
