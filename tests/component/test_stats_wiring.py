"""Where the functions record statistics (docs/stats-wiring.md), against moto: a run that leaves the workflow
shows in the funnel of the step it left at; a split's opens and clicks count per variant; a retried send task,
a retried finish and a feedback report delivered twice count nothing twice."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.component.conftest import (
    Handler,
    given_a_contact,
    given_an_open_run,
    load_event,
)

from cairn.adapters.contacts import EnrollmentStore, MessageStore
from cairn.domain.errors import ContactExited
from cairn.services.stats import StatsReader

WF = "welcome-series"
SEND_STEP = "send_email-welcome-discount"  # the sample send event's step
ANN = {"email": "ann@example.com", "firstName": "Ann"}


@pytest.fixture
def step(load_handler: Any, send: Handler) -> Handler:
    handler: Handler = load_handler("step")
    return handler


def funnel() -> dict[str, Any]:
    """The workflow's statistics as `GET /v1/workflows/welcome-series/stats` serves them (one version)."""
    body = StatsReader().workflow_stats(WF, None)
    assert body is not None
    (version,) = body["versions"]
    return dict(version)


def step_row(step_id: str) -> dict[str, Any]:
    return next(s for s in funnel()["steps"] if s["stepId"] == step_id)


def ann(**attributes: Any) -> str:
    return given_a_contact(
        "u-ann", traits={**ANN, **attributes}, consent={"email": "subscribed", "sms": "subscribed"}
    )


def test_a_retried_send_task_counts_its_message_once(send: Handler) -> None:
    given_an_open_run(ann())
    event = load_event("send/email.json")

    assert send(event)["status"] == "sent"
    assert send(copy.deepcopy(event))["duplicate"] is True  # Step Functions retried the task

    row = step_row(SEND_STEP)
    assert (row["entered"], row["completed"], row["messages"]["sent"]) == (1, 1, 1)


def test_an_exit_found_at_a_send_step_shows_in_that_steps_funnel(send: Handler) -> None:
    cid = ann(stage="customer")
    given_an_open_run(cid)
    event = load_event("send/email.json")
    event["policy"]["exitWhen"] = {"attribute": "stage", "eq": "customer"}

    for _ in range(2):  # the task, and a retry of it: one exit
        with pytest.raises(ContactExited):
            send(copy.deepcopy(event))

    row = step_row(SEND_STEP)
    assert (row["entered"], row["exited"], row["completed"], row["lost"]) == (1, 1, 0, 1)
    assert not (row["messages"] or {}).get("sent")
    assert funnel()["biggestDropOff"]["stepId"] == SEND_STEP


def test_an_exit_step_records_where_the_run_left(step: Handler) -> None:
    given_an_open_run(ann())
    event = load_event("step/finish.json")
    event["step"] = {"outcome": "exited", "stepId": "exit-6"}  # as the compiler writes an exit step

    assert step(event) == {"outcome": "exited"}
    assert step(copy.deepcopy(event)) == {"outcome": "exited"}  # a retried finish: the run is closed

    version = funnel()
    assert version["exited"] == 1
    row = step_row("exit-6")
    assert (row["entered"], row["exited"]) == (1, 1)


def test_a_splits_opens_and_clicks_count_for_the_runs_variant(send: Handler, feedback: Handler) -> None:
    cid = ann()
    run = given_an_open_run(cid)
    assert EnrollmentStore().set_variant(cid, WF, run, "offer", "B")
    message_id = send(load_event("send/email.json"))["messageId"]
    assert message_id.startswith(cid)

    for kind in ("delivery", "open", "click"):
        assert feedback(load_event(f"feedback/{kind}.json")) == {"recorded": 1}

    row = step_row(SEND_STEP)
    by_variant = row["variants"]["B"]["messages"]
    assert (by_variant["sent"], by_variant["delivered"], by_variant["opened"], by_variant["clicked"]) == (
        1,
        1,
        1,
        1,
    )
    (variant,) = funnel()["variants"]
    assert variant["variant"] == "B"
    assert (variant["messages"]["opened"], variant["messages"]["clicked"]) == (1, 1)


def test_a_report_delivered_twice_at_once_counts_once(
    send: Handler, feedback: Handler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """EventBridge delivers at least once: two invocations with the same SES event can both read the message
    before either records the report (the redelivery check in the history passes twice)."""
    cid = ann()
    given_an_open_run(cid)
    message_id = send(load_event("send/email.json"))["messageId"]
    before = MessageStore().get(cid, message_id)
    assert before is not None
    monkeypatch.setattr(MessageStore, "get", lambda self, c, m: copy.deepcopy(before))

    for _ in range(2):
        feedback(load_event("feedback/delivery.json"))
        feedback(load_event("feedback/bounce-permanent.json"))

    messages = step_row(SEND_STEP)["messages"]
    assert (messages["delivered"], messages["bounced"]) == (1, 1)
