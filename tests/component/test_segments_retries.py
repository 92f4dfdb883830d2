"""Segment membership under retries and races, against moto: a change evaluated again (a stream retry)
records its entry once, even when its `segment_entered` event was stored already; forgetting a contact's
memberships survives a concurrent evaluation; a profile change written by an import sets membership
quietly (no segment events: `POST /v1/contacts/import` fires no triggers)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.component.conftest import SAMPLE_NOW, FakeClock, given_a_contact
from tests.component.test_segments_membership import image, members, profile, segment_events

from cairn.adapters.events import NewEvent
from cairn.adapters.segments import Membership, MembershipItem, Plan, Transition, event_id
from cairn.services.segments import Segments, imported

STAMP = "2026-11-24T09:00:00.000000+0000"
LATER = "2026-11-24T09:05:00.000000+0000"


@pytest.fixture
def segments(tables: dict[str, str], clock: FakeClock) -> Segments:
    from cairn.bootstrap import runtime

    return runtime().segments


def test_an_entry_whose_event_is_stored_already_is_recorded_once_and_a_retry_changes_nothing(
    segments: Segments,
) -> None:
    cid = given_a_contact("u-ann", traits={"country": "AT", "age": 28})
    entry = Transition("dach-young-adults", True, Membership("dach-young-adults"))
    # An earlier attempt stored the entry's event (deterministic id: the contact's first entry).
    segments.rt.events.put_once(
        NewEvent(
            cid=cid,
            message_id=event_id("dach-young-adults", entry),
            name="segment_entered",
            timestamp=SAMPLE_NOW,
            received_at=SAMPLE_NOW,
            properties={"segment": "dach-young-adults"},
            source="cairn",
        )
    )

    first = segments.on_profile_change(profile(cid), {}, image())
    again = segments.on_profile_change(profile(cid), {}, image())  # the stream delivers it again

    assert first.entered == ["dach-young-adults"] and first.attempts == 1
    assert again.entered == [] and again.exited == []
    assert members(segments, "dach-young-adults") == {cid}
    assert segments.member_counts(["dach-young-adults"]) == {"dach-young-adults": 1}
    assert segment_events(cid) == [("sg:dach-young-adults:000001:in", "segment_entered", "dach-young-adults")]


def test_forgetting_memberships_reads_again_when_an_evaluation_changed_them_meanwhile(
    segments: Segments, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = given_a_contact("u-ann", traits={"country": "AT", "age": 28})
    segments.on_profile_change(profile(cid), {}, image())
    store = segments.store
    stale = store.memberships(cid, ["dach-young-adults"])["dach-young-adults"]
    # Meanwhile the stream takes her out and back in (her second entry): what forget read is stale.
    store.commit(Plan(cid, SAMPLE_NOW, [Transition("dach-young-adults", False, stale)], emit=False))
    out = store.memberships(cid, ["dach-young-adults"])["dach-young-adults"]
    store.commit(Plan(cid, SAMPLE_NOW, [Transition("dach-young-adults", True, out)], emit=False))
    reads = iter([{"dach-young-adults": stale}])
    original = store.memberships

    def first_read_stale(cid: str, segment_ids: Any) -> dict[str, Membership]:
        return next(reads, None) or original(cid, segment_ids)

    monkeypatch.setattr(store, "memberships", first_read_stale)

    segments.forget(cid)

    assert members(segments, "dach-young-adults") == set()
    assert segments.member_counts(["dach-young-adults"]) == {"dach-young-adults": 0}
    assert list(MembershipItem.scan(MembershipItem.cid == cid)) == []


def test_a_change_written_by_an_import_is_told_from_a_live_one() -> None:
    new_import = {"importedAt": STAMP, "updatedAt": STAMP}
    assert imported(None, new_import) and imported({}, new_import)
    assert imported({"updatedAt": "2026-11-23T10:00:00.000000+0000"}, new_import)  # an import updating
    assert not imported({"importedAt": STAMP, "updatedAt": STAMP}, {"importedAt": STAMP, "updatedAt": LATER})
    # A live write in the same instant as the import (a frozen clock): updatedAt did not move.
    assert not imported({"importedAt": STAMP, "updatedAt": STAMP}, {"importedAt": STAMP, "updatedAt": STAMP})
    assert not imported({}, {"updatedAt": STAMP})


def test_a_profile_written_by_an_import_enters_its_segments_without_segment_events(
    segments: Segments,
) -> None:
    cid = given_a_contact("u-ann", traits={"country": "AT", "age": 28})
    outcome = segments.on_profile_change(profile(cid), {}, image(importedAt=STAMP, updatedAt=STAMP))
    assert outcome.entered == ["dach-young-adults"]
    assert members(segments, "dach-young-adults") == {cid}
    assert segment_events(cid) == []
