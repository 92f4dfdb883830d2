"""`GET /v1/workflows/{id}/stats` and `/attribution` through the real trigger handler
(events/trigger/stats.json)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from tests.component.conftest import WRITE_KEY, FakeClock, Handler, load_event

from cairn.adapters.contacts import MessageStore
from cairn.services.stats import Recorder

WF = "welcome-series"
T0 = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)


@pytest.fixture
def trigger(load_handler: Any, keys: dict[str, str], clock: FakeClock) -> Handler:
    handler: Handler = load_handler("trigger")
    return handler


def get(handler: Handler, path: str, query: str = "", key: str | None = None) -> tuple[int, Any]:
    event = load_event("trigger/stats.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["rawQueryString"] = query
    pairs = [p.split("=", 1) for p in query.split("&")] if query else []
    event["queryStringParameters"] = {k: unquote(v) for k, v in pairs} or None
    if key is not None:
        event["headers"]["authorization"] = f"Bearer {key}"
    response = handler(event)
    body = response.get("body")
    return int(response["statusCode"]), json.loads(body) if body else None


def current_version() -> str:
    from tests.conftest import ROOT

    from cairn.project import load_project

    return load_project(ROOT).site.workflows[WF].content_hash()


def test_the_sample_event_answers_the_funnel_in_step_order(trigger: Handler) -> None:
    version = current_version()
    recorder = Recorder()
    for day in range(3):
        recorder.record_entered(WF, version, None, T0 + timedelta(days=day))
    recorder.record_message(WF, version, "send_email-welcome-discount", None, "sent", at=T0)
    recorder.record_entered(WF, version, None, T0 + timedelta(days=40))  # after `to`: not counted
    status, body = call_sample(trigger)
    assert status == 200, body
    assert body["workflowId"] == WF and body["from"] == "2026-11-01" and body["to"] == "2026-11-30"
    (current,) = body["versions"]
    assert current["version"] == version and current["current"] is True
    assert current["entered"] == 3
    steps = [s["stepId"] for s in current["steps"]]
    assert steps[0] == "send_email-welcome-discount" and len(steps) == len(set(steps))
    assert current["steps"][0]["messages"]["sent"] == 1
    assert current["biggestDropOff"] is None


def call_sample(handler: Handler) -> tuple[int, Any]:
    response = handler(load_event("trigger/stats.json"))
    return int(response["statusCode"]), json.loads(response["body"])


def test_a_defined_workflow_without_statistics_has_an_empty_funnel(trigger: Handler) -> None:
    status, body = call_sample(trigger)
    assert status == 200
    (current,) = body["versions"]
    assert current["entered"] == 0 and current["conversions"] == 0 and current["conversionRate"] is None


def test_versions_and_time_filters(trigger: Handler) -> None:
    recorder = Recorder()
    recorder.record_entered(WF, "old-version", None, T0)
    recorder.record_entered(WF, current_version(), None, T0 + timedelta(days=1))
    status, body = get(trigger, f"/v1/workflows/{WF}/stats", "version=old-version")
    assert status == 200
    assert [(v["version"], v["entered"]) for v in body["versions"]] == [("old-version", 1)]
    status, body = get(trigger, f"/v1/workflows/{WF}/stats", "from=2026-11-11T00:00:00Z")
    assert [v["entered"] for v in body["versions"]] == [1, 0]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("from=2026-11-02T10:00:00", "from"),
        ("to=0001-01-01T00:00:00%2B01:00", "to"),  # before year 1 in UTC
    ],
)
def test_bad_dates_are_422_naming_the_field(trigger: Handler, query: str, field: str) -> None:
    status, body = get(trigger, f"/v1/workflows/{WF}/stats", query)
    assert status == 422
    assert [d["field"] for d in body["error"]["details"]] == [field]


def test_far_dates_are_answered_not_crashed(trigger: Handler) -> None:
    status, body = get(trigger, f"/v1/workflows/{WF}/stats", "from=9999-12-31")
    assert status == 200 and body["versions"][0]["entered"] == 0
    status, _ = get(trigger, f"/v1/workflows/{WF}/stats", "to=9999-12-31")
    assert status == 200
    status, _ = get(trigger, f"/v1/workflows/{WF}/attribution", "from=0001-01-01&to=9999-12-31")
    assert status == 200


def test_from_after_to_is_422(trigger: Handler) -> None:
    status, body = get(trigger, f"/v1/workflows/{WF}/stats", "from=2026-11-30&to=2026-11-01")
    assert status == 422 and body["error"]["details"][0]["field"] == "from"


def test_unknown_workflows_are_404_and_keys_are_checked(trigger: Handler) -> None:
    status, body = get(trigger, "/v1/workflows/no-such-workflow/stats")
    assert status == 404 and body["error"]["code"] == "not_found"
    assert get(trigger, f"/v1/workflows/{WF}/stats", key=WRITE_KEY)[0] == 403
    assert get(trigger, f"/v1/workflows/{WF}/stats", key="cs_nope")[0] == 401


def test_a_removed_workflow_with_statistics_still_answers(trigger: Handler) -> None:
    Recorder().record_entered("retired-flow", "v0", None, T0)
    status, body = get(trigger, "/v1/workflows/retired-flow/stats")
    assert status == 200 and body["currentVersion"] is None
    assert body["versions"][0]["entered"] == 1


def test_attribution_credits_the_messages_before_each_conversion(trigger: Handler) -> None:
    messages = MessageStore()
    for cid, sends in {
        "c-ann": [("m1", "email", 0), ("m2", "sms", 20)],
        "c-bob": [("m3", "email", 1)],
    }.items():
        for mid, channel, hours in sends:
            item = messages.claim(
                cid,
                mid,
                channel=channel,
                template="welcome-discount" if channel == "email" else "follow-us-sms",
                workflow_id=WF,
                version="v",
                run=1,
                step_id="s",
                now=T0 + timedelta(hours=hours),
            )
            assert item is not None
            messages.mark(item, "sent", provider_id=f"p-{mid}", sent_at=T0 + timedelta(hours=hours))
    recorder = Recorder()
    recorder.record_conversion(WF, "v", None, T0, T0 + timedelta(days=1), cid="c-ann")
    recorder.record_conversion(WF, "v", None, T0, T0 + timedelta(hours=2), cid="c-bob")
    recorder.record_conversion(WF, "v", None, T0 - timedelta(days=30), T0 - timedelta(days=29), cid="c-cy")
    status, body = get(trigger, f"/v1/workflows/{WF}/attribution", "from=2026-11-01")
    assert status == 200, body
    assert (body["conversions"], body["attributed"], body["unattributed"]) == (2, 2, 0)
    assert body["models"]["firstTouch"]["channel"] == {"email": 2.0}
    assert body["models"]["lastTouch"]["channel"] == {"email": 1.0, "sms": 1.0}
    assert body["models"]["linear"]["channel"] == {"email": 1.5, "sms": 0.5}
    assert body["models"]["linear"]["template"] == {"email:welcome-discount": 1.5, "sms:follow-us-sms": 0.5}
    status, body = get(trigger, f"/v1/workflows/{WF}/attribution", "limit=0")
    assert status == 422
