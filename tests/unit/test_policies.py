"""Goals: whether a run converted, and when — dated by the goal event, not by when it was processed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from cairn.domain import policies
from cairn.domain.rules import ContactView, EventRecord

ENTERED = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
GOAL = {"event": "order_completed", "where": {"property": "total", "gte": 50}, "within": "7d"}


def view(events: list[EventRecord], now: datetime) -> ContactView:
    return ContactView(attributes={}, tags=frozenset(), consent={}, events=events, now=now)


def order(minutes: float, total: int, name: str = "order_completed") -> EventRecord:
    return EventRecord(name=name, timestamp=ENTERED + timedelta(minutes=minutes), properties={"total": total})


def test_the_conversion_is_dated_by_the_first_matching_goal_event() -> None:
    events = [order(-5, 90), order(10, 20), order(30, 80, "cart_updated"), order(40, 60), order(50, 99)]
    # processed an hour after the order that met the goal: the conversion is still at 09:40
    assert policies.goal_reached_at(GOAL, view(events, ENTERED + timedelta(hours=2)), ENTERED) == (
        ENTERED + timedelta(minutes=40)
    )


def test_no_conversion_before_entry_after_the_window_or_without_a_goal() -> None:
    late = [order(-5, 90), order(7 * 24 * 60 + 1, 90)]
    assert policies.goal_reached_at(GOAL, view(late, ENTERED + timedelta(days=9)), ENTERED) is None
    assert policies.goal_reached_at(None, view([order(1, 90)], ENTERED + timedelta(days=1)), ENTERED) is None


events_strategy = st.lists(
    st.builds(
        order,
        minutes=st.integers(min_value=-60, max_value=8 * 24 * 60),
        total=st.integers(min_value=0, max_value=100),
        name=st.sampled_from(["order_completed", "cart_updated"]),
    ),
    max_size=12,
)


@given(events=events_strategy, now_minutes=st.integers(min_value=0, max_value=9 * 24 * 60))
def test_a_conversion_time_exists_exactly_when_the_goal_is_met_and_is_the_earliest_match(
    events: list[EventRecord], now_minutes: int
) -> None:
    now = ENTERED + timedelta(minutes=now_minutes)
    seen = view(events, now)
    at = policies.goal_reached_at(GOAL, seen, ENTERED)
    assert (at is not None) == policies.goal_met(GOAL, seen, ENTERED)
    end = min(now, ENTERED + timedelta(days=7))
    matching = [
        e.timestamp
        for e in events
        if e.name == "order_completed" and e.properties["total"] >= 50 and ENTERED < e.timestamp <= end
    ]
    assert at == (min(matching) if matching else None)
