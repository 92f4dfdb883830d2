"""The react function: DynamoDB stream records of the events table start workflow runs, once."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from tests.component.conftest import FakeClock, Handler, cid_of, create_state_machines, load_event
from tests.conftest import REGION, TABLES

from cairn.adapters.contacts import ContactStore, Enrollment, EnrollmentStore


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
