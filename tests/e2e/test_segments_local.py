"""Segments in local mode: the real handlers, the real ASL (the build's local variant) and the virtual clock.

- an event moves a contact into a segment, and that entry starts a workflow (`trigger: segment_entered`);
- the passing of virtual time moves a contact out of a `within: 30d` segment, and no Scan is made;
- a build evaluates every contact for a segment, through the segment-build state machine: its Distributed
  Map runs under moto's interpreter as it is (a map run of child executions), so local mode needs no inline
  variant (statemachines/segment-build.local.asl.json would replace it if a moto upgrade lost that).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from tests.e2e.conftest import START

from cairn.local.runtime import LocalCairn

pytestmark = pytest.mark.e2e
HOUR = 3600


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def ok(result: tuple[int, dict[str, str], Any], status: int = 200) -> Any:
    assert result[0] == status, result
    return result[2]


def identify(local: LocalCairn, user_id: str, **traits: Any) -> None:
    ok(local.request("POST", "/v1/identify", {"userId": user_id, "traits": traits}, key=local.secret_key))


def track(local: LocalCairn, user_id: str, event: str, at: datetime, **properties: Any) -> None:
    body = {"userId": user_id, "event": event, "properties": properties, "timestamp": iso(at)}
    ok(local.request("POST", "/v1/track", body, key=local.write_key), 202)


def member_ids(local: LocalCairn, segment_id: str) -> list[str | None]:
    page = ok(local.request("GET", f"/v1/segments/{segment_id}/members", key=local.secret_key))
    return [m["userId"] for m in page["members"]]


def member_count(local: LocalCairn, segment_id: str) -> int:
    count: int = ok(local.request("GET", f"/v1/segments/{segment_id}", key=local.secret_key))["memberCount"]
    return count


@contextmanager
def scans() -> Iterator[list[str]]:
    """Every DynamoDB Scan moto serves meanwhile (whoever asks: a handler, a state machine, local mode)."""
    from moto.dynamodb.models import DynamoDBBackend

    seen: list[str] = []
    original = DynamoDBBackend.scan

    def scan(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(table_name)
        return original(self, table_name, *args, **kwargs)

    DynamoDBBackend.scan = scan  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        DynamoDBBackend.scan = original  # type: ignore[method-assign]


def test_browsing_camping_gear_moves_a_hiker_into_the_segment_and_its_workflow_starts(
    local: LocalCairn,
) -> None:
    identify(local, "u-hiker", email="hiker@example.com", firstName="Hanna")
    ok(
        local.request(
            "PUT", "/v1/contacts/u-hiker/subscriptions/email", {"status": "subscribed"}, key=local.secret_key
        )
    )
    # Her history: two hiking orders (imported late: they change segments, start nothing themselves).
    track(local, "u-hiker", "order_completed", START - timedelta(days=120), category="hiking", total=89)
    track(local, "u-hiker", "order_completed", START - timedelta(days=30), category="hiking", total=140)
    local.settle()
    assert member_ids(local, "camping-curious-hikers") == []
    assert local.outbox() == []

    # She starts browsing tents.
    track(local, "u-hiker", "product_viewed", START, category="camping", name="Ridge 2 tent")
    local.settle()

    assert member_ids(local, "camping-curious-hikers") == ["u-hiker"]
    contact = ok(local.request("GET", "/v1/contacts/u-hiker", key=local.secret_key))
    assert {"id": "camping-curious-hikers", "enteredAt": iso(START)} in contact["segments"]
    [run] = [r for r in local.executions() if r["workflowId"] == "camping-cross-sell"]
    [mail] = [m for m in local.outbox() if m["workflowId"] == "camping-cross-sell"]
    assert mail["to"] == "hiker@example.com" and mail["stepId"] == "starter-kit"
    assert mail["subject"] == "From trail to tent, Hanna"
    assert run["status"] == "RUNNING"  # waiting three days for the checklist

    # The same page view again (a retry, a second tab): she is in already, nothing starts twice.
    track(local, "u-hiker", "product_viewed", START + timedelta(minutes=5), category="camping")
    local.settle()
    assert len([r for r in local.executions() if r["workflowId"] == "camping-cross-sell"]) == 1


def test_time_alone_moves_a_contact_out_of_a_30_day_window_without_a_scan(local: LocalCairn) -> None:
    identify(local, "u-ann", email="ann@example.com")
    identify(local, "u-bob", email="bob@example.com")
    # Ann's last visit was 29 and a half days ago (an event sent late): she is in for 12 more hours.
    track(local, "u-ann", "page_viewed", START - timedelta(days=29, hours=12))
    track(local, "u-bob", "page_viewed", START)
    local.settle()
    assert sorted(member_ids(local, "recent-visitors")) == ["u-ann", "u-bob"]  # type: ignore[type-var]

    with scans() as seen:
        local.advance(seconds=11 * HOUR)
        assert sorted(member_ids(local, "recent-visitors")) == ["u-ann", "u-bob"]  # type: ignore[type-var]
        local.advance(seconds=1 * HOUR)
        assert member_ids(local, "recent-visitors") == ["u-bob"]
        assert member_count(local, "recent-visitors") == 1  # Bob's window closes in 29.5 days

    assert seen == []  # only the hours that fell due were read
    contact = ok(local.request("GET", "/v1/contacts/u-ann", key=local.secret_key))
    assert "recent-visitors" not in {s["id"] for s in contact["segments"]}


def test_a_build_evaluates_every_contact_through_the_build_state_machine(local: LocalCairn) -> None:
    people = [
        {"userId": f"u-{n}", "traits": {"email": f"u{n}@example.com"}, "tags": ["vip"] if n % 2 else []}
        for n in range(7)
    ]
    ok(local.request("POST", "/v1/contacts/import", {"contacts": people}, key=local.secret_key))
    local.settle()
    vips = sorted(f"u-{n}" for n in range(7) if n % 2)
    assert sorted(member_ids(local, "vip")) == vips  # type: ignore[type-var]
    # As if the segment were new: no membership recorded yet.
    from cairn.adapters.segments import CountItem, MembershipItem

    for item in [*MembershipItem.scan(), *CountItem.scan()]:
        if item.pk.startswith(("m#vip#", "n#vip#")):
            item.delete()
    assert member_ids(local, "vip") == []

    from cairn.adapters.aws import client

    assert local.stack is not None
    sfn = client("stepfunctions")
    arn = local.stack.machines["SegmentBuildStateMachine"]
    execution = sfn.start_execution(
        stateMachineArn=arn, name="build-test", input=json.dumps({"segments": ["vip"]})
    )
    local.settle()

    described = sfn.describe_execution(executionArn=execution["executionArn"])
    assert described["status"] == "SUCCEEDED", described
    assert sorted(member_ids(local, "vip")) == vips  # type: ignore[type-var]
    assert member_count(local, "vip") == len(vips)
    listed = ok(local.request("GET", "/v1/segments/vip", key=local.secret_key))
    assert listed["build"]["status"] == "ready"
    history = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)["events"]
    states = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    assert states == ["Plan build", "Scan contacts", "Record build", "Built"]
    assert {"MapRunStarted", "MapRunSucceeded"} <= {e["type"] for e in history}  # a Distributed Map run
