"""Who is calling: the key the gate admitted the request with (cairn.api.gate checks it before the
body is parsed). Route modules call `auth.key(...)` or `auth.secret()` to get it."""

from __future__ import annotations

from dataclasses import dataclass

from cairn.api.gate import Gate
from cairn.domain.errors import Forbidden, Unauthorized
from cairn.domain.keys import ApiKey, KeyKind


@dataclass
class Auth:
    gate: Gate

    def key(self, *, write_ok: bool) -> ApiKey:
        """The caller's key; 401 without one, 403 for a write key on a secret-only route."""
        key = self.gate.key
        if key is None:
            raise Unauthorized("send `Authorization: Bearer <key>`")
        if key.kind is KeyKind.WRITE and not write_ok:
            raise Forbidden("a write key may only call track, identify and batch")
        return key

    def secret(self) -> ApiKey:
        return self.key(write_ok=False)
