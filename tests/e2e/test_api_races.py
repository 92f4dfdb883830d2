"""Races through local mode, with threads standing for concurrent Lambda instances (local mode runs one
resolver per thread and makes each DynamoDB request atomic, as AWS does). One local stack serves the
file; each test uses contacts of its own and reads counters as differences.

The contract (issue 3): 200 concurrent identify/track calls for one contact lose no update and leave
exact counters; 1,000 duplicate messageIds, some racing, are stored once and enrolled once; two users
racing for one anonymous id merge it once. Nothing fails on the way: no function error, no stream record
sent to the on-failure destination."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from tests.e2e.conftest import ROOT, START

from cairn.adapters.tables import ContactItem, EventItem
from cairn.local.runtime import LocalCairn

pytestmark = pytest.mark.e2e
THREADS = 8


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalCairn]:
    with LocalCairn(ROOT, start_time=START) as runtime:
        unthrottle(runtime)
        yield runtime


@pytest.fixture
def local(stack: LocalCairn) -> Iterator[LocalCairn]:
    """The shared stack; the test must leave no function error and no failed stream record behind."""
    errors, failed = len(stack.host.errors), len(stack.streams.failed)
    yield stack
    stack.settle()
    assert stack.host.errors[errors:] == []
    assert stack.streams.failed[failed:] == []


def unthrottle(local: LocalCairn) -> None:
    """Lift the trigger instance's per-key rate limit: these tests load it on purpose."""
    from cairn.domain.settings import KeyRate, RateLimits

    local.request("GET", "/openapi.json")  # the trigger's cold start
    assert local.stack is not None
    trigger = local.stack.functions["TriggerFunction"].module
    limits = RateLimits(write=KeyRate(rate=1e6, burst=10**6), secret=KeyRate(rate=1e6, burst=10**6))
    trigger.app.gate.limits = lambda: limits  # type: ignore[union-attr]


def cid(user_id: str) -> str:
    import os

    from cairn.adapters.secrets import stack_secret
    from cairn.domain.identity import cid_for_anonymous, cid_for_user

    secret = stack_secret(os.environ["SECRET_ARN"])
    return (
        cid_for_anonymous(secret, user_id[5:])
        if user_id.startswith("anon:")
        else cid_for_user(secret, user_id)
    )


def member_count(local: LocalCairn, segment: str) -> int:
    status, _, body = local.request("GET", f"/v1/segments/{segment}", key=local.secret_key)
    assert status == 200, body
    return int(body["memberCount"])


def events_of(user_id: str) -> list[EventItem]:
    return list(EventItem.query(cid(user_id), consistent_read=True))


def test_200_concurrent_identify_and_track_calls_for_one_contact_lose_nothing(local: LocalCairn) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    for i in range(100):
        traits: dict[str, Any] = {f"t{i}": i, "email": "ann@example.com", "firstName": "Ann", "seen": i}
        body: dict[str, Any] = {"userId": "ann", "traits": traits}
        if i % 10 == 0:
            body["anonymousId"] = f"visitor-{i // 10}"
        calls.append(("/v1/identify", body))
        # An event no segment or workflow reads: the contention is intake's, not the stream's.
        calls.append(("/v1/track", {"userId": "ann", "event": "tick", "messageId": f"tick-{i}"}))
    random.Random(7).shuffle(calls)

    def send(call: tuple[str, dict[str, Any]]) -> tuple[int, Any]:
        status, _, body = local.request("POST", call[0], call[1], key=local.write_key)
        return status, body

    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(send, calls))
    local.settle()

    assert [s for s, _ in answers].count(200) == 100  # every identify answered with the contact
    assert [s for s, _ in answers].count(202) == 100
    assert all(b["duplicate"] is False for s, b in answers if s == 202)
    status, _, contact = local.request("GET", "/v1/contacts/ann", key=local.secret_key)
    assert status == 200
    assert {f"t{i}" for i in range(100)} <= set(contact["attributes"])  # no lost update
    assert contact["attributes"]["email"] == "ann@example.com"
    assert contact["attributes"]["seen"] in range(100)
    assert contact["anonymousIds"] == sorted(f"visitor-{i}" for i in range(10))  # each merge once
    # Counters: exactly the 100 events, each once, on one contact.
    stored = [e for e in events_of("ann") if e.name == "tick"]
    assert sorted(e.mid for e in stored) == sorted(f"tick-{i}" for i in range(100))
    assert len([p for p in ContactItem.scan(ContactItem.user_id == "ann") if p.sk == "profile"]) == 1


def test_1000_duplicate_message_ids_some_racing_are_stored_once_and_enrolled_once(local: LocalCairn) -> None:
    users = [f"dup-{n}" for n in range(20)]
    for user in users:
        local.request(
            "POST",
            "/v1/identify",
            {
                "userId": user,
                "traits": {"email": f"{user}@example.com"},
                "consent": {"email": {"status": "subscribed", "source": "test"}},
            },
            key=local.secret_key,
        )
    runs_before = {r["name"] for r in local.executions()}
    sent_before = len(local.outbox())
    # 20 contacts x one trigger event each, sent 50 times: 1,000 requests, 980 duplicates. The first 160
    # go in bursts of 8 identical requests released together (8 threads racing on one messageId); the
    # other 840 follow shuffled.
    bursts = [(user, f"signup-{user}") for user in users for _ in range(THREADS)]
    rest = [(user, f"signup-{user}") for user in users for _ in range(50 - THREADS)]
    random.Random(11).shuffle(rest)
    barrier = threading.Barrier(THREADS)

    def send(position_item: tuple[int, tuple[str, str]]) -> bool:
        position, (user, mid) = position_item
        if position < len(bursts):
            barrier.wait(timeout=30)
        status, _, body = local.request(
            "POST",
            "/v1/track",
            {"userId": user, "event": "newsletter_subscribed", "messageId": mid},
            key=local.write_key,
        )
        assert status == 202, body
        assert body["messageId"] == mid
        return bool(body["duplicate"])

    with ThreadPoolExecutor(THREADS) as pool:
        duplicates = list(pool.map(send, enumerate(bursts + rest)))
    local.settle()

    assert len(duplicates) == 1000
    assert duplicates.count(False) == len(users)  # one request per messageId was the original
    for user in users:
        stored = [e for e in events_of(user) if e.name == "newsletter_subscribed"]
        assert [e.mid for e in stored] == [f"signup-{user}"]
    runs = [r for r in local.executions() if r["name"] not in runs_before]
    assert sorted(r["workflowId"] for r in runs) == ["welcome-series"] * len(users)  # enrolled once each
    assert len({r["name"] for r in runs}) == len(users)
    sent = local.outbox()[sent_before:]
    assert sorted(m["to"] for m in sent) == sorted(f"{u}@example.com" for u in users)


def test_two_users_racing_for_one_anonymous_id_merge_it_once(local: LocalCairn) -> None:
    visitors_before = member_count(local, "recent-visitors")
    local.request(
        "POST",
        "/v1/track",
        {"anonymousId": "shared", "event": "page_viewed", "messageId": "s-1"},
        key=local.write_key,
    )
    local.settle()
    assert member_count(local, "recent-visitors") == visitors_before + 1  # the anonymous visitor
    racers = [f"racer-{i % 4}" for i in range(16)]  # four users, each identifying four times at once
    barrier = threading.Barrier(THREADS)

    def identify(user: str) -> tuple[str, list[str]]:
        barrier.wait(timeout=30)
        status, _, body = local.request(
            "POST", "/v1/identify", {"userId": user, "anonymousId": "shared"}, key=local.write_key
        )
        assert status == 200, body
        return user, list(body["anonymousIds"])

    with ThreadPoolExecutor(THREADS) as pool:
        answers = list(pool.map(identify, racers))
    local.settle()

    winners = {user for user, ids in answers if ids == ["shared"]}
    assert len(winners) == 1  # the first identify keeps it (Segment's rule); its retries agree
    [winner] = winners
    assert all(ids == [] for user, ids in answers if user != winner)
    for user in sorted(set(racers)):
        _, _, contact = local.request("GET", f"/v1/contacts/{user}", key=local.secret_key)
        assert contact["anonymousIds"] == (["shared"] if user == winner else [])
        assert [s["id"] for s in contact["segments"]] == (["recent-visitors"] if user == winner else [])
    # The event moved once, to the winner; the anonymous contact is gone, and with it its membership.
    assert [e.mid for e in events_of(winner) if e.name == "page_viewed"] == ["s-1"]
    assert [e for e in events_of("anon:shared") if e.name == "page_viewed"] == []
    assert list(ContactItem.query(cid("anon:shared"), ContactItem.sk == "profile")) == []
    assert member_count(local, "recent-visitors") == visitors_before + 1


def test_events_sent_with_the_anonymous_id_after_the_merge_follow_the_user(local: LocalCairn) -> None:
    local.request("POST", "/v1/identify", {"userId": "zoe", "anonymousId": "v-zoe"}, key=local.write_key)
    local.request(
        "POST",
        "/v1/track",
        {"anonymousId": "v-zoe", "event": "page_viewed", "messageId": "late-1"},
        key=local.write_key,
    )
    local.settle()

    assert [e.mid for e in events_of("zoe") if e.name == "page_viewed"] == ["late-1"]
    assert events_of("anon:v-zoe") == []
    _, _, contact = local.request("GET", "/v1/contacts/zoe", key=local.secret_key)
    assert [s["id"] for s in contact["segments"]] == ["recent-visitors"]
