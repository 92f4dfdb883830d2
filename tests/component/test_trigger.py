"""The trigger function (HTTP API v1) through its real handler, with the sample API Gateway events."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.component.conftest import SECRET_KEY, WRITE_KEY, FakeClock, Handler, cid_of, load_event

from cairn.adapters.keys import KeyStore
from cairn.adapters.tables import EventItem


@pytest.fixture
def trigger(load_handler: Any, keys: dict[str, str], clock: FakeClock) -> Handler:
    handler: Handler = load_handler("trigger")
    return handler


def call(handler: Handler, event: dict[str, Any]) -> tuple[int, Any]:
    response = handler(event)
    body = response.get("body")
    return int(response["statusCode"]), json.loads(body) if body else None


def with_body(event: dict[str, Any], body: Any) -> dict[str, Any]:
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def with_key(event: dict[str, Any], key: str | None) -> dict[str, Any]:
    if key is None:
        event["headers"].pop("authorization", None)
    else:
        event["headers"]["authorization"] = f"Bearer {key}"
    return event


def get_contact(handler: Handler, user_id: str) -> tuple[int, Any]:
    event = load_event("trigger/contact.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/v1/contacts/{user_id}"
    return call(handler, event)


def identify(handler: Handler, traits: dict[str, Any], key: str = WRITE_KEY) -> tuple[int, Any]:
    event = load_event("trigger/identify.json")
    return call(handler, with_key(with_body(event, {"userId": "u-ann", "traits": traits}), key))


def assert_error(body: Any, code: str) -> list[dict[str, str]]:
    """The one documented error shape: {"error": {"code", "message", "details": [{"field", "problem"}]}}."""
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    for detail in error["details"]:
        assert set(detail) == {"field", "problem"}
        assert detail["field"] and detail["problem"]
    details: list[dict[str, str]] = error["details"]
    return details


def stored_events() -> list[EventItem]:
    return list(EventItem.scan())


# ---------------------------------------------------------------- track


def test_track_is_accepted_and_stored_once(trigger: Handler) -> None:
    event = load_event("trigger/track.json")
    sent = json.loads(event["body"])

    status, body = call(trigger, event)

    assert status == 202
    assert body == {"messageId": sent["messageId"], "duplicate": False}
    [item] = stored_events()
    assert item.cid == cid_of("u-ann")  # an opaque id, never the user id itself
    assert item.mid == sent["messageId"]
    assert item.name == "newsletter_subscribed"
    assert item.properties.as_dict() == sent["properties"]


def test_the_same_message_id_again_is_a_duplicate_and_nothing_more_is_stored(trigger: Handler) -> None:
    call(trigger, load_event("trigger/track.json"))
    retry = load_event("trigger/track.json")
    sent = json.loads(retry["body"])
    with_body(retry, {**sent, "properties": {"form": "changed on retry"}})

    status, body = call(trigger, retry)

    assert status == 202
    assert body == {"messageId": sent["messageId"], "duplicate": True}
    [item] = stored_events()
    assert item.properties.as_dict() == sent["properties"]  # the original, untouched


def test_track_with_only_an_anonymous_id_is_accepted(trigger: Handler) -> None:
    event = load_event("trigger/track.json")
    sent = json.loads(event["body"])
    del sent["userId"]
    sent["anonymousId"] = "a7c1e9d2-visitor"

    status, body = call(trigger, with_body(event, sent))

    assert status == 202
    assert body == {"messageId": sent["messageId"], "duplicate": False}
    [item] = stored_events()
    assert item.anonymous_id == "a7c1e9d2-visitor"
    assert item.cid != cid_of("a7c1e9d2-visitor")  # anonymous ids get their own namespace of cids


def test_track_without_a_message_id_gets_one(trigger: Handler) -> None:
    event = load_event("trigger/track.json")
    sent = json.loads(event["body"])
    del sent["messageId"]

    status, body = call(trigger, with_body(event, sent))

    assert status == 202
    assert body["duplicate"] is False
    assert body["messageId"]
    assert [i.mid for i in stored_events()] == [body["messageId"]]


def test_track_without_user_id_or_anonymous_id_is_422_naming_the_field(trigger: Handler) -> None:
    event = load_event("trigger/track.json")
    sent = json.loads(event["body"])
    del sent["userId"]

    status, body = call(trigger, with_body(event, sent))

    assert status == 422
    [detail] = assert_error(body, "validation_failed")
    assert detail["field"] == "userId"
    assert "anonymousId" in detail["problem"]
    assert stored_events() == []


def test_track_without_an_event_name_is_422_naming_event(trigger: Handler) -> None:
    event = load_event("trigger/track.json")
    sent = json.loads(event["body"])
    del sent["event"]

    status, body = call(trigger, with_body(event, sent))

    assert status == 422
    assert [d["field"] for d in assert_error(body, "validation_failed")] == ["event"]


@pytest.mark.parametrize("body", ['{"userId": "u-ann", "event": ', "not json at all", "[]", '"a string"', ""])
def test_a_malformed_body_is_400(trigger: Handler, body: str) -> None:
    status, response = call(trigger, with_body(load_event("trigger/track.json"), body))

    assert status == 400
    assert_error(response, "malformed_request")
    assert stored_events() == []


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer cw_no-such-key", f"Basic {WRITE_KEY}"],
    ids=["no header", "empty", "no token", "unknown key", "not bearer"],
)
def test_track_without_a_known_key_is_401(trigger: Handler, authorization: str | None) -> None:
    event = load_event("trigger/track.json")
    if authorization is None:
        del event["headers"]["authorization"]
    else:
        event["headers"]["authorization"] = authorization

    status, body = call(trigger, event)

    assert status == 401
    assert_error(body, "unauthorized")
    assert stored_events() == []


def test_a_revoked_key_is_401(load_handler: Any, keys: dict[str, str], clock: FakeClock) -> None:
    KeyStore.revoke(WRITE_KEY)
    trigger = load_handler("trigger")  # a cold start: nothing cached

    status, body = call(trigger, load_event("trigger/track.json"))

    assert status == 401
    assert_error(body, "unauthorized")


# ---------------------------------------------------------------- identify


def test_identify_returns_the_contact(trigger: Handler) -> None:
    status, body = call(trigger, load_event("trigger/identify.json"))

    assert status == 200
    assert body["userId"] == "u-ann"
    assert body["attributes"] == {
        "email": "ann@example.com",
        "firstName": "Ann",
        "timezone": "Europe/Berlin",
        "plan": "free",
    }


def test_identify_merges_traits_and_a_null_trait_never_erases_a_known_one(trigger: Handler) -> None:
    identify(trigger, {"email": "ann@example.com", "firstName": "Ann", "plan": "free"})

    status, body = identify(trigger, {"firstName": None, "plan": "pro", "city": "Berlin"})

    assert status == 200
    assert body["attributes"] == {
        "email": "ann@example.com",
        "firstName": "Ann",
        "plan": "pro",
        "city": "Berlin",
    }
    status, stored = get_contact(trigger, "u-ann")
    assert status == 200
    assert stored["attributes"] == body["attributes"]


@pytest.mark.parametrize(
    ("trait", "value"),
    [("email", "ann-at-example.com"), ("phone", "12345"), ("timezone", "Mars/Olympus_Mons")],
)
def test_identify_rejects_an_invalid_reserved_trait_naming_it(
    trigger: Handler, trait: str, value: str
) -> None:
    status, body = identify(trigger, {"firstName": "Ann", trait: value})

    assert status == 422
    assert [d["field"] for d in assert_error(body, "validation_failed")] == [f"traits.{trait}"]
    assert get_contact(trigger, "u-ann")[0] == 404  # nothing stored


def test_identify_normalises_email_and_phone(trigger: Handler) -> None:
    status, body = identify(trigger, {"email": "Ann@Example.COM", "phone": "+49 30 1234567"})

    assert status == 200
    assert body["attributes"]["phone"] == "+49301234567"
    assert body["attributes"]["email"].endswith("@example.com")


def test_a_write_key_cannot_change_a_known_email(trigger: Handler) -> None:
    identify(trigger, {"email": "ann@example.com"})

    status, body = identify(trigger, {"email": "mallory@example.com"})

    assert status == 403
    assert [d["field"] for d in assert_error(body, "forbidden")] == ["traits.email"]
    assert get_contact(trigger, "u-ann")[1]["attributes"]["email"] == "ann@example.com"


def test_a_secret_key_may_change_a_known_email(trigger: Handler) -> None:
    identify(trigger, {"email": "ann@example.com"})

    status, body = identify(trigger, {"email": "ann@new.example"}, key=SECRET_KEY)

    assert status == 200
    assert body["attributes"]["email"] == "ann@new.example"


# ---------------------------------------------------------------- contacts and subscriptions


def test_put_subscription_sets_consent(trigger: Handler, clock: FakeClock) -> None:
    call(trigger, load_event("trigger/identify.json"))

    status, body = call(trigger, load_event("trigger/subscription.json"))

    assert status == 200
    assert body["consent"]["email"] == {
        "status": "subscribed",
        "source": "signup-form",
        "updatedAt": clock.now().isoformat(),
    }
    status, contact = get_contact(trigger, "u-ann")
    assert status == 200
    assert contact["consent"]["email"]["status"] == "subscribed"
    assert contact["attributes"]["firstName"] == "Ann"  # the rest of the profile is untouched


def test_a_subscription_for_an_unidentified_contact_creates_it_with_its_user_id(trigger: Handler) -> None:
    status, body = call(trigger, load_event("trigger/subscription.json"))

    assert status == 200
    assert body["userId"] == "u-ann"
    assert get_contact(trigger, "u-ann")[1]["userId"] == "u-ann"


def test_unsubscribing_replaces_the_consent(trigger: Handler) -> None:
    call(trigger, load_event("trigger/subscription.json"))
    event = load_event("trigger/subscription.json")

    status, body = call(trigger, with_body(event, {"status": "unsubscribed", "source": "preference-center"}))

    assert status == 200
    assert body["consent"]["email"]["status"] == "unsubscribed"
    assert body["consent"]["email"]["source"] == "preference-center"


def test_a_write_key_on_put_subscriptions_is_403_and_changes_nothing(trigger: Handler) -> None:
    call(trigger, load_event("trigger/identify.json"))
    event = with_key(load_event("trigger/subscription.json"), WRITE_KEY)

    status, body = call(trigger, event)

    assert status == 403
    assert_error(body, "forbidden")
    assert get_contact(trigger, "u-ann")[1]["consent"] == {}


def test_put_subscriptions_without_a_key_is_401(trigger: Handler) -> None:
    status, body = call(trigger, with_key(load_event("trigger/subscription.json"), None))

    assert status == 401
    assert_error(body, "unauthorized")


def test_get_an_unknown_contact_is_404(trigger: Handler) -> None:
    status, body = call(trigger, load_event("trigger/contact.json"))

    assert status == 404
    assert_error(body, "not_found")


def test_a_write_key_cannot_read_contacts(trigger: Handler) -> None:
    call(trigger, load_event("trigger/identify.json"))

    status, body = call(trigger, with_key(load_event("trigger/contact.json"), WRITE_KEY))

    assert status == 403
    assert_error(body, "forbidden")


def test_the_openapi_spec_is_served_without_a_key(trigger: Handler) -> None:
    event = with_key(load_event("trigger/contact.json"), None)
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/openapi.json"

    status, spec = call(trigger, event)

    assert status == 200
    assert {"/v1/track", "/v1/identify"} <= set(spec["paths"])
    assert any(path.startswith("/v1/contacts/") for path in spec["paths"])


# ---------------------------------------------------------------- helpers for the other trigger tests


def request(
    handler: Handler,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """Any API call through the real handler, from the sample event: (status, headers, parsed body)."""
    from urllib.parse import parse_qsl

    event = load_event("trigger/contact.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["rawQueryString"] = query
    event["queryStringParameters"] = dict(parse_qsl(query, keep_blank_values=True)) or None
    with_key(event, key)
    event["headers"].update({k.lower(): v for k, v in (headers or {}).items()})
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
        event["headers"].setdefault("content-type", "application/json")
    response = handler(event)
    text = response.get("body") or ""
    try:
        parsed = json.loads(text) if text else None
    except json.JSONDecodeError:
        parsed = text
    out_headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return int(response["statusCode"]), out_headers, parsed
