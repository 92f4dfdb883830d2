"""`cairn graph <workflow>`: the journey as a Mermaid flowchart (paste it into a Markdown file on GitHub)."""

from __future__ import annotations

import json
from typing import Any

from cairn.domain.workflows import (
    HOLDOUT,
    AddToListStep,
    AssignTaskStep,
    BranchIf,
    BranchStep,
    DateTrigger,
    EnrollStep,
    EventTrigger,
    ExitStep,
    RemoveFromListStep,
    SegmentTrigger,
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

DONE, CONVERTED, EXITED = "done", "converted", "exited"


def _text(value: str, limit: int = 60) -> str:
    value = " ".join(value.split())
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return value.replace('"', "#quot;")


def _rule(rule: Any) -> str:
    return _text(json.dumps(rule, separators=(", ", ": ")).replace('"', ""), 48)


class _Graph:
    def __init__(self, wf: Workflow) -> None:
        self.wf = wf
        self.ids = step_ids(wf)
        self.lines: list[str] = []
        self.count = 0

    def node(self, label: str, shape: str = "rect") -> str:
        self.count += 1
        key = f"s{self.count}"
        left, right = {
            "rect": ("[", "]"),
            "round": ("(", ")"),
            "stadium": ("([", "])"),
            "diamond": ("{", "}"),
            "hexagon": ("{{", "}}"),
            "sub": ("[[", "]]"),
            "para": ("[/", "/]"),
        }[shape]
        self.lines.append(f'    {key}{left}"{_text(label, 80)}"{right}')
        return key

    def edge(self, a: str, b: str, label: str | None = None) -> None:
        self.lines.append(f'    {a} -->|"{_text(label)}"| {b}' if label else f"    {a} --> {b}")

    def chain(self, steps: list[Any], nxt: str) -> str:
        for step in reversed(steps):
            nxt = self.step(step, nxt)
        return nxt

    def step(self, step: Any, nxt: str) -> str:
        sid = self.ids[id(step)]
        if isinstance(step, SendEmailStep | SendSmsStep):
            channel = "email" if isinstance(step, SendEmailStep) else "SMS"
            spec = step.send_email if isinstance(step, SendEmailStep) else step.send_sms
            key = self.node(f"{sid}: {channel} {spec.template}")
        elif isinstance(step, WaitStep):
            if isinstance(step.wait, str):
                label = f"wait {step.wait}"
            elif isinstance(step.wait.until, UntilAttribute):
                until = step.wait.until
                label = f"wait until {until.attribute}" + (f" at {until.at}" if until.at else "")
                label += f" {until.offset}" if until.offset else ""
            else:
                label = f"wait until {step.wait.until.time} local"
            key = self.node(label, "stadium")
        elif isinstance(step, WaitForStep):
            spec_w = step.wait_for
            key = self.node(f"{sid}: wait for {spec_w.event} (at most {spec_w.timeout})", "hexagon")
            self.edge(key, self.chain(step.on_event, nxt), spec_w.event)
            self.edge(key, self.chain(step.on_timeout, nxt), f"no {spec_w.event} in {spec_w.timeout}")
            return key
        elif isinstance(step, BranchStep):
            key = self.node(f"{sid}", "diamond")
            has_else = False
            for case in step.branch:
                if isinstance(case, BranchIf):
                    self.edge(key, self.chain(case.then, nxt), _rule(case.if_))
                else:
                    has_else = True
                    self.edge(key, self.chain(case.else_, nxt), "else")
            if not has_else:
                self.edge(key, nxt, "else")
            return key
        elif isinstance(step, SplitStep):
            key = self.node(f"{sid}: split", "hexagon")
            for name, weight in step.split.items():
                if name == HOLDOUT:
                    self.edge(key, DONE, f"holdout {weight}%")
                else:
                    self.edge(key, self.chain(step.paths.get(name, []), nxt), f"{name} {weight}%")
            return key
        elif isinstance(step, UpdateStep):
            spec_u = step.update
            parts = [f"{k}={v}" for k, v in spec_u.set.items()]
            parts += [f"stage={spec_u.stage}"] if spec_u.stage else []
            parts += [f"-{k}" for k in spec_u.unset]
            parts += [f"+#{t}" for t in spec_u.add_tags] + [f"-#{t}" for t in spec_u.remove_tags]
            key = self.node(f"update {', '.join(parts)}", "para")
        elif isinstance(step, AddToListStep):
            key = self.node(f"add to list {step.add_to_list.list}", "para")
        elif isinstance(step, RemoveFromListStep):
            key = self.node(f"remove from list {step.remove_from_list.list}", "para")
        elif isinstance(step, AssignTaskStep):
            key = self.node(f"task for {step.assign_task.to}: {step.assign_task.title}", "para")
        elif isinstance(step, WebhookStep):
            host = step.webhook.url.split("//", 1)[-1].split("/", 1)[0]
            key = self.node(f"{sid}: webhook to {host}", "sub")
        elif isinstance(step, EnrollStep):
            key = self.node(f"enroll in {step.enroll.workflow}", "sub")
        elif isinstance(step, ExitStep):
            key = self.node(f"exit: {step.exit.reason}", "round")
            self.edge(key, EXITED)
            return key
        else:  # pragma: no cover - the model admits no other kind
            raise TypeError(sid)
        self.edge(key, nxt)
        return key


def trigger_label(wf: Workflow) -> str:
    trigger = wf.trigger
    if isinstance(trigger, EventTrigger):
        label = f"event {trigger.event}"
        return label + (f" where {_rule(trigger.where)}" if trigger.where else "")
    if isinstance(trigger, SegmentTrigger):
        return f"enters segment {trigger.segment_entered}"
    if isinstance(trigger, DateTrigger):
        spec = trigger.date_attribute
        return f"yearly on {spec.attribute} at {spec.at} local" + (f" {spec.offset}" if spec.offset else "")
    return "enrolled through the API"


def mermaid(wf: Workflow) -> str:
    """The workflow as `flowchart TD` text: trigger, steps, branches with their conditions, and the ends."""
    graph = _Graph(wf)
    first = graph.chain(list(wf.steps), DONE)
    head = [
        "flowchart TD",
        f'    trigger(["{_text(trigger_label(wf), 80)}"])',
        f'    {DONE}(["Completed"])',
        f'    {EXITED}(["Exited"])',
    ]
    if wf.goal is not None:
        goal = f"goal: {wf.goal.event} within {wf.goal.within} (at any point)"
        head.append(f'    {CONVERTED}(["Converted — {_text(goal)}"])')
    if wf.exit_when is not None:
        head.append(f'    leave(["exit when {_rule(wf.exit_when)} (at any point)"]) --> {EXITED}')
    body = [f"    trigger --> {first}", *graph.lines]
    if wf.audience is not None:
        body[0] = f'    trigger -->|"{_text("audience: " + _rule(wf.audience))}"| {first}'
    return "\n".join([*head, *body]) + "\n"
