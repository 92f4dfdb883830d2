"""Properties of the rule language over random rules, contacts and events.

Values come from small pools so that rules and contacts collide often, and event
times sit on the edges of the windows the rules use.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.domain import rules
from cairn.domain.durations import parse_duration
from cairn.domain.rules import (
    ContactView,
    EventRecord,
    Rule,
    SegmentUnavailable,
    compile_rule,
    dependencies,
    dump_rule,
    evaluate,
    next_time_change,
    parse_rule,
)

FAST = settings(max_examples=200, deadline=None)
BASE = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)

DURATIONS = ["30m", "1h", "2h", "1d", "2d", "1w"]
OFFSETS = sorted(
    {timedelta(0), US, -US}
    | {sign * parse_duration(d) + nudge for d in DURATIONS for sign in (1, -1) for nudge in (timedelta(0), US, -US)}
)
ATTRIBUTES = ["a", "b", "c"]
PROPERTIES = ["p", "q"]
EVENTS = ["e1", "e2"]
TAGS = ["t1", "t2"]
SEGMENTS = ["s1", "s2"]

# ---- rule data

texts = st.sampled_from(["", "a", "ab", "b", "A", "5", "DE", "2024-03-09", "2024-03-10T12:00:00Z"])
numbers = st.one_of(st.integers(-2, 6), st.sampled_from([0.5, 1.0, 2.5, -0.0, 1e16]))
scalars = st.one_of(texts, numbers, st.booleans())
relative = st.builds(lambda sign, d: sign + d, st.sampled_from("+-"), st.sampled_from(DURATIONS))
absolute = st.one_of(
    st.sampled_from(["2024-03-09", "2024-03-10", "2024-03-10T12:00:00Z", "2024-03-10T11:30:00+01:00"]),
    st.sampled_from([date(2024, 3, 9), datetime(2024, 3, 10, 11, 0, tzinfo=UTC), datetime(2024, 3, 8, 12)]),
)
time_refs = st.one_of(relative, absolute)


def _not_norway(values: list[Any]) -> bool:
    return not (any(isinstance(v, bool) for v in values) and any(isinstance(v, str) for v in values))


def operand(op: str) -> st.SearchStrategy[Any]:
    if op in ("eq", "ne", "contains"):
        return scalars
    if op in ("in", "not_in"):
        return st.lists(scalars, min_size=1, max_size=4).filter(_not_norway)
    if op in ("gt", "gte", "lt", "lte"):
        return st.one_of(texts, numbers)
    if op == "between":
        return st.one_of(st.lists(texts, min_size=2, max_size=2), st.lists(numbers, min_size=2, max_size=2)).map(sorted)
    if op == "starts_with":
        return texts
    if op == "exists":
        return st.booleans()
    return time_refs


def leaf(key: str, names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(rules.OPERATORS).flatmap(
        lambda op: st.builds(lambda name, value: {key: name, op: value}, st.sampled_from(names), operand(op))
    )


def tree(leaves: st.SearchStrategy[Any], depth: int) -> st.SearchStrategy[Any]:
    """Leaves under all/any/not, at most ``depth`` deep; each shape about as likely."""
    if depth == 0:
        return leaves
    children = tree(leaves, depth - 1)
    groups = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        leaves,
        groups.map(lambda rs: {"all": rs}),
        groups.map(lambda rs: {"any": rs}),
        children.map(lambda r: {"not": r}),
    )


wheres = st.one_of(
    tree(leaf("property", PROPERTIES), 2),
    st.lists(leaf("property", PROPERTIES), min_size=1, max_size=2),
)


def number_test(integer: bool) -> st.SearchStrategy[dict[str, Any]]:
    values = st.integers(0, 4) if integer else numbers
    return st.sampled_from(rules.NUMBER_OPERATORS).flatmap(
        lambda op: (st.lists(values, min_size=2, max_size=2).map(sorted) if op == "between" else values).map(
            lambda v: {op: v}
        )
    )


time_tests = st.builds(lambda op, ref: {op: ref}, st.sampled_from(["before", "after"]), time_refs)

event_conditions = st.fixed_dictionaries(
    {"event": st.sampled_from(EVENTS)},
    optional={
        "where": wheres,
        "within": st.sampled_from(DURATIONS),
        "count": number_test(integer=True),
        "sum": st.builds(lambda p, t: {"property": p, **t}, st.sampled_from(PROPERTIES), number_test(integer=False)),
        "first": time_tests,
        "last": time_tests,
    },
)

rule_leaves = st.one_of(
    leaf("attribute", ATTRIBUTES),
    leaf("attribute", ATTRIBUTES),
    st.sampled_from(TAGS).map(lambda t: {"tag": t}),
    st.sampled_from(rules.CHANNELS).map(lambda c: {"consent": c}),
    st.sampled_from(SEGMENTS).map(lambda s: {"segment": s}),
    event_conditions,
)
rule_data = tree(rule_leaves, 3)
parsed_rules = rule_data.map(parse_rule)

# rules that change with time more often than not
event_names = st.sampled_from(EVENTS)
timed_leaves = st.one_of(
    st.builds(lambda e, w: {"event": e, "within": w}, event_names, st.sampled_from(DURATIONS)),
    st.builds(
        lambda e, w, c: {"event": e, "within": w, "count": c},
        event_names,
        st.sampled_from(DURATIONS),
        number_test(integer=True),
    ),
    st.builds(lambda c, w: {**c, "within": w}, event_conditions, st.sampled_from(DURATIONS)),
    st.builds(
        lambda name, op, ref: {"attribute": name, op: ref},
        st.sampled_from(ATTRIBUTES),
        st.sampled_from(["before", "after"]),
        relative,
    ),
    st.builds(
        lambda e, key, op, ref: {"event": e, key: {op: ref}},
        event_names,
        st.sampled_from(["first", "last"]),
        st.sampled_from(["before", "after"]),
        relative,
    ),
    st.builds(
        lambda e, prop, op, ref: {"event": e, "where": {"property": prop, op: ref}},
        event_names,
        st.sampled_from(PROPERTIES),
        st.sampled_from(["before", "after"]),
        relative,
    ),
)
timed_rules = tree(st.one_of(timed_leaves, timed_leaves, timed_leaves, rule_leaves), 2).map(parse_rule)

# ---- contacts

moments = st.sampled_from(OFFSETS).map(lambda o: BASE + o)
time_values = st.one_of(
    moments.map(lambda m: m.isoformat()),
    moments.map(lambda m: m.date().isoformat()),
    moments,
    st.sampled_from(["2024-03-09", "2024-03-11", "2024-02-30", "20240309", "2024-03-10T13:00:00+01:00"]),
)
odd = st.sampled_from([Decimal("1"), Decimal("2.5"), Decimal("NaN"), float("nan"), {"a": 1}])
values = st.one_of(st.none(), scalars, scalars, st.lists(scalars, max_size=3), time_values, odd)
property_maps = st.dictionaries(st.sampled_from(PROPERTIES), values, max_size=2)
event_records = st.builds(EventRecord, st.sampled_from([*EVENTS, "other"]), moments, property_maps)


timed_events = st.builds(
    EventRecord, st.sampled_from(EVENTS), moments, st.dictionaries(st.sampled_from(PROPERTIES), time_values, max_size=2)
)


@st.composite
def contacts(draw: st.DrawFn, resolver: bool | None = None, timed: bool = False) -> ContactView:
    members = draw(st.frozensets(st.sampled_from(SEGMENTS)))
    with_resolver = draw(st.booleans()) if resolver is None else resolver
    attribute_values = st.one_of(values, time_values, time_values) if timed else values
    more_events = st.lists(timed_events, max_size=4) if timed else st.just([])
    return ContactView(
        attributes=draw(st.dictionaries(st.sampled_from(ATTRIBUTES), attribute_values, max_size=3)),
        tags=draw(st.frozensets(st.sampled_from(TAGS))),
        consent=draw(st.dictionaries(st.sampled_from(rules.CHANNELS), st.sampled_from(["subscribed", "unsubscribed"]))),
        events=draw(st.lists(event_records, max_size=6)) + draw(more_events),
        now=BASE + draw(st.sampled_from([timedelta(0), US, -US, timedelta(minutes=30)])),
        segment=members.__contains__ if with_resolver else None,
    )


def outcome(run: Callable[[], bool]) -> object:
    try:
        return run()
    except SegmentUnavailable as error:
        return ("unavailable", error.segment_id)


def at(rule: Rule, contact: ContactView, now: datetime) -> bool:
    return evaluate(rule, dataclasses.replace(contact, now=now))


# ---- properties


@FAST
@given(st.one_of(parsed_rules, timed_rules), st.one_of(contacts(), contacts(timed=True)))
def test_compiled_rules_agree_with_the_reference_evaluator(rule: Rule, contact: ContactView) -> None:
    expected = outcome(lambda: evaluate(rule, contact))
    check = compile_rule(rule)
    assert outcome(lambda: check(contact)) == expected
    assert outcome(lambda: check(contact)) == expected  # again, with the event index built


@FAST
@given(rule_data)
def test_dump_then_parse_gives_back_the_rule(data: Any) -> None:
    rule = parse_rule(data)
    dumped = dump_rule(rule)
    assert parse_rule(dumped) == rule
    assert dump_rule(parse_rule(dumped)) == dumped
    assert parse_rule(json.loads(json.dumps(dumped))) == rule
    assert parse_rule(yaml.safe_load(yaml.safe_dump(dumped))) == rule
    assert hash(parse_rule(dumped)) == hash(rule)


@FAST
@given(
    st.one_of(parsed_rules, timed_rules, timed_leaves.map(parse_rule)),
    contacts(resolver=True, timed=True),
    st.lists(st.floats(0, 1), min_size=1, max_size=3),
)
def test_nothing_changes_before_next_time_change(rule: Rule, contact: ContactView, fractions: list[float]) -> None:
    now = contact.now
    current = evaluate(rule, contact)
    change = next_time_change(rule, contact)
    if change is None:
        for later in (US, timedelta(hours=1), timedelta(days=3), timedelta(days=30), timedelta(days=400)):
            assert at(rule, contact, now + later) == current
        return
    assert change > now
    assert at(rule, contact, change) != current
    assert at(rule, contact, change - US) == current
    for fraction in fractions:
        assert at(rule, contact, min(now + (change - now) * fraction, change - US)) == current


@FAST
@given(st.one_of(parsed_rules, timed_rules), contacts(resolver=True, timed=True), contacts(resolver=True, timed=True))
def test_what_a_rule_does_not_depend_on_cannot_change_it(rule: Rule, contact: ContactView, other: ContactView) -> None:
    deps = dependencies(rule)
    mixed = ContactView(
        attributes={
            **{k: v for k, v in other.attributes.items() if k not in deps.attributes},
            **{k: v for k, v in contact.attributes.items() if k in deps.attributes},
        },
        tags=contact.tags if deps.tags else other.tags,
        consent=contact.consent if deps.consent else other.consent,
        events=[e for e in contact.events if e.name in deps.events]
        + [e for e in other.events if e.name not in deps.events],
        now=contact.now if deps.time else other.now,
        segment=contact.segment,
    )
    assert evaluate(rule, mixed) == evaluate(rule, contact)


@FAST
@given(parsed_rules)
def test_analysis_matches_the_tree(rule: Rule) -> None:
    deps = dependencies(rule)
    assert deps.segments == frozenset(rules.referenced_segments(rule))
    window = rules.max_within(rule)
    assert (window is not None) <= deps.time
    assert window is None or window in {parse_duration(d) for d in DURATIONS}
