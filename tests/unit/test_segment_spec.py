"""Segment's wire rules: clock-skew correction, reserved event names, message ids and size limits."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.domain import segment_spec
from cairn.domain.segment_spec import MAX_FUTURE_SKEW, corrected_timestamp, is_reserved, new_message_id

FAST = settings(max_examples=300, deadline=None)
RECEIVED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DESIGN = Path(__file__).resolve().parents[3] / "shared" / "DESIGN.md"

instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
skews = st.timedeltas(min_value=-timedelta(days=400), max_value=timedelta(days=400))
delays = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30))
offsets = st.integers(min_value=-12 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


def test_without_a_timestamp_the_event_happened_when_it_was_received() -> None:
    assert corrected_timestamp(None, None, RECEIVED) == RECEIVED
    assert corrected_timestamp(None, RECEIVED - timedelta(hours=5), RECEIVED) == RECEIVED


def test_a_timestamp_alone_is_trusted_as_a_servers_clock() -> None:
    stamp = RECEIVED - timedelta(days=3)
    assert corrected_timestamp(stamp, None, RECEIVED) == stamp


def test_a_device_clock_an_hour_fast_is_corrected_by_its_sent_at() -> None:
    """The phone's clock says 11:00 when it is 10:00: the event it stamped 10:55 happened at 09:55."""
    device_fast = timedelta(hours=1)
    timestamp = RECEIVED - timedelta(minutes=5) + device_fast
    sent_at = RECEIVED + device_fast

    assert corrected_timestamp(timestamp, sent_at, RECEIVED) == RECEIVED - timedelta(minutes=5)


def test_a_timestamp_far_in_the_future_is_clamped() -> None:
    assert corrected_timestamp(RECEIVED + timedelta(days=365), None, RECEIVED) == RECEIVED + MAX_FUTURE_SKEW


def test_naive_times_are_utc_and_the_result_is_always_utc() -> None:
    naive = datetime(2026, 12, 1, 8, 0)
    result = corrected_timestamp(naive, None, RECEIVED)
    assert result == datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    assert result.utcoffset() == timedelta(0)

    berlin = datetime(2026, 12, 1, 9, 30, tzinfo=timezone(timedelta(hours=1)))
    assert corrected_timestamp(berlin, None, RECEIVED) == datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


@FAST
@given(
    happened=instants, skew=skews, delay=delays, latency=st.timedeltas(timedelta(0), timedelta(seconds=30))
)
def test_skew_correction_recovers_when_the_event_happened_whatever_the_device_clock(
    happened: datetime, skew: timedelta, delay: timedelta, latency: timedelta
) -> None:
    """A device whose clock is off by `skew` queues the event for `delay` and sends it; it arrives after
    `latency`. Correcting by sentAt recovers the true time, off by the network latency at most."""
    sent = happened + delay
    received = sent + latency
    result = corrected_timestamp(happened + skew, sent + skew, received)

    assert happened <= result <= happened + latency
    assert result <= received


@FAST
@given(timestamp=instants, sent=st.one_of(st.none(), instants), received=instants, zone=offsets)
def test_the_result_is_utc_and_never_more_than_the_allowed_skew_ahead(
    timestamp: datetime, sent: datetime | None, received: datetime, zone: timezone
) -> None:
    result = corrected_timestamp(timestamp.astimezone(zone), sent, received)

    assert result.tzinfo is UTC
    assert result <= received + MAX_FUTURE_SKEW


@FAST
@given(timestamp=instants, sent=st.one_of(st.none(), instants), received=instants, zone=offsets)
def test_the_zone_a_time_is_written_in_changes_nothing(
    timestamp: datetime, sent: datetime | None, received: datetime, zone: timezone
) -> None:
    in_zone = corrected_timestamp(
        timestamp.astimezone(zone), sent.astimezone(zone) if sent else None, received.astimezone(zone)
    )
    assert in_zone == corrected_timestamp(timestamp, sent, received)


def test_the_reserved_events_are_exactly_those_design_md_lists() -> None:
    if not DESIGN.exists():
        pytest.skip("../shared/DESIGN.md is not next to this checkout")
    text = DESIGN.read_text(encoding="utf-8")
    paragraph = (
        text.split("Reserved events, recorded by Cairn itself", 1)[1]
        .split(" and `wait_for` targets", 1)[1]
        .split("Events older than", 1)[0]
    )
    listed = set(re.findall(r"`([a-z_]+)`", paragraph))
    assert listed == segment_spec.RESERVED_EVENTS
    assert all(is_reserved(name) for name in listed)
    assert not is_reserved("order_completed")
    assert not is_reserved("Email_Sent")  # event names are case-sensitive


def test_new_message_ids_are_unique_uuids() -> None:
    ids = {new_message_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_the_size_limits_are_segments() -> None:
    assert segment_spec.MAX_EVENT_BYTES == 32 * 1024
    assert segment_spec.MAX_BATCH_BYTES == 4 * 1024 * 1024
    assert segment_spec.MAX_BATCH_ITEMS == 500


@pytest.mark.parametrize("days", [29, 30])
def test_the_dedupe_window_is_at_least_30_days(days: int) -> None:
    assert timedelta(days=days) <= segment_spec.DEDUPE_WINDOW
