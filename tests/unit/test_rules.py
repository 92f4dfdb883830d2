"""The rule language (DESIGN.md section 4): every operator, its edges, parsing and analysis.

Every evaluation in this file goes through both the reference evaluator and the
compiled closure, which must agree.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from cairn.domain import rules
from cairn.domain.rules import (
    AllRule,
    AttributeCondition,
    ContactView,
    Dependencies,
    EventRecord,
    PropertyCondition,
    Rule,
    RuleError,
    RuleProblem,
    SegmentUnavailable,
    TagCondition,
    compile_rule,
    compile_where,
    dependencies,
    dump_rule,
    evaluate,
    evaluate_where,
    max_within,
    next_time_change,
    parse_rule,
    parse_where,
    referenced_segments,
)

NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
MISSING: Any = object()
US = timedelta(microseconds=1)


def view(
    attributes: dict[str, Any] | None = None,
    *,
    tags: Iterable[str] = (),
    consent: dict[str, str] | None = None,
    events: Iterable[EventRecord] = (),
    now: datetime = NOW,
    segments: set[str] | None = None,
) -> ContactView:
    resolver = None if segments is None else segments.__contains__
    return ContactView(
        dict(attributes or {}), frozenset(tags), dict(consent or {}), list(events), now, resolver
    )


def holds(data: object, contact: ContactView | None = None) -> bool:
    """Evaluate both ways, insist they agree, return the answer."""
    contact = contact or view()
    rule = parse_rule(data)
    expected = evaluate(rule, contact)
    assert isinstance(expected, bool)
    assert compile_rule(rule)(contact) is expected
    return expected


def attribute_holds(op: str, value: object, x: object) -> bool:
    attributes = {} if x is MISSING else {"x": x}
    return holds({"attribute": "x", op: value}, view(attributes))


def event(name: str, ago: timedelta = timedelta(0), **properties: Any) -> EventRecord:
    return EventRecord(name, NOW - ago, properties)


def problems(data: object, path: str = "rule") -> list[tuple[str, str]]:
    with pytest.raises(RuleError) as caught:
        parse_rule(data, path)
    return [(p.path, p.message) for p in caught.value.problems]


# --------------------------------------------------------------------------- operators

CASES = [
    # eq: no coercion, case-sensitive, numbers are numbers
    ("eq", "DE", "DE", True),
    ("eq", "DE", "de", False),
    ("eq", 5, "5", False),
    ("eq", "5", 5, False),
    ("eq", 1, True, False),
    ("eq", True, 1, False),
    ("eq", False, 0, False),
    ("eq", True, True, True),
    ("eq", 5, 5.0, True),
    ("eq", 5, Decimal("5"), True),
    ("eq", 2.5, Decimal("2.5"), True),
    ("eq", "a", ["a"], False),
    ("eq", "DE", MISSING, False),
    ("eq", "DE", None, False),
    # ne: false on missing, true across types
    ("ne", "DE", "AT", True),
    ("ne", "DE", "DE", False),
    ("ne", "DE", MISSING, False),
    ("ne", "DE", None, False),
    ("ne", 5, "5", True),
    ("ne", 1, True, True),
    # in / not_in
    ("in", ["DE", "AT"], "AT", True),
    ("in", ["DE", "AT"], "de", False),
    ("in", [1, 2], True, False),
    ("in", [True], 1, False),
    ("in", [False], False, True),
    ("in", [1, 2], 2.0, True),
    ("in", [1], Decimal(1), True),
    ("in", ["1"], 1, False),
    ("in", ["a"], ["a"], False),
    ("in", ["DE"], MISSING, False),
    ("not_in", ["DE"], "AT", True),
    ("not_in", ["DE"], "DE", False),
    ("not_in", [1], True, True),
    ("not_in", ["DE"], MISSING, False),
    ("not_in", ["DE"], None, False),
    # ordering: two numbers or two strings, else false
    ("gt", 5, 6, True),
    ("gt", 5, 5, False),
    ("gte", 5, 5, True),
    ("gte", 5, 4.99, False),
    ("lt", 5, 4.5, True),
    ("lt", 5, 5, False),
    ("lte", 5, 5, True),
    ("lte", 5, 6, False),
    ("gt", 1, Decimal("2"), True),
    ("gt", 5, "6", False),
    ("lt", "5", 4, False),
    ("lt", 5, True, False),
    ("gt", "b", "c", True),
    ("gt", "b", "B", False),
    ("gte", "2024-01-01", "2024-01-01", True),
    ("gt", 1, [2], False),
    ("gt", 1, {"a": 2}, False),
    ("gt", 1, float("nan"), False),
    ("lt", 1, float("nan"), False),
    ("gt", 1, Decimal("NaN"), False),
    ("gt", 0, None, False),
    ("gt", 0, MISSING, False),
    # between: inclusive, same kind only
    ("between", [25, 34], 25, True),
    ("between", [25, 34], 34, True),
    ("between", [25, 34], 30.5, True),
    ("between", [25, 34], 24.999, False),
    ("between", [25, 34], 34.001, False),
    ("between", [25, 34], "30", False),
    ("between", [0, 1], True, False),
    ("between", [25, 34], MISSING, False),
    ("between", ["a", "c"], "a", True),
    ("between", ["a", "c"], "c", True),
    ("between", ["a", "c"], "ca", False),
    ("between", ["a", "c"], 2, False),
    ("between", [5, 5], 5, True),
    # contains: substring or list item, no coercion
    ("contains", "ell", "hello", True),
    ("contains", "Ell", "hello", False),
    ("contains", "", "hello", True),
    ("contains", "a", ["a", "b"], True),
    ("contains", "a", ["ab"], False),
    ("contains", "a", ("a",), True),
    ("contains", "a", {"a"}, True),
    ("contains", "a", frozenset({"a"}), True),
    ("contains", 1, [1.0, 3], True),
    ("contains", 1, [True], False),
    ("contains", True, [1], False),
    ("contains", True, [True], True),
    ("contains", 1, "1", False),
    ("contains", "1", 1, False),
    ("contains", "1", [1], False),
    ("contains", "a", {"a": 1}, False),
    ("contains", "a", MISSING, False),
    # starts_with
    ("starts_with", "he", "hello", True),
    ("starts_with", "He", "hello", False),
    ("starts_with", "", "x", True),
    ("starts_with", "1", 12, False),
    ("starts_with", "a", ["ab"], False),
    ("starts_with", "a", MISSING, False),
    # exists: null is missing; false, 0 and "" exist
    ("exists", True, "x", True),
    ("exists", True, "", True),
    ("exists", True, False, True),
    ("exists", True, MISSING, False),
    ("exists", True, None, False),
    ("exists", False, MISSING, True),
    ("exists", False, None, True),
    ("exists", False, "", False),
    ("exists", False, 0, False),
]


@pytest.mark.parametrize(("op", "value", "x", "expected"), CASES)
def test_operator(op: str, value: object, x: object, expected: bool) -> None:
    assert attribute_holds(op, value, x) is expected


def test_every_operator_has_cases() -> None:
    tested = {case[0] for case in CASES} | {"before", "after"}
    assert tested == set(rules.OPERATORS)


# --------------------------------------------------------------------------- dates

DATE_CASES = [
    # plain dates
    ("before", "2024-03-01", "2024-02-29", True),
    ("before", "2024-03-01", "2024-03-01", False),
    ("after", "2024-03-01", "2024-03-01", False),
    ("after", "2024-03-01", "2024-03-02", True),
    # a date on either side: compare UTC calendar days
    ("before", "2024-03-01", "2024-03-01T00:00:00Z", False),
    ("before", "2024-03-01", "2024-02-29T23:59:59Z", True),
    ("after", "2024-03-01", "2024-03-01T23:59:59Z", False),
    ("after", "2024-03-01", "2024-03-02T00:00:00Z", True),
    ("after", "2024-03-01", "2024-03-02T00:30:00+01:00", False),  # 2024-03-01T23:30Z
    ("before", "2024-03-01T10:00:00Z", "2024-02-29", True),
    ("before", "2024-03-01T10:00:00Z", "2024-03-01", False),
    # two date-times: instants, any offset, naive is UTC
    ("before", "2024-03-01T10:00:00Z", "2024-03-01T09:59:59Z", True),
    ("before", "2024-03-01T10:00:00Z", "2024-03-01T10:00:00Z", False),
    ("before", "2024-03-01T10:00:00Z", "2024-03-01T10:30:00+01:00", True),
    ("after", "2024-03-01T10:00:00Z", "2024-03-01T10:00:01", True),
    ("after", "2024-03-01T10:00:00+02:00", "2024-03-01T08:00:01Z", True),
    # relative: now - 30d = 2024-02-09T12:00Z
    ("after", "-30d", "2024-02-09T12:00:00Z", False),
    ("after", "-30d", "2024-02-09T12:00:00.000001Z", True),
    ("before", "-30d", "2024-02-09T11:59:59.999999Z", True),
    ("before", "-30d", "2024-02-09T12:00:00Z", False),
    ("after", "-30d", "2024-02-09", False),
    ("after", "-30d", "2024-02-10", True),
    ("before", "-30d", "2024-02-09", False),
    ("before", "-30d", "2024-02-08", True),
    ("before", "+7d", "2024-03-17T11:59:59Z", True),
    ("before", "+7d", "2024-03-17T12:00:00Z", False),
    ("after", "-1h", "2024-03-10T11:30:00Z", True),
    # native values (YAML dates in the rule, Python dates in attributes)
    ("before", date(2024, 3, 1), "2024-02-29", True),
    ("before", datetime(2024, 3, 1, 10, tzinfo=UTC), "2024-03-01T09:00:00Z", True),
    ("before", "2024-03-01", date(2024, 2, 1), True),
    ("before", "2024-03-01", datetime(2024, 2, 1, 23, 0), True),
    ("after", "-30d", datetime(2024, 3, 1, tzinfo=timezone(timedelta(hours=5))), True),
    # what is not a date never compares
    ("before", "2024-03-01", "yesterday", False),
    ("before", "2024-03-01", "20240101", False),
    ("before", "2024-03-01", "2024-02-30", False),
    ("before", "2024-03-01", 20240101, False),
    ("before", "2024-03-01", ["2024-01-01"], False),
    ("after", "2024-03-01", MISSING, False),
    ("after", "2024-03-01", None, False),
]


@pytest.mark.parametrize(("op", "value", "x", "expected"), DATE_CASES)
def test_dates(op: str, value: object, x: object, expected: bool) -> None:
    assert attribute_holds(op, value, x) is expected


def test_relative_dates_follow_now() -> None:
    rule = {"attribute": "signed_up", "after": "-30d"}
    contact = {"signed_up": "2024-02-20T12:00:00Z"}
    assert holds(rule, view(contact, now=datetime(2024, 3, 21, 11, 59, tzinfo=UTC)))
    assert not holds(rule, view(contact, now=datetime(2024, 3, 21, 12, 0, tzinfo=UTC)))


# --------------------------------------------------------------------------- other leaves


def test_tag() -> None:
    assert holds({"tag": "vip"}, view(tags={"vip", "eco"}))
    assert not holds({"tag": "VIP"}, view(tags={"vip"}))
    assert not holds({"tag": "vip"})


@pytest.mark.parametrize(
    ("status", "expected"),
    [("subscribed", True), ("unsubscribed", False), ("pending", False), ("Subscribed", False), (None, False)],
)
def test_consent_holds_only_when_subscribed(status: str | None, expected: bool) -> None:
    consent = {} if status is None else {"email": status}
    assert holds({"consent": "email"}, view(consent=consent)) is expected
    assert not holds({"consent": "sms"}, view(consent=consent))


def test_segment_resolves_live() -> None:
    assert holds({"segment": "readers"}, view(segments={"readers"}))
    assert not holds({"segment": "readers"}, view(segments={"buyers"}))


def test_segment_without_a_resolver_raises_both_ways() -> None:
    rule = parse_rule({"segment": "readers"})
    with pytest.raises(SegmentUnavailable) as caught:
        evaluate(rule, view())
    assert caught.value.segment_id == "readers"
    with pytest.raises(SegmentUnavailable):
        compile_rule(rule)(view())


def test_segment_is_not_asked_when_the_answer_is_known() -> None:
    rule = {"any": [{"tag": "vip"}, {"segment": "readers"}]}
    assert holds(rule, view(tags={"vip"}))
    with pytest.raises(SegmentUnavailable):
        evaluate(parse_rule(rule), view())


# --------------------------------------------------------------------------- combinators


def test_combinators_nest_without_limit() -> None:
    rule = {
        "all": [
            {"tag": "a"},
            {"any": [{"tag": "x"}, {"not": {"not": {"all": [{"tag": "b"}, {"attribute": "n", "gte": 3}]}}}]},
            {"not": {"any": [{"tag": "z"}, {"attribute": "n", "gt": 10}]}},
        ]
    }
    assert holds(rule, view({"n": 3}, tags={"a", "b"}))
    assert not holds(rule, view({"n": 2}, tags={"a", "b"}))
    assert not holds(rule, view({"n": 11}, tags={"a", "b"}))
    assert holds(rule, view({"n": 0}, tags={"a", "x"}))
    assert not holds(rule, view({"n": 3}, tags={"a", "b", "z"}))


def test_deep_nesting() -> None:
    rule: dict[str, Any] = {"tag": "a"}
    for depth in range(60):
        rule = {"not": rule} if depth % 2 else {"all": [rule, {"exists": True, "attribute": "n"}]}
    assert holds(rule, view({"n": 1}, tags={"a"}))


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_all_and_any_of_every_size(size: int) -> None:
    tags = [f"t{i}" for i in range(size)]
    everything = {"all": [{"tag": t} for t in tags]}
    something = {"any": [{"tag": t} for t in tags]}
    assert holds(everything, view(tags=tags))
    assert not holds(everything, view(tags=tags[1:]))
    assert holds(something, view(tags=tags[-1:]))
    assert not holds(something, view(tags={"other"}))


# --------------------------------------------------------------------------- events


def test_bare_event_means_at_least_one() -> None:
    assert holds({"event": "page_viewed"}, view(events=[event("page_viewed", timedelta(days=400))]))
    assert not holds({"event": "page_viewed"}, view(events=[event("other")]))
    assert not holds({"event": "page_viewed"})


def test_within_is_now_minus_d_exclusive_to_now_inclusive() -> None:
    rule = {"event": "page_viewed", "within": "7d"}
    assert not holds(rule, view(events=[event("page_viewed", timedelta(days=7))]))
    assert holds(rule, view(events=[event("page_viewed", timedelta(days=7) - US)]))
    assert holds(rule, view(events=[event("page_viewed")]))
    assert not holds(rule, view(events=[event("page_viewed", -US)]))


def test_future_events_count_only_without_within() -> None:
    future = [event("page_viewed", -timedelta(days=1))]
    assert holds({"event": "page_viewed"}, view(events=future))
    assert not holds({"event": "page_viewed", "within": "30d"}, view(events=future))


def test_where_filters_on_properties() -> None:
    events = [
        event("order_completed", category="hiking", total=30),
        event("order_completed", category="food"),
    ]
    assert holds(
        {"event": "order_completed", "where": {"property": "category", "eq": "hiking"}}, view(events=events)
    )
    assert not holds(
        {"event": "order_completed", "where": {"property": "category", "eq": "Hiking"}}, view(events=events)
    )
    assert not holds(
        {"event": "order_completed", "where": {"property": "colour", "exists": True}}, view(events=events)
    )


def test_where_combines_with_all_any_not_and_lists() -> None:
    events = [event("order", category="hiking", total=30), event("order", category="food", total=300)]
    big_hiking = [{"property": "category", "eq": "hiking"}, {"property": "total", "gte": 100}]
    assert not holds({"event": "order", "where": big_hiking}, view(events=events))
    assert not holds({"event": "order", "where": {"all": big_hiking}}, view(events=events))
    assert holds({"event": "order", "where": {"any": big_hiking}, "count": {"eq": 2}}, view(events=events))
    not_food = {"not": {"property": "category", "eq": "food"}}
    assert holds({"event": "order", "where": not_food, "count": {"eq": 1}}, view(events=events))


@pytest.mark.parametrize(
    ("count", "n", "expected"),
    [
        ({"gte": 3}, 3, True),
        ({"gte": 3}, 2, False),
        ({"gt": 3}, 3, False),
        ({"eq": 0}, 0, True),
        ({"eq": 2}, 2, True),
        ({"ne": 2}, 2, False),
        ({"lt": 1}, 0, True),
        ({"lte": 1}, 2, False),
        ({"between": [2, 4]}, 2, True),
        ({"between": [2, 4]}, 4, True),
        ({"between": [2, 4]}, 5, False),
    ],
)
def test_count(count: dict[str, Any], n: int, expected: bool) -> None:
    events = [event("login", timedelta(hours=i)) for i in range(n)] + [event("logout")]
    assert holds({"event": "login", "count": count}, view(events=events)) is expected


def test_count_applies_within_and_where_together() -> None:
    events = [
        event("order", timedelta(days=1), category="hiking"),
        event("order", timedelta(days=200), category="hiking"),
        event("order", timedelta(days=2), category="food"),
    ]
    rule = {
        "event": "order",
        "where": {"property": "category", "eq": "hiking"},
        "count": {"eq": 1},
        "within": "180d",
    }
    assert holds(rule, view(events=events))


def test_sum_adds_numbers_only() -> None:
    events = [
        event("order", total=150),
        event("order", total=49.5),
        event("order", total=Decimal("0.5")),
        event("order", total="1000"),
        event("order", total=True),
        event("order", total=None),
        event("order"),
    ]
    assert holds({"event": "order", "sum": {"property": "total", "eq": 200}}, view(events=events))
    assert not holds({"event": "order", "sum": {"property": "total", "gt": 200}}, view(events=events))


def test_sum_over_no_events_is_zero() -> None:
    assert holds({"event": "order", "sum": {"property": "total", "lt": 1}})
    assert not holds({"event": "order", "sum": {"property": "total", "gte": 0.5}})


def test_sum_respects_within_and_where() -> None:
    events = [
        event("order", timedelta(days=10), total=150, kind="sale"),
        event("order", timedelta(days=400), total=150, kind="sale"),
        event("order", timedelta(days=1), total=100, kind="refund"),
    ]
    rule = {"event": "order", "within": "365d", "where": {"property": "kind", "eq": "sale"}}
    assert holds({**rule, "sum": {"property": "total", "between": [150, 150]}}, view(events=events))


def test_sum_is_independent_of_event_order() -> None:
    values = [0.1, 0.2, 0.3, 1e16, -1e16, 7]
    forward = [event("order", total=v) for v in values]
    rule = parse_rule({"event": "order", "sum": {"property": "total", "eq": 7.6}})
    assert evaluate(rule, view(events=forward)) == evaluate(rule, view(events=forward[::-1]))
    assert compile_rule(rule)(view(events=forward)) == compile_rule(rule)(view(events=forward[::-1]))


def test_first_and_last() -> None:
    events = [
        event("order", timedelta(days=20)),
        event("order", timedelta(days=100)),
        event("other", timedelta(days=1)),
    ]
    assert holds({"event": "order", "last": {"before": "-14d"}}, view(events=events))
    assert not holds({"event": "order", "last": {"before": "-30d"}}, view(events=events))
    assert holds({"event": "order", "first": {"before": "-90d"}}, view(events=events))
    assert not holds({"event": "order", "first": {"after": "-90d"}}, view(events=events))
    assert holds({"event": "order", "first": {"after": "2023-11-30"}}, view(events=events))
    assert not holds({"event": "order", "first": {"after": "2024-12-01"}}, view(events=events))


def test_first_and_last_need_an_event() -> None:
    assert not holds({"event": "order", "first": {"before": "+1d"}})
    assert not holds({"event": "order", "last": {"after": "2000-01-01"}})


def test_conditions_of_one_event_all_hold() -> None:
    events = [event("order", timedelta(days=d), total=100) for d in (1, 2, 3)]
    rule = {
        "event": "order",
        "count": {"gte": 3},
        "sum": {"property": "total", "gte": 300},
        "last": {"after": "-2d"},
    }
    assert holds(rule, view(events=events))
    assert not holds({**rule, "count": {"gte": 4}}, view(events=events))
    assert not holds({**rule, "sum": {"property": "total", "gt": 300}}, view(events=events))
    assert not holds({**rule, "last": {"after": "-1d"}}, view(events=events))


def test_event_order_does_not_matter() -> None:
    events = [event("a", timedelta(hours=h), n=h) for h in (5, 1, 9, 3)]
    rule = {"event": "a", "first": {"before": "-8h"}, "last": {"after": "-2h"}, "count": {"eq": 4}}
    assert holds(rule, view(events=events))
    assert holds(rule, view(events=sorted(events, key=lambda e: e.timestamp)))


def test_the_design_example() -> None:
    data = yaml.safe_load(
        """
        all:
          - {attribute: country, in: [DE, AT, CH]}
          - {tag: eco}
          - {event: order_completed, where: {property: category, eq: hiking}, count: {gte: 1}, within: 180d}
          - {event: order_completed, sum: {property: total, gte: 200}, within: 365d}
          - {event: page_viewed, within: 7d}
          - any:
              - {attribute: age, between: [25, 34]}
              - {segment: newsletter-readers}
          - not: {event: email_opened, within: 30d}
          - {consent: email}
        """
    )
    events = [
        event("order_completed", timedelta(days=100), category="hiking", total=120),
        event("order_completed", timedelta(days=300), category="tents", total=90),
        event("page_viewed", timedelta(days=2)),
        event("email_opened", timedelta(days=31)),
    ]
    contact = view(
        {"country": "AT", "age": 40},
        tags={"eco"},
        consent={"email": "subscribed"},
        events=events,
        segments={"newsletter-readers"},
    )
    assert holds(data, contact)
    assert not holds(
        data, dataclasses.replace(contact, events=[*events, event("email_opened", timedelta(days=29))])
    )
    assert not holds(data, dataclasses.replace(contact, attributes={"country": "ch", "age": 40}))


# --------------------------------------------------------------------------- parsing


def test_parse_reports_every_problem_with_its_path() -> None:
    data = {
        "all": [
            {"tag": ""},
            {"attribute": "age", "gte": True, "lt": 3},
            {"event": "x", "within": "7 days", "count": 3, "colour": "red"},
            {"attribute": "country", "in": "DE"},
            {"attribute": "age", "between": [30]},
            {"any": [{"attribute": "x", "gtee": 3}, {"consent": "fax"}]},
            {"not": {"event": "y", "where": {"property": "p", "eq": None}}},
        ]
    }
    assert problems(data) == [
        ("rule.all[0].tag", "must be a non-empty tag name; got the string ''"),
        ("rule.all[1].attribute", "has 2 operators (gte, lt): use one per condition (or between, or all)"),
        ("rule.all[1].attribute.gte", "must be a number or a string; got true"),
        ("rule.all[2].event.colour", "unknown key 'colour': expected where, within, count, sum, first, last"),
        (
            "rule.all[2].event.within",
            "invalid duration '7 days': write a whole number and a unit m, h, d or w, like '30m' or '7d'",
        ),
        ("rule.all[2].event.count", "must be a mapping like {gte: 3}; got the number 3"),
        ("rule.all[3].attribute.in", "must be a list of values; got the string 'DE'"),
        ("rule.all[4].attribute.between", "must be a list of two values [low, high]; got 1 values"),
        (
            "rule.all[5].any[0].attribute.gtee",
            "unknown operator 'gtee': expected one of eq, ne, in, not_in, gt, gte, lt, lte, between, "
            "contains, starts_with, exists, before, after; did you mean 'gte'?",
        ),
        ("rule.all[5].any[1].consent", "unknown channel 'fax': expected one of email, sms"),
        (
            "rule.all[6].not.event.where.property.eq",
            "is empty (null); use exists: false to test for a missing value",
        ),
    ]


def test_rule_error_lists_problems_in_its_message() -> None:
    with pytest.raises(RuleError) as caught:
        parse_rule({"all": [{"tag": 1}, {"segment": ""}]}, path="audience")
    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == (
        "2 problems in rule:\n"
        "  audience.all[0].tag: must be a non-empty tag name; got the number 1\n"
        "  audience.all[1].segment: must be a non-empty segment name; got the string ''"
    )
    assert (
        str(caught.value.problems[0]) == "audience.all[0].tag: must be a non-empty tag name; got the number 1"
    )
    assert caught.value.problems[0] == RuleProblem(
        "audience.all[0].tag", "must be a non-empty tag name; got the number 1"
    )


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        (
            None,
            "rule",
            "must be a mapping with one of attribute, tag, consent, segment, event, all, any, not",
        ),
        ([{"tag": "a"}], "rule", "must be a mapping"),
        ("vip", "rule", "must be a mapping"),
        ({}, "rule", "unknown condition (no keys)"),
        ({"tags": "a"}, "rule", "did you mean 'tag'?"),
        ({"tag": "a", "segment": "b"}, "rule", "mixes tag and segment: one condition per mapping"),
        ({"property": "p", "eq": 1}, "rule", "property conditions go inside an event's where"),
        ({"tag": "a", "negate": True}, "rule.tag.negate", "a tag condition takes no options"),
        ({"all": []}, "rule.all", "must list at least one condition"),
        ({"any": {"tag": "a"}}, "rule.any", "must be a list of conditions; got a mapping"),
        ({"all": [{"tag": "a"}], "any": [{"tag": "b"}]}, "rule", "mixes all and any"),
        ({"not": {"tag": "a"}, "why": 1}, "rule.why", "unknown key 'why' next to 'not'"),
        ({"attribute": "", "eq": 1}, "rule.attribute", "must be a non-empty attribute name"),
        ({"attribute": "a"}, "rule.attribute", "needs an operator"),
        (
            {"attribute": "a", "eq": [1]},
            "rule.attribute.eq",
            "must be a string, a number or true/false; got a list",
        ),
        ({"attribute": "a", "eq": date(2024, 1, 1)}, "rule.attribute.eq", "quote it"),
        ({"attribute": "a", "eq": float("nan")}, "rule.attribute.eq", "must be a finite number"),
        ({"attribute": "a", "in": []}, "rule.attribute.in", "must list at least one value"),
        ({"attribute": "a", "in": [1, None]}, "rule.attribute.in[1]", "is empty (null)"),
        (
            {"attribute": "a", "not_in": ["DE", "AT", False]},
            "rule.attribute.not_in",
            "YAML reads them as booleans",
        ),
        ({"attribute": "a", "gt": date(2024, 1, 1)}, "rule.attribute.gt", "dates compare with before/after"),
        ({"attribute": "a", "between": "1-3"}, "rule.attribute.between", "must be a list of values"),
        ({"attribute": "a", "between": [1, 2, 3]}, "rule.attribute.between", "got 3 values"),
        (
            {"attribute": "a", "between": [1, "z"]},
            "rule.attribute.between",
            "both be numbers or both be strings",
        ),
        ({"attribute": "a", "between": [5, 1]}, "rule.attribute.between", "low 5 is greater than high 1"),
        (
            {"attribute": "a", "between": [1, False]},
            "rule.attribute.between[1]",
            "must be a number or a string",
        ),
        ({"attribute": "a", "starts_with": 1}, "rule.attribute.starts_with", "must be a string"),
        ({"attribute": "a", "exists": "yes"}, "rule.attribute.exists", "must be true or false"),
        ({"attribute": "a", "before": "last week"}, "rule.attribute.before", "is not a time"),
        ({"attribute": "a", "before": "30d"}, "rule.attribute.before", "is not a time"),
        (
            {"attribute": "a", "before": "-30 days"},
            "rule.attribute.before",
            "invalid relative time '-30 days'",
        ),
        ({"attribute": "a", "after": "-40000w"}, "rule.attribute.after", "exceeds the limit"),
        ({"attribute": "a", "after": 20240101}, "rule.attribute.after", "must be a date or a relative time"),
        ({"event": ""}, "rule.event", "must be a non-empty event name"),
        ({"event": "x", "within": 7}, "rule.event.within", "must be a string like '7d'"),
        ({"event": "x", "within": "0d"}, "rule.event.within", "invalid duration '0d'"),
        ({"event": "x", "count": {"gte": -1}}, "rule.event.count.gte", "must be a whole number >= 0"),
        ({"event": "x", "count": {"gte": 1.5}}, "rule.event.count.gte", "must be a whole number >= 0"),
        ({"event": "x", "count": {"gte": True}}, "rule.event.count.gte", "must be a whole number >= 0"),
        (
            {"event": "x", "count": {"contains": 1}},
            "rule.event.count.contains",
            "unknown operator 'contains'",
        ),
        ({"event": "x", "count": {}}, "rule.event.count", "needs an operator"),
        ({"event": "x", "count": {"between": [3, 1]}}, "rule.event.count.between", "greater than high"),
        ({"event": "x", "sum": {"gte": 1}}, "rule.event.sum", "needs the property to add up"),
        ({"event": "x", "sum": {"property": "t", "gte": "1"}}, "rule.event.sum.gte", "must be a number"),
        (
            {"event": "x", "sum": {"property": 3, "gte": 1}},
            "rule.event.sum.property",
            "non-empty property name",
        ),
        ({"event": "x", "first": {"before": "-1d", "after": "-2d"}}, "rule.event.first", "has 2 operators"),
        ({"event": "x", "last": "-1d"}, "rule.event.last", "must be a mapping like {after: '-30d'}"),
        ({"event": "x", "where": {"attribute": "a", "eq": 1}}, "rule.event.where", "event properties only"),
        ({"event": "x", "where": []}, "rule.event.where", "must list at least one condition"),
        ({"event": "x", "where": [{"property": "p"}]}, "rule.event.where[0].property", "needs an operator"),
        ({"event": "x", "where": {"not": {"tag": "a"}}}, "rule.event.where.not", "event properties only"),
    ],
)
def test_parse_problem(data: object, path: str, message: str) -> None:
    found = problems(data)
    assert any(p == path and message in m for p, m in found), found


def test_problems_inside_a_broken_node_are_still_reported() -> None:
    found = problems({"attribute": "a", "gt": "x", "lt": [], "foo": 1})
    assert [p for p, _ in found] == ["rule.attribute.foo", "rule.attribute", "rule.attribute.lt"]


def test_yaml_unquoted_dates_and_durations_parse() -> None:
    data = yaml.safe_load("{attribute: signup, before: 2024-01-31, after: 2023-01-01T10:00:00Z}")
    assert "has 2 operators" in problems(data)[0][1]
    rule = parse_rule(yaml.safe_load("{attribute: signup, before: 2024-01-31}"))
    assert isinstance(rule, AttributeCondition)
    assert rule.value == date(2024, 1, 31)
    rule = parse_rule(yaml.safe_load("{attribute: seen, after: 2024-01-31T10:00:00+01:00}"))
    assert isinstance(rule, AttributeCondition)
    assert rule.value == datetime(2024, 1, 31, 9, 0, tzinfo=UTC)
    assert dump_rule(rule) == {"attribute": "seen", "after": "2024-01-31T09:00:00Z"}


def test_parse_accepts_parsed_nodes() -> None:
    tag = TagCondition(tag="vip")
    assert parse_rule(tag) is tag
    assert parse_rule({"all": [tag, {"tag": "eco"}]}) == parse_rule({"all": [{"tag": "vip"}, {"tag": "eco"}]})


def test_parse_where_and_evaluate_where() -> None:
    where = parse_where({"property": "cart_value", "gte": 20}, path="trigger.where")
    assert isinstance(where, PropertyCondition)
    assert evaluate_where(where, {"cart_value": 25}, NOW)
    assert not evaluate_where(where, {"cart_value": "25"}, NOW)
    assert compile_where(where)({"cart_value": 20}, NOW)
    with pytest.raises(RuleError) as caught:
        parse_where({"attribute": "x", "eq": 1}, path="trigger.where")
    assert caught.value.problems[0].path == "trigger.where"


# --------------------------------------------------------------------------- model and dump


def test_dump_writes_the_yaml_shape() -> None:
    data = {
        "all": [
            {"attribute": "country", "in": ["DE", "AT"]},
            {"attribute": "age", "between": [25, 34.5]},
            {"attribute": "signup", "after": "-30d"},
            {"attribute": "renewal", "before": "+2w"},
            {"attribute": "born", "before": "2000-01-01"},
            {"attribute": "seen", "after": "2024-01-01T10:00:00+02:00"},
            {
                "event": "order",
                "where": [{"property": "p", "eq": 1}],
                "within": "168h",
                "count": {"between": [1, 2]},
            },
            {
                "event": "order",
                "sum": {"property": "total", "gte": 200},
                "first": {"after": "-1w"},
                "last": {"before": "-60m"},
            },
            {"not": {"any": [{"tag": "x"}, {"segment": "s"}, {"consent": "sms"}]}},
        ]
    }
    assert dump_rule(parse_rule(data)) == {
        "all": [
            {"attribute": "country", "in": ["DE", "AT"]},
            {"attribute": "age", "between": [25, 34.5]},
            {"attribute": "signup", "after": "-30d"},
            {"attribute": "renewal", "before": "+2w"},
            {"attribute": "born", "before": "2000-01-01"},
            {"attribute": "seen", "after": "2024-01-01T08:00:00Z"},
            {
                "event": "order",
                "where": {"all": [{"property": "p", "eq": 1}]},
                "within": "1w",
                "count": {"between": [1, 2]},
            },
            {
                "event": "order",
                "sum": {"property": "total", "gte": 200},
                "first": {"after": "-1w"},
                "last": {"before": "-1h"},
            },
            {"not": {"any": [{"tag": "x"}, {"segment": "s"}, {"consent": "sms"}]}},
        ]
    }
    json.dumps(dump_rule(parse_rule(data)))


def test_equality_keeps_types_apart() -> None:
    one, true, one_float = (parse_rule({"attribute": "a", "eq": v}) for v in (1, True, 1.0))
    assert one != true
    assert one != one_float
    assert one == parse_rule({"attribute": "a", "eq": 1})
    assert hash(one) == hash(parse_rule({"attribute": "a", "eq": 1}))
    assert len({one, true, one_float}) == 3
    assert parse_rule({"event": "e", "within": "7d"}) == parse_rule({"event": "e", "within": "1w"})


def test_nodes_are_immutable() -> None:
    rule = parse_rule({"tag": "a"})
    with pytest.raises(pydantic.ValidationError):
        rule.tag = "b"  # type: ignore[misc,union-attr]


class _Workflow(pydantic.BaseModel):
    audience: Rule | None = None


def test_rule_as_a_pydantic_field_reads_and_writes_the_yaml_shape() -> None:
    model = _Workflow.model_validate(
        {"audience": {"all": [{"tag": "x"}, {"attribute": "a", "after": "-7d"}]}}
    )
    assert isinstance(model.audience, AllRule)
    assert model.model_dump() == {"audience": {"all": [{"tag": "x"}, {"attribute": "a", "after": "-1w"}]}}
    assert _Workflow.model_validate_json(model.model_dump_json()) == model
    assert _Workflow(audience=TagCondition(tag="x")).audience == TagCondition(tag="x")


def test_rule_as_a_pydantic_field_reports_rule_problems() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"rule.all\[0\].tag: must be a non-empty tag name"):
        _Workflow.model_validate({"audience": {"all": [{"tag": ""}]}})


# --------------------------------------------------------------------------- analysis


def test_referenced_segments() -> None:
    rule = parse_rule({"all": [{"segment": "a"}, {"not": {"any": [{"segment": "b"}, {"tag": "c"}]}}]})
    assert referenced_segments(rule) == {"a", "b"}
    assert referenced_segments(parse_rule({"tag": "x"})) == set()


def test_max_within() -> None:
    rule = parse_rule(
        {"any": [{"event": "a", "within": "30d"}, {"not": {"event": "b", "within": "1w"}}, {"event": "c"}]}
    )
    assert max_within(rule) == timedelta(days=30)
    assert max_within(parse_rule({"event": "c"})) is None


def test_dependencies() -> None:
    rule = parse_rule(
        {
            "all": [
                {"attribute": "country", "eq": "DE"},
                {"any": [{"tag": "x"}, {"segment": "s"}]},
                {"not": {"event": "opened", "where": {"property": "p", "eq": 1}}},
                {"attribute": "born", "before": "2000-01-01"},
            ]
        }
    )
    assert dependencies(rule) == Dependencies(
        attributes=frozenset({"country", "born"}),
        tags=True,
        consent=False,
        events=frozenset({"opened"}),
        segments=frozenset({"s"}),
        time=False,
        tag_names=frozenset({"x"}),
        channels=frozenset(),
    )


@pytest.mark.parametrize(
    "data",
    [
        {"event": "a", "within": "1d"},
        {"attribute": "signup", "after": "-30d"},
        {"event": "a", "first": {"before": "-1d"}},
        {"event": "a", "last": {"after": "+1d"}},
        {"event": "a", "where": {"not": {"property": "at", "before": "+1h"}}},
        {"not": {"any": [{"tag": "x"}, {"consent": "email"}, {"event": "b", "within": "1h"}]}},
    ],
)
def test_dependencies_see_time(data: dict[str, Any]) -> None:
    assert dependencies(parse_rule(data)).time


def test_dependencies_consent() -> None:
    deps = dependencies(parse_rule({"consent": "sms"}))
    assert deps.consent
    assert not deps.tags
    assert not deps.time
    assert deps.channels == {"sms"}


def test_history_is_the_events_read_and_how_far_back() -> None:
    rule = parse_rule(
        {
            "all": [
                {"event": "a", "within": "7d"},
                {"any": [{"event": "b", "within": "30d"}, {"tag": "x"}]},
            ]
        }
    )
    assert rules.history(rule) == rules.History(frozenset({"a", "b"}), timedelta(days=30))
    assert rules.history(rule).since(NOW) == NOW - timedelta(days=30)
    unbounded = parse_rule(
        {"any": [{"event": "a", "within": "7d"}, {"event": "c", "last": {"before": "-90d"}}]}
    )
    assert rules.history(unbounded) == rules.History(frozenset({"a", "c"}), None)
    assert rules.history(unbounded).since(NOW) is None
    assert rules.history(parse_rule({"tag": "x"})) == rules.NO_HISTORY
    assert rules.history(unbounded).covers(rules.history(rule)) is False  # b is not read
    assert rules.history(rule).union(rules.history(unbounded)).covers(rules.history(rule))
    assert not rules.history(rule).covers(rules.history(unbounded))  # no window reads everything


def test_inline_segments_replaces_the_references_it_knows() -> None:
    rule = parse_rule({"all": [{"segment": "a"}, {"not": {"segment": "b"}}, {"any": [{"segment": "a"}]}]})
    inlined = rules.inline_segments(rule, lambda sid: parse_rule({"tag": "t"}) if sid == "a" else None)
    assert inlined == parse_rule({"all": [{"tag": "t"}, {"not": {"segment": "b"}}, {"any": [{"tag": "t"}]}]})


# --------------------------------------------------------------------------- next_time_change


def test_next_time_change_when_the_last_event_leaves_the_window() -> None:
    rule = parse_rule({"event": "page_viewed", "within": "7d"})
    contact = view(events=[event("page_viewed", timedelta(days=d)) for d in (1, 3, 6)])
    assert next_time_change(rule, contact) == NOW + timedelta(days=6)
    assert next_time_change(rule, view()) is None


def test_next_time_change_when_a_future_event_enters_the_window() -> None:
    rule = parse_rule({"not": {"event": "webinar", "within": "1h"}})
    assert next_time_change(rule, view(events=[event("webinar", -timedelta(hours=5))])) == NOW + timedelta(
        hours=5
    )


def test_next_time_change_for_counts_steps_through_the_window() -> None:
    rule = parse_rule({"event": "login", "within": "1d", "count": {"gte": 2}})
    contact = view(events=[event("login", timedelta(hours=h)) for h in (1, 5, 20)])
    assert next_time_change(rule, contact) == NOW + timedelta(hours=19)


def test_next_time_change_for_relative_dates() -> None:
    after = parse_rule({"attribute": "signup", "after": "-30d"})
    contact = view({"signup": "2024-03-01T06:00:00Z"})
    assert next_time_change(after, contact) == datetime(2024, 3, 31, 6, 0, tzinfo=UTC)
    before = parse_rule({"attribute": "signup", "before": "-30d"})
    assert next_time_change(before, contact) == datetime(2024, 3, 31, 6, 0, tzinfo=UTC) + US
    by_day = parse_rule({"attribute": "signup", "before": "-30d"})
    assert next_time_change(by_day, view({"signup": "2024-03-01"})) == datetime(2024, 4, 1, tzinfo=UTC)


def test_next_time_change_is_exact_not_merely_possible() -> None:
    rule = parse_rule({"any": [{"tag": "vip"}, {"event": "a", "within": "1d"}]})
    contact = view(tags={"vip"}, events=[event("a")])
    assert next_time_change(rule, contact) is None
    assert next_time_change(rule, dataclasses.replace(contact, tags=frozenset())) == NOW + timedelta(days=1)


def test_next_time_change_ignores_rules_that_do_not_depend_on_time() -> None:
    rule = parse_rule({"all": [{"attribute": "born", "before": "2000-01-01"}, {"event": "a"}]})
    assert (
        next_time_change(rule, view({"born": "1990-01-01"}, events=[event("a", -timedelta(days=1))])) is None
    )


def test_next_time_change_without_a_segment_resolver_falls_back_to_the_first_candidate() -> None:
    rule = parse_rule({"all": [{"segment": "s"}, {"event": "a", "within": "1d"}]})
    contact = view(events=[event("a", timedelta(hours=h)) for h in (1, 2)])
    assert next_time_change(rule, contact) == NOW + timedelta(hours=22)
    assert next_time_change(rule, dataclasses.replace(contact, segment=lambda s: True)) == NOW + timedelta(
        hours=23
    )


# --------------------------------------------------------------------------- contact view


def test_times_are_kept_in_utc() -> None:
    berlin = timezone(timedelta(hours=1))
    contact = view(now=datetime(2024, 3, 10, 13, 0, tzinfo=berlin))
    assert contact.now == NOW
    assert contact.now.tzinfo is UTC
    assert view(now=datetime(2024, 3, 10, 12, 0)).now == NOW
    record = EventRecord("a", datetime(2024, 1, 1, 1, 0, tzinfo=berlin))
    assert record.timestamp == datetime(2024, 1, 1, tzinfo=UTC)
    assert record.timestamp.tzinfo is UTC
    assert record.properties == {}


def test_the_event_index_follows_appends() -> None:
    rule = compile_rule(parse_rule({"event": "a", "count": {"eq": 2}}))
    events = [event("a")]
    contact = view(events=events)
    assert not rule(contact)
    contact.events.append(event("a"))  # type: ignore[attr-defined]
    assert rule(contact)
    assert [e.name for e in contact.events_named("a")] == ["a", "a"]
    assert contact.events_named("b") == ()


def test_a_compiled_rule_is_reusable_across_contacts() -> None:
    check = compile_rule(parse_rule({"all": [{"attribute": "n", "gt": 1}, {"event": "e", "within": "1h"}]}))
    assert check(view({"n": 2}, events=[event("e")]))
    assert not check(view({"n": 2}, events=[event("e", timedelta(hours=2))]))
    assert not check(view({"n": 1}, events=[event("e")]))


def test_the_domain_stays_pure() -> None:
    banned = {"boto3", "botocore", "pynamodb", "aws_lambda_powertools"}
    for module in (rules, rules.parse_duration.__module__):
        path = (
            Path(module.__file__)
            if not isinstance(module, str)
            else Path(rules.__file__).with_name("durations.py")
        )
        tree = ast.parse(path.read_text())
        imported = {
            (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        assert not {name.split(".")[0] for name in imported} & banned, path
