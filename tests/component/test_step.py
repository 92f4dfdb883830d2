"""The step function: branches, interruptible waits and a run's end, as the state machine calls them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from tests.component.conftest import (
    SAMPLE_NOW,
    FakeClock,
    Handler,
    cid_of,
    given_a_contact,
    given_an_open_run,
    load_event,
    record_event,
)

from cairn.adapters.contacts import EnrollmentStore
from cairn.adapters.tables import EnrollmentItem
from cairn.domain.errors import ContactConverted, ContactExited, StaleRun


@pytest.fixture
def step(load_handler: Any, clock: FakeClock) -> Handler:
    clock.set(SAMPLE_NOW + timedelta(days=2))  # the welcome series' first wait is over
    handler: Handler = load_handler("step")
    return handler


def enrollment(user_id: str = "u-ann") -> EnrollmentItem:
    return EnrollmentItem.get(cid_of(user_id), EnrollmentItem.key("welcome-series"), consistent_read=True)


# ---------------------------------------------------------------- branch


@pytest.mark.parametrize(
    ("traits", "consent", "expected"),
    [
        (
            {"email": "ann@example.com", "phone": "+49301234567"},
            {"sms": "subscribed", "email": "subscribed"},
            0,
        ),
        ({"email": "ann@example.com"}, {"sms": "subscribed", "email": "subscribed"}, 1),
        ({"email": "ann@example.com", "phone": "+49301234567"}, {"email": "subscribed"}, 1),
        ({"email": "ann@example.com", "phone": "+49301234567"}, {}, -1),
        ({"email": "ann@example.com"}, {"email": "unsubscribed", "sms": "subscribed"}, -1),
    ],
    ids=[
        "both match: the first wins",
        "no phone",
        "no sms consent",
        "no consent: else",
        "no phone, no email",
    ],
)
def test_branch_returns_the_index_of_the_first_matching_rule(
    step: Handler, traits: dict[str, Any], consent: dict[str, str], expected: int
) -> None:
    given_an_open_run(given_a_contact(traits=traits, consent=consent))

    assert step(load_event("step/branch.json")) == {"branch": expected}


def test_branch_sees_the_contact_as_it_is_now(step: Handler) -> None:
    cid = given_a_contact(traits={"email": "ann@example.com"}, consent={"email": "subscribed"})
    given_an_open_run(cid)
    assert step(load_event("step/branch.json")) == {"branch": 1}

    given_a_contact(consent={"email": "unsubscribed"})  # unsubscribed meanwhile

    assert step(load_event("step/branch.json")) == {"branch": -1}


# ---------------------------------------------------------------- wait


def test_wait_stores_the_task_token_on_the_enrollment(step: Handler) -> None:
    given_an_open_run(given_a_contact())
    event = load_event("step/wait.json")

    assert step(event) == {"parked": "wait-2"}

    current = enrollment()
    assert current.token == event["token"]
    assert current.waiting_step == "wait-2"
    assert current.status == "active"


def test_a_goal_already_met_makes_wait_raise_contact_converted(step: Handler) -> None:
    cid = given_a_contact()
    given_an_open_run(cid)
    record_event(cid, "order_completed", SAMPLE_NOW + timedelta(hours=3))
    event = load_event("step/wait.json")
    event["policy"]["goal"] = {"event": "order_completed", "within": "7d"}

    with pytest.raises(ContactConverted):
        step(event)

    assert enrollment().token is None  # nothing parked: the state machine records the conversion


def test_a_goal_event_before_entry_does_not_count(step: Handler) -> None:
    cid = given_a_contact()
    given_an_open_run(cid)
    record_event(cid, "order_completed", SAMPLE_NOW - timedelta(hours=1))
    event = load_event("step/wait.json")
    event["policy"]["goal"] = {"event": "order_completed", "within": "7d"}

    assert step(event) == {"parked": "wait-2"}


def test_an_exit_condition_that_holds_makes_wait_raise_contact_exited(step: Handler) -> None:
    given_an_open_run(given_a_contact(traits={"plan": "churned"}))
    event = load_event("step/wait.json")
    event["policy"]["exitWhen"] = {"attribute": "plan", "eq": "churned"}

    with pytest.raises(ContactExited):
        step(event)


def test_a_step_of_a_run_that_is_no_longer_current_raises_stale_run(step: Handler) -> None:
    given_an_open_run(given_a_contact())
    event = load_event("step/wait.json")
    event["run"]["run"] = 2

    with pytest.raises(StaleRun):
        step(event)


# ---------------------------------------------------------------- finish


def test_finish_closes_the_run_and_keeps_it_as_history(step: Handler, clock: FakeClock) -> None:
    cid = given_a_contact()
    given_an_open_run(cid)
    step(load_event("step/wait.json"))  # a token was parked on the run

    assert step(load_event("step/finish.json")) == {"outcome": "completed"}

    current = enrollment()
    assert current.status == "completed"
    assert current.exit_reason == "completed"
    assert current.exited_at == clock.now()
    assert current.token is None
    [run] = EnrollmentStore().runs(cid)
    assert (run.run, run.status, run.exited_at) == (1, "completed", clock.now())


def test_finish_again_changes_nothing(step: Handler, clock: FakeClock) -> None:
    cid = given_a_contact()
    given_an_open_run(cid)
    step(load_event("step/finish.json"))
    first = enrollment().attribute_values
    clock.advance(timedelta(minutes=5))

    assert step(load_event("step/finish.json")) == {"outcome": "completed"}  # a Lambda retry

    assert enrollment().attribute_values == first
    assert len(EnrollmentStore().runs(cid)) == 1


def test_a_step_after_the_run_finished_raises_contact_exited(step: Handler) -> None:
    given_an_open_run(given_a_contact())
    step(load_event("step/finish.json"))

    with pytest.raises(ContactExited):
        step(load_event("step/wait.json"))
