"""Durations as users write them: ``30m``, ``1h``, ``7d``, ``2w``.

``d`` is exactly 86,400 s and ``w`` exactly 7 d: no calendar arithmetic (use
``until`` in workflows for clock times).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Final

__all__ = ["DURATION_RE", "MAX_DURATION", "DurationError", "format_duration", "parse_duration"]

DURATION_RE: Final = r"^[1-9][0-9]*(m|h|d|w)$"
MAX_DURATION: Final = timedelta(days=365)

_PATTERN: Final = re.compile(DURATION_RE)
_UNITS: Final = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
}
_MAX_DIGITS: Final = 12  # far beyond any limit; keeps int() and timedelta() from overflowing


class DurationError(ValueError):
    """A duration that does not match ``DURATION_RE`` or exceeds its limit."""


def parse_duration(text: str, *, maximum: timedelta | None = MAX_DURATION) -> timedelta:
    """Parse ``'7d'`` into a timedelta; refuse anything over ``maximum`` (``None``: no limit)."""
    if not isinstance(text, str):
        raise DurationError(f"a duration must be a string like '7d', not {type(text).__name__} {text!r}")
    if _PATTERN.fullmatch(text) is None:
        raise DurationError(
            f"invalid duration {text!r}: write a whole number and a unit m, h, d or w, like '30m' or '7d'"
        )
    if len(text) - 1 > _MAX_DIGITS:
        raise DurationError(f"duration {text!r} is too long")
    try:
        value = int(text[:-1]) * _UNITS[text[-1]]
    except OverflowError:
        raise DurationError(f"duration {text!r} is too long") from None
    if maximum is not None and value > maximum:
        raise DurationError(f"duration {text!r} exceeds the limit of {format_duration(maximum)}")
    return value


def format_duration(td: timedelta) -> str:
    """Write a positive whole number of minutes in its largest exact unit (``10080m`` -> ``'1w'``)."""
    if td <= timedelta(0) or td % _UNITS["m"]:
        raise DurationError(
            f"cannot write {td!r} as a duration: it must be a positive whole number of minutes"
        )
    for unit, size in _UNITS.items():
        if not td % size:
            return f"{td // size}{unit}"
    raise AssertionError("unreachable: minutes always divide")  # pragma: no cover
