"""Compile a workflow into Amazon States Language: one readable state per step, self-contained tasks."""

from __future__ import annotations

from typing import Any

from cairn.domain import durations
from cairn.domain.workflows import (
    BranchElse,
    BranchIf,
    BranchStep,
    ExitStep,
    SendEmailStep,
    SendSmsStep,
    WaitStep,
    Workflow,
    walk,
)

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
LAMBDA_INVOKE_WAIT = "arn:aws:states:::lambda:invoke.waitForTaskToken"
STEP_FN = "${StepFunctionArn}"
SEND_FN = "${SendFunctionArn}"

# Transient Lambda service errors: retried with full jitter (real error names, see STYLE.md).
LAMBDA_RETRY: dict[str, Any] = {
    "ErrorEquals": [
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
        "Lambda.ClientExecutionTimeoutException",
    ],
    "IntervalSeconds": 2,
    "MaxAttempts": 6,
    "BackoffRate": 2.0,
    "MaxDelaySeconds": 60,
    "JitterStrategy": "FULL",
}
# Throttling by a provider (SES rate, DynamoDB) raised by our own code as TransientError.
TRANSIENT_RETRY: dict[str, Any] = {
    "ErrorEquals": ["TransientError"],
    "IntervalSeconds": 1,
    "MaxAttempts": 8,
    "BackoffRate": 2.0,
    "MaxDelaySeconds": 120,
    "JitterStrategy": "FULL",
}

COMPLETE, COMPLETED = "Complete", "Completed"
RECORD_CONVERSION, CONVERTED = "Record conversion", "Converted"
RECORD_EXIT, EXITED = "Record exit", "Exited"
RECORD_FAILURE, FAILED = "Record failure", "Failed"


def _catch(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *extra,
        {"ErrorEquals": ["ContactConverted"], "ResultPath": None, "Next": RECORD_CONVERSION},
        {"ErrorEquals": ["ContactExited"], "ResultPath": None, "Next": RECORD_EXIT},
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": RECORD_FAILURE},
    ]


class _Builder:
    def __init__(self, wf: Workflow) -> None:
        self.wf = wf
        self.ids = {id(p.step): p.step_id for p in walk(wf.steps)}
        self.states: dict[str, dict[str, Any]] = {}
        self.policy = {
            "goal": wf.goal.model_dump(mode="json", exclude_none=True) if wf.goal else None,
            "exitWhen": wf.exit_when,
        }

    def payload(self, action: str, step: dict[str, Any], *, token: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "action": action,
            "run.$": "$$.Execution.Input",
            "execution.$": "$$.Execution.Id",
            "step": step,
            "policy": self.policy,
        }
        if token:
            body["token.$"] = "$$.Task.Token"
        return body

    def task(self, function: str, payload: dict[str, Any], nxt: str, **extra: Any) -> dict[str, Any]:
        state: dict[str, Any] = {
            "Type": "Task",
            "Resource": LAMBDA_INVOKE,
            "Parameters": {"FunctionName": function, "Payload": payload},
            "ResultPath": None,
            "Retry": [LAMBDA_RETRY, TRANSIENT_RETRY],
            "Catch": _catch(),
            "Next": nxt,
        }
        state.update(extra)
        return state

    def chain(self, steps: list[Any], nxt: str) -> str:
        """Add states for `steps` ending at `nxt`; return the name of the first one."""
        for step in reversed(steps):
            nxt = self.step(step, nxt)
        return nxt

    def step(self, step: Any, nxt: str) -> str:
        sid = self.ids[id(step)]
        config: dict[str, Any]
        if isinstance(step, SendEmailStep | SendSmsStep):
            channel = "email" if isinstance(step, SendEmailStep) else "sms"
            spec = step.send_email if isinstance(step, SendEmailStep) else step.send_sms
            config = {"id": sid, "channel": channel, "template": spec.template}
            self.states[sid] = self.task(SEND_FN, self.payload("send", config), nxt)
        elif isinstance(step, WaitStep):
            seconds = int(durations.parse_duration(step.wait).total_seconds())
            config = {"id": sid, "seconds": seconds}
            state = self.task(STEP_FN, self.payload("wait", config, token=True), nxt)
            state["Resource"] = LAMBDA_INVOKE_WAIT
            state["TimeoutSeconds"] = seconds
            state["Comment"] = f"wait {step.wait}; a goal or exit ends it at once"
            state["Catch"] = _catch({"ErrorEquals": ["States.Timeout"], "ResultPath": None, "Next": nxt})
            self.states[sid] = state
        elif isinstance(step, BranchStep):
            choose = f"{sid}: which path"
            choices: list[dict[str, Any]] = []
            default = nxt
            rule_list: list[Any] = []
            for case in step.branch:
                if isinstance(case, BranchIf):
                    first = self.chain(case.then, nxt)
                    choices.append(
                        {"Variable": "$.decision.branch", "NumericEquals": len(rule_list), "Next": first}
                    )
                    rule_list.append(case.if_)
                elif isinstance(case, BranchElse):
                    default = self.chain(case.else_, nxt)
            self.states[choose] = {"Type": "Choice", "Choices": choices, "Default": default}
            self.states[sid] = self.task(
                STEP_FN,
                self.payload("branch", {"id": sid, "rules": rule_list}),
                choose,
                ResultSelector={"branch.$": "$.Payload.branch"},
                ResultPath="$.decision",
            )
        elif isinstance(step, ExitStep):
            self.states[sid] = {"Type": "Pass", "Comment": step.exit.reason, "Next": RECORD_EXIT}
        else:  # pragma: no cover - the model admits no other kind
            raise TypeError(f"cannot compile step {sid}")
        return sid

    def ends(self) -> None:
        def finish(outcome: str, nxt: str) -> dict[str, Any]:
            state = self.task(STEP_FN, self.payload("finish", {"outcome": outcome}), nxt)
            state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": FAILED}]
            if outcome == "failed":
                state["Parameters"]["Payload"]["error.$"] = "$.error"
            return state

        self.states[COMPLETE] = finish("completed", COMPLETED)
        self.states[COMPLETED] = {"Type": "Succeed"}
        self.states[RECORD_CONVERSION] = finish("converted", CONVERTED)
        self.states[CONVERTED] = {"Type": "Succeed"}
        self.states[RECORD_EXIT] = finish("exited", EXITED)
        self.states[EXITED] = {"Type": "Succeed"}
        self.states[RECORD_FAILURE] = finish("failed", FAILED)
        self.states[FAILED] = {"Type": "Fail", "Error": "WorkflowFailed", "Cause": "a step failed"}


def compile_workflow(wf: Workflow) -> dict[str, Any]:
    """The state machine definition for one workflow (ARNs left as `${...}` substitutions)."""
    builder = _Builder(wf)
    builder.ends()
    start = builder.chain(list(wf.steps), COMPLETE)
    # Steps first in journey order, then the ends: the console and the file read top to bottom.
    ordered = {k: v for k, v in builder.states.items() if k not in _END_STATES}
    ordered = dict(reversed(list(ordered.items())))
    ordered.update({k: builder.states[k] for k in _END_STATES})
    return {
        "Comment": f"{wf.name} ({wf.id}, version {wf.content_hash()}); generated by `cairn compile`",
        "StartAt": start,
        "States": ordered,
    }


_END_STATES = (COMPLETE, COMPLETED, RECORD_CONVERSION, CONVERTED, RECORD_EXIT, EXITED, RECORD_FAILURE, FAILED)
