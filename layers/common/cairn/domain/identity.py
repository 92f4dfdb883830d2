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
