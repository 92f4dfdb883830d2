"""Double opt-in through the trigger function: `pending` sends a confirmation email at once, its signed
link (`GET /v1/confirm`) subscribes; a bad link changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_string, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import boto3
import pytest
from tests.component.conftest import SAMPLE_NOW, SECRET_KEY, FakeClock, Handler, cid_of, load_event
from tests.conftest import ACCOUNT, REGION, ROOT, SENDER_EMAIL

from cairn.adapters import aws as aws_clients
from cairn.adapters.contacts import ContactStore, Profile
from cairn.adapters.tables import MessageItem

API_HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"


@pytest.fixture
def double_opt_in_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repo's site bundle with double opt-in on, for the functions loaded after this."""
    from cairn.project import load_project

    data = load_project(ROOT).site.to_data()
    data["settings"]["consent"]["double_opt_in"] = True
    path = tmp_path / "site.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setenv("CAIRN_SITE_PATH", str(path))
    monkeypatch.setenv("PUBLIC_BASE_URL", "")  # as deployed without a custom domain: links follow the request
    return path


@pytest.fixture
def suppression_removals() -> Iterator[list[str]]:
    """SES's account-level suppression list (moto has none): the addresses taken off it."""
    from botocore.awsrequest import AWSResponse

    removed: list[str] = []

    def remove(params: dict[str, Any], **_: Any) -> None:
        removed.append(params["EmailAddress"])

    def answer(**_: Any) -> Any:
        return AWSResponse("https://email.us-east-1.amazonaws.com", 200, {}, None), {}

    events = aws_clients.client("sesv2").meta.events
    events.register("before-parameter-build.sesv2.DeleteSuppressedDestination", remove)
    events.register("before-call.sesv2.DeleteSuppressedDestination", answer)
    yield removed
    events.unregister("before-parameter-build.sesv2.DeleteSuppressedDestination", remove)
    events.unregister("before-call.sesv2.DeleteSuppressedDestination", answer)


@pytest.fixture
def trigger(
    double_opt_in_site: Path, load_handler: Any, keys: dict[str, str], clock: FakeClock, aws: None
) -> Handler:
    boto3.client("ses", region_name=REGION).verify_domain_identity(Domain=SENDER_EMAIL.split("@")[1])
    handler: Handler = load_handler("trigger")
    return handler


def call(handler: Handler, event: dict[str, Any]) -> tuple[int, str]:
    response = handler(event)
    return int(response["statusCode"]), str(response.get("body") or "")


def identify(trigger: Handler, user_id: str = "u-ann", **traits: Any) -> None:
    event = load_event("trigger/identify.json")
    event["headers"]["authorization"] = f"Bearer {SECRET_KEY}"
    event["body"] = json.dumps({"userId": user_id, "traits": {"email": "ann@example.com", **traits}})
    assert call(trigger, event)[0] == 200


def subscribe(trigger: Handler, status: str = "subscribed") -> tuple[int, str]:
    event = load_event("trigger/subscription.json")
    event["body"] = json.dumps({"status": status, "source": "signup-form"})
    return call(trigger, event)


def confirm(trigger: Handler, token: str) -> tuple[int, str]:
    event = load_event("trigger/confirm.json")
    event["rawQueryString"] = f"token={quote(token, safe='')}"
    event["queryStringParameters"] = {"token": token}
    return call(trigger, event)


def sent() -> list[EmailMessage]:
    from moto.ses.models import ses_backends

    out = []
    for raw in ses_backends[ACCOUNT][REGION].sent_messages:
        mail = message_from_string(raw.raw_data, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        out.append(mail)
    return out


def confirm_link(mail: EmailMessage) -> str:
    text = mail.get_body(("plain",))
    assert text is not None
    [link] = [w for w in text.get_content().split() if "/v1/confirm?token=" in w]
    return link


def token_of(link: str) -> str:
    [token] = parse_qs(urlsplit(link).query)["token"]
    return token


def profile() -> Profile:
    found = ContactStore().get(cid_of("u-ann"))
    assert found is not None
    return found


def test_a_subscription_becomes_pending_and_the_confirmation_goes_out_at_once(trigger: Handler) -> None:
    identify(trigger, firstName="Ann")

    status, body = subscribe(trigger)

    assert status == 200
    assert json.loads(body)["consent"]["email"]["status"] == "pending"
    [mail] = sent()
    assert mail["To"] == "ann@example.com"
    assert mail["Subject"] == "Please confirm your Trailhead subscription"
    assert mail["List-Unsubscribe"] is None  # transactional
    link = confirm_link(mail)
    assert link.startswith(f"https://{API_HOST}/v1/confirm?token=k1.")
    html = mail.get_body(("html",))
    assert html is not None and "Hi Ann" in html.get_content()


def test_the_link_subscribes_the_contact_and_a_second_click_is_fine(
    trigger: Handler, suppression_removals: list[str]
) -> None:
    identify(trigger)
    subscribe(trigger)
    token = token_of(confirm_link(sent()[0]))

    status, page = confirm(trigger, token)
    again, _ = confirm(trigger, token)

    assert (status, again) == (200, 200)
    assert "You are subscribed" in page
    consent = profile().consent["email"]
    assert (consent["status"], consent["source"]) == ("subscribed", "double-opt-in")


def test_a_tampered_link_is_refused_and_nothing_changes(trigger: Handler) -> None:
    identify(trigger)
    subscribe(trigger)
    token = token_of(confirm_link(sent()[0]))
    key_id, body, signature = token.split(".")
    tampered = f"{key_id}.{body}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"

    assert confirm(trigger, tampered)[0] == 403
    assert confirm(trigger, "not-a-token")[0] == 400
    assert profile().consent["email"]["status"] == "pending"


def test_an_unsubscribe_token_is_not_a_confirmation(trigger: Handler) -> None:
    from tests.conftest import SECRET

    from cairn.domain.tokens import Keyring

    identify(trigger)
    subscribe(trigger)
    unsubscribe = Keyring(SECRET.encode()).sign(
        {"c": cid_of("u-ann"), "m": "x"}, now=SAMPLE_NOW, purpose="unsubscribe"
    )

    assert confirm(trigger, unsubscribe)[0] == 403
    assert profile().consent["email"]["status"] == "pending"


def test_the_link_expires_after_a_week(trigger: Handler, clock: FakeClock) -> None:
    identify(trigger)
    subscribe(trigger)
    token = token_of(confirm_link(sent()[0]))
    clock.advance(timedelta(days=7, seconds=1))

    assert confirm(trigger, token)[0] == 403
    assert profile().consent["email"]["status"] == "pending"


def test_a_link_clicked_after_unsubscribing_changes_nothing(trigger: Handler) -> None:
    identify(trigger)
    subscribe(trigger)
    token = token_of(confirm_link(sent()[0]))
    subscribe(trigger, "unsubscribed")

    status, page = confirm(trigger, token)

    assert status == 409
    assert "no longer waiting" in page
    assert profile().consent["email"]["status"] == "unsubscribed"


def test_at_most_one_confirmation_an_hour(trigger: Handler, clock: FakeClock) -> None:
    identify(trigger)
    subscribe(trigger)
    subscribe(trigger, "unsubscribed")
    subscribe(trigger)  # a form submitted again and again

    assert len(sent()) == 1
    clock.advance(timedelta(hours=1))
    subscribe(trigger, "unsubscribed")
    subscribe(trigger)
    assert len(sent()) == 2


def test_re_confirming_lifts_a_bounce_and_leaves_ses_suppression(
    trigger: Handler, suppression_removals: list[str]
) -> None:
    identify(trigger)
    ContactStore().set_suppression(cid_of("u-ann"), "bounced", now=SAMPLE_NOW)

    subscribe(trigger)
    token = token_of(confirm_link(sent()[0]))
    status, _ = confirm(trigger, token)

    assert status == 200
    assert profile().suppression is None
    assert suppression_removals == [
        "ann@example.com",
        "ann@example.com",
    ]  # before the email, and on confirming
    messages = list(MessageItem.query(cid_of("u-ann"), MessageItem.sk.startswith("msg#")))
    assert [(m.template, m.status, m.kind) for m in messages] == [
        ("confirm-subscription", "sent", "transactional")
    ]
