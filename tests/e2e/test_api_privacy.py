"""No email address, phone number or user id in any log line, execution name, execution input or state
transition (DESIGN.md section 1): a few contacts' whole lives through local mode, with every log record of
every function captured.

How the capture works: in local mode every function runs in this process, and Powertools' loggers are
standard `logging` loggers (the service logger `cairn` of each function, its children
`cairn.<module>` of the services, `cairn.local`). The capture wraps `logging.Logger.callHandlers`, so it
sees every record any logger hands to its handlers whatever handler or stream Powertools configured, and
`logging.Handler.format`, so it sees every line as a handler writes it (Powertools' JSON, with the keys
`inject_lambda_context` and `append_keys` add). Cairn's loggers are opened down to DEBUG, stricter than
the INFO the stack runs at; other libraries' records count from WARNING (what Lambda's root logger would
write)."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

import pytest
from tests.e2e.conftest import ROOT, START
from tests.e2e.sending import one_click

from cairn.adapters import aws
from cairn.local.runtime import LocalCairn

pytestmark = pytest.mark.e2e

USER = "privacy-user-4711"
EMAIL = "ann.privacy@example.com"
PHONE = "+4915112345678"  # on local mode's SMS allowlist: SMS really go out
ANON = "anon-visitor-0815"
OTHER = "other-user-4712"
OTHER_EMAIL = "olaf.other@example.com"
OTHER_PHONE = "+447700900123"
BUYER = "buyer-user-4713"
BUYER_EMAIL = "bea.buyer@example.org"
PERSONAL = (
    USER,
    EMAIL,
    "ann.privacy",  # the local part alone
    quote(EMAIL),  # as it would sit in a URL
    PHONE,
    PHONE.removeprefix("+"),
    "15112345678",  # national digits
    ANON,
    OTHER,
    OTHER_EMAIL,
    "olaf.other",
    OTHER_PHONE,
    "7700900123",
    BUYER,
    BUYER_EMAIL,
    "bea.buyer",
)


def _ours(name: str) -> bool:
    return name == "cairn" or name.startswith("cairn.")


@dataclass
class Captured:
    records: list[logging.LogRecord] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)  # as handlers formatted them

    def ours(self) -> list[logging.LogRecord]:
        return [r for r in self.records if _ours(r.name)]

    def texts(self) -> list[str]:
        """Each record with every attribute it carries (the `extra` keys a Powertools call adds), and every
        formatted line."""
        out = []
        for record in self.records:
            attributes = {k: repr(v) for k, v in vars(record).items() if k not in ("args", "msg")}
            exc = logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
            out.append(f"{record.name} {record.getMessage()} {json.dumps(attributes)} {exc}")
        return out + self.lines


def leaks(texts: list[str], values: tuple[str, ...] = PERSONAL) -> list[tuple[str, str]]:
    return [(v, t[:400]) for t in texts for v in values if v.lower() in t.lower()]


@contextmanager
def capture_logs() -> Iterator[Captured]:
    captured = Captured()
    call_handlers = logging.Logger.callHandlers
    format_record = logging.Handler.format
    is_enabled_for = logging.Logger.isEnabledFor

    def enabled(self: logging.Logger, level: int) -> bool:
        return _ours(self.name) or is_enabled_for(self, level)

    def handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        if _ours(record.name) or record.levelno >= logging.WARNING:
            captured.records.append(record)
        call_handlers(self, record)

    def formatted(self: logging.Handler, record: logging.LogRecord) -> str:
        line = format_record(self, record)
        if _ours(record.name) or record.levelno >= logging.WARNING:
            captured.lines.append(line)
        return line

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(logging.Logger, "isEnabledFor", enabled)
        mp.setattr(logging.Logger, "callHandlers", handlers)
        mp.setattr(logging.Handler, "format", formatted)
        yield captured


def execution_texts(local: LocalCairn) -> tuple[list[str], list[str]]:
    """(every execution name, every execution's input and each state's input and output as JSON)."""
    sfn = aws.client("stepfunctions")
    names: list[str] = []
    texts: list[str] = []
    assert local.stack is not None
    for arn in local.stack.state_machines.values():
        for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
            for execution in page["executions"]:
                names.append(execution["name"])
                described = sfn.describe_execution(executionArn=execution["executionArn"])
                texts.append(json.dumps({k: described.get(k) for k in ("input", "output", "cause", "error")}))
                history = sfn.get_execution_history(executionArn=execution["executionArn"], maxResults=1000)
                texts.extend(json.dumps(event, default=str) for event in history["events"])
    return names, texts


def link_token(text: str, path: str) -> str:
    found = re.search(re.escape(path) + r"\?token=([^\"'\s&<>]+)", text)
    assert found, f"no {path} link"
    return unquote(found.group(1))


def test_no_personal_data_in_any_log_line_or_execution(capsys: pytest.CaptureFixture[str]) -> None:
    with capture_logs() as captured, LocalCairn(ROOT, start_time=START, log_level="DEBUG") as local:
        secret, write = local.secret_key, local.write_key

        # A visitor browses anonymously, signs up from the browser (double opt-in: a confirmation email),
        # confirms, and keeps browsing under the anonymous id after being identified.
        local.request("POST", "/v1/track", {"anonymousId": ANON, "event": "product_viewed"}, key=write)
        status, _, _ = local.request(
            "POST",
            "/v1/identify",
            {
                "userId": USER,
                "anonymousId": ANON,
                "traits": {"email": EMAIL, "phone": PHONE, "firstName": "Ann", "timezone": "Europe/Berlin"},
                "consent": {"email": {"status": "subscribed", "source": "signup-form"}},
            },
            key=write,
        )
        assert status == 200
        local.settle()
        [confirmation] = [m for m in local.outbox() if m["to"] == EMAIL]
        status, _, _ = local.request(
            "GET", "/v1/confirm", query=f"token={quote(link_token(confirmation['text'], '/v1/confirm'))}"
        )
        assert status == 200
        local.request("POST", "/v1/track", {"anonymousId": ANON, "event": "page_viewed"}, key=write)
        local.request("PUT", f"/v1/contacts/{USER}/subscriptions/sms", {"status": "subscribed"}, key=secret)

        # Journeys: the welcome series, a social follow (SMS), an order (email, SMS feedback request).
        for event in ("newsletter_subscribed", "social_followed", "cart_abandoned"):
            assert (
                local.request(
                    "POST",
                    "/v1/track",
                    {"userId": USER, "event": event, "properties": {"cart_value": 50}},
                    key=write,
                )[0]
                == 202
            )
        local.request(
            "POST",
            "/v1/batch",
            {
                "batch": [
                    {
                        "type": "identify",
                        "userId": BUYER,
                        "traits": {"email": BUYER_EMAIL},
                        "consent": {"email": {"status": "subscribed", "source": "checkout"}},
                    },
                    {
                        "type": "track",
                        "userId": BUYER,
                        "event": "order_completed",
                        "properties": {"total": 80},
                    },
                    {"type": "track", "userId": BUYER, "event": "x" * 300},  # fails alone
                ]
            },
            key=secret,
        )
        local.request(
            "POST",
            "/v1/contacts/import",
            {
                "contacts": [
                    {
                        "userId": OTHER,
                        "traits": {"email": OTHER_EMAIL, "phone": OTHER_PHONE},
                        "consent": {"email": {"status": "subscribed", "source": "crm"}},
                    }
                ]
            },
            key=secret,
        )

        # Refusals carry the values back to the caller, never into a log.
        refusals = [
            ("POST", "/v1/identify", {"userId": OTHER, "traits": {"email": EMAIL}}, secret, 409),
            ("POST", "/v1/identify", {"userId": USER, "traits": {"email": OTHER_EMAIL}}, write, 403),
            ("POST", "/v1/identify", {"userId": USER, "traits": {"phone": "12" + PHONE}}, write, 422),
            ("POST", "/v1/identify", {"userId": USER, "traits": {"email": EMAIL + "@"}}, secret, 422),
            ("POST", "/v1/track", {"userId": USER, "event": "email_opened"}, write, 403),
            ("GET", f"/v1/contacts/{USER}", None, write, 403),
            ("GET", f"/v1/contacts/{OTHER}/nowhere", None, secret, 404),
            ("GET", f"/v1/contacts/{USER}", None, None, 401),
            (
                "POST",
                "/v1/track",
                {"userId": USER, "event": "e", "properties": {"p": "x" * 40_000}},
                write,
                413,
            ),
        ]
        for method, path, body, key, expected in refusals:
            assert local.request(method, path, body, key=key)[0] == expected, (method, path)

        # Days pass: waits, sends, an open, a click and a bounce come back from SES.
        local.advance(seconds=3 * 86400)
        emails = [m for m in local.outbox() if m["channel"] == "email"]
        assert {m["to"] for m in emails} >= {EMAIL, BUYER_EMAIL}
        ann = [m for m in emails if m["to"] == EMAIL and "/v1/unsubscribe" in m["text"]]
        local.feedback(ann[0]["id"], "open")
        local.feedback(ann[0]["id"], "click")
        local.feedback(next(m["id"] for m in emails if m["to"] == BUYER_EMAIL), "bounce")
        local.advance(seconds=4 * 86400)
        assert any(m["channel"] == "sms" and m["to"] == PHONE for m in local.outbox())

        status, _, contact = local.request("GET", f"/v1/contacts/{USER}", key=secret)
        assert status == 200 and contact["messages"]
        assert (
            local.request("GET", f"/v1/contacts/{USER}/next-fields", query="form=nope", key=secret)[0] == 404
        )

        # One-click unsubscribe from the link in a sent email, then erasure.
        token = quote(link_token(ann[-1]["text"], "/v1/unsubscribe"))
        assert one_click(local, f"/v1/unsubscribe?token={token}")[0] == 200
        assert local.request("GET", "/v1/unsubscribe", query=f"token={token}")[0] == 200
        assert local.request("DELETE", f"/v1/contacts/{USER}", key=secret)[0] == 204
        local.request("POST", "/v1/track", {"userId": USER, "event": "page_viewed"}, key=write)
        local.settle()

        names, texts = execution_texts(local)
        errors = list(local.host.errors)

    printed = capsys.readouterr()
    assert errors == []

    # The capture really saw the functions' logs: requests, merges, reactions, sends, feedback, erasure.
    ours = captured.ours()
    assert len(ours) >= 30, Counter(r.getMessage() for r in ours)
    messages = Counter(r.getMessage() for r in ours)
    assert {
        "request",
        "request refused",
        "anonymous contact merged",
        "event forwarded to the merged contact",
        "confirmation requested",
        "subscription confirmed",
        "unsubscribed",
        "contact erased",
    } <= set(messages), messages
    assert messages["request refused"] >= len(refusals)
    assert len({r.name for r in ours}) >= 5, {r.name for r in ours}
    assert len(names) >= 4  # welcome series, social follow, abandoned cart, the buyer's journeys

    assert leaks(captured.texts()) == []
    assert leaks([printed.out, printed.err]) == []
    assert leaks(names) == []
    assert leaks(texts) == []


def test_the_capture_catches_a_personal_value_in_any_form_a_function_could_log_it() -> None:
    """The detector above is not blind: a value in a message, in an extra key, at DEBUG under an INFO
    level, or in an exception's text, is caught."""
    from aws_lambda_powertools import Logger

    from cairn.services import intake

    with capture_logs() as captured:
        service = Logger(service="cairn")  # what every function's app.py creates
        child = intake.logger
        std = logging.getLogger("cairn.cairn.services.intake")
        saved = std.level
        std.setLevel(logging.INFO)
        try:
            child.info("identify", cid="c123")  # clean
            child.info("identify", email=EMAIL)
            child.debug(f"user {USER}")
            try:
                raise ValueError(f"bad phone {PHONE}")
            except ValueError:
                child.exception("failed")
            service.info("ok", anonymous=ANON)
        finally:
            std.setLevel(saved)

    found = {value for value, _ in leaks(captured.texts())}
    assert found >= {EMAIL, USER, PHONE, ANON}
    assert not leaks([t for t in captured.texts() if "c123" in t and "identify" in t][:1])
