"""Properties of segments over random rules, contacts and changes (hypothesis):

- a segment reference inlined evaluates as the referenced rule evaluated live;
- reading only the history a rule needs (its event names, back to its longest window) changes nothing;
- a change the dependency index says a segment does not read cannot change its membership (so the react
  function may skip it), with changes taken from two random images of a stored profile.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.test_rules_properties import (
    ATTRIBUTES,
    BASE,
    TAGS,
    contacts,
    event_records,
    rule_data,
    values,
)

from cairn.adapters.contacts import Profile
from cairn.domain import rules
from cairn.domain.rules import ContactView, EventRecord, evaluate
from cairn.domain.segments import Change, SegmentCatalog, bucket_time, due_bucket
from cairn.services.segments import profile_change
from cairn.services.views import attributes_of, consent_of

FAST = settings(max_examples=100, deadline=None)
STATIC = "l"


def _refs(rule: Any, allowed: list[str]) -> Any:
    """Rule data with its segment references pointed at ``allowed`` ids (none: a tag instead)."""
    if isinstance(rule, dict):
        if "segment" in rule:
            pick = sum(map(ord, str(rule["segment"])))  # deterministic, so hypothesis can replay it
            return {"segment": allowed[pick % len(allowed)]} if allowed else {"tag": "t1"}
        return {k: _refs(v, allowed) if k in ("all", "any", "not") else v for k, v in rule.items()}
    if isinstance(rule, list):
        return [_refs(r, allowed) for r in rule]
    return rule


@st.composite
def catalogs(draw: st.DrawFn) -> tuple[SegmentCatalog, dict[str, rules.Rule]]:
    """Three dynamic segments, each referencing only earlier ones or the static list (no cycles)."""
    written: dict[str, rules.Rule] = {}
    data: dict[str, Any] = {STATIC: {"id": STATIC, "name": STATIC, "kind": "static"}}
    for index in range(3):
        sid = f"s{index}"
        rule = _refs(draw(rule_data), [STATIC, *(f"s{i}" for i in range(index))])
        written[sid] = rules.parse_rule(rule)
        data[sid] = {"id": sid, "name": sid, "rule": rule}
    return SegmentCatalog.from_data(data), written


@FAST
@given(catalogs(), st.lists(contacts(resolver=False, timed=True), min_size=1, max_size=3), st.booleans())
def test_an_inlined_reference_evaluates_as_the_referenced_rule_evaluated_live(
    built: tuple[SegmentCatalog, dict[str, rules.Rule]], people: list[ContactView], listed: bool
) -> None:
    catalog, written = built
    for person in people:

        def live(segment_id: str, person: ContactView = person) -> bool:
            if segment_id == STATIC:
                return listed
            return evaluate(written[segment_id], dataclasses.replace(person, segment=live))

        with_list = dataclasses.replace(person, segment=lambda sid: listed if sid == STATIC else 1 / 0)
        for sid, rule in written.items():
            expanded = catalog.segments[sid].expanded
            assert expanded is not None
            expected = evaluate(rule, dataclasses.replace(person, segment=live))
            assert evaluate(expanded, with_list) == expected
            check = catalog.segments[sid].check
            assert check is not None
            assert check(with_list) == expected


@FAST
@given(
    rule_data.map(lambda d: rules.parse_rule(_refs(d, []))),
    st.lists(contacts(timed=True), min_size=1, max_size=3),
)
def test_the_history_a_rule_reads_is_all_it_needs(rule: rules.Rule, people: list[ContactView]) -> None:
    need = rules.history(rule)
    for person in people:
        since = need.since(person.now)
        trimmed = [
            e for e in person.events if e.name in need.events and (since is None or e.timestamp >= since)
        ]
        assert evaluate(rule, dataclasses.replace(person, events=trimmed)) == evaluate(rule, person)


# ---- changes from two images of a stored profile

images = st.fixed_dictionaries(
    {
        "attributes": st.dictionaries(st.sampled_from(ATTRIBUTES), values, max_size=3),
        "tags": st.frozensets(st.sampled_from(TAGS)),
        "consent": st.dictionaries(
            st.sampled_from(rules.CHANNELS),
            st.builds(
                lambda s: {"status": s, "source": "api"}, st.sampled_from(["subscribed", "unsubscribed"])
            ),
        ),
        "email": st.sampled_from([None, "a@example.com", "b@example.com"]),
        "timezone": st.sampled_from([None, "Europe/Berlin"]),
    }
)


def view_of(image: dict[str, Any], events: list[EventRecord], now: datetime) -> ContactView:
    profile = Profile(
        cid="c1",
        attributes=dict(image["attributes"]),
        tags=frozenset(image["tags"]),
        consent=dict(image["consent"]),
        email=image["email"],
        timezone=image["timezone"],
    )
    return ContactView(
        attributes=attributes_of(profile),
        tags=profile.tags,
        consent=consent_of(profile, {"email": "unsubscribed", "sms": "unsubscribed"}),
        events=events,
        now=now,
    )


@FAST
@given(
    st.lists(rule_data.map(lambda d: _refs(d, [])), min_size=1, max_size=4),
    images,
    images,
    st.lists(event_records, max_size=5),
    st.lists(event_records, max_size=3),
)
def test_a_segment_the_index_leaves_out_cannot_change(
    written: list[Any],
    old: dict[str, Any],
    new: dict[str, Any],
    history: list[EventRecord],
    arrived: list[EventRecord],
) -> None:
    catalog = SegmentCatalog.from_data(
        {f"s{i}": {"id": f"s{i}", "name": "s", "rule": rule} for i, rule in enumerate(written)}
    )
    # A profile change (the stream's two images), and then new events.
    change = profile_change(old, new)
    affected = {s.id for s in catalog.affected(change)}
    events_change = Change(events=frozenset(e.name for e in arrived))
    affected_by_events = {s.id for s in catalog.affected(events_change)}
    before = view_of(old, history, BASE)
    after = view_of(new, history, BASE)
    later = view_of(new, [*history, *arrived], BASE)
    for segment in catalog.dynamic:
        assert segment.check is not None
        if segment.id not in affected:
            assert segment.check(before) == segment.check(after), segment.id
        if segment.id not in affected_by_events:
            assert segment.check(after) == segment.check(later), segment.id


def test_a_new_profile_or_no_images_affects_everything() -> None:
    assert profile_change(None, {"attributes": {}}).everything
    assert profile_change({}, {"attributes": {}}).everything
    assert profile_change({"attributes": {"a": 1}}, None).everything
    same = {"attributes": {"a": 1}, "tags": {"t1"}, "consent": {"email": {"status": "subscribed"}}}
    assert profile_change(same, dict(same)).empty


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_the_hour_label_is_the_first_tick_at_or_after_the_change(moment: datetime) -> None:
    tick = bucket_time(due_bucket(moment))
    assert moment <= tick < moment + timedelta(hours=1)
    assert tick.minute == tick.second == tick.microsecond == 0
