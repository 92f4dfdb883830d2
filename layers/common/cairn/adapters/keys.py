"""API keys in the keys table, looked up through a short in-memory cache (revocation within 60 s)."""

from __future__ import annotations

import time
from collections.abc import Callable

from pynamodb.exceptions import DoesNotExist

from cairn.adapters.tables import KeyItem
from cairn.domain.keys import ApiKey, KeyKind, generate, hash_key


class KeyStore:
    def __init__(self, ttl_seconds: float = 60.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self.monotonic = monotonic
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    def lookup(self, raw: str) -> ApiKey | None:
        """The key for a raw bearer token, or None; at most one read per key a minute."""
        digest = hash_key(raw)
        hit = self._cache.get(digest)
        now = self.monotonic()
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        try:
            item = KeyItem.get(digest)
            key: ApiKey | None = ApiKey(digest, KeyKind(item.kind), item.name, bool(item.revoked))
        except DoesNotExist:
            key = None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, key)
        return key

    @staticmethod
    def create(kind: KeyKind, name: str = "", raw: str | None = None) -> str:
        """Store a new key and return it in clear: the only time it is ever shown."""
        raw = raw or generate(kind)
        KeyItem(hash_key(raw), kind=kind.value, name=name, revoked=0).save()
        return raw

    @staticmethod
    def revoke(raw_or_hash: str) -> bool:
        digest = raw_or_hash if len(raw_or_hash) == 64 else hash_key(raw_or_hash)
        try:
            item = KeyItem.get(digest)
        except DoesNotExist:
            return False
        item.update(actions=[KeyItem.revoked.set(1)])
        return True
