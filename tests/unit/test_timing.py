"""Clock times in a contact's zone: waits `until` a date or a time of day, and yearly date triggers, with
the DST rules of DESIGN.md section 3 (a missing local time moves to the end of the gap; an ambiguous one
takes the first instant)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.domain import timing
from cairn.domain.timing import MonthDay

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
UTC_ZONE = ZoneInfo("UTC")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---------------------------------------------------------------- local instants and DST


def test_an_ordinary_local_time_is_its_instant() -> None:
    assert timing.local_instant(date(2026, 12, 1), time(9, 0), BERLIN) == utc(2026, 12, 1, 8, 0)
    assert timing.local_instant(date(2026, 7, 1), time(9, 0), BERLIN) == utc(2026, 7, 1, 7, 0)


def test_a_time_in_the_spring_gap_moves_to_the_end_of_the_gap() -> None:
    # 2027-03-28 in Berlin: 02:00 jumps to 03:00; 02:30 does not exist.
    instant = timing.local_instant(date(2027, 3, 28), time(2, 30), BERLIN)
    assert instant == utc(2027, 3, 28, 1, 0)
    assert instant.astimezone(BERLIN).strftime("%H:%M") == "03:00"
    # New York, 2027-03-14: 02:00 -> 03:00.
    assert timing.local_instant(date(2027, 3, 14), time(2, 15), NEW_YORK) == utc(2027, 3, 14, 7, 0)


def test_an_ambiguous_autumn_time_takes_the_first_instant() -> None:
    # 2026-10-25 in Berlin: 03:00 falls back to 02:00; 02:30 happens twice (CEST first).
    assert timing.local_instant(date(2026, 10, 25), time(2, 30), BERLIN) == utc(2026, 10, 25, 0, 30)


@given(
    day=st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)),
    at=st.times().map(lambda t: t.replace(second=0, microsecond=0)),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "UTC"]),
)
def test_local_instants_read_back_as_the_wall_time_or_the_end_of_its_gap(
    day: date, at: time, zone: str
) -> None:
    tz = ZoneInfo(zone)
    instant = timing.local_instant(day, at, tz)
    wall = instant.astimezone(tz)
    if wall.replace(tzinfo=None) != datetime.combine(day, at):
        # Only in a gap: the result is the first valid instant after the wall time, on the same day.
        assert wall.replace(tzinfo=None) > datetime.combine(day, at)
        assert wall.replace(tzinfo=None) - datetime.combine(day, at) <= timedelta(hours=1)
        before = instant - timedelta(seconds=1)
        assert before.astimezone(tz).replace(tzinfo=None) < datetime.combine(day, at)
    else:  # and it is the earliest instant that reads so
        assert (instant - timedelta(hours=1)).astimezone(tz).replace(tzinfo=None) != datetime.combine(day, at)


# ---------------------------------------------------------------- time of day


def test_the_next_time_of_day_is_today_if_still_ahead_else_tomorrow() -> None:
    now = utc(2026, 12, 1, 7, 0)  # 08:00 in Berlin
    assert timing.next_time_of_day(now, time(9, 0), BERLIN) == utc(2026, 12, 1, 8, 0)
    assert timing.next_time_of_day(utc(2026, 12, 1, 9, 0), time(9, 0), BERLIN) == utc(2026, 12, 2, 8, 0)
    assert timing.next_time_of_day(utc(2026, 12, 1, 8, 0), time(9, 0), BERLIN) == utc(2026, 12, 1, 8, 0)


def test_the_next_time_of_day_on_given_weekdays() -> None:
    friday = utc(2026, 12, 4, 12, 0)
    days = timing.weekday_numbers(["mon", "wed"])
    assert timing.next_time_of_day(friday, time(9, 0), BERLIN, days) == utc(2026, 12, 7, 8, 0)  # Monday


def test_the_next_time_of_day_across_a_dst_change_keeps_the_wall_time() -> None:
    saturday = utc(2027, 3, 27, 12, 0)
    sunday_nine = timing.next_time_of_day(saturday + timedelta(hours=12), time(9, 0), BERLIN)
    assert sunday_nine == utc(2027, 3, 28, 7, 0)  # 09:00 CEST


# ---------------------------------------------------------------- attribute dates


def test_a_plain_date_is_midnight_or_at_in_the_contacts_zone() -> None:
    assert timing.attribute_instant("2026-12-24", BERLIN, None, timedelta()) == utc(2026, 12, 23, 23, 0)
    assert timing.attribute_instant("2026-12-24", BERLIN, time(9, 0), timedelta()) == utc(2026, 12, 24, 8, 0)


def test_an_offset_in_whole_days_keeps_the_local_time_across_dst() -> None:
    # The day before 2027-03-29 at 09:00 Berlin: 2027-03-28 is the DST day, still 09:00 local.
    due = timing.attribute_instant("2027-03-29", BERLIN, time(9, 0), timedelta(days=-1))
    assert due == utc(2027, 3, 28, 7, 0)


def test_a_datetime_attribute_is_its_instant_shifted_by_the_offset() -> None:
    value = "2026-12-24T18:30:00Z"
    assert timing.attribute_instant(value, BERLIN, None, timedelta(hours=-2)) == utc(2026, 12, 24, 16, 30)
    assert timing.attribute_instant(value, BERLIN, time(9, 0), timedelta()) == utc(2026, 12, 24, 8, 0)


@pytest.mark.parametrize("value", [None, "", "soon", 42, "2026-13-01", {"a": 1}])
def test_no_date_means_no_instant(value: object) -> None:
    assert timing.attribute_instant(value, BERLIN, None, timedelta()) is None


def test_offsets_and_clock_times_are_checked() -> None:
    assert timing.parse_offset("-7d") == timedelta(days=-7)
    assert timing.parse_offset("2h") == timedelta(hours=2)
    assert timing.parse_offset("+30m") == timedelta(minutes=30)
    for bad in ("7", "-0d", "1y", "--1d"):
        with pytest.raises(ValueError):
            timing.parse_offset(bad)
    assert timing.parse_clock("23:59") == time(23, 59)
    for bad in ("9:00", "24:00", "09:60", "0900"):
        with pytest.raises(ValueError):
            timing.parse_clock(bad)


def test_an_unknown_zone_falls_back() -> None:
    assert timing.zone("Mars/Olympus", "Europe/Berlin") == BERLIN
    assert timing.zone(None, "Nowhere") == UTC_ZONE


# ---------------------------------------------------------------- yearly dates


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("1990-05-17", "05-17"),
        ("--05-17", "05-17"),
        ("05-17", "05-17"),
        ("1992-02-29", "02-29"),
        ("2001-07-04T10:00:00Z", "07-04"),
    ],
)
def test_month_days_of_date_attributes(value: str, key: str) -> None:
    found = MonthDay.of(value)
    assert found is not None and found.key == key


@pytest.mark.parametrize("value", ["02-30", "13-01", "nope", None, 7])
def test_no_month_day(value: object) -> None:
    assert MonthDay.of(value) is None


def test_29_february_is_the_28th_in_a_common_year() -> None:
    leap = MonthDay(2, 29)
    assert leap.in_year(2027) == date(2027, 2, 28)
    assert leap.in_year(2028) == date(2028, 2, 29)
    assert {m.key for m in timing.month_days_firing_on(date(2027, 2, 28), 0)} == {"02-28", "02-29"}
    assert {m.key for m in timing.month_days_firing_on(date(2028, 2, 28), 0)} == {"02-28"}
    # A week before: the index key is the anniversary's, not the firing day's.
    assert {m.key for m in timing.month_days_firing_on(date(2026, 12, 17), -7)} == {"12-24"}


def test_a_yearly_date_fires_in_the_hour_its_local_time_falls_in() -> None:
    birthday = MonthDay(12, 2)
    hour = (utc(2026, 12, 2, 13, 0), utc(2026, 12, 2, 14, 0))  # 09:00 in New York is 14:00 UTC
    found = timing.yearly_due(birthday, at=time(9), tz=NEW_YORK, offset_days=0, start=hour[0], end=hour[1])
    assert found == (date(2026, 12, 2), utc(2026, 12, 2, 14, 0))
    earlier = (utc(2026, 12, 2, 12, 0), utc(2026, 12, 2, 13, 0))
    assert (
        timing.yearly_due(birthday, at=time(9), tz=NEW_YORK, offset_days=0, start=earlier[0], end=earlier[1])
        is None
    )


@given(
    month_day=st.dates(min_value=date(2000, 1, 1), max_value=date(2000, 12, 31)).map(
        lambda d: MonthDay(d.month, d.day)
    ),
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago"]),
    at=st.sampled_from([time(0, 0), time(2, 30), time(9, 0), time(23, 45)]),
    year=st.integers(min_value=2026, max_value=2030),
)
def test_hourly_windows_fire_a_yearly_date_exactly_once_a_year(
    month_day: MonthDay, zone: str, at: time, year: int
) -> None:
    tz = ZoneInfo(zone)
    day = month_day.in_year(year)
    due = timing.local_instant(day, at, tz)
    # The hourly job's windows around the date: exactly one contains it, and its candidate days list it.
    start = due.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    hits = []
    for h in range(6):
        lo, hi = start + timedelta(hours=h), start + timedelta(hours=h + 1)
        if timing.yearly_due(month_day, at=at, tz=tz, offset_days=0, start=lo, end=hi) is not None:
            hits.append(lo)
            assert day in timing.candidate_days(lo, hi)
    assert len(hits) == 1


@given(
    day=st.dates(min_value=date(2026, 1, 1), max_value=date(2028, 12, 31)),
    at=st.sampled_from([time(0, 0), time(9, 0), time(23, 30)]),
    zone=st.sampled_from(["Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Berlin", "Asia/Kathmandu"]),
)
def test_the_hourly_job_reads_every_day_whose_time_can_fall_in_its_hour(
    day: date, at: time, zone: str
) -> None:
    due = timing.local_instant(day, at, ZoneInfo(zone))
    start = due.replace(minute=0, second=0, microsecond=0) - (
        timedelta(hours=1) if due.minute == 0 else timedelta()
    )
    end = start + timedelta(hours=1)
    assert start < due <= end
    assert timing.may_fall_due(day, at, start, end)
    assert not timing.may_fall_due(day, at, start + timedelta(days=2), end + timedelta(days=2))
