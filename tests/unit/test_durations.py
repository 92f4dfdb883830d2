"""Durations: ``^[1-9][0-9]*(m|h|d|w)$``, ``d`` = 86,400 s, ``w`` = 7 d, at most a year by default."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.domain.durations import DURATION_RE, MAX_DURATION, DurationError, format_duration, parse_duration

FAST = settings(max_examples=200, deadline=None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1m", timedelta(minutes=1)),
        ("90m", timedelta(minutes=90)),
        ("1h", timedelta(hours=1)),
        ("24h", timedelta(days=1)),
        ("1d", timedelta(seconds=86_400)),
        ("7d", timedelta(weeks=1)),
        ("1w", timedelta(days=7)),
        ("52w", timedelta(days=364)),
        ("365d", MAX_DURATION),
        ("8760h", MAX_DURATION),
        ("525600m", MAX_DURATION),
    ],
)
def test_parse_duration_reads_each_unit_exactly(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0d",
        "01d",
        "1",
        "d",
        "1.5h",
        "-1d",
        "+1d",
        "1D",
        "1s",
        "1y",
        " 1d",
        "1d ",
        "1d\n",
        "1 d",
        "1dd",
        "\u0661d",  # an Arabic-Indic digit one
    ],
)
def test_parse_duration_refuses_anything_off_the_pattern(text: str) -> None:
    with pytest.raises(DurationError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [7, 7.0, None, timedelta(days=1), ["7d"]])
def test_parse_duration_refuses_non_strings(value: object) -> None:
    with pytest.raises(DurationError, match="must be a string"):
        parse_duration(value)  # type: ignore[arg-type]


def test_duration_error_is_a_value_error() -> None:
    assert issubclass(DurationError, ValueError)


@pytest.mark.parametrize("text", ["366d", "53w", "8761h", "525601m"])
def test_parse_duration_refuses_more_than_a_year_by_default(text: str) -> None:
    with pytest.raises(DurationError, match="exceeds the limit of 365d"):
        parse_duration(text)


def test_parse_duration_takes_another_limit_or_none() -> None:
    assert parse_duration("1000d", maximum=None) == timedelta(days=1000)
    with pytest.raises(DurationError, match="exceeds the limit of 1h"):
        parse_duration("61m", maximum=timedelta(hours=1))


@pytest.mark.parametrize("text", ["99999999999w", "9" * 40 + "w", "1" + "0" * 5000 + "m"])
def test_parse_duration_reports_absurd_lengths_as_duration_errors(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text, maximum=None)


@pytest.mark.parametrize(
    ("td", "expected"),
    [
        (timedelta(minutes=1), "1m"),
        (timedelta(minutes=90), "90m"),
        (timedelta(minutes=60), "1h"),
        (timedelta(hours=25), "25h"),
        (timedelta(hours=24), "1d"),
        (timedelta(days=8), "8d"),
        (timedelta(days=14), "2w"),
        (MAX_DURATION, "365d"),
    ],
)
def test_format_duration_uses_the_largest_exact_unit(td: timedelta, expected: str) -> None:
    assert format_duration(td) == expected


@pytest.mark.parametrize(
    "td", [timedelta(0), timedelta(minutes=-5), timedelta(seconds=30), timedelta(seconds=90)]
)
def test_format_duration_refuses_what_no_duration_can_say(td: timedelta) -> None:
    with pytest.raises(DurationError):
        format_duration(td)


def test_pattern_is_the_documented_one() -> None:
    assert DURATION_RE == r"^[1-9][0-9]*(m|h|d|w)$"


@FAST
@given(st.integers(min_value=1, max_value=10**8).map(lambda n: timedelta(minutes=n)))
def test_format_then_parse_gives_back_the_duration(td: timedelta) -> None:
    text = format_duration(td)
    assert re.fullmatch(DURATION_RE, text)
    assert parse_duration(text, maximum=None) == td


@FAST
@given(st.from_regex(r"[1-9][0-9]{0,6}(m|h|d|w)", fullmatch=True))
def test_parse_then_format_is_canonical(text: str) -> None:
    value = parse_duration(text, maximum=None)
    canonical = format_duration(value)
    assert parse_duration(canonical, maximum=None) == value
    assert format_duration(parse_duration(canonical, maximum=None)) == canonical
    assert len(canonical) <= len(text)
