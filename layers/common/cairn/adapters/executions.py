"""Step Functions: starting runs and answering the task tokens of waiting steps."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from cairn.adapters.aws import client


class ExecutionThrottled(Exception):
    """StartExecution was throttled or hit the open-execution quota: retry later, never drop."""


class Executions:
    def start(self, state_machine_arn: str, name: str, payload: dict[str, Any]) -> str:
        """Start a run; a retry with the same name is the same run (no second execution)."""
        try:
            response = client("stepfunctions").start_execution(
                stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload)
            )
            return str(response["executionArn"])
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "ExecutionAlreadyExists":
                return state_machine_arn.replace(":stateMachine:", ":execution:") + f":{name}"
            if code in ("ThrottlingException", "ExecutionLimitExceeded"):
                raise ExecutionThrottled(code) from exc
            raise

    def stop(self, execution_arn: str, *, error: str, cause: str) -> bool:
        """End a run now (StopExecution: the run shows ABORTED). False if it had already ended."""
        try:
            client("stepfunctions").stop_execution(executionArn=execution_arn, error=error, cause=cause)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("ExecutionDoesNotExist", "ExecutionNotFound"):
                return False
            raise

    def resume(self, token: str, output: dict[str, Any]) -> bool:
        return self._answer(lambda c: c.send_task_success(taskToken=token, output=json.dumps(output)))

    def interrupt(self, token: str, error: str, cause: str) -> bool:
        """End a waiting step with a named error the ASL catches (ContactConverted, ContactExited)."""
        return self._answer(lambda c: c.send_task_failure(taskToken=token, error=error, cause=cause))

    @staticmethod
    def _answer(call: Any) -> bool:
        try:
            call(client("stepfunctions"))
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken"):
                return False  # the wait already ended; nothing to answer
            raise
