"""The step function: branches, interruptible waits and a run's end, as the state machine calls them."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
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
from tests.conftest import REGION
from tests.webhook_receiver import Receiver

from cairn.adapters.contacts import ContactStore, EnrollmentStore, MessageStore
from cairn.adapters.events import EventStore
from cairn.adapters.executions import Executions
from cairn.adapters.journeys import HeldRuns, TaskStore, WorkflowStore, lists_of
from cairn.adapters.tables import EnrollmentItem
from cairn.domain import webhooks as webhook_signing
from cairn.domain.errors import ContactConverted, ContactExited, StaleRun, WebhookFailed, WebhookRejected
from cairn.services.steps import Steps


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


# ================================================================ the rest of the step kinds
# Called on a Steps service over the real adapters (moto); the Step Functions port records what it is
# asked (task tokens answered, failed) so a test can see a wait being ended.


class RecordingExecutions(Executions):
    """The real adapter (StartExecution in moto), recording the answers to task tokens."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, str, Any]] = []

    def resume(self, token: str, output: dict[str, Any]) -> bool:
        self.answers.append(("success", token, output))
        return True

    def interrupt(self, token: str, error: str, cause: str) -> bool:
        self.answers.append(("failure", token, error))
        return True


@pytest.fixture
def service(tables: dict[str, str], clock: FakeClock) -> Steps:
    from cairn.bootstrap import runtime

    clock.set(SAMPLE_NOW + timedelta(hours=2))
    rt = runtime()
    rt.executions = RecordingExecutions()  # type: ignore[misc]
    return Steps(rt)


def answers(service: Steps) -> list[tuple[str, str, Any]]:
    executions = service.rt.executions
    assert isinstance(executions, RecordingExecutions)
    return executions.answers


def open_run(user_id: str, workflow_id: str, **traits: Any) -> str:
    cid = given_a_contact(user_id, traits=traits, consent={"email": "subscribed"})
    given_an_open_run(cid, workflow_id)
    return cid


def for_contact(event: dict[str, Any], cid: str) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["run"]["cid"] = cid
    return event


def enrollment_of(cid: str, workflow_id: str) -> EnrollmentItem:
    return EnrollmentItem.get(cid, EnrollmentItem.key(workflow_id), consistent_read=True)


# ---------------------------------------------------------------- wait until


def test_until_a_time_of_day_is_counted_in_the_contacts_zone(service: Steps, clock: FakeClock) -> None:
    cid = open_run("u-ann", "post-purchase", timezone="America/New_York")
    clock.set(datetime(2026, 12, 3, 12, 0, tzinfo=UTC))  # 07:00 in New York
    assert service.handle(for_contact(load_event("step/until.json"), cid)) == {"seconds": 3 * 3600}
    given_a_contact("u-ann", traits={"timezone": "Asia/Tokyo"})  # 21:00 there: tomorrow at ten
    assert service.handle(for_contact(load_event("step/until.json"), cid)) == {"seconds": 13 * 3600}


def test_until_an_attribute_date_and_without_one_at_once(service: Steps, clock: FakeClock) -> None:
    cid = open_run("u-ann", "post-purchase", renewal="2026-11-30", timezone="Europe/Berlin")
    event = for_contact(load_event("step/until.json"), cid)
    event["step"] = {"id": "wait-3", "attribute": "renewal", "at": "09:00", "offset": "-1d"}
    # 09:00 Berlin on 29 November is 08:00 UTC; now is 24 November 11:00 UTC.
    assert service.handle(event) == {"seconds": int(timedelta(days=4, hours=21).total_seconds())}
    event["step"] = {"id": "wait-3", "attribute": "missing"}
    assert service.handle(event) == {"seconds": 1}
    given_a_contact("u-ann", traits={"renewal": "2026-11-01"})  # passed: go on
    event["step"] = {"id": "wait-3", "attribute": "renewal"}
    assert service.handle(event) == {"seconds": 1}


def test_a_date_more_than_a_year_after_entry_ends_the_run(service: Steps) -> None:
    cid = open_run("u-ann", "post-purchase", renewal="2028-01-01")
    event = for_contact(load_event("step/until.json"), cid)
    event["step"] = {"id": "wait-3", "attribute": "renewal"}
    with pytest.raises(ContactExited):
        service.handle(event)


# ---------------------------------------------------------------- held sends


def test_a_held_send_parks_its_token_and_a_pause_lists_it_for_resume(service: Steps) -> None:
    cid = open_run("u-ann", "abandoned-cart")
    event = for_contact(load_event("step/hold.json"), cid)
    assert service.handle(event) == {"parked": "reminder-a"}
    current = enrollment_of(cid, "abandoned-cart")
    assert (current.token, current.waiting_step) == (event["token"], "reminder-a: hold")
    assert HeldRuns().all("abandoned-cart") == []  # quiet hours: nothing to wake on resume
    event["held"]["reason"] = "paused (workflow)"
    service.handle(event)
    assert HeldRuns().all("abandoned-cart") == [(cid, 1)]


# ---------------------------------------------------------------- wait_for


def test_wait_for_stores_what_it_awaits_with_its_token(service: Steps) -> None:
    cid = open_run("u-ann", "abandoned-cart")
    event = for_contact(load_event("step/wait-for.json"), cid)
    assert service.handle(event) == {"parked": "came-back"}
    current = enrollment_of(cid, "abandoned-cart")
    assert current.token == event["token"]
    assert current.wait_for.as_dict() == {"event": "email_clicked", "since": "2026-11-24T10:00:00+00:00"}
    assert answers(service) == []


def test_wait_for_awaits_a_click_on_this_runs_last_email(service: Steps) -> None:
    cid = open_run("u-ann", "abandoned-cart")
    store = MessageStore()
    for step_id, minutes in (("reminder-a", 0), ("reminder-b", 5)):
        claim = store.claim(
            cid,
            f"{cid}-{step_id}",
            channel="email",
            template="t",
            workflow_id="abandoned-cart",
            version="v",
            run=1,
            step_id=step_id,
            now=SAMPLE_NOW + timedelta(minutes=minutes),
        )
        assert claim is not None
        store.mark(claim, "sent", provider_id=f"ses-{step_id}", sent_at=SAMPLE_NOW)
    service.handle(for_contact(load_event("step/wait-for.json"), cid))
    assert enrollment_of(cid, "abandoned-cart").wait_for.as_dict()["messageId"] == f"{cid}-reminder-b"


def test_an_event_that_came_while_the_wait_registered_ends_it_at_once(service: Steps) -> None:
    # Given the click arrived after the wait state began but before its task registered the token
    cid = open_run("u-ann", "abandoned-cart")
    record_event(cid, "email_clicked", datetime(2026, 11, 24, 10, 0, 5, tzinfo=UTC))
    event = for_contact(load_event("step/wait-for.json"), cid)

    service.handle(event)

    # Then the registration answers its own token: the journey goes on by the event
    assert answers(service) == [("success", event["token"], {"event": "email_clicked"})]
    assert enrollment_of(cid, "abandoned-cart").token is None


def test_an_event_from_before_the_wait_began_does_not_end_it(service: Steps) -> None:
    cid = open_run("u-ann", "abandoned-cart")
    record_event(cid, "email_clicked", datetime(2026, 11, 24, 9, 59, tzinfo=UTC))
    service.handle(for_contact(load_event("step/wait-for.json"), cid))
    assert answers(service) == []


# ---------------------------------------------------------------- split


def test_a_split_records_a_sticky_variant_on_the_enrollment(service: Steps, clock: FakeClock) -> None:
    seen = {}
    for n in range(12):
        cid = open_run(f"u-{n}", "abandoned-cart")
        event = for_contact(load_event("step/split.json"), cid)
        result = service.handle(event)
        assert result == service.handle(event)  # a retry: the same variant
        variant = result["variant"]
        current = enrollment_of(cid, "abandoned-cart")
        assert current.variant == variant
        assert current.variants.as_dict() == {"reminder-test": variant}
        seen[variant] = result["holdoutSeconds"]
    assert set(seen) <= {"A", "B", "holdout"} and len(seen) >= 2
    if "holdout" in seen:  # waits out the goal window: 7 days from entry, 2 hours in
        assert seen["holdout"] == 7 * 86400 - 2 * 3600


# ---------------------------------------------------------------- update and lists


def test_update_sets_unsets_and_tags_the_contact(service: Steps) -> None:
    cid = open_run("u-ann", "lead-nurture", stage="new", trial=True)
    event = for_contact(load_event("step/update.json"), cid)
    event["step"] = {
        "id": "update-1",
        "set": {"stage": "awareness", "plan": "pro"},
        "unset": ["trial"],
        "addTags": ["a", "b"],
        "removeTags": ["old"],
    }
    assert service.handle(event) == {"updated": "update-1"}
    profile = ContactStore().get(cid)
    assert profile is not None
    assert profile.attributes["stage"] == "awareness" and profile.attributes["plan"] == "pro"
    assert "trial" not in profile.attributes
    assert profile.tags == {"a", "b"}
    event["step"] = {"id": "update-1", "removeTags": ["a"]}
    service.handle(event)
    assert ContactStore().get(cid).tags == {"b"}  # type: ignore[union-attr]


def test_lists_are_joined_and_left(service: Steps) -> None:
    cid = open_run("u-ann", "social-follow")
    event = for_contact(load_event("step/add-to-list.json"), cid)
    assert service.handle(event) == {"add": "summit-contest"}
    assert lists_of(cid) == {"summit-contest"}
    event["step"] = {**event["step"], "op": "remove"}
    service.handle(event)
    assert lists_of(cid) == frozenset()


# ---------------------------------------------------------------- tasks


def test_assign_task_creates_one_task_whatever_the_retries(service: Steps, clock: FakeClock) -> None:
    cid = open_run("u-ann", "lead-nurture")
    event = for_contact(load_event("step/assign-task.json"), cid)
    first = service.handle(event)
    clock.advance(timedelta(minutes=1))
    assert service.handle(event) == first
    tasks, cursor = TaskStore().list()
    assert cursor is None
    [task] = tasks
    assert (task.id, task.contact, task.assignee, task.status) == (first["task"], cid, "sales", "open")
    assert task.title == "Call this high-value lead"
    assert task.due == SAMPLE_NOW + timedelta(hours=2) + timedelta(days=1)
    assert task.note == "Scored high in the nurture journey"


# ---------------------------------------------------------------- the end


def test_finish_records_the_conversion_as_a_reserved_event(service: Steps) -> None:
    cid = open_run("u-ann", "welcome-series")
    event = for_contact(load_event("step/finish.json"), cid)
    event["step"] = {"outcome": "converted"}
    service.handle(event)
    service.handle(event)  # a retry records nothing twice
    converted = EventStore(ttl=timedelta(days=1)).history(cid, since=None)
    assert [(e.name, e.properties["workflowId"], e.properties["reason"]) for e in converted] == [
        ("workflow_converted", "welcome-series", "goal")
    ]
    assert enrollment_of(cid, "welcome-series").status == "converted"


def test_a_finished_run_of_a_draining_workflow_moves_on(
    service: Steps, state_machines: dict[str, str], clock: FakeClock
) -> None:
    cid = open_run("u-ann", "welcome-series")
    given_a_contact("u-ann", traits={"email": "ann@example.com"})
    WorkflowStore().set_status("welcome-series", "draining", now=clock.now(), move_to="email-engagement")
    service.handle(for_contact(load_event("step/finish.json"), cid))
    moved = EnrollmentStore().get(cid, "email-engagement")
    assert moved is not None and moved.status == "active"
    sfn = boto3.client("stepfunctions", region_name=REGION)
    [execution] = sfn.list_executions(stateMachineArn=state_machines["email-engagement"])["executions"]
    assert json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])["trigger"] == {
        "event": "moved",
        "from": "welcome-series",
    }


def test_the_next_task_of_a_run_of_a_workflow_retired_with_stop_ends_it_and_moves_it_on(
    service: Steps, state_machines: dict[str, str], clock: FakeClock
) -> None:
    cid = open_run("u-ann", "welcome-series")
    given_a_contact("u-ann", traits={"email": "ann@example.com"})
    # `stop` retired the workflow, but its call ran out of time before it reached this run.
    WorkflowStore().set_status("welcome-series", "retired", now=clock.now(), move_to="email-engagement")
    with pytest.raises(ContactExited):
        service.handle(for_contact(load_event("step/wait.json"), cid))
    ended = enrollment_of(cid, "welcome-series")
    assert (ended.status, ended.exit_reason) == ("exited", "retired")
    moved = EnrollmentStore().get(cid, "email-engagement")
    assert moved is not None and moved.status == "active"


# ---------------------------------------------------------------- enroll


def test_enroll_starts_a_run_of_the_other_workflow_once(
    service: Steps, state_machines: dict[str, str]
) -> None:
    cid = open_run("u-ann", "lead-nurture")
    event = for_contact(load_event("step/update.json"), cid)
    event["action"], event["step"] = "enroll", {"id": "enroll-9", "workflow": "email-engagement"}
    assert service.handle(event) == {"enrolled": True}
    assert service.handle(event) == {"enrolled": False}  # a retry (and re-entry `never`)
    sfn = boto3.client("stepfunctions", region_name=REGION)
    assert len(sfn.list_executions(stateMachineArn=state_machines["email-engagement"])["executions"]) == 1
    entered = [
        e for e in EventStore(ttl=timedelta(days=1)).history(cid, since=None) if e.name == "workflow_entered"
    ]
    assert [e.properties["workflowId"] for e in entered] == ["email-engagement"]


def test_enroll_honours_the_target_audience(service: Steps, state_machines: dict[str, str]) -> None:
    cid = given_a_contact("u-bob", consent={"email": "unsubscribed"})
    given_an_open_run(cid, "lead-nurture")
    event = for_contact(load_event("step/update.json"), cid)
    event["action"], event["step"] = "enroll", {"id": "enroll-9", "workflow": "email-engagement"}
    assert service.handle(event) == {"enrolled": False}


# ---------------------------------------------------------------- webhooks


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []

    def make(statuses: list[int], *, hang: bool = False) -> Receiver:
        made.append(Receiver(statuses, hang=hang))
        return made[-1]

    yield make
    for r in made:
        r.close()


def webhook_event(cid: str, url: str, **extra: Any) -> dict[str, Any]:
    event = for_contact(load_event("step/update.json"), cid)
    event["action"] = "webhook"
    event["step"] = {
        "id": "webhook-3",
        "url": url,
        "secret": "crm-hook",
        "timeout": 2,
        "body": {"list": "vip"},
        **extra,
    }
    return event


def test_a_webhook_posts_the_contact_signed_with_the_shared_secret(
    service: Steps, receiver: Callable[..., Receiver], clock: FakeClock
) -> None:
    boto3.client("secretsmanager", region_name=REGION).create_secret(Name="crm-hook", SecretString="s3cret")
    cid = open_run("u-ann", "lead-nurture", email="ann@example.com", lead_score=91)
    hook = receiver([200])
    result = service.handle(webhook_event(cid, hook.url))
    assert result["status"] == 200
    [(headers, body)] = hook.received
    assert webhook_signing.verify(
        b"s3cret", headers["Cairn-Signature"], body, now=int(clock.now().timestamp())
    )
    assert not webhook_signing.verify(
        b"other", headers["Cairn-Signature"], body, now=int(clock.now().timestamp())
    )
    sent = json.loads(body)
    assert sent["contact"]["userId"] == "u-ann" and sent["contact"]["attributes"]["lead_score"] == 91
    assert sent["data"] == {"list": "vip"}
    assert headers["Cairn-Delivery"] == sent["id"] == result["delivery"]


@pytest.mark.parametrize(
    ("statuses", "hang", "error"),
    [
        ([500], False, WebhookFailed),
        ([429], False, WebhookFailed),
        ([404], False, WebhookRejected),
        ([200], True, WebhookFailed),
    ],
    ids=["server error: retry", "throttled: retry", "refused: give up", "no answer in time: retry"],
)
def test_a_webhook_that_fails_raises_the_error_its_retry_matches(
    service: Steps,
    receiver: Callable[..., Receiver],
    statuses: list[int],
    hang: bool,
    error: type[Exception],
) -> None:
    boto3.client("secretsmanager", region_name=REGION).create_secret(Name="crm-hook", SecretString="s3cret")
    cid = open_run("u-ann", "lead-nurture")
    hook = receiver(statuses, hang=hang)
    event = webhook_event(cid, hook.url)
    event["step"]["timeout"] = 0.3
    with pytest.raises(error):
        service.handle(event)
    delivery = json.loads(hook.received[0][1])["id"]
    # The retry is the same delivery (the receiver can drop duplicates by Cairn-Delivery).
    with contextlib.suppress(WebhookFailed):
        service.handle(event)
    if len(hook.received) > 1:
        assert json.loads(hook.received[1][1])["id"] == delivery


# ---------------------------------------------------------------- yearly dates


def test_the_hourly_job_enters_contacts_on_their_birthday_at_nine_local(
    service: Steps, state_machines: dict[str, str], clock: FakeClock
) -> None:
    from cairn.services.react import Reactor

    reactor = Reactor(service.rt)
    for user_id, zone, birthday in (
        ("u-ny", "America/New_York", "1990-11-25"),
        ("u-be", "Europe/Berlin", "1985-11-25"),
        ("u-no", "Europe/Berlin", "1985-11-26"),
    ):
        cid = given_a_contact(
            user_id, traits={"birthday": birthday, "timezone": zone}, consent={"email": "subscribed"}
        )
        reactor.on_profile_change(cid)
    sfn = boto3.client("stepfunctions", region_name=REGION)

    def entered() -> list[str]:
        runs = sfn.list_executions(stateMachineArn=state_machines["birthday"])["executions"]
        return sorted(r["name"].rsplit("-", 1)[0] for r in runs)

    # 09:00 in Berlin on 25 November is 08:00 UTC: the 08:00 job (window 07:00-08:00] enters the Berliner
    assert service.handle({"action": "date_triggers", "time": "2026-11-25T08:00:00Z"})["entered"] == 1
    assert entered() == [cid_of("u-be")]
    assert (
        service.handle({"action": "date_triggers", "time": "2026-11-25T08:00:00Z"})["entered"] == 0
    )  # a retry
    # 09:00 in New York is 14:00 UTC
    assert service.handle({"action": "date_triggers", "time": "2026-11-25T14:00:00Z"})["entered"] == 1
    assert entered() == sorted([cid_of("u-be"), cid_of("u-ny")])
    assert enrollment_of(cid_of("u-ny"), "birthday").entered_at == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)
    # A new birthday moves the contact in the index; the old day finds nobody.
    given_a_contact("u-no", traits={"birthday": "1985-11-27"})
    reactor.on_profile_change(cid_of("u-no"))
    assert service.handle({"action": "date_triggers", "time": "2026-11-26T08:00:00Z"})["entered"] == 0
    assert service.handle({"action": "date_triggers", "time": "2026-11-27T08:00:00Z"})["entered"] == 1
