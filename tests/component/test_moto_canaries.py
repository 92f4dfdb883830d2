"""Canaries for the moto internals that local mode takes over (cairn/local/patches.py).

Each is private API of moto 5.2.x: when an upgrade moves or reshapes one, the canary names it, instead of
local mode hanging on a real-time wait or silently sending records the old way.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from tests.conftest import ACCOUNT, REGION

from cairn.local import patches
from cairn.local.clock import VirtualClock

SFN = "moto.stepfunctions.parser"
# (module, attribute path, parameter names) of every moto internal local mode replaces or calls.
INTERNALS = [
    (
        f"{SFN}.asl.component.state.exec.execute_state",
        "ExecutionState._evaluate_with_timeout",
        ["self", "env"],
    ),
    (f"{SFN}.asl.eval.callback.callback", "CallbackEndpoint.wait", ["self", "timeout"]),
    (f"{SFN}.asl.eval.callback.callback", "CallbackEndpoint.notify", ["self", "outcome"]),
    (f"{SFN}.asl.eval.callback.callback", "CallbackEndpoint.interrupt_all", ["self"]),
    (
        f"{SFN}.asl.component.state.wait.wait_function.wait_function",
        "WaitFunction._wait_interval",
        ["self", "env", "wait_seconds"],
    ),
    (f"{SFN}.asl.eval.event.event_manager", "EventManager._get_current_timestamp", []),
    (f"{SFN}.backend.execution_worker", "ExecutionWorker._execution_logic", ["self"]),
    (f"{SFN}.backend.execution", "Execution.start", ["self"]),
    ("moto.awslambda.models", "LambdaFunction._invoke_lambda", ["self", "event"]),
    ("moto.dynamodb.models.table", "StreamShard.add", ["self", "old", "new"]),
    (
        "moto.dynamodb.models.table",
        "StreamRecord.__init__",
        ["self", "table", "stream_type", "event_name", "old", "new", "seq"],
    ),
    ("moto.dynamodb.models.table", "StreamRecord.to_json", ["self"]),
    ("moto.dynamodb.responses", "DynamoHandler.call_action", ["self"]),
]
START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
ROLE = f"arn:aws:iam::{ACCOUNT}:role/canary"


def resolve(module: str, path: str) -> Any:
    owner: Any = importlib.import_module(module)
    for part in path.split("."):
        owner = getattr(owner, part)
    return owner


@pytest.mark.parametrize(("module", "path", "params"), INTERNALS, ids=[i[1] for i in INTERNALS])
def test_the_internal_exists_with_its_signature(module: str, path: str, params: list[str]) -> None:
    target = resolve(module, path)
    assert callable(target)
    assert list(inspect.signature(target).parameters) == params


def test_get_current_timestamp_is_a_staticmethod() -> None:
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager

    assert isinstance(EventManager.__dict__["_get_current_timestamp"], staticmethod)
    assert isinstance(EventManager._get_current_timestamp(), datetime)


def test_retry_backoff_sleeps_through_the_time_module_of_retrier_decl() -> None:
    import time as time_module

    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    assert retrier_decl.time is time_module  # patches swap this module attribute
    source = inspect.getsource(retrier_decl)
    assert "time.sleep(" in source
    assert "from time import" not in source


def test_the_state_module_reads_now_through_its_datetime_module_attribute() -> None:
    """`$$.State.EnteredTime` comes from `datetime.datetime.now(...)` in moto's state.py; local mode swaps
    that module attribute for one on the virtual clock."""
    import datetime as datetime_module

    from moto.stepfunctions.parser.asl.component.state import state as state_module

    assert state_module.datetime is datetime_module
    assert "datetime.datetime.now(" in inspect.getsource(state_module)


def test_invoke_lambda_returns_payload_errored_and_logs() -> None:
    from moto.awslambda.models import LambdaFunction

    assert "tuple[str, bool, str]" in str(inspect.signature(LambdaFunction._invoke_lambda).return_annotation)


def test_a_stream_shard_has_what_the_stream_patch_reads() -> None:
    with mock_aws():
        from moto.dynamodb.models import dynamodb_backends

        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName="canary",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        table = dynamodb_backends[ACCOUNT][REGION].tables["canary"]
        shard = table.stream_shard
        assert shard is not None and shard.table is table
        assert isinstance(shard.starting_sequence_number, int)
        assert table.stream_specification["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert table.latest_stream_label
        assert table.table_arn.endswith(":table/canary")
        assert table.region_name == REGION


# ---------------------------------------------------------------- behaviour on the virtual clock


@pytest.fixture
def executing() -> Iterator[VirtualClock]:
    """moto executing state machines, with local mode's Step Functions patches on a virtual clock."""
    clock = VirtualClock(START)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        patches.patch_stepfunctions(clock)
        try:
            yield clock
        finally:
            patches.restore()
            clock.settle(5)


def start(definition: dict[str, Any]) -> str:
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(name="canary", definition=json.dumps(definition), roleArn=ROLE)[
        "stateMachineArn"
    ]
    execution: str = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    return execution


def describe(execution: str) -> dict[str, Any]:
    found: dict[str, Any] = boto3.client("stepfunctions", region_name=REGION).describe_execution(
        executionArn=execution
    )
    return found


def advance(clock: VirtualClock, delta: timedelta) -> None:
    _, idle = clock.advance(clock.now() + delta, budget=10)
    assert idle, "work still running after the real-time budget"


def test_a_one_day_wait_state_ends_when_the_virtual_clock_moves_a_day(executing: VirtualClock) -> None:
    began = time.monotonic()
    execution = start(
        {
            "StartAt": "Wait a day",
            "States": {
                "Wait a day": {"Type": "Wait", "Seconds": 86400, "Next": "Done"},
                "Done": {"Type": "Succeed"},
            },
        }
    )

    advance(executing, timedelta(hours=23, minutes=59))
    assert describe(execution)["status"] == "RUNNING"
    advance(executing, timedelta(minutes=1))

    assert describe(execution)["status"] == "SUCCEEDED"
    assert time.monotonic() - began < 1.0


def _lambda(invoked: list[dict[str, Any]]) -> str:
    """A function in moto whose invocations go to `invoked` in-process (patch_lambda), never to Docker."""
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="canary-lambda",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return {}\n")
    arn: str = boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="canary",
        Runtime="python3.13",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": code.getvalue()},
    )["FunctionArn"]

    def invoke(name: str, event: dict[str, Any]) -> tuple[str, bool]:
        invoked.append({"function": name, "event": event})
        return json.dumps({"parked": True}), False

    patches.patch_lambda(invoke)
    return arn


def test_a_task_token_wait_times_out_on_the_virtual_clock(executing: VirtualClock) -> None:
    invoked: list[dict[str, Any]] = []
    function = _lambda(invoked)
    began = time.monotonic()
    execution = start(
        {
            "StartAt": "Wait for a callback",
            "States": {
                "Wait for a callback": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                    "Parameters": {"FunctionName": function, "Payload": {"token.$": "$$.Task.Token"}},
                    "TimeoutSeconds": 3600,
                    "End": True,
                }
            },
        }
    )

    advance(executing, timedelta(minutes=59))
    assert describe(execution)["status"] == "RUNNING"
    assert [call["function"] for call in invoked] == ["canary"]
    assert invoked[0]["event"]["token"]
    advance(executing, timedelta(minutes=1))

    ended = describe(execution)
    assert ended["status"] == "FAILED"
    assert ended["error"] == "States.Timeout"
    assert time.monotonic() - began < 2.0


def test_a_task_token_wait_ends_at_once_on_send_task_success(executing: VirtualClock) -> None:
    invoked: list[dict[str, Any]] = []
    function = _lambda(invoked)
    execution = start(
        {
            "StartAt": "Wait for a callback",
            "States": {
                "Wait for a callback": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                    "Parameters": {"FunctionName": function, "Payload": {"token.$": "$$.Task.Token"}},
                    "TimeoutSeconds": 3600,
                    "End": True,
                }
            },
        }
    )
    advance(executing, timedelta(0))

    boto3.client("stepfunctions", region_name=REGION).send_task_success(
        taskToken=invoked[0]["event"]["token"], output=json.dumps({"woken": True})
    )
    advance(executing, timedelta(0))

    ended = describe(execution)
    assert ended["status"] == "SUCCEEDED"
    assert json.loads(ended["output"]) == {"woken": True}
    assert executing.now() == START  # no virtual time passed


def test_restore_puts_every_original_back() -> None:
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

    original: Callable[..., Any] = WaitFunction.__dict__["_wait_interval"]
    patches.patch_stepfunctions(VirtualClock(START))
    try:
        assert WaitFunction.__dict__["_wait_interval"] is not original
    finally:
        patches.restore()
    assert WaitFunction.__dict__["_wait_interval"] is original
