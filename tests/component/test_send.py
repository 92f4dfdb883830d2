"""The send function: gate, claim, render and deliver one message, at most once per run and step."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email import message_from_string, policy
from email.message import EmailMessage
from threading import Barrier, Thread
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.exceptions import ClientError
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

from cairn.adapters import aws as aws_clients
from cairn.adapters.caps import CapLedger, CapState
from cairn.adapters.contacts import ContactStore, MessageStore
from cairn.adapters.events import EventStore
from cairn.adapters.identities import IdentityStore
from cairn.adapters.messaging import SmsReceipts
from cairn.adapters.tables import MessageItem
from cairn.bootstrap import Runtime
from cairn.config import Config
from cairn.domain import mime, tokens
from cairn.domain.errors import ContactConverted, TransientError
from cairn.domain.settings import Settings
from cairn.services.send import Sender, cid_of_message

ANN = {"email": "ann@example.com", "firstName": "Ann", "phone": "+4915112345678"}


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


# ---------------------------------------------------------------- helpers for the gate's settings


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def sender_with(*, stage: str | None = None, renderer: Any = None, **settings: Any) -> Sender:
    """The send service with the project's site, `settings` changed (caps, quiet hours, ...)."""
    config = Config.from_env()
    if stage is not None:
        config = config.model_copy(update={"stage": stage})
    rt = Runtime(config)
    site = rt.site
    merged = deep_merge(site.settings.model_dump(mode="json"), settings)
    rt.__dict__["site"] = replace(site, settings=Settings.model_validate(merged))
    return Sender(rt, renderer=renderer)


def a_send(
    cid: str,
    *,
    workflow: str = "welcome-series",
    channel: str = "email",
    template: str | None = None,
    step: str | None = None,
    on_hold: str | None = None,
    at: datetime = SAMPLE_NOW,
) -> dict[str, Any]:
    """A send Task's payload for an open run of `workflow` (the run is opened here)."""
    run = given_an_open_run(cid, workflow, at=at)
    event = load_event("send/email.json" if channel == "email" else "send/sms.json")
    event["run"].update({"cid": cid, "workflowId": workflow, "run": run, "enteredAt": at.isoformat()})
    if template is not None:
        event["step"]["template"] = template
    if step is not None:
        event["step"]["id"] = step
    if on_hold is not None:
        event["step"]["onHold"] = on_hold
    return event


def history(cid: str, message_id: str) -> list[tuple[str, str | None]]:
    return [(h.status, h.reason) for h in message(cid, message_id).history or []]


@contextmanager
def provider_hook(operation: str, answer: Callable[[dict[str, Any]], Any]) -> Iterator[list[dict[str, Any]]]:
    """Intercept one provider operation before it is sent (moto drops some parameters, e.g. EmailTags):
    `answer(params)` returns None to let the call through, a response to answer it instead, or raises the
    provider's error."""
    service = {"Publish": "sns", "CheckIfPhoneNumberIsOptedOut": "sns"}.get(operation, "sesv2")
    seen: list[dict[str, Any]] = []
    answers: list[Any] = []

    def build(params: dict[str, Any], **_: Any) -> None:
        seen.append(copy.deepcopy(params))
        answers.append(answer(params))

    def call(**_: Any) -> Any:
        return answers.pop() if answers else None

    events = aws_clients.client(service).meta.events
    events.register(f"before-parameter-build.{service}.{operation}", build)
    events.register(f"before-call.{service}.{operation}", call)
    try:
        yield seen
    finally:
        events.unregister(f"before-parameter-build.{service}.{operation}", build)
        events.unregister(f"before-call.{service}.{operation}", call)


def fail_with(error: Exception) -> Callable[[dict[str, Any]], Any]:
    def answer(params: dict[str, Any]) -> Any:
        raise error

    return answer


def ses_error(code: str, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "SendEmail")


def quota(sent: int, limit: int) -> Callable[[dict[str, Any]], Any]:
    from botocore.awsrequest import AWSResponse

    response = AWSResponse("https://email.us-east-1.amazonaws.com", 200, {}, None)
    body = {"SendQuota": {"Max24HourSend": float(limit), "MaxSendRate": 14.0, "SentLast24Hours": float(sent)}}
    return lambda params: (response, body)


# ---------------------------------------------------------------- what a sent message carries


def test_message_ids_begin_with_the_contacts_opaque_id(send: Handler) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    given_an_open_run(cid)

    result = send(load_event("send/email.json"))

    assert cid_of_message(result["messageId"]) == cid
    assert "ann" not in result["messageId"].lower()


def test_the_email_goes_through_the_configuration_set_tagged_with_cairns_message_id(
    send: Handler, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    given_an_open_run(cid)

    with provider_hook("SendEmail", lambda params: None) as calls:
        result = send(load_event("send/email.json"))

    [params] = calls
    tags = {t["Name"]: t["Value"] for t in params["EmailTags"]}
    assert tags == {"cairn-message-id": result["messageId"], "cairn-workflow": "welcome-series"}
    assert parse(sent_emails()[0])["Date"] is not None


def test_a_sent_email_is_recorded_as_the_reserved_email_sent_event_once(send: Handler) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    given_an_open_run(cid)

    result = send(load_event("send/email.json"))
    send(load_event("send/email.json"))

    events = [
        e for e in EventStore(ttl=timedelta(days=400)).history(cid, since=None) if e.name == "email_sent"
    ]
    assert len(events) == 1
    assert events[0].properties == {
        "messageId": result["messageId"],
        "channel": "email",
        "template": "welcome-discount",
        "workflowId": "welcome-series",
        "version": "2b7a86f7e10e",  # the run's version, from its execution input
        "run": 1,
        "stepId": "send_email-welcome-discount",
    }


def test_a_transactional_email_has_no_unsubscribe_headers(clock: FakeClock, send: Handler) -> None:
    from cairn.domain.rendering import Renderer
    from cairn.domain.templates import EmailTemplate, TemplateSet

    receipt = EmailTemplate(
        name="welcome-discount",
        subject="Your order",
        html="<p>Order {{ firstName }}</p>",
        text="x",
        kind="transactional",
    )
    cid = given_a_contact(traits=ANN)  # no consent needed for a transactional message
    sender = sender_with(renderer=Renderer(TemplateSet(email={receipt.name: receipt}, sms={}, partials={})))
    sender.kind_of = lambda channel, template: "transactional"  # type: ignore[method-assign]

    result = sender.send(a_send(cid))

    assert result["status"] == "sent"
    headers = mime.parse_unsubscribe_headers(sent_emails()[0].raw_data.encode())
    assert headers["list_unsubscribe"] is None and headers["one_click"] is False


def test_a_template_that_cannot_render_fails_the_message_not_the_run(clock: FakeClock, send: Handler) -> None:
    from cairn.domain.rendering import Renderer
    from cairn.domain.templates import EmailTemplate, TemplateSet

    broken = EmailTemplate(name="welcome-discount", subject="Hi {{ nickname }}", html="<p>x</p>", text="x")
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    sender = sender_with(renderer=Renderer(TemplateSet(email={broken.name: broken}, sms={}, partials={})))

    result = sender.send(a_send(cid))

    assert result == {
        "status": "failed",
        "messageId": result["messageId"],
        "reason": "the template did not render",
    }
    assert sent_emails() == []
    item = message(cid, result["messageId"])
    assert item.status == "failed" and "nickname" in str(item.skip_reason)
    assert "ann@example.com" not in str(item.skip_reason)


def test_templates_that_use_the_event_get_the_trigger_events_properties(
    clock: FakeClock, send: Handler
) -> None:
    from cairn.adapters.events import NewEvent
    from cairn.domain.rendering import Renderer
    from cairn.domain.templates import EmailTemplate, TemplateSet

    cart = EmailTemplate(
        name="welcome-discount",
        subject="Your {{ event.properties.item }} is waiting",
        html="<p>{{ event.properties.total | money('EUR') }}</p>",
        text="{{ event.event }}",
    )
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    payload = a_send(cid)
    EventStore(ttl=timedelta(days=400)).put_once(
        NewEvent(
            cid=cid,
            message_id=payload["run"]["trigger"]["messageId"],
            name="newsletter_subscribed",
            timestamp=SAMPLE_NOW,
            received_at=SAMPLE_NOW,
            properties={"item": "tent", "total": 249.5},
        )
    )
    sender = sender_with(renderer=Renderer(TemplateSet(email={cart.name: cart}, sms={}, partials={})))

    sender.send(payload)

    mail = parse(sent_emails()[0])
    assert mail["Subject"] == "Your tent is waiting"
    html = mail.get_body(("html",))
    assert html is not None and "€249.50" in html.get_content()


# ---------------------------------------------------------------- never twice


def test_a_retry_that_finds_a_claim_without_a_provider_id_records_unknown_and_sends_nothing(
    send: Handler, clock: FakeClock
) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    given_an_open_run(cid)
    # The first attempt claimed the message and died before SES answered (a timeout, a crash).
    with (
        provider_hook("SendEmail", fail_with(RuntimeError("the function died"))),
        pytest.raises(RuntimeError),
    ):
        send(load_event("send/email.json"))

    again = send(load_event("send/email.json"))

    assert (again["status"], again["duplicate"]) == ("unknown", True)
    assert sent_emails() == []
    assert history(cid, again["messageId"]) == [("unknown", "retried after an interrupted send")]


def test_a_throttled_send_releases_its_claim_and_the_retry_sends_exactly_once(send: Handler) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    given_an_open_run(cid)
    throttled = iter([True])

    def once(params: dict[str, Any]) -> None:
        if next(throttled, False):
            raise ses_error("TooManyRequestsException", "Maximum sending rate exceeded")

    with provider_hook("GetAccount", quota(sent=10, limit=50_000)), provider_hook("SendEmail", once):
        with pytest.raises(TransientError):
            send(load_event("send/email.json"))  # the state machine's TransientError Retry takes over
        result = send(load_event("send/email.json"))

    assert result["status"] == "sent"
    assert len(sent_emails()) == 1
    assert [s for s, _ in history(cid, result["messageId"])] == ["throttled", "sent"]


def test_the_daily_quota_is_a_long_hold_not_a_retry(send: Handler, clock: FakeClock) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    given_an_open_run(cid)
    refuse = fail_with(ses_error("TooManyRequestsException", "Daily message quota exceeded"))

    with provider_hook("GetAccount", quota(sent=200, limit=200)), provider_hook("SendEmail", refuse):
        held = send(load_event("send/email.json"))

    assert held == {
        "status": "held",
        "messageId": held["messageId"],
        "reason": "provider quota (SES daily sending quota)",
        "seconds": 3600,
    }
    clock.advance(timedelta(hours=1))
    assert send(load_event("send/email.json"))["status"] == "sent"
    assert len(sent_emails()) == 1


def test_a_rejected_email_fails_and_gives_back_its_place_under_the_caps(
    clock: FakeClock, send: Handler
) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    sender = sender_with(caps={"email": {"per_day": 1}})

    with provider_hook("SendEmail", fail_with(ses_error("MessageRejected"))):
        result = sender.send(a_send(cid))

    assert (result["status"], result["reason"]) == ("failed", "rejected (MessageRejected)")
    assert CapLedger().read(cid, "email").sends == {}


# ---------------------------------------------------------------- holds: quiet hours, caps, pause


def test_an_sms_at_night_is_held_until_eight_in_the_contacts_zone_then_sent(
    clock: FakeClock, send: Handler
) -> None:
    night = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)  # 22:30 in Berlin
    clock.set(night)
    cid = given_a_contact(traits=ANN, consent={"sms": "subscribed"})
    payload = a_send(cid, channel="sms", at=night)
    sender = sender_with()

    held = sender.send(payload)

    morning = datetime(2026, 11, 25, 7, 0, tzinfo=UTC)  # 08:00 in Berlin
    assert held == {
        "status": "held",
        "messageId": held["messageId"],
        "reason": "quiet hours",
        "seconds": int((morning - night).total_seconds()),
    }
    item = message(cid, held["messageId"])
    assert (item.status, item.skip_reason) == ("held", "quiet hours")
    assert item.history is not None and item.history[0].until == morning
    assert sent_sms() == []

    clock.set(morning)
    assert sender.send(payload)["status"] == "sent"

    item = message(cid, held["messageId"])
    assert (item.status, item.skip_reason) == ("sent", None)
    assert [s for s, _ in history(cid, held["messageId"])] == ["held", "sent"]
    assert len(sent_sms()) == 1


def test_with_on_hold_skip_a_held_message_is_skipped_with_its_reason(clock: FakeClock, send: Handler) -> None:
    night = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)
    clock.set(night)
    cid = given_a_contact(traits=ANN, consent={"sms": "subscribed"})

    result = sender_with().send(a_send(cid, channel="sms", on_hold="skip", at=night))

    assert (result["status"], result["reason"]) == ("skipped", "quiet hours (onHold: skip)")
    assert message(cid, result["messageId"]).skip_reason == "quiet hours (onHold: skip)"


def test_caps_count_across_workflows_and_the_capped_message_waits_24_hours(
    clock: FakeClock, send: Handler
) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    sender = sender_with(caps={"email": {"per_day": 1, "per_week": 3}})
    first = sender.send(a_send(cid, workflow="welcome-series"))
    clock.advance(timedelta(hours=5))

    second = sender.send(a_send(cid, workflow="abandoned-cart", step="send_email-cart"))

    assert first["status"] == "sent"
    assert (second["status"], second["reason"], second["seconds"]) == (
        "held",
        "frequency cap (1 per day)",
        19 * 3600,
    )
    assert len(sent_emails()) == 1


def test_transactional_messages_are_not_counted_against_the_caps(clock: FakeClock, send: Handler) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    sender = sender_with(caps={"email": {"per_day": 1}})
    sender.kind_of = lambda channel, template: "transactional"  # type: ignore[method-assign]

    results = [sender.send(a_send(cid, workflow=f"receipts-{n}")) for n in range(3)]

    assert [r["status"] for r in results] == ["sent"] * 3
    assert CapLedger().read(cid, "email").sends == {}


class InterleavedLedger(CapLedger):
    """Every racer reads the ledger before any of them writes: the worst interleaving, every time."""

    def __init__(self, barrier: Barrier) -> None:
        self.barrier = barrier
        self.first = True

    def read(self, cid: str, channel: str) -> CapState:
        state = super().read(cid, channel)
        if self.first:
            self.first = False
            self.barrier.wait()
        return state


def test_racing_sends_for_one_contact_never_exceed_the_cap(clock: FakeClock, send: Handler) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    payloads = [a_send(cid, workflow=f"workflow-{n}") for n in range(6)]
    senders = [sender_with(caps={"email": {"per_day": 1}}) for _ in payloads]
    everyone_read = Barrier(len(payloads))
    for s in senders:
        _ = s.rt.site, s.renderer  # loaded before the race
        s.caps = InterleavedLedger(everyone_read)
    results: list[dict[str, Any]] = []

    threads = [
        Thread(target=lambda s=s, p=p: results.append(s.send(p)))
        for s, p in zip(senders, payloads, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(r["status"] for r in results) == ["held"] * 5 + ["sent"]
    assert len(sent_emails()) == 1
    assert len(CapLedger().read(cid, "email").sends) == 1


def test_a_cap_reservation_made_on_a_stale_read_is_refused(send: Handler) -> None:
    cid = given_a_contact(traits=ANN)
    ledger = CapLedger()
    stale = ledger.read(cid, "email")

    assert ledger.reserve(cid, "email", "m1", SAMPLE_NOW, stale) is True
    assert ledger.reserve(cid, "email", "m2", SAMPLE_NOW, stale) is False
    fresh = ledger.read(cid, "email")
    assert ledger.reserve(cid, "email", "m1", SAMPLE_NOW, fresh) is True  # the same message: counted once
    assert set(ledger.read(cid, "email").sends) == {"m1"}


def test_counted_sends_older_than_eight_days_are_forgotten(send: Handler) -> None:
    cid = given_a_contact(traits=ANN)
    ledger = CapLedger()
    ledger.reserve(cid, "email", "old", SAMPLE_NOW - timedelta(days=9), ledger.read(cid, "email"))

    ledger.reserve(cid, "email", "new", SAMPLE_NOW, ledger.read(cid, "email"))

    assert set(ledger.read(cid, "email").sends) == {"new"}


def test_a_global_pause_holds_the_message_and_looks_again_within_the_hour(
    clock: FakeClock, send: Handler
) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})

    result = sender_with(paused=True).send(a_send(cid))

    assert (result["status"], result["reason"], result["seconds"]) == ("held", "paused (global)", 3600)
    assert sent_emails() == []


# ---------------------------------------------------------------- refusals


def test_an_erased_address_is_never_mailed_again(send: Handler, clock: FakeClock) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    given_an_open_run(cid)
    IdentityStore().tombstone("ann@example.com", now=SAMPLE_NOW)

    result = send(load_event("send/email.json"))

    assert (result["status"], result["reason"]) == ("skipped", "erased")
    assert sent_emails() == []


def test_a_hard_bounced_contact_gets_no_further_email(send: Handler, clock: FakeClock) -> None:
    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    given_an_open_run(cid)
    ContactStore().set_suppression(cid, "bounced", now=SAMPLE_NOW)

    result = send(load_event("send/email.json"))

    assert (result["status"], result["reason"]) == ("skipped", "suppressed (bounced)")


def test_a_non_production_stack_sends_only_to_its_allowlist(clock: FakeClock, send: Handler) -> None:
    cid = given_a_contact(traits={**ANN, "email": "ann@gmail.com"}, consent={"email": "subscribed"})

    staging = sender_with(stage="staging").send(a_send(cid))
    ContactStore().merge_traits(cid, {}, now=SAMPLE_NOW)
    production = sender_with(stage="prod").send(a_send(cid, workflow="other"))

    assert (staging["status"], staging["reason"]) == (
        "skipped",
        "not on the allowlist of this non-production stack",
    )
    assert production["status"] == "sent"
    assert [set(m.destinations) for m in sent_emails()] == [{"ann@gmail.com"}]


def test_an_sms_to_a_number_that_replied_stop_is_skipped_and_consent_withdrawn(
    clock: FakeClock, send: Handler
) -> None:
    stopped = "+4915112345699"  # moto: numbers ending in 99 are on the account's opt-out list
    cid = given_a_contact(traits={**ANN, "phone": stopped}, consent={"sms": "subscribed"})
    sender = sender_with(allowlist={"sms": ["+4915112345*"]})

    result = sender.send(a_send(cid, channel="sms"))

    assert (result["status"], result["reason"]) == ("skipped", "opted out of SMS (replied STOP)")
    assert sent_sms() == []
    profile = ContactStore().get(cid)
    assert profile is not None
    assert (
        profile.consent["sms"]["status"] == "unsubscribed"
        and profile.consent["sms"]["source"] == "sms-opt-out"
    )


def test_a_sent_sms_leaves_a_receipt_for_its_delivery_status(send: Handler) -> None:
    cid = given_a_contact(traits=ANN, consent={"sms": "subscribed"})
    given_an_open_run(cid)

    result = send(load_event("send/sms.json"))

    item = message(cid, result["messageId"])
    assert SmsReceipts().find(str(item.provider_id)) == (cid, result["messageId"])


def test_a_paused_workflow_holds_its_messages_and_others_go_on(clock: FakeClock, send: Handler) -> None:
    from cairn.services.workflows import Workflows

    cid = given_a_contact(traits=ANN, consent={"email": "subscribed"})
    sender = sender_with()
    Workflows(sender.rt).pause("welcome-series")

    held = sender.send(a_send(cid))
    other = sender.send(a_send(cid, workflow="abandoned-cart", step="reminder-a"))

    assert (held["status"], held["reason"]) == ("held", "paused (workflow)")
    assert other["status"] == "sent"


def test_a_held_message_another_invocation_is_retrying_keeps_waiting(
    clock: FakeClock, send: Handler, monkeypatch: pytest.MonkeyPatch
) -> None:
    night = datetime(2026, 11, 24, 21, 30, tzinfo=UTC)
    clock.set(night)
    cid = given_a_contact(traits=ANN, consent={"sms": "subscribed"})
    payload = a_send(cid, channel="sms", at=night)
    sender = sender_with()
    held = sender.send(payload)
    monkeypatch.setattr(MessageStore, "reclaim", lambda self, item, now: False)  # the other one got it
    clock.advance(timedelta(hours=1))

    again = sender.send(payload)

    assert (again["status"], again["duplicate"], again["seconds"]) == ("held", True, held["seconds"] - 3600)
    assert sent_sms() == []
