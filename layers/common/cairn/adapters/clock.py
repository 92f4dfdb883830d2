"""The one clock every "now" in Cairn comes from; local mode installs a virtual one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


_clock: Clock = SystemClock()


def now() -> datetime:
    """The current instant, timezone-aware UTC."""
    return _clock.now()


def install(clock: Clock) -> None:
    global _clock
    _clock = clock


def reset() -> None:
    install(SystemClock())
