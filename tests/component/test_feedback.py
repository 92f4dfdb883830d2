"""The feedback function: SES events (EventBridge) and SNS SMS delivery logs update messages, suppression and
record reserved events — loaded from `events/feedback/*.json` as `sam local invoke -e` would."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.component.conftest import (
    SAMPLE_NOW,
    FakeClock,
    Handler,
    given_a_contact,
    given_an_open_run,
    load_event,
)

from cairn.adapters.contacts import ContactStore
from cairn.adapters.events import EventStore
from cairn.adapters.tables import EventItem, MessageItem
from cairn.domain.rules import EventRecord

ANN = {"email": "ann@example.com", "firstName": "Ann", "phone": "+4915112345678"}
SAMPLE_MESSAGE_ID = "c7i5qmybbwrn5jcqn4ki6ejkuc-49040e7ad36fa22386541d021ee9cde4"


@pytest.fixture
def sent_email(send: Handler) -> tuple[str, str]:
    """Ann got the welcome email of the sample send event: (cid, Cairn message id)."""
    cid = given_a_contact("u-ann", traits=ANN, consent={"email": "subscribed", "sms": "subscribed"})
    given_an_open_run(cid)
    result = send(load_event("send/email.json"))
    assert result["status"] == "sent"
    return cid, str(result["messageId"])


def message(cid: str, message_id: str) -> MessageItem:
    return MessageItem.get(cid, MessageItem.key(message_id), consistent_read=True)


def reserved(cid: str, name: str) -> list[EventRecord]:
    return [e for e in EventStore(ttl=timedelta(days=400)).history(cid, since=None) if e.name == name]


def sms_logs(relative: str, provider_id: str) -> dict[str, Any]:
    """A sample SMS delivery log event, re-addressed to an SNS message id of this test."""
    event = load_event(relative)
    data = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    for entry in data["logEvents"]:
        record = json.loads(entry["message"])
        record["notification"]["messageId"] = provider_id
        entry["message"] = json.dumps(record)
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(data).encode())).decode()}}


def test_the_samples_name_the_message_the_sample_send_event_sends(sent_email: tuple[str, str]) -> None:
    _, message_id = sent_email
    for name in ("delivery", "open", "click", "bounce-permanent", "bounce-transient", "complaint"):
        event = load_event(f"feedback/{name}.json")
        assert event["source"] == "aws.ses"
        assert event["detail"]["mail"]["tags"]["cairn-message-id"] == [message_id]


def test_a_delivery_marks_the_message_and_records_email_delivered(
    feedback: Handler, sent_email: tuple[str, str]
) -> None:
    cid, message_id = sent_email

    assert feedback(load_event("feedback/delivery.json")) == {"recorded": 1}

    item = message(cid, message_id)
    assert item.status == "delivered"
    assert [h.status for h in item.history or []] == ["sent", "delivered"]
    [event] = reserved(cid, "email_delivered")
    assert event.timestamp == datetime(2026, 11, 24, 9, 0, 3, 120000, tzinfo=UTC)
    assert event.properties["messageId"] == message_id
    assert event.properties["workflowId"] == "welcome-series"
    assert event.properties["stepId"] == "send_email-welcome-discount"


def test_a_click_records_email_clicked_with_the_link(feedback: Handler, sent_email: tuple[str, str]) -> None:
    cid, message_id = sent_email

    feedback(load_event("feedback/click.json"))

    assert message(cid, message_id).status == "clicked"
    [event] = reserved(cid, "email_clicked")
    assert event.properties["link"] == "https://trailhead.example/shop?utm_source=cairn&utm_campaign=welcome"
    stored = EventItem.get(cid, f"{message_id}.email_clicked.{_digest(event)}")
    assert stored.source == "cairn"
    assert stored.user_id == "u-ann"


def _digest(event: EventRecord) -> str:
    import hashlib

    unique = f"2026-11-24T09:21:00.000Z|{event.properties['link']}"
    return hashlib.sha256(unique.encode()).hexdigest()[:12]


def test_a_redelivered_report_is_recorded_once(feedback: Handler, sent_email: tuple[str, str]) -> None:
    cid, message_id = sent_email

    first = feedback(load_event("feedback/open.json"))
    again = feedback(load_event("feedback/open.json"))

    assert (first, again) == ({"recorded": 1}, {"recorded": 0})
    assert len(reserved(cid, "email_opened")) == 1
    assert [h.status for h in message(cid, message_id).history or []] == ["sent", "opened"]


def test_a_status_never_moves_backwards(feedback: Handler, sent_email: tuple[str, str]) -> None:
    cid, message_id = sent_email

    feedback(load_event("feedback/click.json"))
    feedback(load_event("feedback/delivery.json"))  # late

    item = message(cid, message_id)
    assert item.status == "clicked"
    assert [h.status for h in item.history or []] == ["sent", "clicked", "delivered"]
    assert len(reserved(cid, "email_delivered")) == 1


def test_a_hard_bounce_suppresses_the_contact_and_no_further_email_goes_out(
    feedback: Handler, send: Handler, sent_email: tuple[str, str], clock: FakeClock
) -> None:
    cid, message_id = sent_email

    feedback(load_event("feedback/bounce-permanent.json"))

    profile = ContactStore().get(cid)
    assert profile is not None and profile.suppression == "bounced"
    assert message(cid, message_id).status == "bounced"
    [event] = reserved(cid, "email_bounced")
    assert event.properties["bounceType"] == "Permanent"
    # The welcome series' next email, two days later:
    clock.advance(timedelta(days=2))
    later = load_event("send/email.json")
    later["step"] = {
        "id": "send_email-welcome-our-story",
        "channel": "email",
        "template": "welcome-our-story",
    }
    result = send(later)
    assert (result["status"], result["reason"]) == ("skipped", "suppressed (bounced)")


def test_a_soft_bounce_is_recorded_but_suppresses_nothing(
    feedback: Handler, sent_email: tuple[str, str]
) -> None:
    cid, message_id = sent_email

    feedback(load_event("feedback/bounce-transient.json"))

    profile = ContactStore().get(cid)
    assert profile is not None and profile.suppression is None
    item = message(cid, message_id)
    assert item.status == "sent"
    assert [h.status for h in item.history or []] == ["sent", "soft_bounced"]
    [event] = reserved(cid, "email_bounced")
    assert event.properties["bounceType"] == "Transient"


def test_a_complaint_suppresses_and_is_never_downgraded_by_a_later_bounce(
    feedback: Handler, sent_email: tuple[str, str]
) -> None:
    cid, message_id = sent_email

    feedback(load_event("feedback/complaint.json"))
    feedback(load_event("feedback/bounce-permanent.json"))

    profile = ContactStore().get(cid)
    assert profile is not None and profile.suppression == "complained"
    assert message(cid, message_id).status == "complained"
    assert len(reserved(cid, "email_complained")) == 1


def test_events_for_mail_cairn_did_not_send_are_ignored(
    feedback: Handler, sent_email: tuple[str, str]
) -> None:
    foreign = load_event("feedback/delivery.json")
    del foreign["detail"]["mail"]["tags"]["cairn-message-id"]
    unknown = load_event("feedback/delivery.json")
    unknown["detail"]["mail"]["tags"]["cairn-message-id"] = ["cnotacontactofthisstack2345-0123"]
    erased = load_event("feedback/delivery.json")
    erased["detail"]["mail"]["tags"]["cairn-message-id"] = ["caaaaaaaaaaaaaaaaaaaaaaaaa-0123"]

    assert [feedback(e) for e in (foreign, unknown, erased)] == [{"recorded": 0}] * 3


def test_an_sms_delivery_log_marks_the_sms_delivered(
    feedback: Handler, send: Handler, clock: FakeClock
) -> None:
    cid = given_a_contact("u-ann", traits=ANN, consent={"sms": "subscribed"})
    given_an_open_run(cid)
    result = send(load_event("send/sms.json"))
    provider_id = str(message(cid, result["messageId"]).provider_id)

    assert feedback(sms_logs("feedback/sms-delivered.json", provider_id)) == {"recorded": 1}

    assert message(cid, result["messageId"]).status == "delivered"
    assert len(reserved(cid, "sms_delivered")) == 1


def test_an_sms_that_failed_because_the_number_opted_out_withdraws_sms_consent(
    feedback: Handler, send: Handler, clock: FakeClock
) -> None:
    cid = given_a_contact("u-ann", traits=ANN, consent={"sms": "subscribed", "email": "subscribed"})
    given_an_open_run(cid)
    result = send(load_event("send/sms.json"))
    provider_id = str(message(cid, result["messageId"]).provider_id)

    feedback(sms_logs("feedback/sms-failed.json", provider_id))

    item = message(cid, result["messageId"])
    assert (item.status, item.skip_reason) == ("failed", "failed: Phone is currently opted out")
    [event] = reserved(cid, "sms_failed")
    assert event.properties["reason"] == "Phone is currently opted out"
    profile = ContactStore().get(cid)
    assert profile is not None
    assert profile.consent["sms"]["status"] == "unsubscribed"
    assert profile.consent["email"]["status"] == "subscribed"
    assert profile.suppression is None  # email is not concerned
    # The next SMS is skipped by the gate.
    again = load_event("send/sms.json")
    again["step"]["id"] = "send_sms-later"
    assert send(again)["reason"] == "no sms consent (unsubscribed)"


def test_delivery_logs_of_sms_cairn_did_not_send_are_ignored(feedback: Handler) -> None:
    assert feedback(sms_logs("feedback/sms-delivered.json", "not-ours")) == {"recorded": 0}


def test_a_report_about_an_interrupted_send_shows_ses_took_it(
    feedback: Handler, sent_email: tuple[str, str]
) -> None:
    from cairn.adapters.contacts import MessageStore

    cid, message_id = sent_email
    MessageStore().record(message(cid, message_id), "unknown", at=SAMPLE_NOW, reason="retried")

    feedback(load_event("feedback/delivery.json"))

    assert message(cid, message_id).status == "delivered"
