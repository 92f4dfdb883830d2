"""Clock times in a contact's time zone: `wait: {until: ...}` and yearly date-attribute triggers.

DESIGN.md section 3: a local time that does not exist (a DST gap) moves to the next valid instant (the
moment the gap ends); an ambiguous one (a DST overlap) takes the first of its two instants.
Every instant returned is timezone-aware UTC.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cairn.domain import durations

CLOCK_RE: Final = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
OFFSET_RE: Final = re.compile(r"^([+-]?)([1-9][0-9]*(?:m|h|d|w))$")
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class TimingError(ValueError):
    """A clock time, offset or zone that cannot be used."""


def parse_clock(text: str) -> time:
    """``"09:00"`` -> 09:00 (24-hour, two digits each)."""
    match = CLOCK_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise TimingError(f"invalid time of day {text!r}: write HH:MM on a 24-hour clock, like '09:00'")
    return time(int(match.group(1)), int(match.group(2)))


def parse_offset(text: str) -> timedelta:
    """``"-7d"``, ``"2h"``, ``"+30m"``: a signed duration (at most a year either way)."""
    match = OFFSET_RE.match(text) if isinstance(text, str) else None
    if match is None:
        raise TimingError(f"invalid offset {text!r}: write a signed duration like '-7d' or '2h'")
    value = durations.parse_duration(match.group(2))
    return -value if match.group(1) == "-" else value


def zone(name: str | None, fallback: str) -> ZoneInfo:
    """The contact's zone, else the project's fallback (an unknown name falls back too)."""
    for candidate in (name, fallback):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock `at` on `day` in `tz`, with the DST rules of DESIGN.md section 3."""
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if first.astimezone(tz).replace(tzinfo=None) == wall:
        return first  # exists (fold=0 is the first of two in an overlap)
    # In a gap: fold=0 reads the wall time with the offset before the change, fold=1 with the one after,
    # and the change itself lies between the two readings. Find it to the second.
    after = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = min(first, after), max(first, after)
    offset_after = _offset(tz, hi)
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if _offset(tz, mid) == offset_after:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def _offset(tz: ZoneInfo, instant: datetime) -> timedelta | None:
    return instant.astimezone(tz).utcoffset()


def next_time_of_day(now: datetime, at: time, tz: ZoneInfo, days: frozenset[int] | None = None) -> datetime:
    """The first instant at or after `now` whose local time is `at`, on one of `days` (0 = Monday)."""
    today = now.astimezone(tz).date()
    for ahead in range(0, 9):
        day = today + timedelta(days=ahead)
        if days is not None and day.weekday() not in days:
            continue
        instant = local_instant(day, at, tz)
        if instant >= now:
            return instant
    raise TimingError("no matching day within a week")  # pragma: no cover - `days` is never empty


def parse_moment(value: Any) -> tuple[date, time | None, datetime | None] | None:
    """An attribute's date: ``"2026-12-24"`` (a day), or an ISO date-time (an instant). None if neither."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.date(), moment.time(), moment.astimezone(UTC)
    if isinstance(value, date):
        return value, None, None
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text), None, None
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.date(), moment.time(), moment.astimezone(UTC)


def attribute_instant(value: Any, tz: ZoneInfo, at: time | None, offset: timedelta) -> datetime | None:
    """When `wait: {until: {attribute, at?, offset?}}` is over for this attribute value (None: no date).

    A plain date means `at` (default midnight) on that day in the contact's zone; a date-time is that
    instant, or `at` on its local day when `at` is given. The offset shifts the result (``-1d``: a day
    before), whole days on the local calendar so that 09:00 stays 09:00 across a DST change."""
    parsed = parse_moment(value)
    if parsed is None:
        return None
    day, _clock, instant = parsed
    whole_days = offset.days if offset % timedelta(days=1) == timedelta(0) else None
    if instant is not None and at is None:
        if whole_days is not None:
            local = instant.astimezone(tz)
            return local_instant(local.date() + timedelta(days=whole_days), local.time(), tz)
        return instant + offset
    if instant is not None:
        day = instant.astimezone(tz).date()
    if whole_days is not None:
        return local_instant(day + timedelta(days=whole_days), at or time(0, 0), tz)
    return local_instant(day, at or time(0, 0), tz) + offset


# ------------------------------------------------------------------ yearly dates (birthdays, anniversaries)


@dataclass(frozen=True)
class MonthDay:
    month: int
    day: int

    @property
    def key(self) -> str:
        return f"{self.month:02d}-{self.day:02d}"

    @classmethod
    def of(cls, value: Any) -> MonthDay | None:
        """The month and day of a date attribute (``1990-05-17``, a date-time, or ``--05-17``/``05-17``)."""
        if isinstance(value, str):
            text = value.strip().removeprefix("--")
            if re.fullmatch(r"\d{2}-\d{2}", text):
                month, day = int(text[:2]), int(text[3:])
                try:
                    date(2000, month, day)  # 2000 is a leap year: 02-29 is a valid month-day
                except ValueError:
                    return None
                return cls(month, day)
        parsed = parse_moment(value)
        if parsed is None:
            return None
        return cls(parsed[0].month, parsed[0].day)

    def in_year(self, year: int) -> date:
        """This month-day in `year`; 29 February is the 28th in a common year."""
        if self.month == 2 and self.day == 29 and not calendar.isleap(year):
            return date(year, 2, 28)
        return date(year, self.month, self.day)


def month_days_firing_on(day: date, offset_days: int) -> list[MonthDay]:
    """The month-days whose yearly date, shifted by `offset_days`, falls on `day` (the index keys to
    read): one, or two on 28 February of a common year (the 28th and the 29th)."""
    anniversary = day - timedelta(days=offset_days)
    found = [MonthDay(anniversary.month, anniversary.day)]
    if anniversary.month == 2 and anniversary.day == 28 and not calendar.isleap(anniversary.year):
        found.append(MonthDay(2, 29))
    return found


def yearly_due(
    month_day: MonthDay, *, at: time, tz: ZoneInfo, offset_days: int, start: datetime, end: datetime
) -> tuple[date, datetime] | None:
    """The (local day, instant) at which a yearly date fires within the window `start < t <= end`."""
    local_start = start.astimezone(tz).date()
    for year in {local_start.year - 1, local_start.year, local_start.year + 1}:
        day = month_day.in_year(year) + timedelta(days=offset_days)
        instant = local_instant(day, at, tz)
        if start < instant <= end:
            return day, instant
    return None


def candidate_days(start: datetime, end: datetime) -> list[date]:
    """Local days any time zone (UTC-12 .. UTC+14) can be on during `start < t <= end`."""
    first = (start - timedelta(hours=12)).date()
    last = (end + timedelta(hours=14)).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


# Every zone's offset lies within UTC-12 .. UTC+14; an hour more either way covers DST gaps.
EARLIEST_OFFSET, LATEST_OFFSET = timedelta(hours=-13), timedelta(hours=15)


def may_fall_due(day: date, at: time, start: datetime, end: datetime) -> bool:
    """Whether `at` on local `day` can fall within `start < t <= end` in some time zone."""
    wall = datetime.combine(day, at, tzinfo=UTC)
    return wall - LATEST_OFFSET < end and wall - EARLIEST_OFFSET > start


def weekday_numbers(names: list[str] | None) -> frozenset[int] | None:
    if names is None:
        return None
    return frozenset(WEEKDAYS.index(n) for n in names)
