"""API keys in the keys table, looked up through a short in-memory cache (revocation within 60 s)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pynamodb.exceptions import DoesNotExist

from cairn.adapters import clock
from cairn.adapters.tables import KeyItem
from cairn.domain.keys import ApiKey, KeyKind, generate, hash_key, kind_of

MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class KeyInfo:
    """What `cairn keys list` shows: never the key, only a prefix of its hash."""

    key_hash: str
    kind: str
    name: str
    revoked: bool
    created_at: datetime | None


class KeyStore:
    def __init__(
        self,
        ttl_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        capacity: int = 10_000,
    ) -> None:
        self.ttl = ttl_seconds
        self.monotonic = monotonic
        self.capacity = capacity
        self._cache: OrderedDict[str, tuple[float, ApiKey | None]] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, raw: str) -> ApiKey | None:
        """The key for a raw bearer token, or None; at most one read per key a minute.

        A token that cannot be a Cairn key (wrong prefix, too long) is refused without a read; unknown keys
        are cached too, so guessing costs no more reads than using a key."""
        if len(raw) > MAX_KEY_LENGTH or kind_of(raw) is None:
            return None
        digest = hash_key(raw)
        now = self.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
            if hit is not None and now - hit[0] < self.ttl:
                self._cache.move_to_end(digest)
                return hit[1]
        try:
            item = KeyItem.get(digest)
            key: ApiKey | None = ApiKey(digest, KeyKind(item.kind), item.name, bool(item.revoked))
        except DoesNotExist:
            key = None
        with self._lock:
            self._cache[digest] = (now, key)
            self._cache.move_to_end(digest)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return key

    @staticmethod
    def create(kind: KeyKind, name: str = "", raw: str | None = None) -> str:
        """Store a new key and return it in clear: the only time it is ever shown."""
        raw = raw or generate(kind)
        KeyItem(hash_key(raw), kind=kind.value, name=name, revoked=0, created_at=clock.now()).save()
        return raw

    @staticmethod
    def revoke(raw_or_hash: str) -> bool:
        """Revoke by the key itself, its hash, or a unique prefix of its hash (as `keys list` shows it)."""
        digest = raw_or_hash if len(raw_or_hash) == 64 else hash_key(raw_or_hash)
        if kind_of(raw_or_hash) is None and len(raw_or_hash) < 64:
            matches = [k.key_hash for k in KeyStore.list() if k.key_hash.startswith(raw_or_hash.lower())]
            if len(matches) != 1:
                return False
            digest = matches[0]
        try:
            item = KeyItem.get(digest)
        except DoesNotExist:
            return False
        item.update(actions=[KeyItem.revoked.set(1)])
        return True

    @staticmethod
    def list() -> list[KeyInfo]:
        keys = [KeyInfo(i.key_hash, i.kind, i.name, bool(i.revoked), i.created_at) for i in KeyItem.scan()]
        return sorted(keys, key=lambda k: (k.created_at is None, k.created_at or datetime.min, k.key_hash))
