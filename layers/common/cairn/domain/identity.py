"""Opaque contact ids derived from user and anonymous ids: one write per event needs no lookup."""

from __future__ import annotations

import base64
import hashlib
import hmac


def _digest(secret: bytes, kind: str, value: str) -> str:
    mac = hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).digest()
    return base64.b32encode(mac).decode().lower().rstrip("=")[:25]


def cid_for_user(secret: bytes, user_id: str) -> str:
    return "c" + _digest(secret, "user", user_id)


def cid_for_anonymous(secret: bytes, anonymous_id: str) -> str:
    return "a" + _digest(secret, "anon", anonymous_id)


def message_key(*parts: str) -> str:
    """A deterministic id for a message (one per run and step), safe for execution names and tags."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def hash_secret_value(value: str) -> str:
    """A stable hash of a personal value (email, phone) for lookups and tombstones."""
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()


def identity_secret(stack_secret: bytes) -> bytes:
    """The key a site's back end signs user ids with (`userIdHash`): derived, so the stack secret itself
    (which derives contact ids and link keys) never leaves the stack.
    `cairn keys identity-secret` prints it."""
    return hmac.new(stack_secret, b"cairn-user-id-hash", hashlib.sha256).digest()


def user_id_hash(stack_secret: bytes, user_id: str) -> str:
    """What a browser sends as `userIdHash`: hex HMAC-SHA256 of the user id under the identity secret."""
    return hmac.new(identity_secret(stack_secret), user_id.encode(), hashlib.sha256).hexdigest()


def user_id_hash_ok(stack_secret: bytes, user_id: str, claimed: str) -> bool:
    return hmac.compare_digest(user_id_hash(stack_secret, user_id), claimed.strip().lower())


def identity_key(kind: str, value: str) -> str:
    """The identities table's key: `user#`, `anon#` take the id; `email#`, `phone#`, `tomb#` a hash."""
    if kind in ("email", "phone", "tomb"):
        return f"{kind}#{hash_secret_value(value)}"
    return f"{kind}#{value}"
