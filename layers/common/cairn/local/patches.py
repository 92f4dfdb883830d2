"""The moto internals local mode takes over (each has a canary test in tests/component/test_moto_canaries.py).

- Step Functions: waits, task timeouts, task-token callbacks and retry back-off run on the virtual clock;
  executions hold a unit of `busy` while they run; history timestamps read the virtual clock.
- Lambda: invocations call the real handlers in-process instead of a Docker container.
- DynamoDB Streams: records go to local mode's own asynchronous, ordered dispatcher instead of being
  delivered synchronously inside the writer's put_item.
- DynamoDB: each request runs alone (conditional writes are atomic, as on AWS).
"""

from __future__ import annotations

import copy
import datetime
import threading
from collections.abc import Callable
from typing import Any

from cairn.local.clock import VirtualClock

_ORIGINALS: dict[tuple[Any, str], Any] = {}


def _swap(owner: Any, name: str, new: Any) -> None:
    _ORIGINALS.setdefault((owner, name), owner.__dict__[name])
    setattr(owner, name, new)


def restore() -> None:
    for (owner, name), original in _ORIGINALS.items():
        setattr(owner, name, original)
    _ORIGINALS.clear()


def patch_stepfunctions(clock: VirtualClock) -> None:
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import EvalTimeoutError
    from moto.stepfunctions.parser.asl.component.state.exec.execute_state import ExecutionState
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint
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

    # Wait states: virtual time; StopExecution (program_state_event) still interrupts them.
    def wait_interval(self: Any, env: Any, wait_seconds: int) -> None:
        if wait_seconds > 0 and env.is_running():
            clock.sleep(wait_seconds, interrupt=env.program_state_event)

    _swap(WaitFunction, "_wait_interval", wait_interval)

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

    # `$$.State.EnteredTime` (a wait_for step's start) on the virtual clock too.
    from moto.stepfunctions.parser.asl.component.state import state as state_module

    class _VirtualDatetime(datetime.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            moment = clock.now()
            return moment.astimezone(tz) if tz is not None else moment

    class _VirtualDatetimeModule:  # stands in for the `datetime` module inside moto's state.py
        timezone = datetime.timezone
        datetime = _VirtualDatetime

    _swap(state_module, "datetime", _VirtualDatetimeModule)


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


def patch_streams(deliver: Callable[[str, dict[str, Any]], None]) -> None:
    """Hand every stream record to `deliver(table_name, record)` instead of invoking consumers inline."""
    from moto.core.utils import unix_time
    from moto.dynamodb.models.table import StreamRecord, StreamShard

    def add(self: Any, old: Any, new: Any) -> None:
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
        deliver(self.table.name, record)

    _swap(StreamShard, "add", add)


import itertools  # noqa: E402

_sequence = itertools.count(1)
