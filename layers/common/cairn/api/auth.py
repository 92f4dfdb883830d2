"""Who is calling: bearer keys (write or secret), checked in the handler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from cairn.domain.errors import Forbidden, Unauthorized
from cairn.domain.keys import ApiKey, KeyKind


@dataclass
class Auth:
    app: APIGatewayHttpResolver
    lookup: Callable[[str], ApiKey | None]

    def key(self, *, write_ok: bool) -> ApiKey:
        """The caller's key; 401 without a valid one, 403 for a write key on a secret-only route."""
        header = self.app.current_event.headers.get("authorization") or ""
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise Unauthorized("send `Authorization: Bearer <key>`")
        key = self.lookup(raw.strip())
        if key is None or key.revoked:
            raise Unauthorized("unknown or revoked key")
        if key.kind is KeyKind.WRITE and not write_ok:
            raise Forbidden("a write key may only call track, identify and batch")
        return key

    def secret(self) -> ApiKey:
        return self.key(write_ok=False)
