"""The gate before every send: may this message go now, must it wait, or is it skipped — and why.

Pure: the send function gathers the facts (the contact, its recent sends on the channel, the stack's
stage, the pause state) and asks :func:`decide`, which answers

- :class:`Send`;
- :class:`Skip` with a reason (no address, erased, suppressed, no consent, not on a non-production
  stack's allowlist): the message is never sent;
- :class:`Hold` with a reason and the next allowed moment (pause, quiet hours, frequency caps): the
  run waits until then (interruptibly) and asks again.

Rules, in this order (the first that refuses decides a skip; every hold reason that applies is named):

1. an address on the channel; 2. not erased (a hashed tombstone); 3. not suppressed (hard bounce,
complaint); 4. consent on the channel (``consent.default`` for contacts with none; transactional
messages need none); 5. outside production, the recipient allowlist; 6. pause (workflow or global);
7. quiet hours in the contact's time zone; 8. frequency caps per channel across all workflows, in
rolling 24-hour and 7-day windows. Transactional messages are exempt from 7 and 8, never from 1 to 6.

Local times follow DESIGN.md §3: a local time that does not exist (a DST gap) moves to the next valid
instant; an ambiguous one takes the first.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cairn.domain.settings import Settings

__all__ = [
    "DAY",
    "PAUSE_RECHECK",
    "WEEK",
    "Channel",
    "Decision",
    "Hold",
    "Kind",
    "Recipient",
    "Rules",
    "Send",
    "Skip",
    "at_local",
    "decide",
    "in_quiet_hours",
    "next_allowed",
    "on_allowlist",
    "zone_of",
]

Channel = Literal["email", "sms"]
Kind = Literal["marketing", "transactional"]
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
#: How long a paused message waits before the send function looks again (a resume may wake it sooner).
PAUSE_RECHECK = timedelta(hours=1)
#: Suppression values that concern SMS only; every other value suppresses email.
SMS_SUPPRESSIONS = frozenset({"sms-opted-out"})


@dataclass(frozen=True)
class Recipient:
    """What the gate needs to know about the contact on one channel."""

    address: str | None
    consent: str | None = None  # subscribed | unsubscribed | pending | None (never given)
    suppression: str | None = None  # bounced | complained | sms-opted-out | ... (the profile's)
    tombstoned: bool = False  # the address belongs to an erased contact
    timezone: str | None = None


@dataclass(frozen=True)
class Rules:
    """What settings and the stack say about one channel."""

    channel: Channel
    consent_default: str = "unsubscribed"
    per_day: int | None = None
    per_week: int | None = None
    quiet: tuple[time, time] | None = None
    allowlist: tuple[str, ...] | None = None  # None: a production stack, no allowlist
    timezone_fallback: str = "UTC"

    @classmethod
    def from_settings(cls, settings: Settings, channel: Channel, *, production: bool) -> Rules:
        caps = getattr(settings.caps, channel)
        quiet = getattr(settings.quiet_hours, channel)
        return cls(
            channel=channel,
            consent_default=getattr(settings.consent.default, channel),
            per_day=caps.per_day,
            per_week=caps.per_week,
            quiet=quiet.times() if quiet is not None else None,
            allowlist=None if production else tuple(getattr(settings.allowlist, channel)),
            timezone_fallback=settings.timezone,
        )

    @property
    def capped(self) -> bool:
        return self.per_day is not None or self.per_week is not None


@dataclass(frozen=True)
class Send:
    pass


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class Hold:
    reason: str
    until: datetime

    def seconds(self, now: datetime) -> int:
        """Whole seconds from `now` to the next allowed moment (at least 1)."""
        return max(1, math.ceil((self.until - now).total_seconds()))


Decision = Send | Skip | Hold


def decide(
    recipient: Recipient,
    *,
    kind: Kind,
    rules: Rules,
    now: datetime,
    recent_sends: Sequence[datetime] = (),
    paused: str | None = None,
) -> Decision:
    """The gate's answer for one message. `recent_sends` are this contact's counted (marketing) sends
    on the channel, any workflow, at least the last 7 days; `paused` names a pause ("workflow",
    "global") or is None. Times are instants: the answer is in UTC (windows are exact hours, not wall
    clock days)."""
    now = _utc(now)
    recent_sends = [_utc(s) for s in recent_sends]
    channel = rules.channel
    if not recipient.address:
        return Skip("no email address" if channel == "email" else "no phone number")
    if recipient.tombstoned:
        return Skip("erased")
    if recipient.suppression and _suppresses(recipient.suppression, channel):
        return Skip(f"suppressed ({recipient.suppression})")
    if kind != "transactional":
        status = recipient.consent or rules.consent_default
        if status != "subscribed":
            return Skip(f"no {channel} consent ({status})")
    if rules.allowlist is not None and not on_allowlist(recipient.address, rules.allowlist, channel):
        return Skip("not on the allowlist of this non-production stack")
    if paused:
        return Hold(f"paused ({paused})", now + PAUSE_RECHECK)
    if kind == "transactional":
        return Send()
    zone = zone_of(recipient.timezone, rules.timezone_fallback)
    until = next_allowed(now, rules, zone, recent_sends)
    if until == now:
        return Send()
    return Hold(", ".join(_hold_reasons(now, rules, zone, recent_sends)), until)


def _suppresses(suppression: str, channel: Channel) -> bool:
    return (suppression in SMS_SUPPRESSIONS) == (channel == "sms")


def _utc(moment: datetime) -> datetime:
    """An aware instant in UTC: arithmetic on it is exact (on a zone's wall clock it would not be)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("times must be timezone-aware")
    return moment.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# allowlist


def on_allowlist(address: str, patterns: Iterable[str], channel: Channel) -> bool:
    """Shell-style patterns (``*@example.com``, ``*.example``, ``+4915*``), case-insensitive for
    email; phone numbers compare in E.164 without spaces."""
    value = address.strip().lower() if channel == "email" else address.replace(" ", "")
    for pattern in patterns:
        wanted = pattern.strip().lower() if channel == "email" else pattern.replace(" ", "")
        if fnmatch.fnmatchcase(value, wanted):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# time zones and quiet hours


def zone_of(name: str | None, fallback: str) -> tzinfo:
    """The contact's zone; the fallback for none or a name that is not an IANA zone."""
    for candidate in (name, fallback):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return UTC


def at_local(day: date, at: time, zone: tzinfo) -> datetime:
    """The instant `day` `at` in `zone`: in a DST gap the next valid instant, when ambiguous the first."""
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=zone, fold=0)
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:
        return first.astimezone(UTC)
    # A gap: the wall time never shows. The transition is the first instant at which the local wall
    # time reaches `wall`; it lies between the two readings of the missing time (whole seconds).
    readings = (int(first.timestamp()), int(wall.replace(tzinfo=zone, fold=1).timestamp()))
    low, high = min(readings), max(readings)
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, UTC).astimezone(zone).replace(tzinfo=None) >= wall:
            high = mid
        else:
            low = mid
    return datetime.fromtimestamp(high, UTC)


def in_quiet_hours(moment: datetime, window: tuple[time, time] | None, zone: tzinfo) -> bool:
    if window is None:
        return False
    start, end = window
    local = moment.astimezone(zone).time().replace(tzinfo=None)
    if start == end:
        return False
    if start < end:
        return start <= local < end
    return local >= start or local < end


def _quiet_end(moment: datetime, window: tuple[time, time], zone: tzinfo) -> datetime:
    """The end of the quiet period `moment` is in."""
    start, end = window
    local = moment.astimezone(zone)
    day = local.date()
    if start > end and local.time().replace(tzinfo=None) >= start:
        day += DAY
    candidate = at_local(day, end, zone)
    while candidate <= moment:  # a DST shift can put the end of `day` behind us
        day += DAY
        candidate = at_local(day, end, zone)
    return candidate


# ---------------------------------------------------------------------------------------------
# frequency caps


def _free_at(moment: datetime, sends: Sequence[datetime], window: timedelta, limit: int | None) -> datetime:
    """The first instant >= moment at which fewer than `limit` sends fall in (t - window, t]."""
    if limit is None:
        return moment
    inside = sorted(s for s in sends if moment - window < s <= moment)
    if len(inside) < limit:
        return moment
    return inside[len(inside) - limit] + window


def next_allowed(now: datetime, rules: Rules, zone: tzinfo, recent_sends: Sequence[datetime]) -> datetime:
    """The first instant >= now outside quiet hours with both caps satisfied (a marketing message)."""
    moment = _utc(now)
    recent_sends = [_utc(s) for s in recent_sends]
    for _ in range(1000):  # each pass moves forward; a handful of passes settle any real input
        capped = max(
            _free_at(moment, recent_sends, DAY, rules.per_day),
            _free_at(moment, recent_sends, WEEK, rules.per_week),
        )
        quiet = rules.quiet
        settled = _quiet_end(capped, quiet, zone) if quiet and in_quiet_hours(capped, quiet, zone) else capped
        if settled == moment:
            return moment
        moment = settled
    raise RuntimeError("next_allowed did not settle")  # pragma: no cover - a bug, not an input


def _count(moment: datetime, sends: Sequence[datetime], window: timedelta) -> int:
    return sum(1 for s in sends if moment - window < s <= moment)


def _hold_reasons(now: datetime, rules: Rules, zone: tzinfo, sends: Sequence[datetime]) -> list[str]:
    reasons = []
    if in_quiet_hours(now, rules.quiet, zone):
        reasons.append("quiet hours")
    if rules.per_day is not None and _count(now, sends, DAY) >= rules.per_day:
        reasons.append(f"frequency cap ({rules.per_day} per day)")
    if rules.per_week is not None and _count(now, sends, WEEK) >= rules.per_week:
        reasons.append(f"frequency cap ({rules.per_week} per week)")
    return reasons
