"""The send function: gate, claim, render and deliver one message, at most once per run and step."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_string, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from tests.component.conftest import (
    SAMPLE_NOW,
    FakeClock,
    Handler,
    given_a_contact,
    given_an_open_run,
    load_event,
    record_event,
)
from tests.conftest import ACCOUNT, PUBLIC_BASE_URL, REGION, SECRET, SENDER_EMAIL

from cairn.adapters.tables import MessageItem
from cairn.domain import mime, tokens
from cairn.domain.errors import ContactConverted

ANN = {"email": "ann@example.com", "firstName": "Ann", "phone": "+4915112345678"}


@pytest.fixture
def send(load_handler: Any, clock: FakeClock, aws: None) -> Handler:
    # SES refuses a sender whose domain is not verified.
    boto3.client("ses", region_name=REGION).verify_domain_identity(Domain=SENDER_EMAIL.split("@")[1])
    clock.set(SAMPLE_NOW + timedelta(seconds=1))
    handler: Handler = load_handler("send")
    return handler


def sent_emails() -> list[Any]:
    from moto.ses.models import ses_backends

    return list(ses_backends[ACCOUNT][REGION].sent_messages)


def sent_sms() -> list[tuple[str, str]]:
    from moto.sns.models import sns_backends

    return list(sns_backends[ACCOUNT][REGION].sms_messages.values())


def parse(raw: Any) -> EmailMessage:
    mail = message_from_string(raw.raw_data, policy=policy.default)
    assert isinstance(mail, EmailMessage)
    return mail


def message(cid: str, message_id: str) -> MessageItem:
    return MessageItem.get(cid, MessageItem.key(message_id), consistent_read=True)


# ---------------------------------------------------------------- email


def test_a_marketing_email_goes_out_as_raw_mime_with_one_click_unsubscribe(send: Handler) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    given_an_open_run(cid)

    result = send(load_event("send/email.json"))

    assert result == {"status": "sent", "messageId": result["messageId"]}
    [raw] = sent_emails()
    assert set(raw.destinations) == {"ann@example.com"}
    mail = parse(raw)
    assert mail["To"] == "ann@example.com"
    assert SENDER_EMAIL in mail["From"]
    assert mail["Subject"] == "Welcome to Trailhead, Ann — 10% off your first order"
    assert mail["X-Cairn-Message-Id"] == result["messageId"]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    headers = mime.parse_unsubscribe_headers(raw.raw_data.encode())
    assert headers["one_click"] is True
    assert headers["https"].startswith(f"{PUBLIC_BASE_URL}/v1/unsubscribe?token=")
    text = mail.get_body(("plain",))
    assert text is not None
    assert "Welcome, Ann!" in text.get_content()


def test_the_unsubscribe_link_names_the_contact_and_the_message(send: Handler, clock: FakeClock) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    given_an_open_run(cid)

    result = send(load_event("send/email.json"))

    [raw] = sent_emails()
    url = mime.parse_unsubscribe_headers(raw.raw_data.encode())["https"]
    [token] = parse_qs(urlsplit(url).query)["token"]
    payload = tokens.verify(token, {"k1": SECRET.encode()}, now=clock.now(), purpose="unsubscribe")
    assert payload == {"c": cid, "m": result["messageId"]}


def test_the_message_is_recorded_with_the_providers_id(send: Handler, clock: FakeClock) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    given_an_open_run(cid)

    result = send(load_event("send/email.json"))

    [raw] = sent_emails()
    item = message(cid, result["messageId"])
    assert (item.status, item.provider_id, item.sent_at) == ("sent", raw.id, clock.now())
    assert (item.channel, item.template, item.step_id) == (
        "email",
        "welcome-discount",
        "send_email-welcome-discount",
    )


def test_a_retry_of_the_same_send_sends_nothing_more(send: Handler) -> None:
    given_an_open_run(given_a_contact(traits=ANN, consent={"email": "subscribed"}))
    first = send(load_event("send/email.json"))

    again = send(load_event("send/email.json"))  # Step Functions retried the Task

    assert len(sent_emails()) == 1
    assert again["messageId"] == first["messageId"]
    assert again["status"] == "sent"
    assert again["duplicate"] is True


@pytest.mark.parametrize(
    ("traits", "consent", "reason"),
    [
        (ANN, {}, "no email consent (unsubscribed)"),  # settings.yaml: consent.default.email unsubscribed
        (ANN, {"email": "unsubscribed"}, "no email consent (unsubscribed)"),
        ({"firstName": "Ann"}, {"email": "subscribed"}, "no email address"),
    ],
    ids=["no consent given", "unsubscribed", "no address"],
)
def test_an_email_the_gate_refuses_is_skipped_with_a_reason_and_not_sent(
    send: Handler, traits: dict[str, Any], consent: dict[str, str], reason: str
) -> None:
    cid = given_a_contact(traits=traits, consent=consent)
    given_an_open_run(cid)

    result = send(load_event("send/email.json"))

    assert result == {"status": "skipped", "messageId": result["messageId"], "reason": reason}
    assert sent_emails() == []
    item = message(cid, result["messageId"])
    assert (item.status, item.skip_reason) == ("skipped", reason)


def test_a_skipped_send_retried_stays_skipped(send: Handler) -> None:
    given_an_open_run(given_a_contact(traits=ANN))
    send(load_event("send/email.json"))

    again = send(load_event("send/email.json"))

    assert again["status"] == "skipped"
    assert sent_emails() == []


def test_a_goal_met_before_the_send_ends_the_run_instead(send: Handler) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    given_an_open_run(cid)
    record_event(cid, "order_completed", SAMPLE_NOW + timedelta(milliseconds=500))
    event = load_event("send/email.json")
    event["policy"]["goal"] = {"event": "order_completed", "within": "7d"}

    with pytest.raises(ContactConverted):
        send(event)

    assert sent_emails() == []


# ---------------------------------------------------------------- sms


def test_an_sms_is_published_through_sns_once(send: Handler) -> None:
    given_an_open_run(given_a_contact(traits=ANN, consent={"sms": "subscribed"}))

    first = send(load_event("send/sms.json"))
    again = send(load_event("send/sms.json"))

    assert first["status"] == "sent"
    assert again["duplicate"] is True
    [(phone, body)] = sent_sms()
    assert phone == "+4915112345678"
    assert "instagram.com/trailhead.example" in body


def test_an_sms_without_sms_consent_is_skipped(send: Handler) -> None:
    given_an_open_run(given_a_contact(traits=ANN, consent={"email": "subscribed"}))

    result = send(load_event("send/sms.json"))

    assert (result["status"], result["reason"]) == ("skipped", "no sms consent (unsubscribed)")
    assert sent_sms() == []
