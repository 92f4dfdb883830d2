"""Local mode over real HTTP on 127.0.0.1, as a user's site or curl would call it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from cairn.local.runtime import LocalCairn

pytestmark = pytest.mark.e2e


def call(url: str, method: str = "GET", body: Any = None, key: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_track_advance_and_outbox_over_http(local: LocalCairn, base_url: str) -> None:
    status, body = call(
        f"{base_url}/v1/identify",
        "POST",
        {"userId": "gus", "traits": {"email": "gus@example.com"}},
        local.write_key,
    )
    assert status == 200, body
    status, _ = call(
        f"{base_url}/v1/contacts/gus/subscriptions/email", "PUT", {"status": "subscribed"}, local.secret_key
    )
    assert status == 200
    status, body = call(
        f"{base_url}/v1/track", "POST", {"userId": "gus", "event": "newsletter_subscribed"}, local.write_key
    )
    assert status == 202 and body["duplicate"] is False
    status, body = call(f"{base_url}/_local/clock/advance", "POST", {"seconds": 2 * 86400})
    assert status == 200
    # the 2-day wait plus the stack's hourly schedules (segments tick, date triggers) over 48 hours
    assert body["idle"] is True and body["fired"] >= 1 + 48
    status, outbox = call(f"{base_url}/_local/outbox")
    assert [m["stepId"] for m in outbox] == ["send_email-welcome-discount", "send_email-welcome-our-story"]
    status, runs = call(f"{base_url}/_local/executions")
    path = runs[0]["path"]
    assert path[0] == "send_email-welcome-discount"
    assert path.index("wait-2") > 0
    # on the virtual clock: started when the event came (the fixture's start); waiting 3 more days
    assert (runs[0]["startDate"], runs[0]["status"], runs[0]["stopDate"]) == (
        "2026-12-01T09:00:00Z",
        "RUNNING",
        None,
    )


def test_clock_refuses_the_past_and_bad_input(local: LocalCairn, base_url: str) -> None:
    assert call(f"{base_url}/_local/clock/advance", "POST", {"to": "2020-01-01T00:00:00Z"})[0] == 400
    assert call(f"{base_url}/_local/clock/advance", "POST", {"seconds": -5})[0] == 422
    status, body = call(f"{base_url}/_local/clock/advance", "POST", {"seconds": 0})
    assert status == 200 and body["fired"] == 0


def test_api_errors_keep_their_shape_over_http(local: LocalCairn, base_url: str) -> None:
    status, body = call(f"{base_url}/v1/track", "POST", {"event": "x"}, local.write_key)
    assert status == 422
    assert body["error"]["code"] == "validation_failed"
    status, body = call(f"{base_url}/v1/track", "POST", {"userId": "a", "event": "x"})
    assert status == 401


def test_redeploy_of_an_unchanged_project_publishes_nothing(local: LocalCairn, base_url: str) -> None:
    from cairn.adapters.aws import client

    assert local.stack is not None
    sfn = client("stepfunctions")
    status, body = call(f"{base_url}/_local/redeploy", "POST")
    assert (status, body) == (200, {"created": [], "updated": [], "retained": []})
    with pytest.raises(sfn.exceptions.StateMachineDoesNotExist):  # no version 1 was published
        sfn.describe_state_machine(stateMachineArn=local.stack.state_machines["welcome-series"] + ":1")
