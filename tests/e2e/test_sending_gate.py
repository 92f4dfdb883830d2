"""The gate through the real state machines on the virtual clock: held messages wait (interruptibly) and go
out at the next allowed moment; a forced retry of a send step sends one message."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import START
from tests.e2e.projects import project
from tests.e2e.sending import contact, get_contact, raw_mail, track
from tests.e2e.workflow_helpers import at

from cairn.adapters import aws
from cairn.adapters.contacts import MessageStore
from cairn.domain.errors import TransientError
from cairn.local.runtime import LocalCairn

pytestmark = pytest.mark.e2e
DAY = 86400
PHONE = "+4915112345678"


@pytest.fixture
def make_local(tmp_path: Path) -> Iterator[Any]:
    started: list[LocalCairn] = []

    def make(workflows: dict[str, Any], settings: dict[str, Any], start: datetime = START) -> LocalCairn:
        root = project(tmp_path, workflows=workflows, settings=settings)
        runtime = LocalCairn(root, start_time=start).start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        errors = runtime.host.errors
        runtime.stop()
        assert errors == [], errors


def test_a_capped_sms_in_quiet_hours_goes_out_at_eight_the_next_allowed_day_across_dst(
    make_local: Any,
) -> None:
    # One marketing SMS a week. The first goes at 20:30 on Saturday 28 March (CET); the second is due
    # 6 days 23 hours later, 20:30 on Saturday 4 April (CEST, clocks went forward on the 29th): still
    # capped until 7 x 24 h after the first, 21:30 local — quiet hours — so it goes at 08:00 on Sunday.
    start = datetime(2026, 3, 28, 19, 30, tzinfo=UTC)
    local = make_local(
        {
            "weekly-sms": {
                "name": "Weekly SMS",
                "trigger": {"event": "joined"},
                "steps": [
                    {"id": "first", "send_sms": {"template": "follow-us-sms"}},
                    {"wait": "167h"},
                    {"id": "second", "send_sms": {"template": "follow-us-sms"}},
                ],
            }
        },
        {"caps": {"sms": {"per_day": 1, "per_week": 1}}},
        start,
    )
    contact(local, "ann", phone=PHONE, timezone="Europe/Berlin", channels=("sms",))
    track(local, "ann", "joined")
    local.settle()

    local.advance(to=datetime(2026, 4, 5, 5, 59, tzinfo=UTC))
    assert [m["stepId"] for m in local.outbox()] == ["first"]
    [held] = [m for m in get_contact(local, "ann")["messages"] if m["stepId"] == "second"]
    assert held["status"] == "held"
    assert held["skipReason"] == "frequency cap (1 per week)"

    local.advance(to=datetime(2026, 4, 5, 7, 0, tzinfo=UTC))
    sent = local.outbox()
    assert [m["stepId"] for m in sent] == ["first", "second"]
    assert at(sent[0]) == start
    assert at(sent[1]) == datetime(2026, 4, 5, 6, 0, tzinfo=UTC)  # 08:00 CEST
    [message] = [m for m in get_contact(local, "ann")["messages"] if m["stepId"] == "second"]
    assert (message["status"], message.get("skipReason")) == ("sent", None)


def test_an_sms_due_at_night_waits_for_the_morning_in_the_contacts_zone(make_local: Any) -> None:
    local = make_local(
        {
            "evening": {
                "name": "Evening",
                "trigger": {"event": "joined"},
                "steps": [{"wait": "12h"}, {"id": "hello", "send_sms": {"template": "follow-us-sms"}}],
            }
        },
        {},
    )
    contact(local, "ann", phone=PHONE, timezone="America/New_York", channels=("sms",))
    track(local, "ann", "joined")  # 09:00 UTC: due at 21:00 UTC, 16:00 in New York: fine
    contact(
        local, "bob", email="bob@example.com", phone="+49301234567", timezone="Asia/Tokyo", channels=("sms",)
    )
    track(local, "bob", "joined")  # due at 06:00 in Tokyo: quiet until 08:00, 23:00 UTC

    local.advance(seconds=DAY)

    sent = {m["to"]: at(m) for m in local.outbox()}
    assert sent == {
        PHONE: START + timedelta(hours=12),
        "+49301234567": datetime(2026, 12, 1, 23, 0, tzinfo=UTC),
    }


def test_caps_count_across_workflows_and_hold_the_second_email_a_day(make_local: Any) -> None:
    one = {
        "name": "One",
        "trigger": {"event": "one"},
        "steps": [{"id": "one", "send_email": {"template": "follow-us"}}],
    }
    two = {
        "name": "Two",
        "trigger": {"event": "two"},
        "steps": [{"id": "two", "send_email": {"template": "follow-us"}}],
    }
    local = make_local({"one": one, "two": two}, {"caps": {"email": {"per_day": 1, "per_week": 3}}})
    contact(local, "ann")
    track(local, "ann", "one")
    local.settle()
    local.advance(seconds=3600)
    track(local, "ann", "two")
    local.settle()
    assert [m["stepId"] for m in local.outbox()] == ["one"]

    local.advance(seconds=DAY)

    sent = local.outbox()
    assert [m["stepId"] for m in sent] == ["one", "two"]
    assert at(sent[1]) == START + timedelta(days=1)


def test_on_hold_skip_records_the_skip_and_goes_on(make_local: Any) -> None:
    local = make_local(
        {
            "night": {
                "name": "Night",
                "trigger": {"event": "joined"},
                "steps": [
                    {"wait": "12h"},
                    {"id": "skip-me", "send_sms": {"template": "follow-us-sms", "on_hold": "skip"}},
                    {"id": "after", "send_email": {"template": "follow-us"}},
                ],
            }
        },
        {},
    )
    contact(local, "ann", phone=PHONE, timezone="Asia/Tokyo", channels=("sms", "email"))
    track(local, "ann", "joined")

    local.advance(seconds=DAY)

    assert [m["stepId"] for m in local.outbox()] == ["after"]
    [skipped] = [m for m in get_contact(local, "ann")["messages"] if m["stepId"] == "skip-me"]
    assert (skipped["status"], skipped["skipReason"]) == ("skipped", "quiet hours (onHold: skip)")


# ---------------------------------------------------------------- never twice


def test_a_throttled_send_is_retried_by_the_state_machine_and_sends_once(local: LocalCairn) -> None:
    ses = aws.client("sesv2")
    throttled = iter([True])

    def throttle(**_: Any) -> None:
        if next(throttled, False):
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "rate"}}, "SendEmail")

    ses.meta.events.register("before-parameter-build.sesv2.SendEmail", throttle)
    try:
        contact(local, "ann")
        track(local, "ann", "newsletter_subscribed")
        local.settle()
        local.advance(seconds=60)  # the Retry's back-off, on the virtual clock
    finally:
        ses.meta.events.unregister("before-parameter-build.sesv2.SendEmail", throttle)

    [mail] = local.outbox()
    assert len(raw_mail()) == 1
    assert mail["stepId"] == "send_email-welcome-discount"
    runs = local.executions()
    assert runs[0]["path"].count("send_email-welcome-discount") == 1  # one state, retried inside it
    assert [e["errorType"] for e in local.host.errors] == ["TransientError"]  # the one the Retry caught
    local.host.errors.clear()


def test_a_forced_retry_of_the_send_step_after_ses_took_the_message_sends_nothing_more(
    local: LocalCairn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SES accepted the email, then recording it failed (a throttled table): the state machine retries the
    # Task. The retry finds the claim without a provider id, records "unknown", and sends nothing.
    original = MessageStore.record
    failed = iter([True])

    def flaky(self: MessageStore, item: Any, status: str, **kw: Any) -> bool:
        if status == "sent" and next(failed, False):
            raise TransientError("the contacts table throttled")
        return original(self, item, status, **kw)

    monkeypatch.setattr(MessageStore, "record", flaky)
    contact(local, "ann")
    track(local, "ann", "newsletter_subscribed")
    local.settle()
    local.advance(seconds=60)

    assert len(raw_mail()) == 1  # what SES took: one message
    [message] = [
        m for m in get_contact(local, "ann")["messages"] if m["stepId"] == "send_email-welcome-discount"
    ]
    assert message["status"] == "unknown"
    local.advance(seconds=2 * DAY)
    assert len(raw_mail()) == 2  # the journey went on to its next email
    assert [e["errorType"] for e in local.host.errors] == ["TransientError"]  # the one the Retry caught
    local.host.errors.clear()
