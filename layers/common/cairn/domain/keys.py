"""API keys: generated once, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum


class KeyKind(StrEnum):
    WRITE = "write"
    SECRET = "secret"


PREFIX = {KeyKind.WRITE: "cw_", KeyKind.SECRET: "cs_"}


@dataclass(frozen=True)
class ApiKey:
    key_hash: str
    kind: KeyKind
    name: str = ""
    revoked: bool = False

    @property
    def is_secret(self) -> bool:
        return self.kind is KeyKind.SECRET and not self.revoked


def generate(kind: KeyKind) -> str:
    return PREFIX[kind] + secrets.token_urlsafe(32)


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def kind_of(raw: str) -> KeyKind | None:
    for kind, prefix in PREFIX.items():
        if raw.startswith(prefix):
            return kind
    return None
