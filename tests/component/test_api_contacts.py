"""Contact routes through the real trigger handler: the documented contact, import, erase,
subscriptions (double opt-in), progressive profiling, and unsubscribe links."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from tests.component.conftest import (
    SECRET,
    SECRET_KEY,
    WRITE_KEY,
    FakeClock,
    Handler,
    cid_of,
    given_a_contact,
    given_an_open_run,
    load_event,
    record_event,
)
from tests.component.test_trigger import assert_error, call, request, trigger
from tests.component.test_trigger_intake import site_with

from cairn.adapters.identities import IdentityStore, is_tombstoned
from cairn.adapters.tables import ContactItem, EventItem, IdentityItem, MessageItem
from cairn.domain import tokens
from cairn.domain.identity import cid_for_anonymous

__all__ = ["site_with", "trigger"]


def identify(
    handler: Handler, user_id: str, traits: dict[str, Any], key: str = SECRET_KEY, **extra: Any
) -> Any:
    return request(handler, "POST", "/v1/identify", {"userId": user_id, "traits": traits, **extra}, key=key)


def contact(handler: Handler, user_id: str) -> tuple[int, Any]:
    status, _, body = request(handler, "GET", f"/v1/contacts/{quote(user_id, safe='')}", key=SECRET_KEY)
    return status, body


# ---------------------------------------------------------------- GET /v1/contacts/{userId}


def test_the_contact_has_the_documented_shape(trigger: Handler, clock: FakeClock) -> None:
    identify(trigger, "u-ann", {"email": "ann@example.com", "firstName": "Ann"})
    cid = cid_of("u-ann")
    given_an_open_run(cid)
    MessageItem(
        cid,
        MessageItem.key("m-1"),
        message_id="m-1",
        channel="email",
        template="welcome-discount",
        workflow_id="welcome-series",
        run=1,
        step_id="send_email-welcome-discount",
        status="skipped",
        skip_reason="no email consent (unsubscribed)",
        claimed_at=clock.now(),
    ).save()

    status, body = contact(trigger, "u-ann")

    assert status == 200
    assert set(body) == {
        "userId",
        "anonymousIds",
        "attributes",
        "tags",
        "consent",
        "suppression",
        "segments",
        "enrollments",
        "messages",
    }
    assert body["segments"] == []
    [enrollment] = body["enrollments"]
    assert enrollment["workflowId"] == "welcome-series" and enrollment["status"] == "active"
    assert set(enrollment) >= {
        "workflowId",
        "version",
        "status",
        "variant",
        "enteredAt",
        "exitedAt",
        "exitReason",
    }
    [message] = body["messages"]
    assert message["skipReason"] == "no email consent (unsubscribed)"
    assert set(message) == {
        "id",
        "channel",
        "template",
        "workflowId",
        "stepId",
        "status",
        "sentAt",
        "skipReason",
    }


def test_the_contact_shows_its_last_50_messages_newest_first_reading_only_those(
    trigger: Handler, clock: FakeClock
) -> None:
    identify(trigger, "u-ann", {"email": "ann@example.com"})
    cid = cid_of("u-ann")
    for n in range(80):
        MessageItem(
            cid,
            MessageItem.key(f"m-{n:02d}"),
            message_id=f"m-{n:02d}",
            channel="email",
            template="welcome-discount",
            workflow_id="welcome-series",
            run=1,
            step_id=f"step-{n}",
            status="sent",
            claimed_at=clock.now() + timedelta(minutes=(n * 37) % 80),  # claimed in a shuffled order
            sent_at=clock.now(),
            history=[],
        ).save()
    read: list[int] = []

    def count(parsed: dict[str, Any], **_: Any) -> None:
        read.append(int(parsed.get("ScannedCount", 0)))

    events = MessageItem._get_connection().connection.client.meta.events
    events.register("after-call.dynamodb.Query", count)
    try:
        status, body = contact(trigger, "u-ann")
    finally:
        events.unregister("after-call.dynamodb.Query", count)

    assert status == 200
    minutes = [(n * 37) % 80 for n in range(80)]
    newest = sorted(range(80), key=lambda n: minutes[n], reverse=True)[:50]
    assert [m["id"] for m in body["messages"]] == [f"m-{n:02d}" for n in newest]
    assert body["messages"][0]["stepId"] == f"step-{newest[0]}" and body["messages"][0]["status"] == "sent"
    assert sum(read) == 50  # the 30 older messages were never read


def test_a_user_id_with_special_characters_round_trips(trigger: Handler) -> None:
    identify(trigger, "ann@example.com/42", {"firstName": "Ann"})

    status, body = contact(trigger, "ann@example.com/42")

    assert status == 200 and body["userId"] == "ann@example.com/42"


# ---------------------------------------------------------------- identity: email ownership, merges


def test_an_email_that_belongs_to_another_user_is_409(trigger: Handler) -> None:
    identify(trigger, "u-ann", {"email": "ann@example.com"})

    status, _, body = identify(trigger, "u-bob", {"email": "Ann@example.com", "firstName": "Bob"})

    assert status == 409
    assert [d["field"] for d in assert_error(body, "conflict")] == ["traits.email"]
    assert contact(trigger, "u-bob")[0] == 404  # nothing half-written


def test_changing_an_email_to_another_users_is_409_and_keeps_the_old_one(trigger: Handler) -> None:
    identify(trigger, "u-ann", {"email": "ann@example.com"})
    identify(trigger, "u-bob", {"email": "bob@example.com"})

    # Bob's write releases his address and claims Ann's in one transaction: the claim is refused.
    status, _, body = identify(trigger, "u-bob", {"email": "ann@example.com"})

    assert status == 409
    assert [d["field"] for d in assert_error(body, "conflict")] == ["traits.email"]
    assert contact(trigger, "u-bob")[1]["attributes"]["email"] == "bob@example.com"


def test_an_email_given_up_can_be_taken(trigger: Handler) -> None:
    identify(trigger, "u-ann", {"email": "ann@example.com"})
    identify(trigger, "u-ann", {"email": "ann@new.example"})

    status, _, body = identify(trigger, "u-bob", {"email": "ann@example.com"})

    assert status == 200 and body["attributes"]["email"] == "ann@example.com"


def test_an_anonymous_visitor_merges_into_the_user(trigger: Handler, clock: FakeClock) -> None:
    request(
        trigger,
        "POST",
        "/v1/track",
        {"anonymousId": "v-1", "event": "page_viewed", "messageId": "a-1"},
        key=WRITE_KEY,
    )
    anon_cid = next(iter(EventItem.scan())).cid
    given_a_contact("ignored")  # another contact, untouched
    ContactItem(
        anon_cid, "profile", attributes={"plan": "free", "utm": "spring"}, consent={}, tags={"visitor"}
    ).save()
    identify(trigger, "u-ann", {"plan": "pro"})

    status, _, body = identify(trigger, "u-ann", {"firstName": "Ann"}, key=WRITE_KEY, anonymousId="v-1")

    assert status == 200
    assert body["anonymousIds"] == ["v-1"]
    assert body["attributes"] == {"plan": "pro", "utm": "spring", "firstName": "Ann"}  # the user's win
    assert body["tags"] == ["visitor"]
    assert {(e.cid, e.mid, e.source) for e in EventItem.scan()} == {(cid_of("u-ann"), "a-1", "merge")}
    assert ContactItem.count(anon_cid) == 0
    # Again: nothing more happens (the merge is recorded as done).
    assert identify(trigger, "u-ann", {}, anonymousId="v-1")[0] == 200
    # Another user claiming the same anonymous id gets no merge.
    status, _, other = identify(trigger, "u-bob", {}, anonymousId="v-1")
    assert status == 200 and other["anonymousIds"] == []


def test_a_merge_ends_the_anonymous_contacts_runs(trigger: Handler, clock: FakeClock) -> None:
    from cairn.adapters.contacts import EnrollmentStore
    from cairn.domain.identity import cid_for_anonymous

    anon_cid = cid_for_anonymous(SECRET.encode(), "v-2")
    given_an_open_run(anon_cid)

    identify(trigger, "u-ann", {}, anonymousId="v-2")

    [enrollment] = EnrollmentStore().all(anon_cid)
    assert enrollment.status == "exited"


# ---------------------------------------------------------------- subscriptions and double opt-in


def test_double_opt_in_records_pending_and_asks_for_confirmation(
    load_handler: Any,
    keys: dict[str, str],
    clock: FakeClock,
    site_with: Callable[..., None],
    monkeypatch: Any,
) -> None:
    from cairn.services.intake import Intake

    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(Intake, "request_confirmation", lambda self, cid, ch, src: asked.append((cid, ch)))
    site_with(consent={"default": {"email": "unsubscribed", "sms": "unsubscribed"}, "double_opt_in": True})
    handler = load_handler("trigger")

    status, _, body = request(
        handler, "PUT", "/v1/contacts/u-ann/subscriptions/email", {"status": "subscribed"}, key=SECRET_KEY
    )

    assert status == 200
    assert body["consent"]["email"]["status"] == "pending"
    assert asked == [(cid_of("u-ann"), "email")]
    status, _, body = request(
        handler, "PUT", "/v1/contacts/u-ann/subscriptions/sms", {"status": "subscribed"}, key=SECRET_KEY
    )
    assert body["consent"]["sms"]["status"] == "subscribed"  # double opt-in is for email


def test_without_double_opt_in_a_secret_key_subscribes_at_once(trigger: Handler) -> None:
    status, _, body = request(
        trigger, "PUT", "/v1/contacts/u-ann/subscriptions/email", {"status": "subscribed"}, key=SECRET_KEY
    )

    assert status == 200 and body["consent"]["email"]["status"] == "subscribed"


def test_a_subscription_for_an_unknown_channel_is_422(trigger: Handler) -> None:
    status, _, body = request(
        trigger, "PUT", "/v1/contacts/u-ann/subscriptions/fax", {"status": "subscribed"}, key=SECRET_KEY
    )

    assert status == 422
    assert [d["field"] for d in assert_error(body, "validation_failed")] == ["channel"]


# ---------------------------------------------------------------- import


def test_import_writes_contacts_with_consent_and_suppression_and_no_events(trigger: Handler) -> None:
    status, body = call(trigger, load_event("trigger/import.json"))

    assert status == 200
    assert [r["status"] for r in body["results"]] == [200, 200]
    assert list(EventItem.scan()) == []  # nothing for the stream to trigger on
    bob = contact(trigger, "u-bob")[1]
    assert bob["consent"]["email"] == {
        "status": "subscribed",
        "source": "crm",
        "updatedAt": "2025-03-01T10:00:00+00:00",
    }
    assert bob["tags"] == ["vip"]
    assert contact(trigger, "u-cat")[1]["suppression"] == "bounced"
    item = ContactItem.get(cid_of("u-bob"), "profile")
    assert item.imported_at == item.updated_at  # how the stream consumer tells an import


def test_import_items_fail_alone(trigger: Handler) -> None:
    identify(trigger, "u-ann", {"email": "ann@example.com"})
    contacts = [
        {"userId": "u-1", "traits": {"email": "ann@example.com"}},
        {"userId": "u-2", "traits": {"phone": "123"}},
        {"traits": {}},
        {"userId": "u-3", "suppression": "none", "tags": ["a"]},
    ]

    status, _, body = request(trigger, "POST", "/v1/contacts/import", {"contacts": contacts}, key=SECRET_KEY)

    assert status == 200
    assert [r["status"] for r in body["results"]] == [409, 422, 422, 200]


def test_import_is_for_secret_keys(trigger: Handler) -> None:
    event = load_event("trigger/import.json")
    event["headers"]["authorization"] = f"Bearer {WRITE_KEY}"

    assert call(trigger, event)[0] == 403


# ---------------------------------------------------------------- erase


def test_erase_leaves_nothing_but_the_tombstone(
    trigger: Handler, clock: FakeClock, state_machines: dict[str, str]
) -> None:
    import boto3

    identify(trigger, "u-ann", {"email": "ann@example.com", "phone": "+4930123456"}, anonymousId="v-3")
    request(
        trigger, "PUT", "/v1/contacts/u-ann/subscriptions/email", {"status": "subscribed"}, key=SECRET_KEY
    )
    cid = cid_of("u-ann")
    record_event(cid, "page_viewed", clock.now())
    sfn = boto3.client("stepfunctions")
    arn = sfn.start_execution(stateMachineArn=state_machines["welcome-series"], name=f"{cid}-1", input="{}")[
        "executionArn"
    ]
    from cairn.adapters.contacts import EnrollmentStore

    store = EnrollmentStore()
    run = store.begin(
        cid,
        "welcome-series",
        "v",
        trigger_id="t",
        now=clock.now(),
        reentry="never",
        reentry_after_cutoff=None,
    )
    assert run is not None
    store.started(cid, "welcome-series", run.run, arn)
    identify(trigger, "u-bob", {"email": "bob@example.com"})

    status, _, _ = call_erase(trigger)

    assert status == 204
    assert sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
    assert [i.cid for i in ContactItem.scan()] == [cid_of("u-bob")]
    assert list(EventItem.scan()) == []
    identities = {i.key: i.cid for i in IdentityItem.scan()}
    tombs = {k for k in identities if k.startswith("tomb#")}
    assert len(tombs) == 2 and all(identities[k] is None for k in tombs)
    # The contact ids (the user's and its merged visitor's) are marked erased, with no contact id left:
    # nothing that arrives late brings the contact back (test_api_erase.py).
    erased = {k for k in identities if k.startswith("erased#")}
    assert erased == {f"erased#{cid}", f"erased#{cid_for_anonymous(SECRET.encode(), 'v-3')}"}
    assert all(identities[k] is None for k in erased)
    tombs |= erased
    assert set(identities) - tombs == {
        next(k for k in identities if k.startswith("email#") and identities[k] == cid_of("u-bob"))
    }
    assert is_tombstoned("ann@example.com") and is_tombstoned("+4930123456")
    assert not IdentityStore().is_tombstoned("bob@example.com")
    assert contact(trigger, "u-ann")[0] == 404
    assert call_erase(trigger)[0] == 404  # nothing left to erase


def call_erase(handler: Handler) -> tuple[int, Any, Any]:
    response = handler(load_event("trigger/erase.json"))
    return int(response["statusCode"]), response.get("headers"), response.get("body")


# ---------------------------------------------------------------- next fields


def test_next_fields_asks_for_what_is_missing(
    load_handler: Any, keys: dict[str, str], clock: FakeClock, site_with: Callable[..., None]
) -> None:
    site_with(
        forms={"profile": {"fields": ["email", "firstName", "company", "jobTitle", "country"], "ask": 2}}
    )
    handler = load_handler("trigger")
    identify(handler, "u-ann", {"email": "ann@example.com", "company": "Trailhead"})

    status, body = call(handler, load_event("trigger/next-fields.json"))

    assert status == 200
    assert body == {"form": "profile", "fields": ["firstName", "jobTitle"]}
    status, _, body = request(
        handler, "GET", "/v1/contacts/u-new/next-fields", key=SECRET_KEY, query="form=profile"
    )
    assert body["fields"] == ["email", "firstName"]
    status, _, body = request(
        handler, "GET", "/v1/contacts/u-ann/next-fields", key=SECRET_KEY, query="form=nope"
    )
    assert status == 404
    status, _, body = request(handler, "GET", "/v1/contacts/u-ann/next-fields", key=SECRET_KEY)
    assert status == 422 and body["error"]["details"][0]["field"] == "form"


# ---------------------------------------------------------------- unsubscribe


def link_token(cid: str, message_id: str, now: Any, purpose: str = "unsubscribe") -> str:
    return tokens.sign(
        {"c": cid, "m": message_id}, SECRET.encode(), now=now, ttl=timedelta(days=365), purpose=purpose
    )


def one_click(handler: Handler, token: str) -> tuple[int, Any]:
    event = load_event("trigger/unsubscribe-one-click.json")
    event["rawQueryString"] = f"token={quote(token, safe='')}"
    event["queryStringParameters"] = {"token": token}
    response = handler(event)
    return int(response["statusCode"]), response.get("body")


def test_one_click_unsubscribes_and_records_the_event(trigger: Handler, clock: FakeClock) -> None:
    request(
        trigger, "PUT", "/v1/contacts/u-ann/subscriptions/email", {"status": "subscribed"}, key=SECRET_KEY
    )
    token = link_token(cid_of("u-ann"), "m-7", clock.now())

    status, page = one_click(trigger, token)
    again = one_click(trigger, token)

    assert status == 200 and "unsubscribed" in page
    assert again[0] == 200
    assert contact(trigger, "u-ann")[1]["consent"]["email"]["status"] == "unsubscribed"
    [event] = list(EventItem.scan())
    assert (event.name, event.source, event.properties.as_dict()["messageId"]) == (
        "unsubscribed",
        "cairn",
        "m-7",
    )


def test_the_get_shows_a_page_and_changes_nothing(trigger: Handler, clock: FakeClock) -> None:
    request(
        trigger, "PUT", "/v1/contacts/u-ann/subscriptions/email", {"status": "subscribed"}, key=SECRET_KEY
    )
    token = link_token(cid_of("u-ann"), "m-8", clock.now())

    status, headers, page = request(trigger, "GET", "/v1/unsubscribe", query=f"token={quote(token, safe='')}")

    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert 'name="List-Unsubscribe" value="One-Click"' in page and '<form method="post"' in page
    assert contact(trigger, "u-ann")[1]["consent"]["email"]["status"] == "subscribed"


@pytest.mark.parametrize("kind", ["tampered", "other purpose", "expired", "garbage"])
def test_a_bad_token_is_400_or_403_and_changes_nothing(trigger: Handler, clock: FakeClock, kind: str) -> None:
    request(
        trigger, "PUT", "/v1/contacts/u-ann/subscriptions/email", {"status": "subscribed"}, key=SECRET_KEY
    )
    token = link_token(cid_of("u-ann"), "m-9", clock.now())
    if kind == "tampered":
        head, body, sig = token.split(".")
        token = f"{head}.{body[:-2]}xx.{sig}"
    elif kind == "other purpose":
        token = link_token(cid_of("u-ann"), "m-9", clock.now(), purpose="confirm")
    elif kind == "expired":
        clock.advance(timedelta(days=366))
    else:
        token = "not-a-token"

    status, _ = one_click(trigger, token)

    assert status in (400, 403)
    assert contact(trigger, "u-ann")[1]["consent"]["email"]["status"] == "subscribed"
    assert list(EventItem.scan()) == []


def test_one_click_needs_the_form_field(trigger: Handler, clock: FakeClock) -> None:
    token = link_token(cid_of("u-ann"), "m-10", clock.now())

    status, _, body = request(
        trigger,
        "POST",
        "/v1/unsubscribe",
        "hello=1",
        query=f"token={quote(token, safe='')}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    assert status == 400
    assert_error(body, "malformed_request")
