"""Which key synced an account, recorded without ever storing the key or a plain hash of it.

The fingerprint is HMAC-SHA256 of the key under a random secret that each store generates once
(migration 0003_accounts) and keeps in ``store_meta``, cut to 16 hex digits. Without the store's
secret it cannot be checked against a guessed key, and the same key gives unrelated fingerprints
in two stores; 64 bits are plenty to notice that a different key syncs under one label.
"""

from __future__ import annotations

import hashlib
import hmac

from bflsync.config import Secret

FINGERPRINT_HEX_DIGITS = 16


def key_fingerprint(api_key: Secret, *, secret: str) -> str:
    """The first 16 hex digits of HMAC-SHA256(secret, key)."""
    digest = hmac.new(secret.encode("utf-8"), api_key.reveal().encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:FINGERPRINT_HEX_DIGITS]
