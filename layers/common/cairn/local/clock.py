"""A virtual clock for local mode, and the accounting that tells when the whole system is idle.

Every piece of work that runs in a thread (an execution, a task, a stream delivery) holds a unit of
`busy` while it runs. A thread that waits for virtual time or for a callback *parks*: it gives its unit
back until whoever wakes it (the clock, a SendTaskSuccess, a finishing task) takes one again on its
behalf, before the wake-up can be observed. So `busy == 0` means nothing can happen until the clock moves.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta


@dataclass(order=True)
class _Timer:
    due: datetime
    seq: int
    park: Park = field(compare=False)
    counted: bool = field(compare=False, default=True)


class _Call:
    """A park-like entry that runs a callback (a schedule firing) in its own thread when woken."""

    def __init__(self, clock: VirtualClock, callback: Callable[[datetime], None], due: datetime) -> None:
        self.clock = clock
        self.callback = callback
        self.due = due
        self.parked = True
        self.timed_out = False

    def wake(self, *, timed_out: bool = False) -> bool:
        with self.clock.lock:
            if not self.parked:
                return False
            self.parked = False
            self.clock._busy += 1

        def run() -> None:
            try:
                self.callback(self.due)
            finally:
                self.clock.leave()

        threading.Thread(target=run, name="cairn-schedule", daemon=True).start()
        return True


class Park:
    """One parked thread: woken once, by an event or by its timer."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.parked = True
        self.timed_out = False
        self.event = threading.Event()

    def wake(self, *, timed_out: bool = False) -> bool:
        with self.clock.lock:
            if not self.parked:
                return False
            self.parked = False
            self.timed_out = timed_out
            self.clock._busy += 1
        self.event.set()
        return True


class VirtualClock:
    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime.now(UTC).replace(microsecond=0)
        self.lock = threading.Condition()
        self._busy = 0
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self.fired = 0

    # -- the clock ---------------------------------------------------------------------------
    def now(self) -> datetime:
        with self.lock:
            return self._now

    # -- busy accounting ---------------------------------------------------------------------
    def enter(self) -> None:
        with self.lock:
            self._busy += 1

    def leave(self) -> None:
        with self.lock:
            self._busy -= 1
            if self._busy <= 0:
                self.lock.notify_all()

    @property
    def busy(self) -> int:
        with self.lock:
            return self._busy

    def park(self, seconds: float | None, *, counted: bool = True) -> Park:
        """Give back this thread's unit; wake on `Park.wake` or after `seconds` of virtual time."""
        park = Park(self)
        with self.lock:
            if seconds is not None:
                heapq.heappush(
                    self._timers,
                    _Timer(self._now + timedelta(seconds=max(seconds, 0)), next(self._seq), park, counted),
                )
            self._busy -= 1
            if self._busy <= 0:
                self.lock.notify_all()
        return park

    def call_at(self, due: datetime, callback: Callable[[datetime], None]) -> None:
        """Run `callback(due)` in a new thread when the clock reaches `due` (counted as fired)."""
        with self.lock:
            entry = _Call(self, callback, due)
            heapq.heappush(self._timers, _Timer(due, next(self._seq), entry, True))  # type: ignore[arg-type]

    def wait(self, park: Park) -> bool:
        """Block until woken; True if woken by the timer."""
        park.event.wait()
        return park.timed_out

    def sleep(self, seconds: float, *, counted: bool = True) -> bool:
        return self.wait(self.park(seconds, counted=counted))

    # -- driving time ------------------------------------------------------------------------
    def settle(self, budget: float = 60.0) -> bool:
        """Wait (in real time) until nothing is running; False if the budget ran out first."""
        # No grace period: whoever wakes or starts work takes its unit first (Park.wake, _Call.wake, enter),
        # so `busy == 0` is final until the clock moves.
        deadline = time.monotonic() + budget
        with self.lock:
            while self._busy > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.lock.wait(min(remaining, 0.05))
            return True

    def advance(self, to: datetime, budget: float = 60.0) -> tuple[int, bool]:
        """Move time to `to`, firing every timer that falls due in time order, settling after each."""
        deadline = time.monotonic() + budget
        fired = 0
        if not self.settle(budget):
            return fired, False
        while True:
            with self.lock:
                while self._timers and not self._timers[0].park.parked:
                    heapq.heappop(self._timers)  # already woken by an event
                if not self._timers or self._timers[0].due > to:
                    self._now = max(self._now, to)
                    break
                timer = heapq.heappop(self._timers)
                self._now = max(self._now, timer.due)
            if timer.park.wake(timed_out=True) and timer.counted:
                fired += 1
            if not self.settle(max(deadline - time.monotonic(), 0.0)):
                return fired, False
        idle = self.settle(max(deadline - time.monotonic(), 0.0))
        self.fired += fired
        return fired, idle

    def pending(self) -> list[datetime]:
        with self.lock:
            return sorted(t.due for t in self._timers if t.park.parked)
