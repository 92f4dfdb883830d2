"""The feedback loop in local mode: what SES reports (`POST /_local/feedback`) reaches the feedback
function through its EventBridge rule, suppresses, and drives journeys through the reserved events."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import START
from tests.e2e.projects import project, running
from tests.e2e.sending import contact, get_contact, track
from tests.e2e.workflow_helpers import at

from cairn.local.runtime import LocalCairn

pytestmark = pytest.mark.e2e
DAY = 86400


def test_a_hard_bounce_means_no_further_email(local: LocalCairn) -> None:
    contact(local, "ann")
    track(local, "ann", "newsletter_subscribed")
    local.settle()
    [first] = local.outbox()

    assert local.feedback(first["id"], "bounce") == 1

    assert get_contact(local, "ann")["suppression"] == "bounced"
    local.advance(seconds=5 * DAY)
    assert [m["id"] for m in local.outbox()] == [first["id"]]
    messages = {m["id"]: m for m in get_contact(local, "ann")["messages"]}
    assert messages[first["id"]]["status"] == "bounced"
    skipped = [m for m in messages.values() if m["status"] == "skipped"]
    assert skipped and all(m["skipReason"] == "suppressed (bounced)" for m in skipped)


def test_opens_and_deliveries_update_the_message(local: LocalCairn) -> None:
    contact(local, "ann")
    track(local, "ann", "newsletter_subscribed")
    local.settle()
    [first] = local.outbox()

    local.feedback(first["id"], "delivery")
    local.advance(seconds=600)
    local.feedback(first["id"], "open")

    [message] = [m for m in get_contact(local, "ann")["messages"] if m["id"] == first["id"]]
    assert message["status"] == "opened"


CLICK_JOURNEY: dict[str, Any] = {
    "name": "Click or not",
    "trigger": {"event": "tour_booked"},
    "steps": [
        {"id": "invite", "send_email": {"template": "welcome-discount"}},
        {
            "id": "clicked",
            "wait_for": {"event": "email_clicked", "timeout": "2d"},
            "on_event": [{"id": "thanks", "send_email": {"template": "follow-us"}}],
            "on_timeout": [{"id": "reminder", "send_email": {"template": "welcome-our-story"}}],
        },
    ],
}


@pytest.fixture
def click_local(tmp_path: Path) -> Any:
    root = project(tmp_path, workflows={"click-or-not": CLICK_JOURNEY})
    with running(root) as runtime:
        yield runtime


def test_a_click_resumes_the_waiting_run_at_once(click_local: LocalCairn) -> None:
    local = click_local
    contact(local, "ann")
    track(local, "ann", "tour_booked")
    local.settle()
    [invite] = local.outbox()
    local.advance(seconds=3 * 3600)

    local.feedback(invite["id"], "click")

    sent = local.outbox()
    assert [m["stepId"] for m in sent] == ["invite", "thanks"]
    assert at(sent[1]) == START + timedelta(hours=3)  # the moment of the click, not the wait's end
    local.advance(seconds=3 * DAY)
    assert [m["stepId"] for m in local.outbox()] == ["invite", "thanks"]


def test_without_a_click_the_wait_times_out(click_local: LocalCairn) -> None:
    local = click_local
    contact(local, "ann")
    track(local, "ann", "tour_booked")
    local.settle()
    [invite] = local.outbox()
    local.feedback(invite["id"], "open")  # an open is not a click

    local.advance(seconds=2 * DAY)

    sent = local.outbox()
    assert [m["stepId"] for m in sent] == ["invite", "reminder"]
    assert at(sent[1]) == START + timedelta(days=2)
