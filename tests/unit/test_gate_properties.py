"""The gate's next allowed moment against a brute-force oracle.

Every input lies on a 15-minute grid (send times, now, quiet hours) in zones whose offsets and DST
transitions are multiples of 15 minutes, so whether a message may go is constant between grid points:
the first allowed grid point at or after `now` is the answer, found by walking the grid."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.domain.gate import Hold, Recipient, Rules, Send, decide

STEP = timedelta(minutes=15)
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe", "UTC"]
# 2026: Berlin changes on 29 March and 25 October, New York on 8 March and 1 November, Lord Howe (half an
# hour) on 5 April and 4 October: a window of a few weeks around each is searched.
ORIGINS = [
    datetime(2026, 3, 1, tzinfo=UTC),
    datetime(2026, 3, 25, tzinfo=UTC),
    datetime(2026, 10, 1, tzinfo=UTC),
    datetime(2026, 10, 22, tzinfo=UTC),
]


def grid(origin: datetime, steps: int) -> datetime:
    return origin + steps * STEP


quarter_hours = st.integers(min_value=0, max_value=95).map(lambda q: time(q // 4, (q % 4) * 15))


@st.composite
def cases(draw: st.DrawFn) -> tuple[Rules, str, datetime, list[datetime]]:
    origin = draw(st.sampled_from(ORIGINS))
    zone = draw(st.sampled_from(ZONES))
    now = grid(origin, draw(st.integers(min_value=7 * 96, max_value=21 * 96)))
    sends = [now - k * STEP for k in draw(st.lists(st.integers(min_value=0, max_value=8 * 96), max_size=8))]
    quiet = draw(st.none() | st.tuples(quarter_hours, quarter_hours))
    rules = Rules(
        channel="sms",
        consent_default="subscribed",
        per_day=draw(st.none() | st.integers(min_value=1, max_value=3)),
        per_week=draw(st.none() | st.integers(min_value=1, max_value=6)),
        quiet=quiet,
    )
    return rules, zone, now, sends


def allowed(moment: datetime, rules: Rules, zone: str, sends: list[datetime]) -> bool:
    """Written from the rules' definitions, independently of the gate's search."""
    local = moment.astimezone(ZoneInfo(zone)).time()
    if rules.quiet is not None:
        start, end = rules.quiet
        if start < end and start <= local < end:
            return False
        if start > end and (local >= start or local < end):
            return False
    for limit, window in ((rules.per_day, timedelta(days=1)), (rules.per_week, timedelta(days=7))):
        if limit is not None and sum(1 for s in sends if moment - window < s <= moment) >= limit:
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(cases())
def test_the_hold_ends_at_the_first_allowed_moment(case: tuple[Rules, str, datetime, list[datetime]]) -> None:
    rules, zone, now, sends = case
    recipient = Recipient("+4915112345678", timezone=zone)

    decision = decide(recipient, kind="marketing", rules=rules, now=now, recent_sends=sends)

    moment = now
    while not allowed(moment, rules, zone, sends):
        moment += STEP
    if moment == now:
        assert decision == Send()
    else:
        assert isinstance(decision, Hold)
        assert decision.until == moment
        assert decision.seconds(now) == int((moment - now).total_seconds())


@settings(max_examples=200, deadline=None)
@given(cases())
def test_asking_again_at_the_end_of_a_hold_sends(case: tuple[Rules, str, datetime, list[datetime]]) -> None:
    rules, zone, now, sends = case
    recipient = Recipient("+4915112345678", timezone=zone)

    decision = decide(recipient, kind="marketing", rules=rules, now=now, recent_sends=sends)

    if isinstance(decision, Hold):
        assert (
            decide(recipient, kind="marketing", rules=rules, now=decision.until, recent_sends=sends) == Send()
        )
