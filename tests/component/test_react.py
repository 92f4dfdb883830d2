"""The react function: DynamoDB stream records of the events table start workflow runs, once."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from tests.component.conftest import FakeClock, Handler, cid_of, create_state_machines, load_event
from tests.conftest import REGION, TABLES

from cairn.adapters.contacts import ContactStore, Enrollment, EnrollmentStore
from cairn.adapters.events import EventStore


@pytest.fixture
def react(load_handler: Any, clock: FakeClock) -> Handler:
    handler: Handler = load_handler("react")
    return handler


def executions(arn: str) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    found: list[dict[str, Any]] = sfn.list_executions(stateMachineArn=arn)["executions"]
    return found


def execution_input(execution_arn: str) -> dict[str, Any]:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    data: dict[str, Any] = json.loads(sfn.describe_execution(executionArn=execution_arn)["input"])
    return data


def enrollment(user_id: str, workflow_id: str = "welcome-series") -> Enrollment | None:
    return EnrollmentStore().get(cid_of(user_id), workflow_id)


def image(record_event: dict[str, Any]) -> dict[str, Any]:
    new_image: dict[str, Any] = record_event["Records"][0]["dynamodb"]["NewImage"]
    return new_image


def test_the_sample_records_come_from_the_events_tables_stream() -> None:
    for name in ("react/event-insert.json", "react/event-insert-backfill.json"):
        [record] = load_event(name)["Records"]
        assert record["eventName"] == "INSERT"
        assert f":table/{TABLES['EVENTS_TABLE']}/stream/" in record["eventSourceARN"]
        assert record["dynamodb"]["NewImage"]["cid"] == {"S": cid_of("u-ann")}


def test_a_new_event_that_triggers_a_workflow_starts_exactly_one_run(
    react: Handler, state_machines: dict[str, str], clock: FakeClock
) -> None:
    event = load_event("react/event-insert.json")

    response = react(event)

    assert response == {"batchItemFailures": []}
    [run] = executions(state_machines["welcome-series"])
    cid = cid_of("u-ann")
    assert run["name"] == f"{cid}-1"
    payload = execution_input(run["executionArn"])
    assert payload["cid"] == cid
    assert payload["workflowId"] == "welcome-series"
    assert payload["run"] == 1
    assert payload["trigger"] == {
        "event": "newsletter_subscribed",
        "messageId": image(event)["mid"]["S"],
    }
    assert "u-ann" not in json.dumps(payload)  # no personal data in execution input
    current = enrollment("u-ann")
    assert current.status == "active"
    assert current.run == 1
    assert current.entered_at == clock.now()


def test_a_replayed_record_starts_no_second_run(react: Handler, state_machines: dict[str, str]) -> None:
    react(load_event("react/event-insert.json"))

    response = react(load_event("react/event-insert.json"))  # streams deliver at least once

    assert response == {"batchItemFailures": []}
    assert len(executions(state_machines["welcome-series"])) == 1
    assert enrollment("u-ann").run == 1


def test_an_event_older_than_max_age_updates_the_contact_but_starts_nothing(
    react: Handler, state_machines: dict[str, str]
) -> None:
    response = react(load_event("react/event-insert-backfill.json"))

    assert response == {"batchItemFailures": []}
    assert executions(state_machines["welcome-series"]) == []
    assert enrollment("u-ann") is None
    assert ContactStore().get(cid_of("u-ann")) is not None


def test_a_record_delivered_after_max_age_starts_nothing(
    react: Handler, state_machines: dict[str, str], clock: FakeClock
) -> None:
    clock.advance(timedelta(hours=24, seconds=1))

    react(load_event("react/event-insert.json"))

    assert executions(state_machines["welcome-series"]) == []


def test_an_event_no_workflow_listens_to_starts_nothing(
    react: Handler, state_machines: dict[str, str]
) -> None:
    event = load_event("react/event-insert.json")
    image(event)["name"] = {"S": "page_viewed"}

    assert react(event) == {"batchItemFailures": []}
    assert executions(state_machines["welcome-series"]) == []


def test_a_record_that_fails_is_reported_alone_and_its_retry_starts_the_run_once(
    react: Handler, project: Any, aws: None
) -> None:
    # Given a batch of two records, and no state machine yet: StartExecution fails for Ann's record
    ann = load_event("react/event-insert.json")["Records"][0]
    bob = copy.deepcopy(ann)
    bob_image = bob["dynamodb"]["NewImage"]
    bob_image["cid"] = bob["dynamodb"]["Keys"]["cid"] = {"S": cid_of("u-bob")}
    bob_image["userId"] = {"S": "u-bob"}
    bob_image["name"] = {"S": "page_viewed"}
    bob["dynamodb"]["SequenceNumber"] = str(int(ann["dynamodb"]["SequenceNumber"]) - 1)

    response = react({"Records": [bob, ann]})

    # Then only Ann's record is reported (the stream retries it), nothing is dropped
    assert response == {"batchItemFailures": [{"itemIdentifier": ann["dynamodb"]["SequenceNumber"]}]}
    assert enrollment("u-ann").status == "starting"

    # When the state machine exists and the stream retries the record
    arns = create_state_machines(project)
    response = react({"Records": [ann]})

    # Then the run starts, once
    assert response == {"batchItemFailures": []}
    assert len(executions(arns["welcome-series"])) == 1
    assert enrollment("u-ann").status == "active"
    assert react({"Records": [ann]}) == {"batchItemFailures": []}
    assert len(executions(arns["welcome-series"])) == 1


def test_a_batch_whose_every_record_fails_raises_so_the_stream_retries_it(react: Handler, aws: None) -> None:
    with pytest.raises(BatchProcessingError):
        react(load_event("react/event-insert.json"))


# ================================================================ waits, goals, races and throttling


class FakeHttp:
    status_code = 200
    headers: dict[str, str] = {}


@pytest.fixture
def token_answers(aws: None) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """What the react function answers waiting tasks (SendTaskSuccess/Failure), recorded at the boto level
    of the adapters' client: the state machines here do not run, so their tokens do not exist in moto."""
    from cairn.adapters.aws import client

    calls: list[tuple[str, dict[str, Any]]] = []

    def answer(model: Any, params: dict[str, Any], **_: Any) -> tuple[FakeHttp, dict[str, Any]]:
        calls.append((model.name, json.loads(params["body"])))
        return FakeHttp(), {}

    sfn = client("stepfunctions")
    sfn.meta.events.register("before-call.sfn.SendTaskSuccess", answer)
    sfn.meta.events.register("before-call.sfn.SendTaskFailure", answer)
    yield calls


def stream_event(
    user_id: str, name: str, at: datetime, properties: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An events-table stream record, as intake's write produces it (the event is stored too)."""
    import uuid

    from boto3.dynamodb.types import TypeSerializer

    from cairn.adapters.events import EventStore, NewEvent, ts_key

    event = load_event("react/event-insert.json")
    new = image(event)
    mid = str(uuid.uuid4())
    cid = cid_of(user_id)
    EventStore(ttl=timedelta(days=400)).put_once(
        NewEvent(
            cid=cid,
            message_id=mid,
            name=name,
            timestamp=at,
            received_at=at,
            properties=properties or {},
            user_id=user_id,
        )
    )
    new["cid"] = event["Records"][0]["dynamodb"]["Keys"]["cid"] = {"S": cid}
    new["mid"] = event["Records"][0]["dynamodb"]["Keys"]["mid"] = {"S": mid}
    new["userId"] = {"S": user_id}
    new["name"] = {"S": name}
    new["ts"] = {"S": ts_key(at, mid)}
    new["properties"] = TypeSerializer().serialize(properties or {})
    return event


def profile_record(user_id: str) -> dict[str, Any]:
    """A contacts-table stream record of a changed profile."""
    cid = cid_of(user_id)
    table_arn = f"arn:aws:dynamodb:{REGION}:123456789012:table/{TABLES['CONTACTS_TABLE']}"
    return {
        "Records": [
            {
                "eventID": "2",
                "eventName": "MODIFY",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": REGION,
                "dynamodb": {
                    "Keys": {"cid": {"S": cid}, "sk": {"S": "profile"}},
                    "SequenceNumber": "5000000000000000000001",
                    "SizeBytes": 100,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
                "eventSourceARN": f"{table_arn}/stream/x",
            }
        ]
    }


def waiting_run(
    user_id: str, workflow_id: str, awaited: dict[str, Any] | None, token: str = "token-1"
) -> str:
    from tests.component.conftest import given_a_contact, given_an_open_run

    cid = given_a_contact(user_id, consent={"email": "subscribed"})
    run = given_an_open_run(cid, workflow_id)
    assert EnrollmentStore().park(cid, workflow_id, run, "came-back", token, wait_for=awaited)
    return cid


def test_the_awaited_event_answers_the_waiting_task_at_once(
    react: Handler, clock: FakeClock, token_answers: list[tuple[str, dict[str, Any]]]
) -> None:
    cid = waiting_run(
        "u-ann",
        "abandoned-cart",
        {"event": "email_clicked", "since": clock.now().isoformat(), "messageId": "m-1"},
    )
    react(stream_event("u-ann", "email_clicked", clock.now(), {"messageId": "m-other"}))
    assert token_answers == []  # a click on another email
    react(stream_event("u-ann", "email_clicked", clock.now(), {"messageId": "m-1"}))
    assert token_answers == [
        ("SendTaskSuccess", {"taskToken": "token-1", "output": '{"event": "email_clicked"}'})
    ]
    current = EnrollmentStore().get(cid, "abandoned-cart")
    assert current is not None and current.token is None and current.wait_for is None
    assert current.status == "active"


def test_a_goal_event_while_waiting_ends_the_run_converted(
    react: Handler,
    clock: FakeClock,
    token_answers: list[tuple[str, dict[str, Any]]],
    state_machines: dict[str, str],
) -> None:
    cid = waiting_run("u-ann", "abandoned-cart", None)
    clock.advance(timedelta(minutes=10))
    react(stream_event("u-ann", "order_completed", clock.now(), {"total": 80}))
    assert token_answers == [
        ("SendTaskFailure", {"taskToken": "token-1", "error": "ContactConverted", "cause": "goal"})
    ]
    current = EnrollmentStore().get(cid, "abandoned-cart")
    assert current is not None and (current.status, current.exit_reason) == ("converted", "goal")
    history = EventStore(ttl=timedelta(days=1)).history(cid, since=None)
    mine = [e.name for e in history if e.properties.get("workflowId") == "abandoned-cart"]
    assert mine == ["workflow_converted"]


def test_a_conversion_is_dated_by_the_goal_event_not_by_the_streams_delivery(
    react: Handler,
    clock: FakeClock,
    token_answers: list[tuple[str, dict[str, Any]]],
    state_machines: dict[str, str],
) -> None:
    cid = waiting_run("u-ann", "abandoned-cart", None)
    ordered = clock.now() + timedelta(minutes=10)
    clock.advance(timedelta(minutes=25))  # the stream delivers the order a quarter of an hour late
    react(stream_event("u-ann", "order_completed", ordered, {"total": 80}))
    current = EnrollmentStore().get(cid, "abandoned-cart")
    assert current is not None and (current.status, current.exited_at) == ("converted", ordered)
    history = EventStore(ttl=timedelta(days=1)).history(cid, since=None)
    [converted] = [e for e in history if e.name == "workflow_converted"]
    assert converted.timestamp == ordered


def test_a_run_is_measured_against_the_goal_of_the_version_it_entered_with(
    react: Handler,
    clock: FakeClock,
    token_answers: list[tuple[str, dict[str, Any]]],
    state_machines: dict[str, str],
) -> None:
    from tests.component.conftest import given_a_contact, given_an_open_run

    # The run entered a version whose goal was a booked demo; today's abandoned-cart goal is an order.
    cid = given_a_contact("u-ann", consent={"email": "subscribed"})
    entered = {"goal": {"event": "demo_booked", "within": "7d"}, "exitWhen": None}
    run = given_an_open_run(cid, "abandoned-cart", at=clock.now(), policy=entered)
    assert EnrollmentStore().park(cid, "abandoned-cart", run, "came-back", "token-1")
    clock.advance(timedelta(minutes=10))
    react(stream_event("u-ann", "order_completed", clock.now(), {"total": 80}))
    assert token_answers == []  # today's goal is not this run's goal
    assert EnrollmentStore().get(cid, "abandoned-cart").status == "active"  # type: ignore[union-attr]
    react(stream_event("u-ann", "demo_booked", clock.now()))
    assert token_answers == [
        ("SendTaskFailure", {"taskToken": "token-1", "error": "ContactConverted", "cause": "goal"})
    ]
    assert EnrollmentStore().get(cid, "abandoned-cart").status == "converted"  # type: ignore[union-attr]


def test_a_new_run_keeps_the_goal_and_exit_rule_of_the_version_it_enters(
    react: Handler, state_machines: dict[str, str], project: Any
) -> None:
    react(load_event("react/event-insert.json"))
    current = enrollment("u-ann")
    assert current is not None
    assert current.policy == project.site.workflows["welcome-series"].policy


def test_an_exit_rule_that_comes_to_hold_ends_the_run_exited(
    react: Handler, clock: FakeClock, token_answers: list[tuple[str, dict[str, Any]]]
) -> None:
    from tests.component.conftest import given_a_contact

    cid = waiting_run("u-ann", "abandoned-cart", None)
    ContactStore().merge_traits(cid, {}, now=clock.now())
    from cairn.adapters.journeys import StepChange, apply_change

    apply_change(cid, StepChange(add_tags=frozenset({"do-not-contact"})), now=clock.now())
    react(profile_record("u-ann"))
    assert token_answers[0][1]["error"] == "ContactExited"
    assert EnrollmentStore().get(cid, "abandoned-cart").status == "exited"  # type: ignore[union-attr]
    _ = given_a_contact


def test_a_throttled_start_is_retried_by_the_stream_and_enrolls_once(
    react: Handler, state_machines: dict[str, str]
) -> None:
    from cairn.adapters.aws import client

    throttled = {"left": 2}

    def throttle(model: Any, params: dict[str, Any], **_: Any) -> Any:
        if throttled["left"]:
            throttled["left"] -= 1

            class Http:
                status_code = 400
                headers: dict[str, str] = {}

            return Http(), {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
        return None

    client("stepfunctions").meta.events.register("before-call.sfn.StartExecution", throttle)
    ann = load_event("react/event-insert.json")["Records"][0]
    other = copy.deepcopy(ann)
    other["dynamodb"]["NewImage"]["name"] = {"S": "page_viewed"}
    other["dynamodb"]["SequenceNumber"] = str(int(ann["dynamodb"]["SequenceNumber"]) - 1)
    batch = {"Records": [other, ann]}
    sequence = ann["dynamodb"]["SequenceNumber"]

    # Throttled: the record is reported failed (the stream retries it), the run waits as `starting`
    assert react(batch) == {"batchItemFailures": [{"itemIdentifier": sequence}]}
    assert enrollment("u-ann").status == "starting"
    with pytest.raises(BatchProcessingError):  # a batch of only that record: retried as a whole
        react({"Records": [ann]})
    assert executions(state_machines["welcome-series"]) == []

    # Later the start goes through: one run, under the name it would have had
    assert react({"Records": [ann]}) == {"batchItemFailures": []}
    [run] = executions(state_machines["welcome-series"])
    assert run["name"] == f"{cid_of('u-ann')}-1"
    assert enrollment("u-ann").status == "active"
    assert enrollment("u-ann").run == 1


def test_two_racing_triggers_start_one_run(
    load_handler: Any, clock: FakeClock, state_machines: dict[str, str]
) -> None:
    from cairn.local import patches

    patches.patch_dynamodb_atomic()  # each DynamoDB request atomic, as on AWS (moto alone is not)
    try:
        handlers = [load_handler("react") for _ in range(8)]
        records = [stream_event("u-ann", "newsletter_subscribed", clock.now()) for _ in range(8)]
        barrier = threading.Barrier(len(handlers))
        results: list[Any] = []

        def go(handler: Handler, record: dict[str, Any]) -> None:
            barrier.wait()
            results.append(handler(record))

        threads = [threading.Thread(target=go, args=pair) for pair in zip(handlers, records, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        patches.restore()
    assert results == [{"batchItemFailures": []}] * 8
    [run] = executions(state_machines["welcome-series"])
    assert run["name"] == f"{cid_of('u-ann')}-1"
    assert enrollment("u-ann").run == 1


def test_a_profiles_date_attribute_is_indexed_by_month_day(react: Handler, clock: FakeClock) -> None:
    from tests.component.conftest import given_a_contact

    from cairn.adapters.journeys import DateIndex

    cid = given_a_contact("u-ann", traits={"birthday": "1990-05-17", "timezone": "Europe/Berlin"})
    react(profile_record("u-ann"))
    index = DateIndex()
    assert index.pointers(cid) == {"birthday": ("05-17", "Europe/Berlin")}
    assert list(index.members("birthday", "05-17")) == [(cid, "Europe/Berlin")]
    given_a_contact("u-ann", traits={"birthday": "1990-06-01"})
    react(profile_record("u-ann"))
    assert list(index.members("birthday", "05-17")) == []
    assert list(index.members("birthday", "06-01")) == [(cid, "Europe/Berlin")]


# ---------------------------------------------------------------- the workflow's status gates entries


def test_nobody_enters_a_paused_retired_or_globally_paused_workflow(
    react: Handler, clock: FakeClock, state_machines: dict[str, str]
) -> None:
    from dataclasses import replace

    from cairn.adapters.journeys import WorkflowStore
    from cairn.bootstrap import runtime
    from cairn.services.workflows import Workflows

    store = WorkflowStore()
    store.set_status("welcome-series", "paused", now=clock.now())
    react(load_event("react/event-insert.json"))
    assert executions(state_machines["welcome-series"]) == []

    store.set_status("welcome-series", "retired", now=clock.now())
    clock.advance(timedelta(seconds=10))
    react(load_event("react/event-insert.json"))
    assert executions(state_machines["welcome-series"]) == []

    store.set_status("welcome-series", "active", now=clock.now())
    rt = runtime()
    paused_site = replace(rt.site, settings=rt.site.settings.model_copy(update={"paused": True}))
    rt.__dict__["site"] = paused_site
    workflows = Workflows(rt)
    assert workflows.status("welcome-series") == "paused"  # settings.yaml's `paused: true`
    assert workflows.paused("welcome-series")
    assert workflows.status("no-longer-a-file") == "retired"  # a removed workflow file retires it

    clock.advance(timedelta(seconds=10))  # the react function's cached status is now stale
    react(load_event("react/event-insert.json"))  # active again: the contact enters
    assert len(executions(state_machines["welcome-series"])) == 1
