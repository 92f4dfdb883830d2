"""Intake through the real trigger handler: Segment's fields, batch, the write key's limits, throttling,
sizes, CORS, and the order of checks (auth before validation, size before parsing)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.component.conftest import SECRET_KEY, WRITE_KEY, FakeClock, Handler, cid_of, load_event
from tests.component.test_trigger import assert_error, call, request, stored_events, trigger, with_body

from cairn.adapters.keys import KeyStore
from cairn.adapters.tables import EventItem
from cairn.domain.identity import user_id_hash
from cairn.domain.keys import KeyKind

__all__ = ["trigger"]
SECRET = b"test-hmac-secret-not-for-production"


@pytest.fixture
def site_with(site_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., None]:
    """Run the next handler loaded with these settings.yaml values (a copy of the project's site bundle)."""

    def use(**settings: Any) -> None:
        data = json.loads(site_path.read_text(encoding="utf-8"))
        data["settings"].update(settings)
        path = tmp_path / "site.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        monkeypatch.setenv("CAIRN_SITE_PATH", str(path))

    return use


def track(handler: Handler, body: dict[str, Any], key: str = WRITE_KEY) -> tuple[int, dict[str, str], Any]:
    return request(handler, "POST", "/v1/track", body, key=key)


# ---------------------------------------------------------------- Segment's fields


def test_id_is_an_alias_of_message_id(trigger: Handler) -> None:
    status, _, body = track(trigger, {"userId": "u-ann", "event": "viewed", "id": "m-alias-1"})

    assert status == 202 and body == {"messageId": "m-alias-1", "duplicate": False}
    assert [e.mid for e in stored_events()] == ["m-alias-1"]


def test_clock_skew_is_corrected_as_segment_does(trigger: Handler, clock: FakeClock) -> None:
    # The device's clock runs 10 minutes fast: it says it sent at now+10m an event it stamped now+5m.
    now = clock.now()
    sent = {
        "userId": "u-ann",
        "event": "viewed",
        "messageId": "m-skew",
        "timestamp": (now + timedelta(minutes=5)).isoformat(),
        "sentAt": (now + timedelta(minutes=10)).isoformat(),
        "context": {"library": {"name": "analytics.js"}},
    }

    assert track(trigger, sent)[0] == 202

    [item] = stored_events()
    assert item.ts.startswith((now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S"))
    assert item.received_at == now
    assert item.context is not None and item.context.as_dict() == {"library": {"name": "analytics.js"}}


def test_a_timestamp_far_in_the_future_is_clamped(trigger: Handler, clock: FakeClock) -> None:
    track(trigger, {"userId": "u", "event": "e", "messageId": "m1", "timestamp": "2999-01-01T00:00:00Z"})

    [item] = stored_events()
    assert item.ts.startswith((clock.now() + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"userId": "u", "event": "e", "properties": {"x": float("nan")}}, "properties.x"),
        ({"userId": "u", "event": "e", "properties": {"": 1}}, "properties"),
        ({"userId": "u", "event": "e", "properties": {"n": 10**40 + 1}}, "properties.n"),
        ({"userId": "u", "event": "e", "timestamp": "1500-01-01T00:00:00Z"}, "timestamp"),
        ({"userId": "u", "event": ""}, "event"),
        ({"userId": "u" * 256, "event": "e"}, "userId"),
    ],
)
def test_values_that_cannot_be_stored_are_422_naming_the_field(
    trigger: Handler, body: dict[str, Any], field: str
) -> None:
    status, _, response = request(trigger, "POST", "/v1/track", json.dumps(body), key=WRITE_KEY)

    assert status == 422
    assert field in [d["field"] for d in assert_error(response, "validation_failed")]
    assert stored_events() == []


def test_a_lone_surrogate_is_422_not_500(trigger: Handler) -> None:
    status, _, body = request(
        trigger, "POST", "/v1/track", '{"userId": "\\ud800", "event": "e"}', key=WRITE_KEY
    )

    assert status == 422
    assert [d["field"] for d in assert_error(body, "validation_failed")] == ["userId"]


# ---------------------------------------------------------------- the write key's limits


def test_a_write_key_cannot_send_reserved_events(trigger: Handler) -> None:
    status, _, body = track(trigger, {"userId": "u-ann", "event": "email_opened"})

    assert status == 403
    assert [d["field"] for d in assert_error(body, "forbidden")] == ["event"]
    assert stored_events() == []


def test_a_secret_key_may_record_a_reserved_event(trigger: Handler) -> None:
    assert track(trigger, {"userId": "u-ann", "event": "email_opened"}, key=SECRET_KEY)[0] == 202


def test_a_write_key_cannot_subscribe_to_email_except_by_double_opt_in(trigger: Handler) -> None:
    status, _, body = request(
        trigger,
        "POST",
        "/v1/identify",
        {
            "userId": "u-ann",
            "traits": {"email": "ann@example.com"},
            "consent": {"email": {"status": "subscribed"}},
        },
        key=WRITE_KEY,
    )

    assert status == 200
    assert body["consent"]["email"]["status"] == "pending"


def test_a_write_key_cannot_subscribe_to_sms(trigger: Handler) -> None:
    status, _, body = request(
        trigger,
        "POST",
        "/v1/identify",
        {"userId": "u-ann", "consent": {"sms": {"status": "subscribed"}}},
        key=WRITE_KEY,
    )

    assert status == 403
    assert [d["field"] for d in assert_error(body, "forbidden")] == ["consent.sms"]


def test_a_write_key_may_unsubscribe(trigger: Handler) -> None:
    status, _, body = request(
        trigger,
        "POST",
        "/v1/identify",
        {"userId": "u-ann", "consent": {"email": {"status": "unsubscribed"}}},
        key=WRITE_KEY,
    )

    assert status == 200 and body["consent"]["email"]["status"] == "unsubscribed"


def test_a_write_key_cannot_change_a_known_phone(trigger: Handler) -> None:
    request(
        trigger,
        "POST",
        "/v1/identify",
        {"userId": "u-ann", "traits": {"phone": "+4930123456"}},
        key=WRITE_KEY,
    )

    status, _, body = request(
        trigger,
        "POST",
        "/v1/identify",
        {"userId": "u-ann", "traits": {"phone": "+4930999999"}},
        key=WRITE_KEY,
    )

    assert status == 403
    assert [d["field"] for d in assert_error(body, "forbidden")] == ["traits.phone"]


def test_user_id_hash_is_checked_when_given(trigger: Handler) -> None:
    good = user_id_hash(SECRET, "u-ann")

    assert track(trigger, {"userId": "u-ann", "event": "e", "userIdHash": good})[0] == 202
    status, _, body = track(trigger, {"userId": "u-ann", "event": "e", "userIdHash": "0" * 64})
    assert status == 403
    assert [d["field"] for d in assert_error(body, "forbidden")] == ["userIdHash"]


def test_user_id_hash_is_required_when_the_stack_says_so(
    load_handler: Any, keys: dict[str, str], clock: FakeClock, site_with: Callable[..., None]
) -> None:
    site_with(api={"require_user_id_hash": True})
    handler = load_handler("trigger")

    status, _, body = track(handler, {"userId": "u-ann", "event": "e"})
    assert status == 403
    assert [d["field"] for d in assert_error(body, "forbidden")] == ["userIdHash"]
    assert (
        track(handler, {"userId": "u-ann", "event": "e", "userIdHash": user_id_hash(SECRET, "u-ann")})[0]
        == 202
    )
    assert track(handler, {"userId": "u-ann", "event": "e"}, key=SECRET_KEY)[0] == 202  # servers need none
    assert track(handler, {"anonymousId": "v-1", "event": "e"})[0] == 202  # nobody claimed


# ---------------------------------------------------------------- order of checks, throttling, size


def test_no_key_beats_a_bad_body(trigger: Handler) -> None:
    status, _, _ = request(trigger, "POST", "/v1/track", {"event": ""}, key=None)
    assert status == 401
    status, _, _ = request(trigger, "POST", "/v1/contacts/import", "{not json", key=WRITE_KEY)
    assert status == 403


def test_a_body_over_32_kb_is_413_before_it_is_parsed(trigger: Handler) -> None:
    too_big = '{"userId": "u", "event": "e", "properties": {"x": "' + "a" * 33_000 + '"'  # not even JSON

    status, _, body = request(trigger, "POST", "/v1/track", too_big, key=WRITE_KEY)

    assert status == 413
    assert_error(body, "payload_too_large")


def test_a_key_over_its_rate_gets_429_with_retry_after(
    load_handler: Any, keys: dict[str, str], clock: FakeClock, site_with: Callable[..., None]
) -> None:
    site_with(
        api={"rate_limits": {"write": {"rate": 0.01, "burst": 2}, "secret": {"rate": 100, "burst": 100}}}
    )
    handler = load_handler("trigger")

    statuses = [track(handler, {"userId": "u", "event": "e", "messageId": f"m{i}"})[0] for i in range(3)]
    status, headers, body = track(handler, {"userId": "u", "event": "e", "messageId": "m4"})

    assert statuses == [202, 202, 429]
    assert status == 429
    assert_error(body, "throttled")
    assert int(headers["retry-after"]) >= 1
    assert headers["access-control-allow-origin"] == "*"  # a browser can read the refusal
    assert len(stored_events()) == 2
    assert track(handler, {"userId": "u", "event": "e"}, key=SECRET_KEY)[0] == 202  # a bucket per key


def test_cors_preflight_and_headers_on_browser_routes_only(trigger: Handler) -> None:
    status, headers, _ = request(trigger, "OPTIONS", "/v1/track")
    assert status == 204
    assert headers["access-control-allow-origin"] == "*"
    assert "Authorization" in headers["access-control-allow-headers"]

    assert track(trigger, {"userId": "u", "event": "e"})[1]["access-control-allow-origin"] == "*"
    status, headers, _ = request(trigger, "GET", "/v1/contacts/u", key=SECRET_KEY)
    assert "access-control-allow-origin" not in headers
    assert request(trigger, "OPTIONS", "/v1/contacts/u")[0] in (404, 405)


def test_the_key_cache_forgets_a_revoked_key_within_60_seconds(keys: dict[str, str]) -> None:
    now = [0.0]
    store = KeyStore(monotonic=lambda: now[0])
    assert store.lookup(WRITE_KEY) is not None
    KeyStore.revoke(WRITE_KEY)

    now[0] = 59.0
    cached = store.lookup(WRITE_KEY)
    now[0] = 60.0
    fresh = store.lookup(WRITE_KEY)

    assert cached is not None and not cached.revoked
    assert fresh is not None and fresh.revoked


def test_keys_that_cannot_exist_cost_no_read(keys: dict[str, str]) -> None:
    store = KeyStore()
    assert store.lookup("not-a-cairn-key") is None
    assert store.lookup("cw_" + "x" * 500) is None
    assert store.lookup(KeyStore.create(KeyKind.WRITE, "new")) is not None


# ---------------------------------------------------------------- batch


def batch(handler: Handler, items: list[Any], key: str = WRITE_KEY, **extra: Any) -> tuple[int, Any]:
    status, _, body = request(handler, "POST", "/v1/batch", {"batch": items, **extra}, key=key)
    return status, body


def test_batch_answers_one_result_per_item_and_a_bad_item_fails_alone(trigger: Handler) -> None:
    items = [
        {"type": "track", "userId": "u-1", "event": "viewed", "messageId": "b-1"},
        {"type": "track", "userId": "u-1", "event": ""},
        {"type": "identify", "userId": "u-1", "traits": {"email": "u1@example.com"}},
        {"type": "track", "userId": "u-1", "event": "email_opened"},
        {"type": "page", "userId": "u-1"},
        {"type": "identify", "userId": "u-1", "traits": {"email": "not-an-address"}},
        {"type": "track", "userId": "u-1", "event": "viewed", "messageId": "b-1"},
        "not an object",
        {"type": "track", "anonymousId": "v-9", "event": "viewed", "messageId": "b-2"},
    ]

    status, body = batch(trigger, items)

    assert status == 200
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(items)))
    assert [r["status"] for r in results] == [202, 422, 200, 403, 422, 422, 202, 400, 202], results
    assert results[0] == {"index": 0, "status": 202, "messageId": "b-1", "duplicate": False, "error": None}
    assert results[6]["duplicate"] is True
    assert results[1]["error"]["details"][0]["field"] == "event"
    assert results[5]["error"]["details"][0]["field"] == "traits.email"
    assert sorted(e.mid for e in stored_events()) == ["b-1", "b-2"]


def test_batch_level_sent_at_corrects_each_item(trigger: Handler, clock: FakeClock) -> None:
    now = clock.now()
    items = [{"type": "track", "userId": "u", "event": "e", "messageId": "s1", "timestamp": now.isoformat()}]

    batch(trigger, items, sentAt=(now + timedelta(hours=2)).isoformat())

    [item] = stored_events()
    assert item.ts.startswith((now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S"))


def test_batch_of_500_is_accepted_and_501_is_413(trigger: Handler) -> None:
    items = [
        {"type": "track", "userId": f"u-{i % 7}", "event": "e", "messageId": f"m-{i}"} for i in range(500)
    ]

    status, body = batch(trigger, items)
    assert status == 200 and {r["status"] for r in body["results"]} == {202}
    assert len(stored_events()) == 500

    status, body = batch(trigger, [*items, {"type": "track", "userId": "u", "event": "e"}])
    assert status == 413
    assert [d["field"] for d in assert_error(body, "payload_too_large")] == ["batch"]


def test_a_batch_item_over_32_kb_fails_alone(trigger: Handler) -> None:
    items = [
        {"type": "track", "userId": "u", "event": "e", "properties": {"x": "a" * 33_000}},
        {"type": "track", "userId": "u", "event": "e", "messageId": "ok"},
    ]

    status, body = batch(trigger, items)

    assert status == 200
    assert [r["status"] for r in body["results"]] == [413, 202]


def test_a_batch_over_4_mb_is_413(trigger: Handler) -> None:
    status, _, _body = request(
        trigger, "POST", "/v1/batch", '{"batch": ["' + "a" * (4 * 1024 * 1024) + '"]}', key=WRITE_KEY
    )

    assert status == 413


@pytest.mark.parametrize("body", ['{"batch": 3}', '{"batch": {"type": "track"}}', "{}"])
def test_a_batch_without_a_list_is_422(trigger: Handler, body: str) -> None:
    status, _, response = request(trigger, "POST", "/v1/batch", body, key=WRITE_KEY)

    assert status == 422
    assert [d["field"] for d in assert_error(response, "validation_failed")] == ["batch"]


def test_events_land_on_the_contact_of_their_user_id(trigger: Handler) -> None:
    batch(trigger, [{"type": "track", "userId": "u-5", "anonymousId": "v-5", "event": "e", "messageId": "x"}])

    [item] = list(EventItem.scan())
    assert item.cid == cid_of("u-5")


@pytest.fixture
def sample_track() -> Iterator[dict[str, Any]]:
    yield load_event("trigger/track.json")


def test_the_sample_batch_event(trigger: Handler) -> None:
    status, body = call(trigger, load_event("trigger/batch.json"))

    assert status == 200
    assert [r["status"] for r in body["results"]] == [200, 202, 202]


def test_the_sample_track_still_answers_202(trigger: Handler, sample_track: dict[str, Any]) -> None:
    assert call(trigger, with_body(sample_track, json.loads(sample_track["body"])))[0] == 202
