"""HMAC-signed tokens for links in messages (unsubscribe, double opt-in confirmation).

Format (URL safe, no padding, three dot-separated parts)::

    <key id>.<base64url(JSON {"p": payload, "e"?: expiry epoch seconds})>.<base64url(HMAC-SHA256)>

The HMAC covers ``purpose``, the key id and the encoded body, so a token minted for one
purpose (say ``"confirm"``) never verifies for another (``"unsubscribe"``). Rotation: sign
with the newest key; keep older keys in the mapping given to :func:`verify` for a grace
period (at least as long as the links you sent must keep working), then drop them.
Tokens are signed, not encrypted: keep personal data out of payloads (use the ``cid``).

Key ids in a stack (:class:`Keyring`): ``k1`` is the stack secret itself (the secret that also derives
contact ids, so it never rotates); ``k2``, ``k3``, ... are derived from it,
``HMAC-SHA256(stack secret, "cairn-link-key:" + key id)``. ``settings.yaml`` names the key that signs
(``link_keys.current``) and the retired ones that still verify until a date (``link_keys.retired``):
rotating to ``k2`` with ``retired: {k1: <date>}`` invalidates every ``k1`` link after that date while
links already in inboxes keep working until then. A retired key absent from the map verifies nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, cast

__all__ = [
    "LINK_BASE_URL",
    "MAX_TOKEN_LENGTH",
    "MIN_SECRET_BYTES",
    "BadToken",
    "BadTokenReason",
    "Keyring",
    "derive_key",
    "sign",
    "verify",
]

BadTokenReason = Literal["malformed", "signature", "expired"]
MIN_SECRET_BYTES = 16
MAX_TOKEN_LENGTH = 4096
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_B64_RE = re.compile(r"^[A-Za-z0-9_-]*$")


class BadToken(Exception):
    """A token that must not be honoured; ``reason`` is "malformed", "signature" or "expired"."""

    def __init__(self, reason: BadTokenReason) -> None:
        super().__init__(reason)
        self.reason: BadTokenReason = reason


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    """Strict: only the URL-safe alphabet, and only the canonical encoding (no spare bits set)."""
    if not _B64_RE.match(text) or len(text) % 4 == 1:
        raise BadToken("malformed")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadToken("malformed") from None
    if _b64encode(data) != text:
        raise BadToken("malformed")
    return data


def _mac(secret: bytes, purpose: str, signed: str) -> str:
    message = purpose.encode("utf-8") + b"\x00" + signed.encode("ascii")
    return _b64encode(hmac.new(secret, message, hashlib.sha256).digest())


def _epoch(now: datetime) -> float:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.timestamp()


def sign(
    payload: Mapping[str, str | int],
    secret: bytes,
    *,
    now: datetime,
    ttl: timedelta | None = None,
    key_id: str = "k1",
    purpose: str = "",
) -> str:
    """A compact token carrying ``payload`` (string keys; string or integer values).

    ``ttl`` None means the token does not expire. ``purpose`` is bound into the signature and
    must be given again to :func:`verify`.
    """
    if not isinstance(secret, bytes | bytearray) or len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the secret must be at least {MIN_SECRET_BYTES} bytes")
    if not _KEY_ID_RE.match(key_id):
        raise ValueError("key_id uses letters, digits, '-' and '_' (at most 32)")
    for key, value in payload.items():
        if not isinstance(key, str) or isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("token payloads map strings to strings or integers")
    body: dict[str, Any] = {"p": dict(payload)}
    if ttl is not None:
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        body["e"] = int(_epoch(now) + ttl.total_seconds())
    else:
        _epoch(now)
    encoded = _b64encode(json.dumps(body, separators=(",", ":"), sort_keys=True).encode("ascii"))
    signed = f"{key_id}.{encoded}"
    return f"{signed}.{_mac(bytes(secret), purpose, signed)}"


def verify(
    token: str,
    secrets: Mapping[str, bytes],
    *,
    now: datetime,
    purpose: str = "",
) -> dict[str, Any]:
    """The payload of a valid token, else :class:`BadToken`.

    ``secrets`` maps key ids to secrets (current and still-accepted older ones). The signature
    is checked (in constant time) before anything in the body is read; expiry after that.
    """
    current = _epoch(now)
    if not isinstance(token, str) or not token.isascii() or len(token) > MAX_TOKEN_LENGTH:
        raise BadToken("malformed")
    parts = token.split(".")
    if len(parts) != 3:
        raise BadToken("malformed")
    key_id, encoded, signature = parts
    if not _KEY_ID_RE.match(key_id) or not _B64_RE.match(signature):
        raise BadToken("malformed")
    secret = secrets.get(key_id)
    if secret is None:
        raise BadToken("signature")  # unknown or retired key
    expected = _mac(bytes(secret), purpose, f"{key_id}.{encoded}")
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        raise BadToken("signature")
    try:
        body = json.loads(_b64decode(encoded))
    except (ValueError, UnicodeDecodeError):
        raise BadToken("malformed") from None
    if not isinstance(body, dict) or not isinstance(body.get("p"), dict):
        raise BadToken("malformed")
    expiry = body.get("e")
    if expiry is not None:
        if isinstance(expiry, bool) or not isinstance(expiry, int):
            raise BadToken("malformed")
        if current >= expiry:
            raise BadToken("expired")
    return cast(dict[str, Any], body["p"])


#: The base URL of links made while serving an HTTP request (the API knows its own address; a function
#: without a configured public URL does not).
LINK_BASE_URL: ContextVar[str | None] = ContextVar("LINK_BASE_URL", default=None)

_STACK_KEY_ID_RE = re.compile(r"^k[1-9][0-9]{0,5}$")


def derive_key(stack_secret: bytes, key_id: str) -> bytes:
    """The link key of `key_id`: ``k1`` is the stack secret; later ids are HMACs of it."""
    if not _STACK_KEY_ID_RE.match(key_id):
        raise ValueError("stack key ids are k1, k2, ...")
    if key_id == "k1":
        return bytes(stack_secret)
    return hmac.new(bytes(stack_secret), b"cairn-link-key:" + key_id.encode("ascii"), hashlib.sha256).digest()


class Keyring:
    """The keys a stack signs and verifies links with: one current key, and retired keys that verify
    until the end of their date (UTC) — the grace period of links already sent."""

    def __init__(self, stack_secret: bytes, *, current: str = "k1", retired: Mapping[str, date] = {}) -> None:
        self.current = current
        self._current_key = derive_key(stack_secret, current)
        self._retired = {kid: (derive_key(stack_secret, kid), until) for kid, until in retired.items()}

    def sign(
        self,
        payload: Mapping[str, str | int],
        *,
        now: datetime,
        ttl: timedelta | None = None,
        purpose: str,
    ) -> str:
        return sign(payload, self._current_key, now=now, ttl=ttl, key_id=self.current, purpose=purpose)

    def keys(self, now: datetime) -> dict[str, bytes]:
        """Key ids that verify at `now`."""
        _epoch(now)
        today = now.astimezone(UTC).date()
        accepted = {kid: key for kid, (key, until) in self._retired.items() if today <= until}
        accepted[self.current] = self._current_key
        return accepted

    def verify(self, token: str, *, now: datetime, purpose: str) -> dict[str, Any]:
        return verify(token, self.keys(now), now=now, purpose=purpose)
