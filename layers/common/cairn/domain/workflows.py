"""The workflow language (DESIGN.md section 3): typed model and a validator that reports every problem."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from cairn.domain import durations, rules
from cairn.domain.yamlsource import Problem, line_of, plain

# Each part starts with a letter, so the CloudFormation logical id ("Wf" + CamelCase) is unique per id.
ID_RE = re.compile(r"^(?=.{1,48}$)[a-z][a-z0-9]*(-[a-z][a-z0-9]*)*$")
STEP_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# State names the compiler uses for a run's ends; a step id may not take them.
RESERVED_STATES = frozenset(
    {
        "Complete",
        "Completed",
        "Record conversion",
        "Converted",
        "Record exit",
        "Exited",
        "Record failure",
        "Failed",
    }
)
STEP_KINDS = ("send_email", "send_sms", "wait", "branch", "exit")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class SendSpec(_Strict):
    template: str


class SendEmailStep(_Strict):
    id: str | None = None
    send_email: SendSpec


class SendSmsStep(_Strict):
    id: str | None = None
    send_sms: SendSpec


class WaitStep(_Strict):
    id: str | None = None
    wait: str


class BranchIf(_Strict):
    if_: dict[str, Any] = Field(alias="if")
    then: list[Step]


class BranchElse(_Strict):
    else_: list[Step] = Field(alias="else")


def _case_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "else" if "else" in value else "if"
    return "else" if isinstance(value, BranchElse) else "if"


BranchCase = Annotated[
    Annotated[BranchIf, Tag("if")] | Annotated[BranchElse, Tag("else")], Discriminator(_case_kind)
]


class BranchStep(_Strict):
    id: str | None = None
    branch: list[BranchCase]


class ExitSpec(_Strict):
    reason: str = "exit step"


class ExitStep(_Strict):
    id: str | None = None
    exit: ExitSpec = ExitSpec()


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        present = [k for k in STEP_KINDS if k in value]
        return present[0] if len(present) == 1 else None
    for kind in STEP_KINDS:
        if hasattr(value, kind):
            return kind
    return None


Step = Annotated[
    Annotated[SendEmailStep, Tag("send_email")]
    | Annotated[SendSmsStep, Tag("send_sms")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[ExitStep, Tag("exit")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message=f"a step needs exactly one of: {', '.join(STEP_KINDS)}",
    ),
]


class Trigger(_Strict):
    event: str
    where: dict[str, Any] | None = None
    max_age: str = "24h"


class ReentryAfter(_Strict):
    after: str


class Goal(_Strict):
    event: str
    where: dict[str, Any] | None = None
    within: str


class Workflow(_Strict):
    version: Literal[1] = 1
    id: str
    name: str
    description: str = ""
    trigger: Trigger
    audience: dict[str, Any] | None = None
    reentry: Literal["never", "always"] | ReentryAfter = "never"
    goal: Goal | None = None
    exit_when: dict[str, Any] | None = None
    steps: list[Step] = Field(min_length=1)

    def content_hash(self) -> str:
        data = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:12]


BranchIf.model_rebuild()
BranchElse.model_rebuild()
BranchStep.model_rebuild()


@dataclass(frozen=True)
class PlacedStep:
    """A step with its resolved id and where it sits (for messages and the compiler)."""

    step_id: str
    kind: str
    step: Any
    loc: tuple[str | int, ...]


def kind_of(step: Any) -> str:
    kind = _step_kind(step)
    assert kind is not None
    return kind


def walk(steps: list[Any], loc: tuple[str | int, ...] = ("steps",)) -> Iterator[PlacedStep]:
    """Every step in document order, depth first, with its id (explicit, or `<kind>-<template|n>`)."""
    counter = [0]

    def visit(items: list[Any], where: tuple[str | int, ...]) -> Iterator[PlacedStep]:
        for index, step in enumerate(items):
            counter[0] += 1
            kind = kind_of(step)
            step_loc = (*where, index)
            if step.id:
                step_id = step.id
            elif kind in ("send_email", "send_sms"):
                step_id = f"{kind}-{getattr(step, kind).template}"
            else:
                step_id = f"{kind}-{counter[0]}"
            yield PlacedStep(step_id, kind, step, step_loc)
            if isinstance(step, BranchStep):
                for case_index, case in enumerate(step.branch):
                    if isinstance(case, BranchIf):
                        yield from visit(case.then, (*step_loc, "branch", case_index, "then"))
                    else:
                        yield from visit(case.else_, (*step_loc, "branch", case_index, "else"))

    yield from visit(steps, loc)


@dataclass(frozen=True)
class Catalog:
    """What a workflow may refer to: the project's templates and segments."""

    email_templates: frozenset[str] = frozenset()
    sms_templates: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()


def _duration_problem(text: str, *, allow_zero: bool = False) -> str | None:
    try:
        value = durations.parse_duration(text)
    except ValueError as exc:
        return str(exc)
    if value > durations.MAX_DURATION:
        return f"{text} is longer than one year, the longest a run may wait"
    return None


def validate(raw: Any, file: str, catalog: Catalog) -> tuple[Workflow | None, list[Problem]]:
    """Parse and check one workflow file's data; returns the model only when there is no problem."""
    problems: list[Problem] = []
    try:
        wf = Workflow.model_validate(plain(raw))
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            problems.append(Problem(file, line_of(raw, loc), _message(err), _step_at(raw, loc)))
        return None, problems

    def add(loc: tuple[str | int, ...], message: str, step: str | None = None) -> None:
        problems.append(Problem(file, line_of(raw, loc), message, step))

    if not ID_RE.match(wf.id):
        add(
            ("id",),
            "id must be lower-case words of letters and digits joined by single '-', each starting "
            "with a letter (e.g. black-friday-y2026), at most 48 characters",
        )
    expected = file.rsplit("/", 1)[-1].split(".", 1)[0]
    if file.endswith((".yaml", ".yml")) and expected != wf.id:
        add(("id",), f"id '{wf.id}' must match the file name '{expected}'")

    def check_rule(data: Any, loc: tuple[str | int, ...], step: str | None = None) -> None:
        try:
            parsed = rules.parse_rule(data, path=".".join(str(p) for p in loc))
        except rules.RuleError as exc:
            for p in exc.problems:
                add(loc, f"{p.path}: {p.message}", step)
            return
        for seg in sorted(rules.referenced_segments(parsed) - catalog.segments):
            add(loc, f"unknown segment '{seg}'", step)

    def check_where(event: str, where: Any, loc: tuple[str | int, ...]) -> None:
        """A `where` on an event's properties: checked as the event condition it is part of."""
        try:
            rules.parse_rule({"event": event, "where": where}, path=".".join(str(p) for p in loc[:-1]))
        except rules.RuleError as exc:
            for p in exc.problems:
                add(loc, f"{p.path.replace('.event.where', '.where')}: {p.message}")

    if wf.trigger.where is not None:
        check_where(wf.trigger.event, wf.trigger.where, ("trigger", "where"))
    if (msg := _duration_problem(wf.trigger.max_age)) is not None:
        add(("trigger", "max_age"), msg)
    if wf.audience is not None:
        check_rule(wf.audience, ("audience",))
    if wf.exit_when is not None:
        check_rule(wf.exit_when, ("exit_when",))
    if isinstance(wf.reentry, ReentryAfter) and (msg := _duration_problem(wf.reentry.after)):
        add(("reentry", "after"), msg)
    if wf.goal is not None:
        if wf.goal.where is not None:
            check_where(wf.goal.event, wf.goal.where, ("goal", "where"))
        if (msg := _duration_problem(wf.goal.within)) is not None:
            add(("goal", "within"), msg)

    seen: dict[str, tuple[str | int, ...]] = {}
    total_wait = timedelta()
    for placed in walk(wf.steps):
        sid, loc = placed.step_id, placed.loc
        if sid in seen:
            add(loc, f"duplicate step id '{sid}' (give one of them an explicit `id`)", sid)
        seen[sid] = loc
        if not STEP_ID_RE.match(sid) or sid in RESERVED_STATES:
            add(loc, f"step id '{sid}' must be letters, digits, '_', '.', '-' and not a reserved name", sid)
        step = placed.step
        if isinstance(step, SendEmailStep) and step.send_email.template not in catalog.email_templates:
            add((*loc, "send_email", "template"), f"unknown email template '{step.send_email.template}'", sid)
        if isinstance(step, SendSmsStep) and step.send_sms.template not in catalog.sms_templates:
            add((*loc, "send_sms", "template"), f"unknown SMS template '{step.send_sms.template}'", sid)
        if isinstance(step, WaitStep):
            if (msg := _duration_problem(step.wait)) is not None:
                add((*loc, "wait"), msg, sid)
            else:
                total_wait += durations.parse_duration(step.wait)
        if isinstance(step, BranchStep):
            for i, case in enumerate(step.branch):
                if isinstance(case, BranchElse) and i != len(step.branch) - 1:
                    add((*loc, "branch", i), "`else` must be the last case of a branch", sid)
                if isinstance(case, BranchIf):
                    check_rule(case.if_, (*loc, "branch", i, "if"), sid)
    for steps, loc in _step_lists(wf.steps, ("steps",)):
        for index, step in enumerate(steps[:-1]):
            if isinstance(step, ExitStep):
                add((*loc, index + 1), "unreachable: this step comes after an `exit`", None)
    if total_wait > durations.MAX_DURATION:
        add(("steps",), "the waits of one run add up to more than one year, the longest a run may last")
    return (wf if not problems else None), problems


def _step_lists(
    steps: list[Any], loc: tuple[str | int, ...]
) -> Iterator[tuple[list[Any], tuple[str | int, ...]]]:
    yield steps, loc
    for index, step in enumerate(steps):
        if isinstance(step, BranchStep):
            for ci, case in enumerate(step.branch):
                sub = case.then if isinstance(case, BranchIf) else case.else_
                yield from _step_lists(
                    sub, (*loc, index, "branch", ci, "then" if isinstance(case, BranchIf) else "else")
                )


def _message(err: Any) -> str:
    field = ".".join(str(p) for p in err["loc"] if not isinstance(p, int)) or "workflow"
    return f"{field}: {err['msg']}"


def _step_at(raw: Any, loc: tuple[Any, ...]) -> str | None:
    """Name the step an error sits in: its explicit id, else its kind and position."""
    node = raw
    found: str | None = None
    for i, part in enumerate(loc):
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
        if i > 0 and loc[i - 1] in ("steps", "then", "else") and isinstance(node, dict):
            kind = next((k for k in STEP_KINDS if k in node), "step")
            found = str(node.get("id") or f"{kind} #{part + 1}" if isinstance(part, int) else kind)
    return found
