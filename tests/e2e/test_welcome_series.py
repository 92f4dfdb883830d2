"""The welcome series through local mode: real handlers, real ASL, virtual clock."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_string, policy
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from tests.e2e.conftest import START
from tests.e2e.workflow_helpers import at

from cairn.local.runtime import LocalCairn

pytestmark = pytest.mark.e2e
DAY = 86400


def subscribe(local: LocalCairn, user_id: str, *, phone: str | None = None, sms: bool = False) -> None:
    traits: dict[str, Any] = {"email": f"{user_id}@example.com", "firstName": user_id.title()}
    if phone:
        traits["phone"] = phone
    status, _, body = local.request(
        "POST", "/v1/identify", {"userId": user_id, "traits": traits}, key=local.write_key
    )
    assert status == 200, body
    for channel in ("email", "sms") if sms else ("email",):
        status, _, body = local.request(
            "PUT",
            f"/v1/contacts/{user_id}/subscriptions/{channel}",
            {"status": "subscribed"},
            key=local.secret_key,
        )
        assert status == 200, body
    status, _, body = local.request(
        "POST", "/v1/track", {"userId": user_id, "event": "newsletter_subscribed"}, key=local.write_key
    )
    assert status == 202, body


def sent_to(local: LocalCairn, address: str) -> list[dict[str, Any]]:
    return [m for m in local.outbox() if m["to"] == address]


def test_first_email_at_once_second_after_two_days_none_after_unsubscribe(local: LocalCairn) -> None:
    subscribe(local, "ann")
    subscribe(local, "bob")
    local.settle()
    assert [m["stepId"] for m in sent_to(local, "ann@example.com")] == ["send_email-welcome-discount"]
    assert at(sent_to(local, "bob@example.com")[0]) == START

    local.advance(seconds=DAY)
    status, _, _ = local.request(
        "PUT", "/v1/contacts/bob/subscriptions/email", {"status": "unsubscribed"}, key=local.secret_key
    )
    assert status == 200
    result = local.advance(seconds=DAY - 1)
    assert result["idle"] is True
    assert len(sent_to(local, "ann@example.com")) == 1, "nothing before two full days"

    local.advance(seconds=1)
    ann = sent_to(local, "ann@example.com")
    assert [m["stepId"] for m in ann] == ["send_email-welcome-discount", "send_email-welcome-our-story"]
    assert at(ann[1]) == START + timedelta(days=2)

    local.advance(seconds=3 * DAY)
    ann = sent_to(local, "ann@example.com")
    assert [m["stepId"] for m in ann][-1] == "send_email-follow-us"
    assert at(ann[-1]) == START + timedelta(days=5)
    assert len(sent_to(local, "bob@example.com")) == 1, "Bob unsubscribed: nothing after the first email"
    runs = {r["name"]: r for r in local.executions()}
    assert len(runs) == 2
    assert all(r["status"] == "SUCCEEDED" and r["path"][-1] == "Completed" for r in runs.values())


def test_sms_invitation_for_contacts_with_sms_consent(local: LocalCairn) -> None:
    subscribe(local, "chloe", phone="+4915112345678", sms=True)
    local.advance(seconds=5 * DAY)
    sms = [m for m in local.outbox() if m["channel"] == "sms"]
    assert len(sms) == 1
    assert sms[0]["to"] == "+4915112345678"
    assert "STOP" in sms[0]["body"]
    assert [m["stepId"] for m in sent_to(local, "chloe@example.com")] == [
        "send_email-welcome-discount",
        "send_email-welcome-our-story",
    ]


def test_marketing_email_carries_one_click_unsubscribe(local: LocalCairn) -> None:
    subscribe(local, "dora")
    local.settle()
    (message,) = sent_to(local, "dora@example.com")
    headers = message["headers"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = headers["List-Unsubscribe"].strip("<>").split(">")[0]
    parsed = urlparse(url)
    assert parsed.path == "/v1/unsubscribe"
    assert parse_qs(parsed.query)["token"]
    assert "Trailhead Outfitters GmbH" in message["text"]
    mail = message_from_string(f"List-Unsubscribe: {headers['List-Unsubscribe']}\n\n", policy=policy.default)
    assert mail["List-Unsubscribe"]


def test_a_repeated_trigger_does_not_enroll_twice(local: LocalCairn) -> None:
    subscribe(local, "eve")
    status, _, _ = local.request(
        "POST", "/v1/track", {"userId": "eve", "event": "newsletter_subscribed"}, key=local.write_key
    )
    assert status == 202
    local.advance(seconds=6 * DAY)
    assert len(local.executions()) == 1
    assert len(sent_to(local, "eve@example.com")) == 3


def test_a_duplicate_message_id_is_stored_once(local: LocalCairn) -> None:
    body = {"userId": "fay", "event": "newsletter_subscribed", "messageId": "m-1"}
    first = local.request("POST", "/v1/track", body, key=local.write_key)
    second = local.request("POST", "/v1/track", body, key=local.write_key)
    assert first[2] == {"messageId": "m-1", "duplicate": False}
    assert second[2] == {"messageId": "m-1", "duplicate": True}
    local.settle()
    assert len(local.executions()) == 1


def test_no_consent_no_email(local: LocalCairn) -> None:
    status, _, _ = local.request(
        "POST", "/v1/identify", {"userId": "hal", "traits": {"email": "hal@example.com"}}, key=local.write_key
    )
    assert status == 200
    local.request(
        "POST", "/v1/track", {"userId": "hal", "event": "newsletter_subscribed"}, key=local.write_key
    )
    local.advance(seconds=6 * DAY)
    assert sent_to(local, "hal@example.com") == []
    (run,) = local.executions()
    assert run["status"] == "SUCCEEDED", "a skipped send is recorded, not a failure"
