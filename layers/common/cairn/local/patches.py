"""The moto internals local mode takes over (each has a canary test in tests/component/test_moto_canaries.py).

- Step Functions: waits, task timeouts, task-token callbacks and retry back-off run on the virtual clock;
  executions hold a unit of `busy` while they run; history timestamps read the virtual clock.
- Lambda: invocations call the real handlers in-process instead of a Docker container.
- DynamoDB Streams: records go to local mode's own asynchronous, ordered dispatcher instead of being
  delivered synchronously inside the writer's put_item.
- DynamoDB: each request runs alone (conditional writes are atomic, as on AWS); TransactWriteItems keeps
  only the items it writes (not deep copies of whole tables) and streams nothing if it is cancelled.
- Step Functions parsing: each distinct definition is parsed once per process (the ANTLR tree is kept;
  evaluation components are built afresh for every execution).
"""

from __future__ import annotations

import copy
import datetime
import functools
import json
import threading
from collections.abc import Callable
from typing import Any

from cairn.local.clock import VirtualClock

_ORIGINALS: dict[tuple[Any, str], Any] = {}


def _swap(owner: Any, name: str, new: Any) -> None:
    _ORIGINALS.setdefault((owner, name), owner.__dict__[name])
    setattr(owner, name, new)


_ADDED: list[tuple[Any, str]] = []


def _add(owner: Any, name: str, new: Any) -> None:
    """Give a moto class an operation it does not implement (a canary tells when it starts to)."""
    if name not in owner.__dict__:
        _ADDED.append((owner, name))
    setattr(owner, name, new)


def restore() -> None:
    for (owner, name), original in _ORIGINALS.items():
        setattr(owner, name, original)
    _ORIGINALS.clear()
    for owner, name in _ADDED:
        if name in owner.__dict__:
            delattr(owner, name)
    _ADDED.clear()


def patch_stepfunctions(clock: VirtualClock) -> None:
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import EvalTimeoutError
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
    from moto.stepfunctions.parser.backend.execution import Execution
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    # An execution holds a unit of busy from StartExecution until its program ends.
    original_start = Execution.start

    def start(self: Any) -> None:
        clock.enter()
        try:
            original_start(self)
        except BaseException:
            clock.leave()
            raise

    original_logic = ExecutionWorker._execution_logic

    def execution_logic(self: Any) -> None:
        try:
            original_logic(self)
        finally:
            clock.leave()

    _swap(Execution, "start", start)
    _swap(ExecutionWorker, "_execution_logic", execution_logic)

    # Wait states: virtual time. StopExecution (or the program ending another way, e.g. a failing branch)
    # wakes the parked wait at once, as moto's program_state_event does for its real-time wait.
    waiting: dict[int, Any] = {}

    def wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
        if wait_seconds > 0 and env.is_running():
            park = clock.park(wait_seconds)
            waiting[id(env)] = park
            if not env.is_running():  # stopped between the check and the park
                park.wake()
            clock.wait(park)
            waiting.pop(id(env), None)

    def waking(original: Callable[..., None]) -> Callable[..., None]:
        def changed(self: Any, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            park = waiting.get(id(self))
            if park is not None:
                park.wake()

        return changed

    _swap(WaitFunction, "_wait_interval", wait_interval)
    for name in ("set_stop", "set_ended", "set_error", "set_timed_out"):
        _swap(Environment, name, waking(getattr(Environment, name)))

    # Task timeouts (TimeoutSeconds): the parent parks on the virtual clock while the task runs.
    def evaluate_with_timeout(self: Any, env: Any) -> None:
        self.timeout.eval(env=env)
        timeout_seconds: int = env.stack.pop()
        frame = env.open_frame()
        frame.states.reset(input_value=env.states.get_input())
        frame.stack = copy.deepcopy(env.stack)
        outputs: list[Any] = []
        exceptions: list[BaseException | None] = [None]
        park_box: list[Any] = []
        started = threading.Event()

        def run() -> None:
            try:
                self._eval_execution(frame)
                outputs.extend(frame.stack)
            except Exception as ex:
                exceptions.append(ex)
            finally:
                started.wait()
                park_box[0].wake()  # takes the parent's unit back before the parent can be seen idle
                clock.leave()

        clock.enter()
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        park = clock.park(timeout_seconds)
        park_box.append(park)
        started.set()
        timed_out = clock.wait(park)
        frame.set_ended()
        env.close_frame(frame)
        exception = exceptions.pop()
        if exception is not None and not timed_out:
            raise exception
        if timed_out:
            raise EvalTimeoutError()
        output = outputs.pop()
        env.stack.append(output)
        if not self._is_language_query_jsonpath():
            env.states.set_result(output)
        if self.assign_decl:
            self.assign_decl.eval(env=env)
        if self.result_selector:
            self.result_selector.eval(env=env)
        if self.result_path:
            self.result_path.eval(env)
        else:
            env.states.reset(input_value=env.stack.pop())

    _swap(ExecutionState, "_evaluate_with_timeout", evaluate_with_timeout)

    # Task-token callbacks: parked until SendTaskSuccess/Failure (or the virtual timeout).
    parks: dict[int, Any] = {}

    def cb_wait(self: Any, timeout: float | None = None) -> Any:
        if not self._notify_event.is_set():
            park = clock.park(timeout, counted=False)
            parks[id(self)] = park
            if self._notify_event.is_set():  # notified between the check and the park
                park.wake()
            clock.wait(park)
            parks.pop(id(self), None)
        return self._outcome

    original_notify = CallbackEndpoint.notify
    original_interrupt = CallbackEndpoint.interrupt_all

    def cb_notify(self: Any, outcome: Any) -> None:
        original_notify(self, outcome)
        park = parks.get(id(self))
        if park is not None:
            park.wake()

    def cb_interrupt(self: Any) -> None:
        original_interrupt(self)
        park = parks.get(id(self))
        if park is not None:
            park.wake()

    _swap(CallbackEndpoint, "wait", cb_wait)
    _swap(CallbackEndpoint, "notify", cb_notify)
    _swap(CallbackEndpoint, "interrupt_all", cb_interrupt)

    # Retry back-off sleeps on the virtual clock too.
    class _VirtualTime:
        @staticmethod
        def sleep(seconds: float) -> None:
            clock.sleep(seconds, counted=False)

        @staticmethod
        def time() -> float:
            return clock.now().timestamp()

    _swap(retrier_decl, "time", _VirtualTime)

    # History timestamps (GET /_local/executions) on the virtual clock.
    def current_timestamp() -> datetime.datetime:
        return clock.now()

    _swap(EventManager, "_get_current_timestamp", staticmethod(current_timestamp))

    # `$$.State.EnteredTime` (a wait_for step's start), and each execution's startDate and stopDate
    # (GET /_local/executions), on the virtual clock too.
    from moto.stepfunctions.parser import models as parser_models
    from moto.stepfunctions.parser.asl.component.state import state as state_module
    from moto.stepfunctions.parser.backend import execution as execution_module

    class _VirtualDatetime(datetime.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            moment = clock.now()
            return moment.astimezone(tz) if tz is not None else moment

    class _VirtualDatetimeModule:  # stands in for the `datetime` module inside moto's state.py
        timezone = datetime.timezone
        datetime = _VirtualDatetime

    for module in (state_module, parser_models, execution_module):
        _swap(module, "datetime", _VirtualDatetimeModule)


@functools.lru_cache(maxsize=512)
def _asl_tree(definition: str) -> Any:
    """The ANTLR parse tree of a definition (syntax errors raise, and are not cached)."""
    from antlr4 import CommonTokenStream, InputStream
    from moto.stepfunctions.parser.asl.antlr.runtime.ASLLexer import ASLLexer
    from moto.stepfunctions.parser.asl.antlr.runtime.ASLParser import ASLParser
    from moto.stepfunctions.parser.asl.parse.asl_parser import ASLParserException, SyntaxErrorListener

    listener = SyntaxErrorListener()
    parser = ASLParser(CommonTokenStream(ASLLexer(InputStream(definition))))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    tree = parser.state_machine()
    if listener.errors:
        raise ASLParserException(errors=listener.errors)
    return tree


_VALID_DEFINITIONS: set[str] = set()


def patch_asl_parsing() -> None:
    """Parse each distinct definition once per process, not on every CreateStateMachine and StartExecution.

    moto parses the definition with ANTLR when a state machine is created (to validate it) and again when
    each execution starts; that was most of local mode's start-up and a share of every run. The parse
    tree depends on the text alone, so it is kept; the evaluation components are built afresh from it for
    every execution (they hold per-run state), exactly as moto builds them. Invalid definitions are never
    cached: they fail the same way every time.
    """
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    def parse(definition: str) -> tuple[Any, Any]:
        tree = _asl_tree(definition)
        return Preprocessor().visit(tree), tree

    original_validate = StepFunctionsParserBackend._validate_definition

    def validate_definition(definition: str) -> None:
        if definition not in _VALID_DEFINITIONS:
            original_validate(definition=definition)
            _VALID_DEFINITIONS.add(definition)

    _swap(AmazonStateLanguageParser, "parse", staticmethod(parse))
    _swap(StepFunctionsParserBackend, "_validate_definition", staticmethod(validate_definition))


def patch_lambda(invoke: Callable[[str, dict[str, Any]], tuple[str, bool]]) -> None:
    """Route every Lambda invocation (API, Step Functions tasks) to `invoke(function_name, event)`."""
    import json

    from moto.awslambda.models import LambdaFunction

    def _invoke_lambda(self: Any, event: str | bytes | dict[str, Any] | None = None) -> tuple[str, bool, str]:
        if isinstance(event, str | bytes | bytearray):
            payload = json.loads(event) if event else {}
        else:
            payload = event or {}
        body, errored = invoke(self.function_name, payload)
        return body, errored, ""

    _swap(LambdaFunction, "_invoke_lambda", _invoke_lambda)


_DYNAMODB_LOCK = threading.RLock()


def patch_dynamodb_atomic() -> None:
    """One DynamoDB request at a time, as the service makes each request atomic: moto checks a condition
    and writes the item in separate steps, so two racing conditional writes could both succeed."""
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    def call_action(self: Any) -> Any:
        with _DYNAMODB_LOCK:
            return original(self)

    _swap(DynamoHandler, "call_action", call_action)


_TRANSACTION = threading.local()


class _TableCopyIsTheTable:
    """Stands in for the `copy` module inside moto's DynamoDB backend: during a TransactWriteItems, the
    "backup" of a table is the table itself (the transaction patch keeps the items it may write instead);
    every other deep copy (an item's old image in UpdateItem) is a real one."""

    @staticmethod
    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        from moto.dynamodb.models.table import Table

        if getattr(_TRANSACTION, "active", False) and isinstance(value, Table):
            return value
        return copy.deepcopy(value, memo)

    copy = staticmethod(copy.copy)


def _transaction_keys(backend: Any, transact_items: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
    """(table, hash key, range key) of every item a TransactWriteItems may write (malformed ones skipped:
    moto refuses them before writing)."""
    keys: list[tuple[Any, Any, Any]] = []
    for entry in transact_items:
        for op_type, op in entry.items():
            table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
            if table is None or op_type not in ("Put", "Delete", "Update"):
                continue
            key = op.get("Item") if op_type == "Put" else op.get("Key")
            try:
                hash_key, range_key = backend.get_keys_value(table, key or {})
            except Exception:  # the original call refuses it
                continue
            keys.append((table, hash_key, range_key))
    return keys


def patch_dynamodb_transactions() -> None:
    """TransactWriteItems without deep copies of whole tables, and without stream records when cancelled.

    moto backs up every table a transaction touches with `copy.deepcopy` (once per item, each time the
    whole table), writes the items one by one and swaps the backups back if any fails: a cost that grows
    with the table, and the stream records of the items written before the failure were already out. Here
    only the items the transaction may write are kept (requests run one at a time, patch_dynamodb_atomic),
    the stream records wait until it commits, and a cancelled transaction puts those items back and drops
    its records: all or nothing, as on AWS.
    """
    from moto.dynamodb import models as dynamodb_models
    from moto.dynamodb.models import DynamoDBBackend

    original = DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        saved = [
            (table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key)))
            for table, hash_key, range_key in _transaction_keys(self, transact_items)
        ]
        _TRANSACTION.active, _TRANSACTION.records = True, []
        try:
            original(self, transact_items)
        except BaseException:
            for table, hash_key, range_key, item in reversed(saved):
                _put_back(table, hash_key, range_key, item)
            raise
        else:
            records = _TRANSACTION.records
        finally:
            _TRANSACTION.active = False
        for deliver, table_name, record in records:
            deliver(table_name, record)

    _swap(dynamodb_models, "copy", _TableCopyIsTheTable)
    _swap(DynamoDBBackend, "transact_write_items", transact_write_items)


def _put_back(table: Any, hash_key: Any, range_key: Any, item: Any) -> None:
    """Restore one item of a moto table as it was (None: absent)."""
    if range_key is not None:
        if item is None:
            table.items.get(hash_key, {}).pop(range_key, None)
        else:
            table.items[hash_key][range_key] = item
    elif item is None:
        table.items.pop(hash_key, None)
    else:
        table.items[hash_key] = item


def patch_ses_account() -> None:
    """The two SES v2 calls Cairn makes that moto does not implement, answered as SES would:
    `GetAccount` with moto's own sending quota (its SES v1 `GetSendQuota`: the sandbox's 200 a day, counting
    what was sent), and `DeleteSuppressedDestination` on the account-level suppression list, which local
    mode keeps empty (bounces and complaints are Cairn's own suppression, not SES's): NotFoundException."""
    from moto.core.exceptions import JsonRESTError
    from moto.sesv2.responses import SESV2Response

    def get_account(self: Any) -> str:
        quota = self.sesv2_backend.core_backend.get_send_quota()
        return json.dumps(
            {
                "SendQuota": {
                    "Max24HourSend": float(quota.max24_hour_send),
                    "MaxSendRate": float(quota.max_send_rate),
                    "SentLast24Hours": float(quota.sent_last24_hours),
                },
                "SendingEnabled": True,
                "ProductionAccessEnabled": False,
            }
        )

    def delete_suppressed_destination(self: Any) -> str:
        raise JsonRESTError("NotFoundException", "the address is not on the account suppression list")

    _add(SESV2Response, "get_account", get_account)
    _add(SESV2Response, "delete_suppressed_destination", delete_suppressed_destination)


def patch_streams(deliver: Callable[[str, dict[str, Any]], None]) -> None:
    """Hand every stream record to `deliver(table_name, record)` instead of invoking consumers inline."""
    from moto.core.utils import unix_time
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import StreamRecord, StreamShard

    def add(self: Any, old: Any, new: Any) -> None:
        if getattr(_UPDATING, "depth", 0) and old is None and new is not None and _only_keys(self.table, new):
            # moto's UpdateItem of a new item first puts its bare keys, then records the whole write as
            # the INSERT: DynamoDB records only the one, so the bare keys are not a record.
            return
        view = self.table.stream_specification["StreamViewType"]
        name = "INSERT" if old is None else ("REMOVE" if new is None else "MODIFY")
        seq = self.starting_sequence_number + next(_sequence)
        record = StreamRecord(self.table, view, name, old, new, seq).to_json()
        data = dict(record["dynamodb"])
        if isinstance(data.get("ApproximateCreationDateTime"), datetime.datetime):
            data["ApproximateCreationDateTime"] = unix_time(data["ApproximateCreationDateTime"])
        record["dynamodb"] = data
        record["awsRegion"] = self.table.region_name
        record["eventSourceARN"] = f"{self.table.table_arn}/stream/{self.table.latest_stream_label}"
        if getattr(_TRANSACTION, "active", False):
            _TRANSACTION.records.append((deliver, self.table.name, record))  # out when it commits
        else:
            deliver(self.table.name, record)

    _swap(StreamShard, "add", add)

    original_update = DynamoDBBackend.update_item

    @functools.wraps(original_update)
    def update_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        _UPDATING.depth = getattr(_UPDATING, "depth", 0) + 1
        try:
            return original_update(self, *args, **kwargs)
        finally:
            _UPDATING.depth -= 1

    _swap(DynamoDBBackend, "update_item", update_item)


_UPDATING = threading.local()


def _only_keys(table: Any, item: Any) -> bool:
    keys = {table.hash_key_attr} | ({table.range_key_attr} if table.range_key_attr else set())
    return set(item.attrs) <= keys


import itertools  # noqa: E402

_sequence = itertools.count(1)
