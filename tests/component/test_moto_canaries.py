"""Canaries for the moto internals that local mode takes over (cairn/local/patches.py).

Each is private API of moto 5.2.x: when an upgrade moves or reshapes one, the canary names it, instead of
local mode hanging on a real-time wait or silently sending records the old way.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
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
    ("moto.dynamodb.models", "DynamoDBBackend.transact_write_items", ["self", "transact_items"]),
    ("moto.dynamodb.models", "DynamoDBBackend.get_keys_value", ["self", "table", "keys"]),
    (
        "moto.dynamodb.models.table",
        "Table.get_item",
        ["self", "hash_key", "range_key", "projection_expression"],
    ),
    (f"{SFN}.asl.parse.asl_parser", "AmazonStateLanguageParser.parse", ["definition"]),
    (f"{SFN}.models", "StepFunctionsParserBackend._validate_definition", ["definition"]),
    (f"{SFN}.asl.eval.environment", "Environment.set_stop", ["self", "stop_date", "cause", "error"]),
    (f"{SFN}.asl.eval.environment", "Environment.set_ended", ["self"]),
    (f"{SFN}.asl.eval.environment", "Environment.set_error", ["self", "error"]),
    (f"{SFN}.asl.eval.environment", "Environment.set_timed_out", ["self"]),
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


def test_executions_read_now_through_the_datetime_module_attribute_of_their_modules() -> None:
    """StartExecution's startDate and the end's stopDate come from `datetime.datetime.now(tz=...)` in these
    two modules; local mode swaps their `datetime` attribute for one on the virtual clock."""
    import datetime as datetime_module

    from moto.stepfunctions.parser import models
    from moto.stepfunctions.parser.backend import execution

    for module in (models, execution):
        assert module.datetime is datetime_module
        assert "datetime.datetime.now(tz=datetime.timezone.utc)" in inspect.getsource(module)


def test_the_execution_worker_and_validation_parse_through_the_asl_parser_class() -> None:
    """patch_asl_parsing swaps AmazonStateLanguageParser.parse: both callers must reach it through the class,
    and it must still be lexer, parser, `state_machine()` then Preprocessor().visit(tree)."""
    from moto.stepfunctions.parser.asl.parse import asl_parser
    from moto.stepfunctions.parser.backend import execution_worker

    assert "AmazonStateLanguageParser.parse(" in inspect.getsource(execution_worker.ExecutionWorker)
    assert isinstance(asl_parser.AmazonStateLanguageParser.__dict__["parse"], staticmethod)
    source = inspect.getsource(asl_parser.AmazonStateLanguageParser.parse)
    for step in ("ASLLexer(", "ASLParser(", ".state_machine()", "SyntaxErrorListener()", "Preprocessor()"):
        assert step in source


def test_a_transaction_backs_up_its_tables_with_the_copy_module_of_the_backend() -> None:
    """patch_dynamodb_transactions makes `copy.deepcopy(table)` inside transact_write_items a no-op and keeps
    the written items itself: the backend must still copy through its `copy` module attribute, and a table
    must keep its items in `items[hash]` / `items[hash][range]`."""
    import copy as copy_module

    from moto.dynamodb import models

    assert models.copy is copy_module
    source = inspect.getsource(models.DynamoDBBackend.transact_write_items)
    assert "copy.deepcopy(" in source and "self.tables[table_name] = original_table_state" in source
    put = inspect.getsource(models.Table.put_item)
    assert "self.items[hash_value][range_value] = item" in put and "self.items[hash_value] = item" in put


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


def waiting_for_a_callback(function: str) -> dict[str, Any]:
    """A definition of one Task state: invoke `function` with the task token, wait an hour at most."""
    return {
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


def test_a_task_token_wait_times_out_on_the_virtual_clock(executing: VirtualClock) -> None:
    invoked: list[dict[str, Any]] = []
    function = _lambda(invoked)
    began = time.monotonic()
    execution = start(waiting_for_a_callback(function))

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
    execution = start(waiting_for_a_callback(function))
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


def test_entered_time_start_and_stop_dates_are_on_the_virtual_clock(executing: VirtualClock) -> None:
    execution = start(
        {
            "StartAt": "Wait an hour",
            "States": {
                "Wait an hour": {"Type": "Wait", "Seconds": 3600, "Next": "Stamp"},
                "Stamp": {
                    "Type": "Pass",
                    # ($$.Execution.StartTime is a datetime object in moto 5.2: not JSON, not used)
                    "Parameters": {"entered.$": "$$.State.EnteredTime"},
                    "End": True,
                },
            },
        }
    )
    advance(executing, timedelta(hours=1))

    ended = describe(execution)
    assert (ended["startDate"], ended["stopDate"]) == (START, START + timedelta(hours=1))
    entered = json.loads(ended["output"])["entered"]
    assert datetime.fromisoformat(entered) == START + timedelta(hours=1)
    [listed] = boto3.client("stepfunctions", region_name=REGION).list_executions(
        stateMachineArn=ended["stateMachineArn"]
    )["executions"]
    assert listed["startDate"] == START


def test_stop_execution_ends_a_waiting_run_at_once(executing: VirtualClock) -> None:
    execution = start(
        {
            "StartAt": "Wait a day",
            "States": {"Wait a day": {"Type": "Wait", "Seconds": 86400, "End": True}},
        }
    )
    advance(executing, timedelta(0))
    assert executing.pending() == [START + timedelta(days=1)]

    boto3.client("stepfunctions", region_name=REGION).stop_execution(executionArn=execution)
    advance(executing, timedelta(0))

    assert describe(execution)["status"] == "ABORTED"
    assert executing.pending() == []  # the run's thread ended; nothing left for the clock to wake
    assert executing.now() == START


def test_each_definition_is_parsed_once_yet_every_run_evaluates_its_own_input(
    executing: VirtualClock,
) -> None:
    from moto.stepfunctions.parser.asl.antlr.runtime.ASLParser import ASLParser

    patches.patch_asl_parsing()
    definition = {
        "StartAt": "Echo",
        "States": {"Echo": {"Type": "Pass", "Parameters": {"got.$": "$.n"}, "End": True}},
    }
    sfn = boto3.client("stepfunctions", region_name=REGION)
    arn = sfn.create_state_machine(name="parsed", definition=json.dumps(definition), roleArn=ROLE)[
        "stateMachineArn"
    ]
    parses = 0
    original = ASLParser.state_machine

    def counting(self: Any) -> Any:
        nonlocal parses
        parses += 1
        return original(self)

    ASLParser.state_machine = counting  # type: ignore[method-assign]
    try:
        runs = [
            sfn.start_execution(stateMachineArn=arn, name=f"run-{n}", input=json.dumps({"n": n}))[
                "executionArn"
            ]
            for n in (1, 2)
        ]
        advance(executing, timedelta(0))
    finally:
        ASLParser.state_machine = original  # type: ignore[method-assign]
    assert [json.loads(describe(run)["output"]) for run in runs] == [{"got": 1}, {"got": 2}]
    assert parses == 0  # parsed when the state machine was created, not again for each run
    broken = json.dumps({"StartAt": "Nowhere", "States": {"Echo": {"Type": "Pazz", "End": True}}})
    for _ in range(2):  # refused every time: a failed parse is not remembered as valid
        with pytest.raises(ClientError, match="ASLParserException"):
            sfn.create_state_machine(name="broken", definition=broken, roleArn=ROLE)


@pytest.fixture
def transactions() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """A table in moto with local mode's DynamoDB and stream patches; stream records go to the list."""
    records: list[tuple[str, dict[str, Any]]] = []
    with mock_aws():
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName="ledger",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        patches.patch_dynamodb_atomic()
        patches.patch_dynamodb_transactions()
        patches.patch_streams(lambda table, record: records.append((table, record)))
        try:
            yield records
        finally:
            patches.restore()


def put(sk: str, balance: int, condition: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "TableName": "ledger",
        "Item": {"pk": {"S": "a"}, "sk": {"S": sk}, "n": {"N": str(balance)}},
    }
    if condition:
        item["ConditionExpression"] = condition
    return {"Put": item}


def items() -> dict[str, str]:
    found = boto3.client("dynamodb", region_name=REGION).scan(TableName="ledger")["Items"]
    return {i["sk"]["S"]: i["n"]["N"] for i in found}


def test_a_cancelled_transaction_writes_nothing_and_streams_nothing(
    transactions: list[tuple[str, dict[str, Any]]],
) -> None:
    ddb = boto3.client("dynamodb", region_name=REGION)
    ddb.transact_write_items(TransactItems=[put("x", 1), put("y", 1)])
    assert items() == {"x": "1", "y": "1"}
    assert [r["eventName"] for _, r in transactions] == ["INSERT", "INSERT"]  # out once committed

    with pytest.raises(ddb.exceptions.TransactionCanceledException):
        ddb.transact_write_items(
            TransactItems=[
                put("x", 2),  # written first by moto, then undone
                {
                    "Update": {
                        "TableName": "ledger",
                        "Key": {"pk": {"S": "a"}, "sk": {"S": "y"}},
                        "UpdateExpression": "SET n = :n",
                        "ExpressionAttributeValues": {":n": {"N": "2"}},
                    }
                },
                put("z", 2),  # new, then undone
                put("w", 2, condition="attribute_exists(pk)"),  # fails: cancels the transaction
            ]
        )
    assert items() == {"x": "1", "y": "1"}
    assert len(transactions) == 2  # nothing from the cancelled transaction reached the stream


def test_an_update_that_creates_an_item_streams_one_insert_with_the_whole_item(
    transactions: list[tuple[str, dict[str, Any]]],
) -> None:
    """moto's UpdateItem of a new item puts its bare keys first; DynamoDB streams only the write itself."""
    ddb = boto3.client("dynamodb", region_name=REGION)
    update = {
        "TableName": "ledger",
        "UpdateExpression": "SET n = :n",
        "ExpressionAttributeValues": {":n": {"N": "7"}},
    }
    ddb.update_item(Key={"pk": {"S": "a"}, "sk": {"S": "u"}}, **update)
    ddb.transact_write_items(
        TransactItems=[{"Update": {"Key": {"pk": {"S": "a"}, "sk": {"S": "t"}}, **update}}]
    )
    ddb.update_item(Key={"pk": {"S": "a"}, "sk": {"S": "u"}}, **update)  # an existing item: MODIFY
    streamed = [(r["eventName"], r["dynamodb"]["NewImage"]["sk"]["S"]) for _, r in transactions]
    assert streamed == [("INSERT", "u"), ("INSERT", "t"), ("MODIFY", "u")]
    assert all(r["dynamodb"]["NewImage"]["n"] == {"N": "7"} for _, r in transactions)


def test_dynamodb_requests_run_one_at_a_time(transactions: list[tuple[str, dict[str, Any]]]) -> None:
    """The atomic-write patch serialises requests in DynamoHandler.call_action: a request waits while
    another holds the lock (if moto stopped dispatching through call_action, it would not)."""
    done = threading.Event()

    def write() -> None:
        boto3.client("dynamodb", region_name=REGION).transact_write_items(TransactItems=[put("q", 1)])
        done.set()

    boto3.client("dynamodb", region_name=REGION)  # the client is built outside the lock
    with patches._DYNAMODB_LOCK:
        writer = threading.Thread(target=write)
        writer.start()
        assert not done.wait(0.3)
        assert "q" not in _raw_items()
    writer.join(5)
    assert done.is_set() and items() == {"q": "1"}


def _raw_items() -> set[str]:
    """The table's keys read from moto's backend directly (not through a request, which would wait)."""
    from moto.dynamodb.models import dynamodb_backends

    table = dynamodb_backends[ACCOUNT][REGION].tables["ledger"]
    return {range_key.value for by_range in table.items.values() for range_key in by_range}


# ---------------------------------------------------------------- SES v2 calls moto lacks


def test_moto_still_lacks_the_ses_calls_local_mode_answers() -> None:
    """When moto implements GetAccount or DeleteSuppressedDestination, drop `patch_ses_account`."""
    from moto.sesv2.responses import SESV2Response

    assert "get_account" not in SESV2Response.__dict__
    assert "delete_suppressed_destination" not in SESV2Response.__dict__
    assert callable(resolve("moto.ses.models", "SESBackend.get_send_quota"))


def test_local_mode_answers_get_account_with_motos_quota_and_an_empty_suppression_list() -> None:
    with mock_aws():
        patches.patch_ses_account()
        try:
            ses = boto3.client("sesv2", region_name=REGION)
            ses.create_email_identity(EmailIdentity="example.com")
            assert ses.get_account()["SendQuota"]["SentLast24Hours"] == 0
            ses.send_email(
                FromEmailAddress="hello@example.com",
                Destination={"ToAddresses": ["ann@example.com"]},
                Content={"Simple": {"Subject": {"Data": "Hi"}, "Body": {"Text": {"Data": "Hello"}}}},
            )
            quota = ses.get_account()["SendQuota"]
            assert (quota["SentLast24Hours"], quota["Max24HourSend"]) == (1, 200)
            with pytest.raises(ClientError) as raised:
                ses.delete_suppressed_destination(EmailAddress="ann@example.com")
            assert raised.value.response["Error"]["Code"] == "NotFoundException"
        finally:
            patches.restore()
        from moto.sesv2.responses import SESV2Response

        assert "get_account" not in SESV2Response.__dict__  # restore() takes them away again
