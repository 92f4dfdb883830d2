"""Token buckets, pure: the per-key rate limit each trigger instance keeps in memory."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """`rate` tokens per second up to `burst`; time is passed in (monotonic seconds), never read."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a bucket needs rate > 0 and burst >= 1")
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take `cost` tokens: 0.0 if allowed, else the seconds to wait before asking again."""
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


def retry_after_header(wait: float) -> int:
    """Retry-After is whole seconds, at least 1."""
    return max(1, math.ceil(wait))


class Buckets:
    """One bucket per key, the least recently used forgotten past `capacity` (memory stays bounded)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, *, rate: float, burst: float, now: float, cost: float = 1.0) -> float:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None or bucket.rate != rate or bucket.burst != burst:
                bucket = TokenBucket(rate, burst, updated=now)
                self._buckets[key] = bucket
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
            return bucket.take(now, cost)
