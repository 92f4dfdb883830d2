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
    | {
        sign * parse_duration(d) + nudge
        for d in DURATIONS
        for sign in (1, -1)
        for nudge in (timedelta(0), US, -US)
    }
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
    st.sampled_from(
        [date(2024, 3, 9), datetime(2024, 3, 10, 11, 0, 0, 250, tzinfo=UTC), datetime(2024, 3, 8, 12)]
    ),
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
        return st.one_of(
            st.lists(texts, min_size=2, max_size=2), st.lists(numbers, min_size=2, max_size=2)
        ).map(sorted)
    if op == "starts_with":
        return texts
    if op == "exists":
        return st.booleans()
    return time_refs


def leaf(key: str, names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(rules.OPERATORS).flatmap(
        lambda op: st.builds(lambda name, value: {key: name, op: value}, st.sampled_from(names), operand(op))
    )


def combinators(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    groups = st.lists(children, min_size=2, max_size=3)
    return st.one_of(
        groups.map(lambda rs: {"all": rs}),
        groups.map(lambda rs: {"any": rs}),
        children.map(lambda r: {"not": r}),
        children.map(lambda r: {"all": [r]}),
    )


def tree(leaves: st.SearchStrategy[Any], depth: int) -> st.SearchStrategy[Any]:
    """A combinator over leaves and smaller trees, at most ``depth`` deep."""
    if depth == 1:
        return combinators(leaves)
    return combinators(st.one_of(leaves, tree(leaves, depth - 1)))


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
        "sum": st.builds(
            lambda p, t: {"property": p, **t}, st.sampled_from(PROPERTIES), number_test(integer=False)
        ),
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
    EventRecord,
    st.sampled_from(EVENTS),
    moments,
    st.dictionaries(st.sampled_from(PROPERTIES), time_values, max_size=2),
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
        consent=draw(
            st.dictionaries(st.sampled_from(rules.CHANNELS), st.sampled_from(["subscribed", "unsubscribed"]))
        ),
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


some_contacts = st.lists(st.one_of(contacts(), contacts(timed=True)), min_size=1, max_size=4)
any_rules = st.one_of(parsed_rules, timed_rules, timed_leaves.map(parse_rule))


@FAST
@given(any_rules, some_contacts)
def test_compiled_rules_agree_with_the_reference_evaluator(rule: Rule, people: list[ContactView]) -> None:
    check = compile_rule(rule)
    for contact in people:
        expected = outcome(lambda: evaluate(rule, contact))  # noqa: B023 - called at once
        assert outcome(lambda: check(contact)) == expected  # noqa: B023
        assert outcome(lambda: check(contact)) == expected  # noqa: B023 - again, with the event index built


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
    any_rules,
    st.lists(contacts(resolver=True, timed=True), min_size=1, max_size=3),
    st.lists(st.floats(0, 1), min_size=1, max_size=3),
)
def test_nothing_changes_before_next_time_change(
    rule: Rule, people: list[ContactView], fractions: list[float]
) -> None:
    for contact in people:
        now = contact.now
        current = evaluate(rule, contact)
        change = next_time_change(rule, contact)
        if change is None:
            for later in (US, timedelta(hours=1), timedelta(days=3), timedelta(days=30), timedelta(days=400)):
                assert at(rule, contact, now + later) == current
            continue
        assert change > now
        assert at(rule, contact, change) != current
        assert at(rule, contact, change - US) == current
        for fraction in fractions:
            assert at(rule, contact, min(now + (change - now) * fraction, change - US)) == current


@FAST
@given(
    any_rules,
    st.lists(
        st.tuples(contacts(resolver=True, timed=True), contacts(timed=True), st.sampled_from(OFFSETS)),
        min_size=1,
        max_size=2,
    ),
)
def test_what_a_rule_does_not_depend_on_cannot_change_it(
    rule: Rule, cases: list[tuple[ContactView, ContactView, timedelta]]
) -> None:
    deps = dependencies(rule)
    for contact, other, shift in cases:
        _check_independence(rule, deps, contact, dataclasses.replace(other, now=contact.now + shift))


def _check_independence(
    rule: Rule, deps: rules.Dependencies, contact: ContactView, other: ContactView
) -> None:
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


# ---- exhaustive agreement over small pools (every operator, operand and value)

MISSING: Any = object()
VALUE_POOL: list[Any] = [
    MISSING, None, "", "a", "ab", "A", "5", "DE", "b",
    0, 1, 2, 5, -1, 0.5, 1.0, 2.5, -0.0, True, False,
    Decimal("1"), Decimal("2.5"), Decimal("NaN"), float("nan"), float("inf"),
    ["a"], ["a", 1], [1], [True], [1.0], ("a",), {"a"}, frozenset({1}), {"a": 1},
    "2024-03-09", "2024-03-10", "2024-03-10T12:00:00Z", "2024-03-10T11:59:59.999999Z", "2024-03-03T12:00:00Z",
    "2024-03-10T13:00:00+01:00", "2024-02-30", "20240310", date(2024, 3, 9), datetime(2024, 3, 10, 12),
]  # fmt: skip
OPERAND_POOL: dict[str, list[Any]] = {
    "eq": ["a", "A", "5", "", 1, 0, 2.5, -0.0, True, False],
    "ne": ["a", 1, 1.0, True, False],
    "contains": ["a", "", 1, 1.0, True],
    "in": [["a", "b"], [1, 2.5], [True], [False, 0], ["5", 5], ["DE"]],
    "not_in": [["a", "b"], [1], [True], ["DE", 5]],
    "gt": ["a", "", 1, 0.5, -1],
    "gte": ["a", 1, 2.5],
    "lt": ["b", 1, 2.5, 0],
    "lte": ["a", 1, 0],
    "between": [[0, 1], [1, 1], [0.5, 5], ["a", "b"], ["", "a"]],
    "starts_with": ["a", "", "2024"],
    "exists": [True, False],
    "before": ["2024-03-10", "2024-03-10T12:00:00Z", "-1w", "+1h", "-1d", date(2024, 3, 9)],
    "after": [
        "2024-03-09",
        "2024-03-10T11:59:59Z",
        "-1w",
        "+1h",
        "-1d",
        datetime(2024, 3, 10, 12, tzinfo=UTC),
    ],
}


def _agree(rule: Rule, contact: ContactView) -> None:
    assert compile_rule(rule)(contact) == evaluate(rule, contact), (dump_rule(rule), contact)


def test_pools_cover_every_operator() -> None:
    assert set(OPERAND_POOL) == set(rules.OPERATORS)


def test_every_leaf_agrees_on_every_value() -> None:
    for op, operands in OPERAND_POOL.items():
        for value in operands:
            attribute = parse_rule({"attribute": "x", op: value})
            where = {"property": "x", op: value}
            bare = parse_rule({"event": "e", "where": where})
            counted = parse_rule({"event": "e", "where": {"not": where}, "count": {"lt": 1}})
            for x in VALUE_POOL:
                fields = {} if x is MISSING else {"x": x}
                for now in (BASE, BASE + US):
                    events = [EventRecord("e", BASE, fields)]
                    _agree(attribute, ContactView(fields, frozenset(), {}, [], now))
                    _agree(bare, ContactView({}, frozenset(), {}, events, now))
                    _agree(counted, ContactView({}, frozenset(), {}, events, now))


EVENT_RULES = [
    {"event": "e"},
    {"event": "e", "count": {"gte": 1}},
    {"event": "e", "count": {"eq": 2}},
    {"event": "e", "count": {"between": [1, 2]}},
    {"event": "e", "sum": {"property": "n", "gte": 2}},
    {"event": "e", "sum": {"property": "n", "eq": 1.5}},
    {"event": "e", "sum": {"property": "n", "lt": 1}},
    {"event": "e", "first": {"before": "-1d"}},
    {"event": "e", "first": {"after": "-1d"}},
    {"event": "e", "last": {"before": "-1h"}},
    {"event": "e", "last": {"after": "+1h"}},
    {"event": "e", "first": {"after": "2024-03-09"}},
    {"event": "e", "last": {"before": "2024-03-10T12:00:00Z"}},
]


def test_every_event_condition_agrees_and_changes_when_predicted() -> None:
    stamps = [BASE + o for o in OFFSETS]
    histories = [
        [],
        *([(s, 1)] for s in stamps),
        *([(s, 1), (t, 0.5)] for s, t in zip(stamps, stamps[3:], strict=False)),
    ]
    for data in EVENT_RULES:
        for within in (None, *DURATIONS):
            rule = parse_rule(data if within is None else {**data, "within": within})
            for history in histories:
                events = [EventRecord("e", s, {"n": n}) for s, n in history] + [
                    EventRecord("f", BASE, {"n": 9})
                ]
                contact = ContactView({}, frozenset(), {}, events, BASE)
                _agree(rule, contact)
                _agree(parse_rule({"not": dump_rule(rule)}), contact)
                _changes_as_predicted(rule, contact)


def _changes_as_predicted(rule: Rule, contact: ContactView) -> None:
    """``next_time_change`` is exact and nothing changes before it; no time dependency, no change."""
    now, current = contact.now, evaluate(rule, contact)
    change = next_time_change(rule, contact)
    probes = [now + o for o in OFFSETS if o > timedelta(0)] + [now + timedelta(days=d) for d in (3, 30, 400)]
    if change is not None:
        assert at(rule, contact, change) != current, (dump_rule(rule), contact)
        assert at(rule, contact, change - US) == current, (dump_rule(rule), contact)
    for probe in probes:
        if change is None or probe < change:
            assert at(rule, contact, probe) == current, (dump_rule(rule), contact, probe)
    if not dependencies(rule).time:
        assert change is None
        assert all(at(rule, contact, now + o) == current for o in OFFSETS)


TIME_POOL: list[Any] = [
    "2024-03-08", "2024-03-09", "2024-03-10", "2024-03-11", "2024-03-17",
    date(2024, 3, 9), datetime(2024, 3, 10, 11),
    *((BASE + o).isoformat() for o in OFFSETS[::3]), *((BASE + o).date().isoformat() for o in OFFSETS[::5]),
]  # fmt: skip


def test_time_driven_leaves_change_exactly_when_predicted() -> None:
    for op in ("before", "after"):
        for ref in ("-1d", "+1h", "-30m", "-1w", "+2d", "2024-03-10"):
            attribute = parse_rule({"attribute": "x", op: ref})
            where = parse_rule({"event": "e", "where": {"property": "x", op: ref}})
            first = parse_rule({"event": "e", "first": {op: ref}})
            last = parse_rule({"event": "e", "last": {op: ref}, "count": {"gte": 1}})
            for x in TIME_POOL:
                _changes_as_predicted(attribute, ContactView({"x": x}, frozenset(), {}, [], BASE))
                events = [EventRecord("e", BASE, {"x": x})]
                _changes_as_predicted(where, ContactView({}, frozenset(), {}, events, BASE))
            for offset in OFFSETS:
                events = [EventRecord("e", BASE + offset), EventRecord("e", BASE - timedelta(days=3))]
                for rule in (first, last):
                    _changes_as_predicted(rule, ContactView({}, frozenset(), {}, events, BASE))
