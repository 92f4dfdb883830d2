"""Compile a workflow into Amazon States Language: one readable state per step, self-contained tasks.

Every step's configuration travels in its Task's parameters (with the run's goal and exit rule), so a
published state machine version needs nothing else to finish its runs. Every wait is a task-token Task
timed by Step Functions itself, so a goal, an exit or an awaited event can end it at once.
"""

from __future__ import annotations

from typing import Any

from cairn.domain import durations
from cairn.domain.workflows import (
    HOLDOUT,
    MESSAGE_EVENTS,
    AddToListStep,
    AssignTaskStep,
    BranchElse,
    BranchIf,
    BranchStep,
    EnrollStep,
    ExitStep,
    RemoveFromListStep,
    SendEmailStep,
    SendSmsStep,
    SplitStep,
    UntilAttribute,
    UpdateStep,
    WaitForStep,
    WaitStep,
    WebhookStep,
    Workflow,
    step_ids,
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
# Throttling by a provider (SES rate, DynamoDB, StartExecution) raised by our own code as TransientError.
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
_END_STATES = (COMPLETE, COMPLETED, RECORD_CONVERSION, CONVERTED, RECORD_EXIT, EXITED, RECORD_FAILURE, FAILED)


def _catch(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        *extra,
        {"ErrorEquals": ["ContactConverted"], "ResultPath": None, "Next": RECORD_CONVERSION},
        {"ErrorEquals": ["ContactExited"], "ResultPath": None, "Next": RECORD_EXIT},
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": RECORD_FAILURE},
    ]


def _timeout_to(nxt: str) -> dict[str, Any]:
    return {"ErrorEquals": ["States.Timeout"], "ResultPath": None, "Next": nxt}


class _Builder:
    def __init__(self, wf: Workflow) -> None:
        self.wf = wf
        self.ids = step_ids(wf)
        self.states: dict[str, dict[str, Any]] = {}
        self.policy = wf.policy

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

    def token_wait(
        self, payload: dict[str, Any], nxt: str, *, on_timeout: str, comment: str, **timeout: Any
    ) -> dict[str, Any]:
        """A wait Step Functions times itself (TimeoutSeconds[Path]); a task token lets Cairn end it early."""
        state = self.task(STEP_FN, payload, nxt)
        state["Resource"] = LAMBDA_INVOKE_WAIT
        state.update(timeout)
        state["Comment"] = comment
        state["Catch"] = _catch(_timeout_to(on_timeout))
        return state

    def chain(self, steps: list[Any], nxt: str) -> str:
        """Add states for `steps` ending at `nxt`; return the name of the first one."""
        for step in reversed(steps):
            nxt = self.step(step, nxt)
        return nxt

    def step(self, step: Any, nxt: str) -> str:
        sid = self.ids[id(step)]
        if isinstance(step, SendEmailStep | SendSmsStep):
            self.send(step, sid, nxt)
        elif isinstance(step, WaitStep):
            self.wait(step, sid, nxt)
        elif isinstance(step, WaitForStep):
            spec = step.wait_for
            seconds = int(durations.parse_duration(spec.timeout).total_seconds())
            config: dict[str, Any] = {"id": sid, "event": spec.event, "timeout": seconds}
            if spec.where is not None:
                config["where"] = spec.where
            elif spec.event in MESSAGE_EVENTS:
                config["message"] = MESSAGE_EVENTS[spec.event]  # the run's last send on that channel
            payload = self.payload("wait_for", config, token=True)
            payload["since.$"] = "$$.State.EnteredTime"
            after_event = self.chain(step.on_event, nxt)
            after_timeout = self.chain(step.on_timeout, nxt)
            self.states[sid] = self.token_wait(
                payload,
                after_event,
                on_timeout=after_timeout,
                comment=f"until {spec.event} or {spec.timeout}, whichever comes first",
                TimeoutSeconds=seconds,
            )
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
            if not choices:  # only an else: nothing to decide
                self.states[choose] = {"Type": "Pass", "Next": default}
            else:
                self.states[choose] = {"Type": "Choice", "Choices": choices, "Default": default}
            self.states[sid] = self.task(
                STEP_FN,
                self.payload("branch", {"id": sid, "rules": rule_list}),
                choose,
                ResultSelector={"branch.$": "$.Payload.branch"},
                ResultPath="$.decision",
            )
        elif isinstance(step, SplitStep):
            self.split(step, sid, nxt)
        elif isinstance(step, UpdateStep):
            spec_u = step.update
            changes: dict[str, Any] = {"id": sid}
            attrs = dict(spec_u.set)
            if spec_u.stage is not None:
                attrs["stage"] = spec_u.stage
            for key, value in (
                ("set", attrs),
                ("unset", spec_u.unset),
                ("addTags", spec_u.add_tags),
                ("removeTags", spec_u.remove_tags),
            ):
                if value:
                    changes[key] = value
            self.states[sid] = self.task(STEP_FN, self.payload("update", changes), nxt)
        elif isinstance(step, AddToListStep | RemoveFromListStep):
            add = isinstance(step, AddToListStep)
            name = step.add_to_list.list if isinstance(step, AddToListStep) else step.remove_from_list.list
            config = {"id": sid, "list": name, "op": "add" if add else "remove"}
            self.states[sid] = self.task(STEP_FN, self.payload("list", config), nxt)
        elif isinstance(step, AssignTaskStep):
            spec_t = step.assign_task
            config = {"id": sid, "to": spec_t.to, "title": spec_t.title}
            if spec_t.due is not None:
                config["due"] = int(durations.parse_duration(spec_t.due).total_seconds())
            if spec_t.note:
                config["note"] = spec_t.note
            self.states[sid] = self.task(STEP_FN, self.payload("assign_task", config), nxt)
        elif isinstance(step, WebhookStep):
            self.webhook(step, sid, nxt)
        elif isinstance(step, EnrollStep):
            config = {"id": sid, "workflow": step.enroll.workflow}
            self.states[sid] = self.task(STEP_FN, self.payload("enroll", config), nxt)
        elif isinstance(step, ExitStep):
            # The run's end, recorded with the step it left at (the statistics' funnel shows where).
            config = {"outcome": "exited", "stepId": sid}
            state = self.task(STEP_FN, self.payload("finish", config), EXITED, Comment=step.exit.reason)
            state["Catch"] = [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": FAILED}]
            self.states[sid] = state
        else:  # pragma: no cover - the model admits no other kind
            raise TypeError(f"cannot compile step {sid}")
        return sid

    def send(self, step: SendEmailStep | SendSmsStep, sid: str, nxt: str) -> None:
        """One Task per message (the send function gates, claims, renders and delivers). A message held by a
        cap, quiet hours or pause waits, interruptibly, for the seconds the send function names, and then
        goes back to the send (its gate decides again); with `on_hold: skip` the send records a skip."""
        channel = "email" if isinstance(step, SendEmailStep) else "sms"
        spec = step.send_email if isinstance(step, SendEmailStep) else step.send_sms
        config: dict[str, Any] = {"id": sid, "channel": channel, "template": spec.template}
        if spec.on_hold == "skip":
            config["onHold"] = "skip"
            self.states[sid] = self.task(SEND_FN, self.payload("send", config), nxt)
            return
        held, hold = f"{sid}: held?", f"{sid}: hold"
        self.states[sid] = self.task(
            SEND_FN,
            self.payload("send", config),
            held,
            ResultSelector={"status.$": "$.Payload.status", "result.$": "$.Payload"},
            ResultPath="$.send",
        )
        self.states[held] = {
            "Type": "Choice",
            "Choices": [{"Variable": "$.send.status", "StringEquals": "held", "Next": hold}],
            "Default": nxt,
        }
        payload = self.payload("hold", {"id": sid, "channel": channel}, token=True)
        payload["held.$"] = "$.send.result"
        self.states[hold] = self.token_wait(
            payload,
            sid,
            on_timeout=sid,
            comment="held by a cap, quiet hours or pause: try again when allowed (a goal or exit ends it)",
            TimeoutSecondsPath="$.send.result.seconds",
        )

    def wait(self, step: WaitStep, sid: str, nxt: str) -> None:
        if isinstance(step.wait, str):
            seconds = int(durations.parse_duration(step.wait).total_seconds())
            self.states[sid] = self.token_wait(
                self.payload("wait", {"id": sid, "seconds": seconds}, token=True),
                nxt,
                on_timeout=nxt,
                comment=f"wait {step.wait}; a goal or exit ends it at once",
                TimeoutSeconds=seconds,
            )
            return
        # Until a date or a time of day in the contact's zone: the step function computes how long, then
        # the same interruptible wait runs for that long.
        until = step.wait.until
        config: dict[str, Any] = {"id": sid}
        if isinstance(until, UntilAttribute):
            config["attribute"] = until.attribute
            if until.at is not None:
                config["at"] = until.at
            if until.offset is not None:
                config["offset"] = until.offset
            comment = f"wait until {until.attribute}" + (f" at {until.at}" if until.at else "")
        else:
            config["time"] = until.time
            if until.days is not None:
                config["days"] = list(until.days)
            comment = f"wait until {until.time}" + (f" on {', '.join(until.days)}" if until.days else "")
        comment += " in the contact's time zone"
        waiting = f"{sid}: until"
        self.states[sid] = self.task(
            STEP_FN,
            self.payload("until", config),
            waiting,
            ResultSelector={"seconds.$": "$.Payload.seconds"},
            ResultPath="$.until",
        )
        waiting_payload = self.payload("wait", {"id": sid}, token=True)
        waiting_payload["seconds.$"] = "$.until.seconds"
        self.states[waiting] = self.token_wait(
            waiting_payload,
            nxt,
            on_timeout=nxt,
            comment=comment,
            TimeoutSecondsPath="$.until.seconds",
        )

    def split(self, step: SplitStep, sid: str, nxt: str) -> None:
        """The step function picks the contact's variant (sticky, recorded); a Choice takes its path. The
        holdout gets nothing more from this journey: it waits, interruptibly, until the goal's window
        closes (so its conversions count against the variants'), then completes."""
        choose = f"{sid}: which variant"
        choices = [
            {"Variable": "$.decision.variant", "StringEquals": name, "Next": self.chain(path, nxt)}
            for name, path in step.paths.items()
        ]
        if HOLDOUT in step.split:
            target = COMPLETE
            if self.wf.goal is not None:
                target = f"{sid}: holdout"
                holdout = self.payload("wait", {"id": f"{sid}: holdout"}, token=True)
                holdout["seconds.$"] = "$.decision.holdoutSeconds"
                self.states[target] = self.token_wait(
                    holdout,
                    COMPLETE,
                    on_timeout=COMPLETE,
                    comment="the holdout receives nothing; it stays until the goal's window closes",
                    TimeoutSecondsPath="$.decision.holdoutSeconds",
                )
            choices.append({"Variable": "$.decision.variant", "StringEquals": HOLDOUT, "Next": target})
        self.states[choose] = {"Type": "Choice", "Choices": choices, "Default": nxt}
        self.states[sid] = self.task(
            STEP_FN,
            self.payload("split", {"id": sid, "weights": dict(step.split)}),
            choose,
            Comment=_split_comment(step.split),
            ResultSelector={
                "variant.$": "$.Payload.variant",
                "holdoutSeconds.$": "$.Payload.holdoutSeconds",
            },
            ResultPath="$.decision",
        )

    def webhook(self, step: WebhookStep, sid: str, nxt: str) -> None:
        spec = step.webhook
        config: dict[str, Any] = {
            "id": sid,
            "url": spec.url,
            "secret": spec.secret,
            "timeout": spec.timeout_seconds,
        }
        if spec.body:
            config["body"] = spec.body
        retry = [LAMBDA_RETRY, TRANSIENT_RETRY]
        if spec.retries:
            retry.append(
                {
                    "ErrorEquals": ["WebhookFailed"],
                    "IntervalSeconds": 5,
                    "MaxAttempts": spec.retries,
                    "BackoffRate": 2.0,
                    "MaxDelaySeconds": 300,
                    "JitterStrategy": "FULL",
                }
            )
        failed = nxt if spec.on_failure == "continue" else RECORD_FAILURE
        self.states[sid] = self.task(
            STEP_FN,
            self.payload("webhook", config),
            nxt,
            Retry=retry,
            Catch=_catch(
                {
                    "ErrorEquals": ["WebhookFailed", "WebhookRejected"],
                    "ResultPath": "$.error" if failed == RECORD_FAILURE else None,
                    "Next": failed,
                }
            ),
        )

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


def _split_comment(weights: dict[str, int]) -> str:
    parts = [f"{name} {weight}%" for name, weight in weights.items()]
    note = " (the holdout gets nothing more from this journey)" if HOLDOUT in weights else ""
    return "sticky split: " + ", ".join(parts) + note


def compile_workflow(wf: Workflow) -> dict[str, Any]:
    """The state machine definition for one workflow (ARNs left as `${...}` substitutions)."""
    builder = _Builder(wf)
    builder.ends()
    start = builder.chain(list(wf.steps), COMPLETE)
    # Steps first in journey order (depth first from the start), then the ends: the file reads top down.
    ordered: dict[str, dict[str, Any]] = {}
    pending = [start]
    while pending:
        name = pending.pop()
        if name in ordered or name in _END_STATES:
            continue
        state = builder.states[name]
        ordered[name] = state
        nexts = [state.get("Next"), *(c["Next"] for c in state.get("Choices", [])), state.get("Default")]
        nexts += [c["Next"] for c in state.get("Catch", [])]
        pending.extend(reversed([n for n in nexts if n]))
    ordered.update({k: builder.states[k] for k in _END_STATES})
    return {
        "Comment": f"{wf.name} ({wf.id}, version {wf.content_hash()}); generated by `cairn compile`",
        "StartAt": start,
        "States": ordered,
    }
