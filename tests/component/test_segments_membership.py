"""Segment membership against moto: kept current from events and profile changes (only what depends on the
change, each entry and exit once, with its event and member count), time-driven changes from the hourly
index without a scan, builds over every contact, static lists, previews, the live resolver."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from botocore.client import BaseClient
from tests.component.conftest import SAMPLE_NOW, FakeClock, given_a_contact, record_event

from cairn.adapters.contacts import ContactStore, Profile
from cairn.adapters.segments import (
    Conflict,
    DueEntry,
    Membership,
    MembershipItem,
    Plan,
    SegmentStore,
    Transition,
)
from cairn.adapters.tables import EventItem
from cairn.domain.errors import Conflict as ConflictError
from cairn.domain.errors import NotFound, ValidationFailed
from cairn.domain.rules import SegmentUnavailable, evaluate, parse_rule
from cairn.domain.segments import SegmentCatalog
from cairn.services.segments import Segments
from cairn.services.views import contact_view

DAY = timedelta(days=1)


@pytest.fixture
def segments(tables: dict[str, str], clock: FakeClock) -> Segments:
    from cairn.bootstrap import runtime

    return runtime().segments


@contextmanager
def api_calls() -> Iterator[Counter[str]]:
    """Every AWS API call made meanwhile, by operation (all botocore clients, pynamodb's included)."""
    calls: Counter[str] = Counter()
    original = BaseClient._make_api_call

    def counted(self: Any, operation: str, params: Any) -> Any:
        calls[operation] += 1
        return original(self, operation, params)

    BaseClient._make_api_call = counted  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign]


def profile(cid: str) -> Profile:
    found = ContactStore().get(cid)
    assert found is not None
    return found


def segment_events(cid: str) -> list[tuple[str, str, str]]:
    """The contact's segment events: (messageId, name, segment), in time order."""
    items = sorted(EventItem.query(cid), key=lambda i: i.ts)
    return [
        (i.mid, i.name, (i.properties.as_dict() if i.properties is not None else {}).get("segment"))
        for i in items
        if i.name.startswith("segment_") and i.source == "cairn"
    ]


def members(segments: Segments, segment_id: str) -> set[str]:
    page, _ = segments.store.members(segment_id, 1000, None)
    return {cid for cid, _ in page}


def index_entries() -> set[str]:
    """The time-due index's entries ("<hour>#<cid>"); a test may scan, the code never does."""
    return {e.sk for e in DueEntry.scan() if e.pk.startswith("d#")}


def visit(cid: str, at: datetime, **properties: Any) -> None:
    record_event(cid, "page_viewed", at, properties)


# ---------------------------------------------------------------- from events


def test_an_event_moves_the_contact_in_once_with_its_event_and_count(
    segments: Segments, clock: FakeClock
) -> None:
    cid = given_a_contact("u-ann")
    visit(cid, SAMPLE_NOW)

    outcome = segments.on_event(profile(cid), "page_viewed", SAMPLE_NOW)

    assert outcome.entered == ["recent-visitors"]
    assert segment_events(cid) == [("sg:recent-visitors:000001:in", "segment_entered", "recent-visitors")]
    assert segments.member_counts(["recent-visitors"]) == {"recent-visitors": 1}
    assert members(segments, "recent-visitors") == {cid}
    # The stream delivers at least once: the same record again changes nothing.
    again = segments.on_event(profile(cid), "page_viewed", SAMPLE_NOW)
    assert again.entered == again.exited == []
    assert len(segment_events(cid)) == 1
    assert segments.member_counts(["recent-visitors"]) == {"recent-visitors": 1}


def test_leaving_and_coming_back_are_numbered_so_every_retry_has_the_same_ids(
    segments: Segments, clock: FakeClock
) -> None:
    cid = given_a_contact("u-ann")
    visit(cid, SAMPLE_NOW)
    segments.on_event(profile(cid), "page_viewed", SAMPLE_NOW)
    clock.advance(31 * DAY)

    segments.reconcile(cid, [segments.catalog.segments["recent-visitors"]], now=clock.now())
    visit(cid, clock.now())
    segments.on_event(profile(cid), "page_viewed", clock.now())

    assert [(mid, name) for mid, name, _ in segment_events(cid)] == [
        ("sg:recent-visitors:000001:in", "segment_entered"),
        ("sg:recent-visitors:000001:out", "segment_exited"),
        ("sg:recent-visitors:000002:in", "segment_entered"),
    ]
    assert segments.member_counts(["recent-visitors"]) == {"recent-visitors": 1}


def test_an_event_enters_at_its_own_time_so_a_backfill_starts_no_workflow(
    segments: Segments, clock: FakeClock
) -> None:
    cid = given_a_contact("u-ann")
    then = SAMPLE_NOW - 10 * DAY
    visit(cid, then)

    segments.on_event(profile(cid), "page_viewed", then)

    [entry] = segments.store.segments_of(cid, ["recent-visitors"])
    assert entry.entered_at == then
    [event] = [i for i in EventItem.query(cid) if i.name == "segment_entered"]
    assert event.ts.startswith((SAMPLE_NOW - 10 * DAY).strftime("%Y-%m-%dT%H:%M:%S"))


def test_work_per_event_reads_once_and_writes_once_and_only_for_segments_that_read_it(
    segments: Segments, clock: FakeClock
) -> None:
    cid = given_a_contact("u-ann")
    visit(cid, SAMPLE_NOW)
    contact = profile(cid)

    with api_calls() as nothing:
        untouched = segments.on_event(contact, "newsletter_subscribed", SAMPLE_NOW)
    with api_calls() as calls:
        outcome = segments.on_event(contact, "page_viewed", SAMPLE_NOW)

    assert untouched.evaluated == 0 and sum(nothing.values()) == 0
    readers = {s.id for s in segments.catalog.dynamic if "page_viewed" in s.history.events}
    assert outcome.evaluated == len(readers) == 3  # recent-visitors, eco-minded, eco-hikers
    # memberships of the three (one BatchGetItem), the time index entry, the history (one Query), one
    # transaction for the entry, its count, its event and the new index entry.
    assert calls == Counter(BatchGetItem=1, GetItem=1, Query=1, TransactWriteItems=1)


def test_cairns_own_segment_events_change_no_membership(segments: Segments, clock: FakeClock) -> None:
    cid = given_a_contact("u-ann")
    with api_calls() as calls:
        for name in ("segment_entered", "segment_exited"):
            assert segments.on_event(profile(cid), name, SAMPLE_NOW).evaluated == 0
    assert calls == Counter(GetItem=2)  # the two profile reads of this test; nothing of segments


def test_a_race_with_another_evaluation_is_decided_again_from_fresh_reads(
    segments: Segments, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = given_a_contact("u-ann", traits={"country": "DE", "age": 30})
    segment = segments.catalog.segments["dach-young-adults"]
    segments.reconcile(cid, [segment], now=SAMPLE_NOW)  # the other evaluation got there first
    stale = {"dach-young-adults": Membership("dach-young-adults")}
    real = SegmentStore.memberships
    calls = {"n": 0}

    def first_stale(store: SegmentStore, c: str, ids: Any) -> dict[str, Membership]:
        calls["n"] += 1
        return dict(stale) if calls["n"] == 1 else real(store, c, ids)

    monkeypatch.setattr(SegmentStore, "memberships", first_stale)

    outcome = segments.reconcile(cid, [segment], now=SAMPLE_NOW)

    assert outcome.attempts == 2
    assert outcome.entered == []
    assert [mid for mid, _, _ in segment_events(cid)] == ["sg:dach-young-adults:000001:in"]
    assert segments.member_counts(["dach-young-adults"]) == {"dach-young-adults": 1}


def test_a_plan_from_stale_reads_is_refused_whole(segments: Segments, clock: FakeClock) -> None:
    cid = given_a_contact("u-ann")
    store = segments.store
    store.commit(Plan(cid, SAMPLE_NOW, [Transition("vip", True, Membership("vip"))]))
    with pytest.raises(Conflict):
        store.commit(
            Plan(
                cid,
                SAMPLE_NOW,
                [
                    Transition("recent-visitors", True, Membership("recent-visitors")),
                    Transition("vip", True, Membership("vip")),
                ],
            )
        )
    assert store.segments_of(cid, ["vip", "recent-visitors"]) == [
        Membership("vip", SAMPLE_NOW, 1)
    ]  # nothing of the refused plan was written
    assert store.counts(["vip", "recent-visitors"]) == {"vip": 1, "recent-visitors": 0}


# ---------------------------------------------------------------- from profile changes


def image(**fields: Any) -> dict[str, Any]:
    return {"cid": "c", "sk": "profile", "attributes": {}, "tags": set(), "consent": {}, **fields}


def test_a_profile_change_evaluates_only_the_segments_that_read_what_changed(
    segments: Segments, clock: FakeClock
) -> None:
    cid = given_a_contact("u-ann")
    _tag(cid, "vip")
    contact = profile(cid)
    old, new = image(tags={"eco-curious"}), image(tags={"eco-curious", "vip"})

    with api_calls() as calls:
        outcome = segments.on_profile_change(contact, old, new)

    assert outcome.evaluated == 1 and outcome.entered == ["vip"]
    assert calls == Counter(BatchGetItem=1, TransactWriteItems=1)  # no history: vip reads no events
    with api_calls() as none:
        nothing = segments.on_profile_change(
            contact, image(attributes={"shoe_size": 42}), image(attributes={"shoe_size": 43})
        )
    assert nothing.evaluated == 0 and sum(none.values()) == 0


def _tag(cid: str, tag: str) -> None:
    from cairn.adapters.tables import ContactItem

    ContactItem(cid, "profile").update(actions=[ContactItem.tags.add({tag})])


def test_a_new_contact_is_evaluated_for_every_segment(segments: Segments, clock: FakeClock) -> None:
    cid = given_a_contact("u-ann", traits={"country": "AT", "age": 28})
    outcome = segments.on_profile_change(profile(cid), {}, image())
    assert outcome.evaluated == len(segments.catalog.segments)
    assert outcome.entered == ["dach-young-adults"]


# ---------------------------------------------------------------- time passing: the hourly index


def test_the_tick_moves_a_contact_out_when_its_window_closes_without_a_scan(
    segments: Segments, clock: FakeClock
) -> None:
    cid = given_a_contact("u-ann")
    last_visit = SAMPLE_NOW - 29 * DAY - timedelta(hours=12)  # leaves the 30-day window in 12 hours
    visit(cid, last_visit)
    segments.on_event(profile(cid), "page_viewed", last_visit)
    assert "recent-visitors" in {m.segment for m in segments.store.segments_of(cid, ["recent-visitors"])}
    assert segments.store.due(cid).bucket == (SAMPLE_NOW + timedelta(hours=12)).strftime("%Y-%m-%dT%H")

    with api_calls() as calls:
        for hours in range(1, 13):
            clock.set(SAMPLE_NOW + timedelta(hours=hours))
            report = segments.tick()
            still = segments.store.segments_of(cid, ["recent-visitors"])
            assert bool(still) == (hours < 12), hours
            assert report["exited"] == (1 if hours == 12 else 0)

    assert calls["Scan"] == 0
    assert segment_events(cid)[-1] == ("sg:recent-visitors:000001:out", "segment_exited", "recent-visitors")
    assert segments.store.due(cid).bucket is None  # nothing more to wait for: out of the index
    assert index_entries() == set()


def test_a_missed_tick_is_caught_up_by_the_next_one_even_across_midnight(
    segments: Segments, clock: FakeClock
) -> None:
    cid = given_a_contact("u-ann")
    visit(cid, SAMPLE_NOW - 30 * DAY + timedelta(hours=14))  # due at 23:00 today (sample now is 09:00)
    segments.on_event(profile(cid), "page_viewed", SAMPLE_NOW)
    assert segments.store.due(cid).bucket == SAMPLE_NOW.strftime("%Y-%m-%dT23")

    clock.set(SAMPLE_NOW.replace(hour=0) + DAY + timedelta(hours=2))  # the 23:00, 00:00, 01:00 ticks failed
    report = segments.tick()

    assert report["exited"] == 1
    assert segments.store.segments_of(cid, ["recent-visitors"]) == []


def test_a_stale_index_entry_is_dropped_and_earlier_changes_move_the_entry(
    segments: Segments, clock: FakeClock
) -> None:
    cid = given_a_contact("u-ann")
    visit(cid, SAMPLE_NOW - 10 * DAY)
    segments.on_event(profile(cid), "page_viewed", SAMPLE_NOW - 10 * DAY)
    first = segments.store.due(cid)
    # A later visit moves the true exit later: the hot path writes nothing (the index stays earlier).
    visit(cid, SAMPLE_NOW)
    with api_calls() as calls:
        segments.on_event(profile(cid), "page_viewed", SAMPLE_NOW)
    assert segments.store.due(cid) == first
    assert calls["TransactWriteItems"] == 0
    # At the indexed hour the tick finds nothing due yet and indexes the contact exactly.
    clock.set(datetime.fromisoformat(first.bucket + ":00:00+00:00"))  # type: ignore[operator]
    assert segments.tick()["exited"] == 0
    later = segments.store.due(cid)
    assert later.bucket == (SAMPLE_NOW + 30 * DAY).strftime("%Y-%m-%dT%H")
    # An entry for a contact indexed elsewhere meanwhile is stale: dropped unread.
    stale_hour = (clock.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H")
    DueEntry(f"d#{stale_hour[:10]}", f"{stale_hour[11:]}#{cid}").save()
    clock.advance(timedelta(hours=1))
    assert segments.tick()["contacts"] == 0
    assert index_entries() == {f"{later.bucket[11:]}#{cid}"}  # type: ignore[index]


# ---------------------------------------------------------------- builds


def test_a_build_sets_every_contacts_membership_quietly(segments: Segments, clock: FakeClock) -> None:
    vips = {given_a_contact(f"u-{n}", traits={"n": n}) for n in range(24) if n % 3 == 0}
    others = {given_a_contact(f"u-{n}", traits={"n": n}) for n in range(24) if n % 3}
    for cid in vips:
        _tag(cid, "vip")
    stale = sorted(others)[0]
    segments.store.commit(Plan(stale, SAMPLE_NOW, [Transition("vip", True, Membership("vip"))], emit=False))

    listed = sorted(vips)[0]
    from cairn.adapters.journeys import StepChange, apply_change

    apply_change(listed, StepChange(add_lists=frozenset({"webinar-guests"})), now=SAMPLE_NOW)

    plan = segments.plan_build(["vip", "webinar-guests", "nowhere"], "build-1", total=3)
    assert plan["segments"] == ["vip", "webinar-guests"]  # a static list mirrors the contacts' `lists`
    assert [s["segment"] for s in plan["scan"]] == [0, 1, 2]
    scanned = 0
    for part in plan["scan"]:
        cursor = None
        while True:
            report = segments.build_page(
                plan["segments"],
                versions=plan["versions"],
                scan_segment=part["segment"],
                total=part["total"],
                cursor=cursor,
                deadline=float("inf"),
            )
            scanned += report["scanned"]
            cursor = report["cursor"]
            if cursor is None:
                break
    segments.finish_build(plan["segments"], plan["versions"])

    assert scanned == 24
    assert members(segments, "vip") == vips
    assert members(segments, "webinar-guests") == {listed}
    assert segments.member_counts(["vip", "webinar-guests"]) == {"vip": len(vips), "webinar-guests": 1}
    assert all(segment_events(cid) == [] for cid in vips | others)  # quiet: starts no workflow
    assert segments.builds(["vip"])["vip"]["status"] == "ready"


def test_a_build_of_an_older_definition_writes_nothing(segments: Segments, clock: FakeClock) -> None:
    cid = given_a_contact("u-ann")
    _tag(cid, "vip")
    report = segments.build_page(
        ["vip"], versions={"vip": "older"}, scan_segment=0, total=1, cursor=None, deadline=float("inf")
    )
    assert report["scanned"] == 0
    assert members(segments, "vip") == set()


def test_plans_of_a_build_that_met_a_race_are_handed_back(segments: Segments, clock: FakeClock) -> None:
    a, b = given_a_contact("u-a"), given_a_contact("u-b")
    store = segments.store
    store.commit(Plan(b, SAMPLE_NOW, [Transition("vip", True, Membership("vip"))], emit=False))
    stale = [
        Plan(a, SAMPLE_NOW, [Transition("vip", True, Membership("vip"))], emit=False),
        Plan(b, SAMPLE_NOW, [Transition("vip", True, Membership("vip"))], emit=False),
    ]
    assert store.commit_many(stale) == [b]
    assert {m.segment for m in store.segments_of(a, ["vip"])} == {"vip"}
    assert store.counts(["vip"]) == {"vip": 2}


def test_builds_are_requested_once_per_definition(
    segments: Segments, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[tuple[str, str, dict[str, Any]]] = []
    monkeypatch.setattr(
        segments.rt.executions,
        "start",
        lambda arn, name, payload: started.append((arn, name, payload)) or arn,
    )
    assert set(segments.changed_segments()) == set(segments.catalog.segments)
    segments.request_builds(["vip"])
    segments.request_builds(["vip"])
    assert started[0][0].endswith(":stateMachine:cairn-test-segment-build")
    assert started[0][1] == started[1][1]  # the same execution name: Step Functions starts it once
    assert started[0][2] == {"segments": ["vip"]}
    assert segments.builds(["vip"])["vip"]["status"] == "requested"
    segments.finish_build(["vip"], {"vip": segments.catalog.segments["vip"].version})
    assert "vip" not in segments.changed_segments()


def test_a_failed_build_is_retried_three_times(
    segments: Segments, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(
        segments.rt.executions, "start", lambda arn, name, payload: started.append(payload) or arn
    )
    version = {"vip": segments.catalog.segments["vip"].version}
    segments.request_builds(["vip"])
    retried = []
    for _ in range(4):
        segments.finish_build(["vip"], version, failed=True)
        retried.append(segments.retry_builds(clock.now()))
    assert retried == [["vip"], ["vip"], [], []]
    assert len(started) == 3
    # A build a deploy asked for that never started is asked for again by a tick, every six hours.
    segments.request_builds(["big-spenders"])
    assert segments.tick()["builds"] == []  # 09:00: not one of those hours
    clock.set(SAMPLE_NOW.replace(hour=12))
    assert segments.tick()["builds"] == ["big-spenders"]


# ---------------------------------------------------------------- static lists


def test_a_static_list_takes_members_by_hand_and_segments_that_use_it_follow(
    segments: Segments, clock: FakeClock
) -> None:
    segments.catalog = SegmentCatalog.from_data(
        {
            "guests": {"id": "guests", "name": "Guests", "kind": "static"},
            "vip-guests": {
                "id": "vip-guests",
                "name": "VIP guests",
                "rule": {"all": [{"tag": "vip"}, {"segment": "guests"}]},
            },
            "vip": {"id": "vip", "name": "VIP", "rule": {"tag": "vip"}},
        }
    )
    cid = given_a_contact("u-ann")
    _tag(cid, "vip")

    assert segments.add_to_list(cid, "guests") is True

    assert profile(cid).lists == {"guests"}  # what an add_to_list step writes too
    assert {m.segment for m in segments.store.segments_of(cid, ["guests", "vip-guests"])} == {
        "guests",
        "vip-guests",
    }
    segments.remove_from_list(cid, "guests")
    assert segments.store.segments_of(cid, ["guests", "vip-guests"]) == []
    assert sorted((mid, name) for mid, name, _ in segment_events(cid)) == [
        ("sg:guests:000001:in", "segment_entered"),
        ("sg:guests:000001:out", "segment_exited"),
        ("sg:vip-guests:000001:in", "segment_entered"),
        ("sg:vip-guests:000001:out", "segment_exited"),
    ]
    with pytest.raises(ConflictError):
        segments.add_to_list(cid, "vip")
    with pytest.raises(NotFound):
        segments.add_to_list(cid, "nowhere")


def test_forgetting_a_contact_removes_its_memberships_quietly(segments: Segments, clock: FakeClock) -> None:
    cid = given_a_contact("u-ann", traits={"country": "DE", "age": 30})
    visit(cid, SAMPLE_NOW)
    segments.on_event(profile(cid), "page_viewed", SAMPLE_NOW)
    segments.on_profile_change(profile(cid), {}, image())
    events_before = segment_events(cid)

    removed = segments.forget(cid)

    assert removed >= 3  # two memberships and the time index (item and entry)
    assert segments.of_contact(cid) == []
    assert segments.member_counts(["recent-visitors", "dach-young-adults"]) == {
        "recent-visitors": 0,
        "dach-young-adults": 0,
    }
    assert segment_events(cid) == events_before
    assert [m for m in MembershipItem.scan() if m.pk.startswith("m#")] == []


# ---------------------------------------------------------------- reads


def test_members_come_in_pages_each_exactly_once(segments: Segments, clock: FakeClock) -> None:
    cids = {given_a_contact(f"u-{n}") for n in range(23)}
    for cid in cids:
        segments.store.commit(Plan(cid, SAMPLE_NOW, [Transition("vip", True, Membership("vip"))], emit=False))
    seen: list[str | None] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = segments.members("vip", 5, cursor)
        pages += 1
        seen += [m["userId"] for m in page]
        assert len(page) <= 5
        if cursor is None:
            break
    assert sorted(seen) == sorted(f"u-{n}" for n in range(23))  # type: ignore[type-var]
    assert pages >= 5
    with pytest.raises(ValidationFailed):
        segments.members("vip", 5, "not-a-cursor")
    with pytest.raises(NotFound):
        segments.members("nowhere", 5, None)


def test_a_preview_counts_exactly_or_estimates_from_a_share(segments: Segments, clock: FakeClock) -> None:
    for n in range(60):
        cid = given_a_contact(f"u-{n}", traits={"plan": "pro" if n % 4 == 0 else "free"})
        if n % 4 == 0:
            visit(cid, SAMPLE_NOW - DAY)

    exact = segments.preview({"all": [{"attribute": "plan", "eq": "pro"}, {"segment": "recent-visitors"}]})
    assert exact["count"] == 15 and exact["exact"] and exact["scanned"] == 60
    assert {s["userId"] for s in exact["sample"]} <= {f"u-{n}" for n in range(0, 60, 4)}
    assert len(exact["sample"]) == 10

    estimate = segments.preview({"attribute": "plan", "eq": "pro"}, budget=1)
    assert not estimate["exact"] and estimate["scanned"] < 60

    with pytest.raises(ValidationFailed) as bad:
        segments.preview({"all": [{"attribute": "plan", "equals": "pro"}]})
    assert bad.value.details[0].field == "rule.all[0].attribute.equals"
    with pytest.raises(ValidationFailed):
        segments.preview({"segment": "nowhere"})
    with pytest.raises(ValidationFailed):
        segments.preview({"event": "segment_entered"})


# ---------------------------------------------------------------- live evaluation in workflows


def test_a_segment_in_a_workflow_rule_evaluates_live_with_the_history_it_needs(
    segments: Segments, clock: FakeClock
) -> None:
    cid = given_a_contact("u-ann")
    visit(cid, SAMPLE_NOW - 3 * DAY)
    # An audience that names a segment reads no events itself: the caller loads none.
    audience = parse_rule({"all": [{"segment": "recent-visitors"}, {"not": {"segment": "webinar-guests"}}]})
    view = contact_view(profile(cid), now=SAMPLE_NOW, consent_defaults={}, segments=segments)
    assert evaluate(audience, view)  # no membership was ever recorded: evaluated live
    segments.add_to_list(cid, "webinar-guests")
    assert not evaluate(
        audience, contact_view(profile(cid), now=SAMPLE_NOW, consent_defaults={}, segments=segments)
    )
    with pytest.raises(SegmentUnavailable):
        evaluate(parse_rule({"segment": "nowhere"}), view)
    later = contact_view(profile(cid), now=SAMPLE_NOW + 28 * DAY, consent_defaults={}, segments=segments)
    assert not evaluate(parse_rule({"segment": "recent-visitors"}), later)
