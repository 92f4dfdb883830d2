"""The workflow language (DESIGN.md section 3): typed model and a validator that reports every problem."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from cairn.domain import durations, rules, timing
from cairn.domain.yamlsource import Problem, line_of, plain

# Each part starts with a letter, so the CloudFormation logical id ("Wf" + CamelCase) is unique per id.
ID_RE = re.compile(r"^(?=.{1,48}$)[a-z][a-z0-9]*(-[a-z][a-z0-9]*)*$")
STEP_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
VARIANT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
SECRET_NAME_RE = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
LOCAL_URL_RE = re.compile(r"^http://(localhost|127\.0\.0\.1)(:\d{1,5})?(/.*)?$")
HOLDOUT = "holdout"
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
STEP_KINDS = (
    "send_email",
    "send_sms",
    "wait",
    "wait_for",
    "branch",
    "split",
    "update",
    "add_to_list",
    "remove_from_list",
    "assign_task",
    "webhook",
    "enroll",
    "exit",
)
# Reserved events that belong to one message: a `wait_for` on them matches the run's last send.
MESSAGE_EVENTS = {
    "email_sent": "email",
    "email_delivered": "email",
    "email_opened": "email",
    "email_clicked": "email",
    "email_bounced": "email",
    "email_complained": "email",
    "sms_sent": "sms",
    "sms_delivered": "sms",
    "sms_failed": "sms",
}
PROTECTED_ATTRIBUTES = frozenset({"email", "phone", "userId"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


# ------------------------------------------------------------------ steps


class SendSpec(_Strict):
    template: str
    # A message held by a cap, quiet hours or pause waits for the next allowed moment, or is skipped.
    on_hold: Literal["wait", "skip"] = "wait"


class SendEmailStep(_Strict):
    id: str | None = None
    send_email: SendSpec


class SendSmsStep(_Strict):
    id: str | None = None
    send_sms: SendSpec


class UntilAttribute(_Strict):
    attribute: str
    at: str | None = None  # "HH:MM" in the contact's time zone
    offset: str | None = None  # "-1d": a day before


class UntilTime(_Strict):
    time: str  # "HH:MM" in the contact's time zone
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = Field(
        default=None, min_length=1
    )


def _until_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "attribute" if "attribute" in value else "time"
    return "attribute" if isinstance(value, UntilAttribute) else "time"


class WaitUntil(_Strict):
    until: Annotated[
        Annotated[UntilAttribute, Tag("attribute")] | Annotated[UntilTime, Tag("time")],
        Discriminator(_until_kind),
    ]


class WaitStep(_Strict):
    id: str | None = None
    wait: str | WaitUntil


class WaitForSpec(_Strict):
    event: str
    where: dict[str, Any] | None = None
    timeout: str


class WaitForStep(_Strict):
    id: str | None = None
    wait_for: WaitForSpec
    on_event: list[Step] = Field(default_factory=list)
    on_timeout: list[Step] = Field(default_factory=list)


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
    branch: list[BranchCase] = Field(min_length=1)


class SplitStep(_Strict):
    """`split: {A: 45, B: 45, holdout: 10}` with the variants' steps beside it (`A: [...]`, `B: [...]`).
    Contacts are assigned by a hash of their id and the workflow's: sticky, and recorded as `variant`."""

    id: str | None = None
    split: dict[str, int]
    paths: dict[str, list[Step]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _gather_paths(cls, data: Any) -> Any:
        if isinstance(data, dict) and "paths" not in data:
            paths = {k: v for k, v in data.items() if k not in ("id", "split")}
            data = {k: v for k, v in data.items() if k in ("id", "split")}
            data["paths"] = paths
        return data


class UpdateSpec(_Strict):
    set: dict[str, Any] = Field(default_factory=dict)
    unset: list[str] = Field(default_factory=list)
    add_tags: list[str] = Field(default_factory=list)
    remove_tags: list[str] = Field(default_factory=list)
    stage: str | None = None  # shorthand for set: {stage: ...}


class UpdateStep(_Strict):
    id: str | None = None
    update: UpdateSpec


class ListSpec(_Strict):
    list: str


def _shorthand(field: str) -> BeforeValidator:
    """A spec written as a bare string means that one field: `add_to_list: vip` is `{list: vip}`."""
    return BeforeValidator(lambda value: {field: value} if isinstance(value, str) else value)


_ListShorthand = Annotated[ListSpec, _shorthand("list")]


class AddToListStep(_Strict):
    id: str | None = None
    add_to_list: _ListShorthand


class RemoveFromListStep(_Strict):
    id: str | None = None
    remove_from_list: _ListShorthand


class TaskSpec(_Strict):
    to: str
    title: str = Field(min_length=1, max_length=200)
    due: str | None = None
    note: str = Field(default="", max_length=2000)


class AssignTaskStep(_Strict):
    id: str | None = None
    assign_task: TaskSpec


class WebhookSpec(_Strict):
    url: str
    secret: str  # a Secrets Manager secret (name or ARN) holding the HMAC key shared with the receiver
    body: dict[str, Any] = Field(default_factory=dict)
    timeout_seconds: int = Field(default=10, ge=1, le=25)
    retries: int = Field(default=3, ge=0, le=10)
    on_failure: Literal["continue", "fail"] = "continue"


class WebhookStep(_Strict):
    id: str | None = None
    webhook: WebhookSpec


class EnrollSpec(_Strict):
    workflow: str


class EnrollStep(_Strict):
    id: str | None = None
    enroll: Annotated[EnrollSpec, _shorthand("workflow")]


class ExitSpec(_Strict):
    reason: str = "exit step"


class ExitStep(_Strict):
    id: str | None = None
    exit: ExitSpec = ExitSpec()

    @field_validator("exit", mode="before")
    @classmethod
    def _short(cls, value: Any) -> Any:
        if value is None:
            return {}
        return {"reason": value} if isinstance(value, str) else value


def _step_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        present = [k for k in STEP_KINDS if k in value]
        return present[0] if len(present) == 1 else None
    for kind in STEP_KINDS:
        if kind in type(value).model_fields:
            return kind
    return None


Step = Annotated[
    Annotated[SendEmailStep, Tag("send_email")]
    | Annotated[SendSmsStep, Tag("send_sms")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[WaitForStep, Tag("wait_for")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[SplitStep, Tag("split")]
    | Annotated[UpdateStep, Tag("update")]
    | Annotated[AddToListStep, Tag("add_to_list")]
    | Annotated[RemoveFromListStep, Tag("remove_from_list")]
    | Annotated[AssignTaskStep, Tag("assign_task")]
    | Annotated[WebhookStep, Tag("webhook")]
    | Annotated[EnrollStep, Tag("enroll")]
    | Annotated[ExitStep, Tag("exit")],
    Discriminator(
        _step_kind,
        custom_error_type="step_kind",
        custom_error_message=f"a step needs exactly one of: {', '.join(STEP_KINDS)}",
    ),
]

# ------------------------------------------------------------------ triggers and policies


class EventTrigger(_Strict):
    event: str
    where: dict[str, Any] | None = None
    max_age: str = "24h"


class SegmentTrigger(_Strict):
    segment_entered: str
    max_age: str = "24h"


class DateAttribute(_Strict):
    attribute: str
    at: str = "09:00"  # in the contact's time zone
    offset: str | None = None  # whole days, e.g. "-7d": a week before


class DateTrigger(_Strict):
    date_attribute: DateAttribute


def _trigger_kind(value: Any) -> str | None:
    if value == "api":
        return "api"
    if isinstance(value, dict):
        found = [k for k, key in (("event", "event"), ("segment", "segment_entered")) if key in value]
        if "date_attribute" in value:
            found.append("date")
        return found[0] if len(found) == 1 else None
    if isinstance(value, EventTrigger):
        return "event"
    if isinstance(value, SegmentTrigger):
        return "segment"
    return "date" if isinstance(value, DateTrigger) else None


Trigger = Annotated[
    Annotated[EventTrigger, Tag("event")]
    | Annotated[SegmentTrigger, Tag("segment")]
    | Annotated[DateTrigger, Tag("date")]
    | Annotated[Literal["api"], Tag("api")],
    Discriminator(
        _trigger_kind,
        custom_error_type="trigger_kind",
        custom_error_message=(
            "a trigger is one of: {event: <name>}, {segment_entered: <segment id>}, "
            "{date_attribute: {attribute, at}} or api"
        ),
    ),
]


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

    @property
    def trigger_kind(self) -> str:
        kind = _trigger_kind(self.trigger)
        assert kind is not None
        return kind

    @property
    def trigger_event(self) -> str | None:
        """The event name that can start this workflow (segment entries are `segment_entered` events)."""
        if isinstance(self.trigger, EventTrigger):
            return self.trigger.event
        if isinstance(self.trigger, SegmentTrigger):
            return "segment_entered"
        return None

    @property
    def policy(self) -> dict[str, Any]:
        """What every task checks before acting: the goal and the exit rule (compiled into each task)."""
        return {
            "goal": self.goal.model_dump(mode="json", exclude_none=True) if self.goal else None,
            "exitWhen": self.exit_when,
        }


WaitForStep.model_rebuild()
BranchIf.model_rebuild()
BranchElse.model_rebuild()
BranchStep.model_rebuild()
SplitStep.model_rebuild()
Workflow.model_rebuild()


# ------------------------------------------------------------------ walking the steps


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


def children(step: Any, loc: tuple[str | int, ...]) -> list[tuple[list[Any], tuple[str | int, ...]]]:
    """The step lists nested in a step, with their locations in the YAML."""
    if isinstance(step, BranchStep):
        return [
            (case.then, (*loc, "branch", i, "then"))
            if isinstance(case, BranchIf)
            else (case.else_, (*loc, "branch", i, "else"))
            for i, case in enumerate(step.branch)
        ]
    if isinstance(step, WaitForStep):
        return [(step.on_event, (*loc, "on_event")), (step.on_timeout, (*loc, "on_timeout"))]
    if isinstance(step, SplitStep):
        return [(path, (*loc, name)) for name, path in step.paths.items()]
    return []


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
            for sub, sub_loc in children(step, step_loc):
                yield from visit(sub, sub_loc)

    yield from visit(steps, loc)


def step_ids(wf: Workflow) -> dict[int, str]:
    """id(step object) -> its step id, for code that holds the model's step objects."""
    return {id(p.step): p.step_id for p in walk(wf.steps)}


def variant_for(cid: str, workflow_id: str, weights: dict[str, int]) -> str:
    """A split's variant for a contact: sticky (a hash of the contact and the workflow, the same in every
    run) and spread by the weights in the order they are written."""
    digest = hashlib.sha256(f"{workflow_id}\x1f{cid}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % 10_000 / 100  # 0.00 .. 99.99
    total = 0
    for name, weight in weights.items():
        total += weight
        if point < total:
            return name
    return list(weights)[-1]


def longest_run(steps: list[Any]) -> timedelta:
    """The longest a path through `steps` can wait (waits until a date count as nothing: unknown)."""
    total = timedelta()
    for step in steps:
        if isinstance(step, WaitStep) and isinstance(step.wait, str):
            total += _duration_or_zero(step.wait)
        elif isinstance(step, WaitForStep):
            total += _duration_or_zero(step.wait_for.timeout)
            total += max(longest_run(step.on_event), longest_run(step.on_timeout))
        elif isinstance(step, BranchStep | SplitStep):
            total += max((longest_run(sub) for sub, _ in children(step, ())), default=timedelta())
    return total


def _duration_or_zero(text: str) -> timedelta:
    try:
        return durations.parse_duration(text)
    except ValueError:
        return timedelta()


# ------------------------------------------------------------------ validation


@dataclass(frozen=True)
class Catalog:
    """What a workflow may refer to: the project's templates, segments and workflows (None: unchecked)."""

    email_templates: frozenset[str] = frozenset()
    sms_templates: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()
    workflows: frozenset[str] | None = None


def _duration_problem(text: str) -> str | None:
    try:
        value = durations.parse_duration(text, maximum=None)
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
            loc = _yaml_loc(raw, tuple(err["loc"]))
            problems.append(Problem(file, line_of(raw, loc), _message(err), _step_at(raw, loc)))
        return None, problems
    return _Checker(wf, raw, file, catalog).run()


class _Checker:
    def __init__(self, wf: Workflow, raw: Any, file: str, catalog: Catalog) -> None:
        self.wf, self.raw, self.file, self.catalog = wf, raw, file, catalog
        self.problems: list[Problem] = []

    def add(self, loc: tuple[str | int, ...], message: str, step: str | None = None) -> None:
        self.problems.append(Problem(self.file, line_of(self.raw, loc), message, step))

    def rule(self, data: Any, loc: tuple[str | int, ...], step: str | None = None) -> None:
        try:
            parsed = rules.parse_rule(data, path=".".join(str(p) for p in loc))
        except rules.RuleError as exc:
            for p in exc.problems:
                self.add(loc, f"{p.path}: {p.message}", step)
            return
        for seg in sorted(rules.referenced_segments(parsed) - self.catalog.segments):
            self.add(loc, f"unknown segment '{seg}'", step)

    def where(self, event: str, where: Any, loc: tuple[str | int, ...], step: str | None = None) -> None:
        """A `where` on an event's properties: checked as the event condition it is part of."""
        try:
            rules.parse_rule({"event": event, "where": where}, path=".".join(str(p) for p in loc[:-1]))
        except rules.RuleError as exc:
            for p in exc.problems:
                self.add(loc, f"{p.path.replace('.event.where', '.where')}: {p.message}", step)

    def duration(self, text: str, loc: tuple[str | int, ...], step: str | None = None) -> None:
        if (msg := _duration_problem(text)) is not None:
            self.add(loc, msg, step)

    def clock(self, text: str, loc: tuple[str | int, ...], step: str | None = None) -> None:
        try:
            timing.parse_clock(text)
        except ValueError as exc:
            self.add(loc, str(exc), step)

    def offset(
        self, text: str, loc: tuple[str | int, ...], step: str | None = None, *, days: bool = False
    ) -> None:
        try:
            value = timing.parse_offset(text)
        except ValueError as exc:
            self.add(loc, str(exc), step)
            return
        if days and value % timedelta(days=1):
            self.add(loc, f"offset {text} must be whole days (like '-7d')", step)

    def run(self) -> tuple[Workflow | None, list[Problem]]:
        wf = self.wf
        if not ID_RE.match(wf.id):
            self.add(
                ("id",),
                "id must be lower-case words of letters and digits joined by single '-', each starting "
                "with a letter (e.g. black-friday-y2026), at most 48 characters",
            )
        expected = self.file.rsplit("/", 1)[-1].split(".", 1)[0]
        if self.file.endswith((".yaml", ".yml")) and expected != wf.id:
            self.add(("id",), f"id '{wf.id}' must match the file name '{expected}'")
        self.trigger()
        if wf.audience is not None:
            self.rule(wf.audience, ("audience",))
        if wf.exit_when is not None:
            self.rule(wf.exit_when, ("exit_when",))
        if isinstance(wf.reentry, ReentryAfter):
            self.duration(wf.reentry.after, ("reentry", "after"))
        if wf.goal is not None:
            if wf.goal.where is not None:
                self.where(wf.goal.event, wf.goal.where, ("goal", "where"))
            self.duration(wf.goal.within, ("goal", "within"))

        seen: dict[str, tuple[str | int, ...]] = {}
        for placed in walk(wf.steps):
            sid, loc = placed.step_id, placed.loc
            if sid in seen:
                self.add(loc, f"duplicate step id '{sid}' (give one of them an explicit `id`)", sid)
            seen[sid] = loc
            if not STEP_ID_RE.match(sid) or sid in RESERVED_STATES:
                self.add(
                    loc,
                    f"step id '{sid}' must be letters, digits, '_', '.', '-' and not a reserved name",
                    sid,
                )
            self.step(placed.step, sid, loc)
        for steps, loc in _step_lists(wf.steps, ("steps",)):
            for index, step in enumerate(steps[:-1]):
                if isinstance(step, ExitStep):
                    self.add((*loc, index + 1), "unreachable: this step comes after an `exit`", None)
                    break
        if longest_run(wf.steps) > durations.MAX_DURATION:
            self.add(
                ("steps",), "the waits of one run add up to more than one year, the longest a run may last"
            )
        return (wf if not self.problems else None), self.problems

    def trigger(self) -> None:
        trigger = self.wf.trigger
        if isinstance(trigger, EventTrigger):
            if not NAME_RE.match(trigger.event):
                self.add(("trigger", "event"), f"event name '{trigger.event}' is not a valid name")
            if trigger.where is not None:
                self.where(trigger.event, trigger.where, ("trigger", "where"))
            self.duration(trigger.max_age, ("trigger", "max_age"))
        elif isinstance(trigger, SegmentTrigger):
            if trigger.segment_entered not in self.catalog.segments:
                self.add(("trigger", "segment_entered"), f"unknown segment '{trigger.segment_entered}'")
            self.duration(trigger.max_age, ("trigger", "max_age"))
        elif isinstance(trigger, DateTrigger):
            spec = trigger.date_attribute
            self.clock(spec.at, ("trigger", "date_attribute", "at"))
            if spec.offset is not None:
                self.offset(spec.offset, ("trigger", "date_attribute", "offset"), days=True)
            if self.wf.reentry == "never":
                self.add(
                    ("trigger",),
                    "a date_attribute trigger fires every year: set `reentry: always` (or `after: ...`), "
                    "or the contact enters only once",
                )

    def step(self, step: Any, sid: str, loc: tuple[str | int, ...]) -> None:
        catalog = self.catalog
        if isinstance(step, SendEmailStep) and step.send_email.template not in catalog.email_templates:
            self.add(
                (*loc, "send_email", "template"), f"unknown email template '{step.send_email.template}'", sid
            )
        elif isinstance(step, SendSmsStep) and step.send_sms.template not in catalog.sms_templates:
            self.add((*loc, "send_sms", "template"), f"unknown SMS template '{step.send_sms.template}'", sid)
        elif isinstance(step, WaitStep):
            if isinstance(step.wait, str):
                self.duration(step.wait, (*loc, "wait"), sid)
            elif isinstance(step.wait.until, UntilAttribute):
                until = step.wait.until
                if until.at is not None:
                    self.clock(until.at, (*loc, "wait", "until", "at"), sid)
                if until.offset is not None:
                    self.offset(until.offset, (*loc, "wait", "until", "offset"), sid)
            else:
                self.clock(step.wait.until.time, (*loc, "wait", "until", "time"), sid)
        elif isinstance(step, WaitForStep):
            spec = step.wait_for
            if not NAME_RE.match(spec.event):
                self.add((*loc, "wait_for", "event"), f"event name '{spec.event}' is not a valid name", sid)
            if spec.where is not None:
                self.where(spec.event, spec.where, (*loc, "wait_for", "where"), sid)
            self.duration(spec.timeout, (*loc, "wait_for", "timeout"), sid)
        elif isinstance(step, BranchStep):
            for i, case in enumerate(step.branch):
                if isinstance(case, BranchElse) and i != len(step.branch) - 1:
                    self.add((*loc, "branch", i), "`else` must be the last case of a branch", sid)
                if isinstance(case, BranchIf):
                    self.rule(case.if_, (*loc, "branch", i, "if"), sid)
        elif isinstance(step, SplitStep):
            self.split(step, sid, loc)
        elif isinstance(step, UpdateStep):
            self.update(step.update, sid, loc)
        elif isinstance(step, AddToListStep | RemoveFromListStep):
            spec_list = step.add_to_list if isinstance(step, AddToListStep) else step.remove_from_list
            if not NAME_RE.match(spec_list.list):
                self.add((*loc, kind_of(step)), f"list name '{spec_list.list}' is not a valid name", sid)
        elif isinstance(step, AssignTaskStep):
            if not NAME_RE.match(step.assign_task.to):
                self.add((*loc, "assign_task", "to"), "`to` names a team or person, like 'sales'", sid)
            if step.assign_task.due is not None:
                self.duration(step.assign_task.due, (*loc, "assign_task", "due"), sid)
        elif isinstance(step, WebhookStep):
            spec_hook = step.webhook
            if not (spec_hook.url.startswith("https://") or LOCAL_URL_RE.match(spec_hook.url)):
                self.add((*loc, "webhook", "url"), "webhooks are HTTPS (http only to localhost)", sid)
            if not SECRET_NAME_RE.match(spec_hook.secret):
                self.add((*loc, "webhook", "secret"), "`secret` names a Secrets Manager secret", sid)
        elif isinstance(step, EnrollStep):
            target = step.enroll.workflow
            if target == self.wf.id:
                self.add((*loc, "enroll"), "a workflow cannot enroll a contact into itself", sid)
            elif catalog.workflows is not None and target not in catalog.workflows:
                self.add((*loc, "enroll"), f"unknown workflow '{target}'", sid)

    def update(self, spec: UpdateSpec, sid: str, loc: tuple[str | int, ...]) -> None:
        if not (spec.set or spec.unset or spec.add_tags or spec.remove_tags or spec.stage):
            self.add((*loc, "update"), "an update needs set, unset, add_tags, remove_tags or stage", sid)
        for name in [*spec.set, *spec.unset]:
            if name in PROTECTED_ATTRIBUTES:
                self.add((*loc, "update"), f"'{name}' is changed through identify, not by a workflow", sid)
        both = set(spec.add_tags) & set(spec.remove_tags)
        if both:
            self.add((*loc, "update"), f"tags both added and removed: {', '.join(sorted(both))}", sid)

    def split(self, step: SplitStep, sid: str, loc: tuple[str | int, ...]) -> None:
        weights = step.split
        if sum(weights.values()) != 100:
            self.add((*loc, "split"), f"the weights add up to {sum(weights.values())}, not 100", sid)
        if any(w < 0 for w in weights.values()):
            self.add((*loc, "split"), "weights cannot be negative", sid)
        variants = [name for name in weights if name != HOLDOUT]
        if not variants:
            self.add((*loc, "split"), "a split needs at least one variant besides the holdout", sid)
        for name in variants:
            if not VARIANT_RE.match(name) or name in STEP_KINDS or name in ("id", "paths"):
                self.add((*loc, "split"), f"'{name}' cannot name a variant", sid)
            if name not in step.paths:
                self.add((*loc, "split"), f"variant '{name}' has no steps (add `{name}: [...]`)", sid)
        for name in step.paths:
            if name == HOLDOUT:
                self.add((*loc, name), "the holdout receives nothing: it has no steps", sid)
            elif name not in weights:
                self.add((*loc, name), f"'{name}' is not a variant of this split", sid)


def _step_lists(
    steps: list[Any], loc: tuple[str | int, ...]
) -> Iterator[tuple[list[Any], tuple[str | int, ...]]]:
    yield steps, loc
    for index, step in enumerate(steps):
        for sub, sub_loc in children(step, (*loc, index)):
            yield from _step_lists(sub, sub_loc)


def _yaml_loc(raw: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """A pydantic error location as a path in the YAML: union tags and model-only keys dropped."""
    node = raw
    out: list[Any] = []
    for part in loc:
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            out.append(part)
    return tuple(out)


def _message(err: Any) -> str:
    parts: list[str] = []
    for p in err["loc"]:
        if isinstance(p, int) or p == "paths" or (parts and parts[-1] == p):
            continue
        parts.append(str(p))
    field = ".".join(parts) or "workflow"
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
        if (
            i > 0
            and isinstance(part, int)
            and isinstance(node, dict)
            and "if" not in node
            and "else" not in node
        ):
            kind = next((k for k in STEP_KINDS if k in node), "step")
            found = str(node.get("id") or f"{kind} #{part + 1}")
    return found


def awaited_matches(
    awaited: dict[str, Any], name: str, timestamp: datetime, properties: dict[str, Any]
) -> bool:
    """Whether an event ends a `wait_for`: its name; the run's message when the wait names one (an open or
    click of that email, whenever it came), else an event at or after the wait began; and `where`."""
    if name != awaited.get("event"):
        return False
    if awaited.get("messageId"):
        if properties.get("messageId") != awaited["messageId"]:
            return False
    elif awaited.get("since") and timestamp < datetime.fromisoformat(str(awaited["since"])):
        return False
    where = awaited.get("where")
    if where:
        return rules.evaluate_where(rules.parse_where(where), properties, timestamp)
    return True
