"""What arrives after an erase cannot bring the contact back: events in flight or flushed late from a
browser's queue are dropped by the stream consumer (and deleted); identify, import and subscriptions that
would create the contact again within the grace period are 409; after it the user id may come back as a
new contact, whose events from before the erase still never return."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from tests.component.conftest import SECRET_KEY, WRITE_KEY, FakeClock, Handler, cid_of
from tests.component.test_trigger import assert_error, request
from tests.conftest import REGION, SECRET, TABLES

from cairn.adapters.events import EventStore, NewEvent
from cairn.adapters.tables import ContactItem, EnrollmentItem, EventItem, IdentityItem
from cairn.domain.erasure import GRACE
from cairn.domain.identity import cid_for_anonymous

ANN = "u-ann"


@pytest.fixture
def trigger(load_handler: Any, keys: dict[str, str], clock: FakeClock) -> Handler:
    handler: Handler = load_handler("trigger")
    return handler


@pytest.fixture
def react(load_handler: Any, clock: FakeClock) -> Handler:
    handler: Handler = load_handler("react")
    return handler


def identify(trigger: Handler, user_id: str = ANN, key: str = SECRET_KEY, **traits: Any) -> tuple[int, Any]:
    status, _, body = request(trigger, "POST", "/v1/identify", {"userId": user_id, "traits": traits}, key=key)
    return status, body


def erase(trigger: Handler, user_id: str = ANN) -> int:
    return request(trigger, "DELETE", f"/v1/contacts/{user_id}", key=SECRET_KEY)[0]


def stored(user_id: str, name: str, *, happened: datetime, received: datetime, mid: str) -> dict[str, Any]:
    """Intake's one write for a tracked event, and the events-table stream record it produces."""
    EventStore(ttl=timedelta(days=400)).put_once(
        NewEvent(
            cid=cid_of(user_id),
            message_id=mid,
            name=name,
            timestamp=happened,
            received_at=received,
            properties={},
            user_id=user_id,
        )
    )
    return stream_record(EventItem.get(cid_of(user_id), mid))


def stream_record(item: EventItem) -> dict[str, Any]:
    image = item.serialize()
    return {
        "Records": [
            {
                "eventID": item.mid,
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": REGION,
                "dynamodb": {
                    "Keys": {"cid": image["cid"], "mid": image["mid"]},
                    "NewImage": image,
                    "SequenceNumber": "4000000000000000000001",
                    "SizeBytes": 200,
                    "StreamViewType": "NEW_IMAGE",
                },
                "eventSourceARN": (
                    f"arn:aws:dynamodb:{REGION}:123456789012:table/{TABLES['EVENTS_TABLE']}/stream/x"
                ),
            }
        ]
    }


def profile_exists(user_id: str) -> bool:
    return any(i.sk == "profile" for i in ContactItem.query(cid_of(user_id)))


def runs(state_machines: dict[str, str]) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    return list(sfn.list_executions(stateMachineArn=state_machines["welcome-series"])["executions"])


def test_erase_marks_the_contact_ids_erased_with_nothing_personal(trigger: Handler, clock: FakeClock) -> None:
    request(
        trigger,
        "POST",
        "/v1/identify",
        {"userId": ANN, "anonymousId": "v-1", "traits": {"email": "ann@example.com"}},
        key=SECRET_KEY,
    )

    assert erase(trigger) == 204

    marks = {i.key: i for i in IdentityItem.scan() if i.key.startswith("erased#")}
    assert set(marks) == {f"erased#{cid_of(ANN)}", f"erased#{cid_for_anonymous(SECRET.encode(), 'v-1')}"}
    assert all(m.cid is None and m.created_at == clock.now() for m in marks.values())


def test_an_event_in_flight_when_the_contact_was_erased_does_not_bring_it_back(
    trigger: Handler, react: Handler, clock: FakeClock, state_machines: dict[str, str]
) -> None:
    identify(trigger, email="ann@example.com")
    record = stored(ANN, "newsletter_subscribed", happened=clock.now(), received=clock.now(), mid="in-flight")
    clock.advance(timedelta(seconds=1))
    assert erase(trigger) == 204  # the stream has not delivered the event yet

    assert react(record) == {"batchItemFailures": []}

    assert not profile_exists(ANN)
    assert list(EventItem.query(cid_of(ANN))) == []  # the event went too
    assert list(EnrollmentItem.query(cid_of(ANN))) == []
    assert runs(state_machines) == []


def test_an_erase_while_the_stream_reacts_leaves_nothing_the_reaction_wrote(
    trigger: Handler,
    react: Handler,
    clock: FakeClock,
    state_machines: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race the mark closes: react has checked the contact (not erased yet), the erase runs to the
    end, then react enrolls the contact and starts its run. What it wrote goes, the run is stopped."""
    from cairn.services.react import Reactor

    identify(trigger, email="ann@example.com")
    record = stored(ANN, "newsletter_subscribed", happened=clock.now(), received=clock.now(), mid="racing")
    enroll = Reactor.maybe_enroll
    erased: list[int] = []

    def erase_meanwhile(self: Reactor, *args: Any, **kwargs: Any) -> None:
        if not erased:
            erased.append(erase(trigger))
        enroll(self, *args, **kwargs)

    monkeypatch.setattr(Reactor, "maybe_enroll", erase_meanwhile)

    assert react(record) == {"batchItemFailures": []}

    assert erased == [204]
    [run] = runs(state_machines)  # the reaction did start it, after the erase
    sfn = boto3.client("stepfunctions", region_name=REGION)
    assert sfn.describe_execution(executionArn=run["executionArn"])["status"] == "ABORTED"
    assert list(ContactItem.query(cid_of(ANN))) == []
    assert list(EventItem.query(cid_of(ANN))) == []


def test_an_event_that_happened_before_the_erase_is_dropped_whenever_it_arrives(
    trigger: Handler, react: Handler, clock: FakeClock, state_machines: dict[str, str]
) -> None:
    identify(trigger, email="ann@example.com")
    happened = clock.now()
    clock.advance(timedelta(minutes=1))
    assert erase(trigger) == 204
    clock.advance(timedelta(days=3))  # a browser's retry queue flushed three days later

    react(stored(ANN, "newsletter_subscribed", happened=happened, received=clock.now(), mid="queued"))

    assert not profile_exists(ANN)
    assert list(EventItem.query(cid_of(ANN))) == []
    assert runs(state_machines) == []


def test_events_within_the_grace_period_are_dropped_and_later_ones_start_a_new_contact(
    trigger: Handler, react: Handler, clock: FakeClock, state_machines: dict[str, str]
) -> None:
    identify(trigger, email="ann@example.com")
    assert erase(trigger) == 204
    erased = clock.now()

    clock.set(erased + GRACE)
    react(stored(ANN, "newsletter_subscribed", happened=clock.now(), received=clock.now(), mid="late"))
    assert not profile_exists(ANN)
    assert runs(state_machines) == []

    clock.set(erased + GRACE + timedelta(seconds=1))
    react(stored(ANN, "newsletter_subscribed", happened=clock.now(), received=clock.now(), mid="new-life"))
    assert profile_exists(ANN)  # a person who came back: a new contact, with nothing of the old one
    assert [e.mid for e in EventItem.query(cid_of(ANN)) if e.name == "newsletter_subscribed"] == ["new-life"]
    assert len(runs(state_machines)) == 1


@pytest.mark.parametrize("key", [SECRET_KEY, WRITE_KEY])
def test_identify_within_the_grace_period_is_409_and_after_it_creates_a_new_contact(
    trigger: Handler, clock: FakeClock, key: str
) -> None:
    identify(trigger, email="ann@example.com", firstName="Ann", plan="pro")
    assert erase(trigger) == 204

    clock.advance(timedelta(minutes=5))
    status, body = identify(trigger, key=key, email="ann@example.com", firstName="Ann")
    assert status == 409
    assert [d["field"] for d in assert_error(body, "conflict")] == ["userId"]
    assert not profile_exists(ANN)

    clock.advance(GRACE)
    status, body = identify(trigger, key=key, email="ann@example.com", firstName="Ann")
    assert status == 200
    assert body["attributes"] == {"email": "ann@example.com", "firstName": "Ann"}  # no "plan": a new life


def test_import_and_subscriptions_within_the_grace_period_are_409_and_fail_alone(
    trigger: Handler, clock: FakeClock
) -> None:
    identify(trigger, email="ann@example.com")
    assert erase(trigger) == 204
    clock.advance(timedelta(minutes=1))

    status, _, body = request(
        trigger,
        "POST",
        "/v1/contacts/import",
        {"contacts": [{"userId": ANN, "traits": {"firstName": "Ann"}}, {"userId": "u-bob"}]},
        key=SECRET_KEY,
    )
    assert status == 200
    assert [(r["index"], r["status"]) for r in body["results"]] == [(0, 409), (1, 200)]
    status, _, _ = request(
        trigger, "PUT", f"/v1/contacts/{ANN}/subscriptions/email", {"status": "subscribed"}, key=SECRET_KEY
    )
    assert status == 409
    assert not profile_exists(ANN) and profile_exists("u-bob")


def test_a_contact_never_erased_is_not_slowed_by_any_of_this(
    trigger: Handler, react: Handler, clock: FakeClock, state_machines: dict[str, str]
) -> None:
    react(stored(ANN, "newsletter_subscribed", happened=clock.now(), received=clock.now(), mid="first"))

    assert profile_exists(ANN)
    assert len(runs(state_machines)) == 1
    assert identify(trigger, email="ann@example.com")[0] == 200
