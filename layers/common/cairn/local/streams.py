"""DynamoDB Streams to Lambda, locally: asynchronous, in order, batched, with partial-failure retries that
back off on the virtual clock.

Each event source mapping (a table's stream to one function) is its own consumer, as on AWS: when a batch
fails, that mapping retries it (from the first failed record, keeping the order) after a back-off, and the
records behind it wait; other mappings go on. While a mapping backs off its records count as idle work, so
`advance` moves the clock to the retry instead of the dispatcher spinning. After MaximumRetryAttempts, or
once the records are older than MaximumRecordAgeInSeconds, they go to the on-failure destination
(`failed`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cairn.local.clock import VirtualClock
from cairn.local.lambdas import FunctionHost

log = logging.getLogger("cairn.local")
FIRST_RETRY = timedelta(seconds=1)  # then doubling: Lambda retries a failing batch with exponential back-off
LONGEST_RETRY = timedelta(minutes=5)


@dataclass(eq=False)
class Mapping:
    table: str
    function: str
    batch_size: int = 100
    filters: list[dict[str, Any]] = field(default_factory=list)
    max_retries: int = -1  # MaximumRetryAttempts; -1: until the record is too old
    max_record_age: int = 86400  # MaximumRecordAgeInSeconds (-1: the stream's 24 hours)

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


@dataclass(eq=False)
class _Entry:
    """One record waiting for one mapping. It holds a unit of the clock's busy while it can be delivered."""

    mapping: Mapping
    record: dict[str, Any]
    written: datetime
    retries: int = 0


def backoff(retries: int) -> timedelta:
    """The wait before retry number `retries` (1, 2, ...): 1 s, 2 s, 4 s, ... at most 5 minutes."""
    return min(FIRST_RETRY * 2 ** (retries - 1), LONGEST_RETRY)


class StreamDispatcher:
    def __init__(self, clock: VirtualClock, host: FunctionHost) -> None:
        self.clock = clock
        self.host = host
        self.mappings: dict[str, list[Mapping]] = {}
        self.failed: list[dict[str, Any]] = []  # the on-failure destination, locally
        self.delivered = 0
        self.retried = 0  # batches retried after a back-off
        self._queue: deque[_Entry] = deque()  # every mapping's records, in the order they were written
        self._backing_off: set[Mapping] = set()
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
        mappings = [m for m in self.mappings.get(table, ()) if m.accepts(record)]
        if not mappings:
            return
        now = self.clock.now()
        with self._cv:
            for mapping in mappings:
                self._queue.append(_Entry(mapping, record, now))
                if mapping not in self._backing_off:
                    self.clock.enter()
            self._cv.notify()

    # -- the dispatcher thread -----------------------------------------------------------------
    def _take(self) -> list[_Entry] | None:
        """The next batch: the oldest deliverable record's table, and the records of that table after it
        (up to the smallest batch size of its mappings), skipping mappings that back off."""
        with self._cv:
            while not self._stopped and not any(e.mapping not in self._backing_off for e in self._queue):
                self._cv.wait()
            if self._stopped:
                return None
            table = next(e for e in self._queue if e.mapping not in self._backing_off).mapping.table
            limit = min(m.batch_size for m in self.mappings[table])
            taken: list[_Entry] = []
            records: set[int] = set()
            kept: deque[_Entry] = deque()
            for entry in self._queue:
                deliverable = entry.mapping not in self._backing_off
                if taken and deliverable and entry.mapping.table != table:
                    limit = 0  # another table's record: this batch ends before it
                if (
                    deliverable
                    and entry.mapping.table == table
                    and (len(records) < limit or id(entry.record) in records)
                ):
                    taken.append(entry)
                    records.add(id(entry.record))
                else:
                    kept.append(entry)
            self._queue = kept
            return taken

    def _loop(self) -> None:
        while (taken := self._take()) is not None:
            try:
                for mapping in self.mappings[taken[0].mapping.table]:
                    entries = [e for e in taken if e.mapping is mapping]
                    if entries:
                        self._invoke(mapping, entries)
            except Exception:  # pragma: no cover - never let the dispatcher die
                log.exception("stream delivery failed")
            finally:
                for _ in taken:
                    self.clock.leave()

    def _invoke(self, mapping: Mapping, entries: list[_Entry]) -> None:
        records = [e.record for e in entries]
        result = self.host.call_safely(mapping.function, {"Records": records})
        self.delivered += len(records)
        if result is None:  # the whole batch failed: retry it
            first = 0
        else:
            failures = {f.get("itemIdentifier") for f in result.get("batchItemFailures", [])}
            if not failures:
                return
            # Lambda retries from the first failed record on (keeping the order per shard).
            first = next(i for i, r in enumerate(records) if r["dynamodb"]["SequenceNumber"] in failures)
        pending = entries[first:]
        retries = max(e.retries for e in pending) + 1
        now = self.clock.now()
        oldest = min(e.written for e in pending)
        age = mapping.max_record_age if mapping.max_record_age >= 0 else 86400
        if (0 <= mapping.max_retries < retries) or now + backoff(retries) - oldest > timedelta(seconds=age):
            self.failed.extend(e.record for e in pending)
            log.error("%d stream records went to the on-failure destination", len(pending))
            return
        self._back_off(mapping, pending, retries, now + backoff(retries))

    def _back_off(self, mapping: Mapping, pending: list[_Entry], retries: int, due: datetime) -> None:
        """Put the batch back at the head of the mapping's records and retry it at `due` (virtual time).
        Until then the mapping's records hold no busy units; the clock's timer takes them back."""
        with self._cv:
            self.clock.call_at(due, lambda _at: self._resume(mapping))
            self._backing_off.add(mapping)
            for entry in pending:
                entry.retries = retries
            self._queue = deque([*pending, *self._queue])
            for entry in self._queue:
                if entry.mapping is mapping and entry not in pending:
                    self.clock.leave()  # queued behind the failed batch: not deliverable now
        # The batch's own units are given back by _loop once the whole batch is done.

    def _resume(self, mapping: Mapping) -> None:
        with self._cv:
            self._backing_off.discard(mapping)
            for entry in self._queue:
                if entry.mapping is mapping:
                    self.clock.enter()
            self.retried += 1
            self._cv.notify()
