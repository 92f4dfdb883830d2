"""DynamoDB Streams to Lambda, locally: asynchronous, in order, batched, with partial-failure retries."""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cairn.local.clock import VirtualClock
from cairn.local.lambdas import FunctionHost

log = logging.getLogger("cairn.local")
MAX_ATTEMPTS = 3


@dataclass
class Mapping:
    table: str
    function: str
    batch_size: int = 100
    filters: list[dict[str, Any]] = field(default_factory=list)

    def accepts(self, record: dict[str, Any]) -> bool:
        return not self.filters or any(_matches(f, record) for f in self.filters)


def _matches(pattern: Any, value: Any) -> bool:
    """EventBridge-style filter patterns as Lambda applies them (the subset Cairn uses: exact values)."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and _matches(v, value[k]) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        return any(_matches(p, value) if isinstance(p, dict) else p == value for p in pattern)
    return bool(pattern == value)


class StreamDispatcher:
    def __init__(self, clock: VirtualClock, host: FunctionHost) -> None:
        self.clock = clock
        self.host = host
        self.mappings: dict[str, list[Mapping]] = {}
        self.failed: list[dict[str, Any]] = []  # the on-failure destination, locally
        self.delivered = 0
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="cairn-streams", daemon=True)
        self._stopped = False

    def add_mapping(self, mapping: Mapping) -> None:
        self.mappings.setdefault(mapping.table, []).append(mapping)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    def deliver(self, table: str, record: dict[str, Any]) -> None:
        if table not in self.mappings:
            return
        self.clock.enter()
        with self._cv:
            self._queue.append((table, record))
            self._cv.notify()

    def _take(self) -> tuple[str, list[dict[str, Any]]] | None:
        with self._cv:
            while not self._queue and not self._stopped:
                self._cv.wait()
            if self._stopped:
                return None
            table, first = self._queue.popleft()
            batch = [first]
            limit = min(m.batch_size for m in self.mappings[table])
            while self._queue and self._queue[0][0] == table and len(batch) < limit:
                batch.append(self._queue.popleft()[1])
            return table, batch

    def _loop(self) -> None:
        while (taken := self._take()) is not None:
            table, batch = taken
            try:
                for mapping in self.mappings[table]:
                    records = [r for r in batch if mapping.accepts(r)]
                    if records:
                        self._invoke(mapping, records)
            except Exception:  # pragma: no cover - never let the dispatcher die
                log.exception("stream delivery failed")
            finally:
                for _ in batch:
                    self.clock.leave()

    def _invoke(self, mapping: Mapping, records: list[dict[str, Any]]) -> None:
        pending = records
        for _attempt in range(MAX_ATTEMPTS):
            result = self.host.call_safely(mapping.function, {"Records": pending})
            self.delivered += len(pending)
            if result is None:  # the whole batch failed: retry it
                continue
            failures = {f.get("itemIdentifier") for f in result.get("batchItemFailures", [])}
            if not failures:
                return
            # Lambda retries from the first failed record on (keeping the order per shard).
            first = next(i for i, r in enumerate(pending) if r["dynamodb"]["SequenceNumber"] in failures)
            pending = pending[first:]
        self.failed.extend(pending)
        log.error("%d stream records went to the on-failure destination", len(pending))
