"""What workflows keep beside the contacts: each workflow's state and versions, human tasks, the index of
yearly dates, runs held by a pause, and the profile changes `update` and list steps make."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from pynamodb.attributes import MapAttribute
from pynamodb.exceptions import DoesNotExist, PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from cairn.adapters.contacts import conditional_failed
from cairn.adapters.tables import (
    PROFILE,
    ContactItem,
    DateIndexItem,
    HeldItem,
    MessageItem,
    TaskItem,
    WorkflowItem,
)

# ---------------------------------------------------------------- workflow state


@dataclass(frozen=True)
class WorkflowState:
    workflow_id: str
    status: str = "active"  # active | paused | draining | retired
    move_to: str | None = None
    updated_at: datetime | None = None
    versions: dict[str, str] = field(default_factory=dict)  # version -> first entry (ISO)


def _state(item: WorkflowItem) -> WorkflowState:
    versions = item.versions.as_dict() if item.versions is not None else {}
    return WorkflowState(
        workflow_id=item.workflow_id,
        status=item.status,
        move_to=item.move_to,
        updated_at=item.updated_at,
        versions={str(k): str(v) for k, v in versions.items()},
    )


class WorkflowStore:
    def __init__(self) -> None:
        self._noted: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def get(self, workflow_id: str) -> WorkflowState:
        try:
            return _state(
                WorkflowItem.get(WorkflowItem.PK, WorkflowItem.key(workflow_id), consistent_read=True)
            )
        except DoesNotExist:
            return WorkflowState(workflow_id)

    def all(self) -> list[WorkflowState]:
        return [_state(i) for i in WorkflowItem.query(WorkflowItem.PK, WorkflowItem.sk.startswith("wf#"))]

    def set_status(
        self,
        workflow_id: str,
        status: str,
        *,
        now: datetime,
        move_to: str | None = None,
        only_from: tuple[str, ...] | None = None,
    ) -> bool:
        """Change the status (with `only_from`: only from one of those; a missing item counts as active)."""
        item = WorkflowItem(WorkflowItem.PK, WorkflowItem.key(workflow_id))
        actions: list[Action] = [
            WorkflowItem.workflow_id.set(workflow_id),
            WorkflowItem.status.set(status),
            WorkflowItem.updated_at.set(now),
            WorkflowItem.move_to.set(move_to) if move_to else WorkflowItem.move_to.remove(),
        ]
        condition: Condition | None = None
        if only_from is not None:
            condition = WorkflowItem.status.is_in(*only_from)
            if "active" in only_from:
                condition |= WorkflowItem.status.does_not_exist()
        try:
            item.update(actions=actions, condition=condition)
            return True
        except UpdateError as exc:
            if conditional_failed(exc):
                return False
            raise

    def note_version(self, workflow_id: str, version: str, now: datetime) -> None:
        """Remember when a version first took a contact in (once per process and version)."""
        with self._lock:
            if (workflow_id, version) in self._noted:
                return
        item = WorkflowItem(WorkflowItem.PK, WorkflowItem.key(workflow_id))
        versions = cast(Any, WorkflowItem.versions)
        first = versions[version].set(versions[version] | now.isoformat())
        try:
            item.update(actions=[WorkflowItem.workflow_id.set(workflow_id), first])
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) != "ValidationException":
                raise
            # No item, or no map yet: create the map, then note the version in it.
            item.update(
                actions=[
                    WorkflowItem.workflow_id.set(workflow_id),
                    WorkflowItem.versions.set(WorkflowItem.versions | {}),
                ]
            )
            item.update(actions=[first])
        with self._lock:
            self._noted.add((workflow_id, version))


# ---------------------------------------------------------------- tasks


@dataclass(frozen=True)
class Task:
    id: str
    contact: str
    assignee: str
    title: str
    note: str | None
    status: str
    due: datetime | None
    workflow_id: str
    step_id: str
    run: int
    created_at: datetime
    updated_at: datetime


def _task(item: TaskItem) -> Task:
    return Task(
        id=item.task_id,
        contact=item.contact,
        assignee=item.assignee,
        title=item.title,
        note=item.note,
        status=item.status,
        due=item.due,
        workflow_id=item.workflow_id,
        step_id=item.step_id,
        run=int(item.run),
        created_at=item.created_at,
        updated_at=item.updated_at,
    )


class TaskStore:
    def create(self, task: Task) -> Task:
        """Store a new task once (a retried step finds the one it made)."""
        item = TaskItem(
            TaskItem.PK,
            TaskItem.key(task.id),
            task_id=task.id,
            contact=task.contact,
            assignee=task.assignee,
            title=task.title,
            note=task.note,
            status=task.status,
            due=task.due,
            workflow_id=task.workflow_id,
            step_id=task.step_id,
            run=task.run,
            created_at=task.created_at,
            updated_at=task.updated_at,
            task_list=TaskItem.LIST,
            task_order=TaskItem.order(task.created_at, task.id),
        )
        try:
            item.save(condition=TaskItem.sk.does_not_exist())
        except PutError as exc:
            if not conditional_failed(exc):
                raise
            existing = self.get(task.id)
            assert existing is not None
            return existing
        return task

    def get(self, task_id: str) -> Task | None:
        try:
            return _task(TaskItem.get(TaskItem.PK, TaskItem.key(task_id), consistent_read=True))
        except DoesNotExist:
            return None

    def list(
        self,
        *,
        assignee: str | None = None,
        status: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Task], str | None]:
        """Tasks newest first, filtered; `cursor` continues a listing (ValueError if it is not one).

        One page of the `tasksByCreation` index per call (DynamoDB's own pagination: the cursor is the
        last key read), so a listing costs what it returns, not the whole list."""
        condition: Condition | None = None
        if assignee is not None:
            condition = TaskItem.assignee == assignee
        if status is not None:
            by_status = TaskItem.status == status
            condition = by_status if condition is None else condition & by_status
        items = list(
            TaskItem.by_creation.query(
                TaskItem.LIST,
                scan_index_forward=False,
                filter_condition=condition,
                limit=limit + 1,  # one more than the page: whether another page exists
                page_size=limit + 1 if condition is None else min(4 * limit, 1000),
                last_evaluated_key=_task_cursor_key(cursor) if cursor else None,
            )
        )
        following = None
        if len(items) > limit:
            last = items[limit - 1]
            key = {"cid": last.cid, "sk": last.sk, "taskList": TaskItem.LIST, "taskOrder": last.task_order}
            encoded = json.dumps({name: {"S": value} for name, value in key.items()})
            following = base64.urlsafe_b64encode(encoded.encode()).decode()
        return [_task(item) for item in items[:limit]], following

    def update(self, task_id: str, changes: dict[str, Any], *, now: datetime) -> Task | None:
        item = TaskItem(TaskItem.PK, TaskItem.key(task_id))
        actions: list[Action] = [TaskItem.updated_at.set(now)]
        for name, value in changes.items():
            attribute = getattr(TaskItem, name)
            actions.append(attribute.set(value) if value is not None else attribute.remove())
        try:
            item.update(actions=actions, condition=TaskItem.sk.exists())
        except UpdateError as exc:
            if conditional_failed(exc):
                return None
            raise
        return _task(item)


_CURSOR_KEYS = frozenset({"cid", "sk", "taskList", "taskOrder"})


def _task_cursor_key(cursor: str) -> dict[str, dict[str, str]]:
    """The index key a cursor carries, checked to be one (a made-up cursor is a 422, not a failed query)."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except ValueError as exc:
        raise ValueError("not a cursor") from exc
    if not isinstance(key, dict) or set(key) != _CURSOR_KEYS:
        raise ValueError("not a cursor")
    for value in key.values():
        if not (isinstance(value, dict) and set(value) == {"S"} and isinstance(value["S"], str)):
            raise ValueError("not a cursor")
    if key["cid"]["S"] != TaskItem.PK or key["taskList"]["S"] != TaskItem.LIST:
        raise ValueError("not a cursor")
    return cast(dict[str, dict[str, str]], key)


# ---------------------------------------------------------------- yearly dates


class DateIndex:
    """Contacts by the month-day of a date attribute, per workflow: what the hourly job reads."""

    def pointers(self, cid: str) -> dict[str, tuple[str, str | None]]:
        """Where the contact is indexed now: workflow id -> (month-day, time zone)."""
        items = DateIndexItem.query(cid, DateIndexItem.sk.startswith("date#"), consistent_read=True)
        return {i.sk.removeprefix("date#"): (i.month_day, i.timezone) for i in items}

    def place(
        self,
        cid: str,
        workflow_id: str,
        month_day: str | None,
        tz: str | None,
        was: tuple[str, str | None] | None,
    ) -> None:
        """Index the contact under `month_day` (None: not at all), moving it from where it `was`."""
        if was is not None and (month_day is None or was[0] != month_day):
            DateIndexItem(DateIndexItem.partition(workflow_id, was[0]), cid).delete()
        if month_day is None:
            if was is not None:
                DateIndexItem(cid, DateIndexItem.pointer(workflow_id)).delete()
            return
        DateIndexItem(
            DateIndexItem.partition(workflow_id, month_day), cid, month_day=month_day, timezone=tz
        ).save()
        DateIndexItem(cid, DateIndexItem.pointer(workflow_id), month_day=month_day, timezone=tz).save()

    def members(self, workflow_id: str, month_day: str) -> Iterator[tuple[str, str | None]]:
        for item in DateIndexItem.query(DateIndexItem.partition(workflow_id, month_day)):
            yield item.sk, item.timezone


# ---------------------------------------------------------------- runs held by a pause


class HeldRuns:
    def add(self, workflow_id: str, cid: str, run: int) -> None:
        HeldItem(HeldItem.partition(workflow_id), cid, run=run).save()

    def remove(self, workflow_id: str, cid: str) -> None:
        HeldItem(HeldItem.partition(workflow_id), cid).delete()

    def all(self, workflow_id: str) -> list[tuple[str, int]]:
        return [(i.sk, int(i.run)) for i in HeldItem.query(HeldItem.partition(workflow_id))]


# ---------------------------------------------------------------- profile changes by steps


@dataclass(frozen=True)
class StepChange:
    set: dict[str, Any] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    add_tags: frozenset[str] = frozenset()
    remove_tags: frozenset[str] = frozenset()
    add_lists: frozenset[str] = frozenset()
    remove_lists: frozenset[str] = frozenset()


def apply_change(cid: str, change: StepChange, *, now: datetime) -> bool:
    """Change an existing profile (False if the contact is gone): one UpdateItem, or two when a set is
    both added to and taken from (DynamoDB refuses ADD and DELETE of one attribute in one update).
    Setting what is already set changes nothing a reader would see: a retried step is harmless."""
    attrs = cast(Any, ContactItem.attributes)
    first: list[Action] = [ContactItem.updated_at.set(now)]
    first += [attrs[k].set(v) for k, v in change.set.items()]
    first += [attrs[k].remove() for k in change.unset if k not in change.set]
    second: list[Action] = []
    for attribute, add, remove in (
        (ContactItem.tags, change.add_tags, change.remove_tags),
        (ContactItem.lists, change.add_lists, change.remove_lists),
    ):
        if add:
            first.append(attribute.add(set(add)))
        if remove:
            (second if add else first).append(attribute.delete(set(remove)))
    for actions in (first, second):
        if not actions:
            continue
        try:
            ContactItem(cid, PROFILE).update(actions=actions, condition=ContactItem.attributes.exists())
        except UpdateError as exc:
            if conditional_failed(exc):
                return False
            raise
    return True


def lists_of(cid: str) -> frozenset[str]:
    try:
        item = ContactItem.get(cid, PROFILE, consistent_read=True, attributes_to_get=["lists"])
    except DoesNotExist:
        return frozenset()
    return frozenset(item.lists or ())


def last_message(cid: str, workflow_id: str, run: int, channel: str) -> str | None:
    """The run's most recent message on a channel that went out (its Cairn message id)."""
    best: MessageItem | None = None
    for item in MessageItem.query(cid, MessageItem.sk.startswith("msg#")):
        if item.workflow_id != workflow_id or int(item.run) != run or item.channel != channel:
            continue
        if item.provider_id is None:
            continue
        if best is None or item.claimed_at > best.claimed_at:
            best = item
    return best.message_id if best is not None else None


# ---------------------------------------------------------------- a workflow's open executions


def running_executions(state_machine_arn: str) -> Iterator[str]:
    """Names (`<cid>-<run>`) of the state machine's running executions, page by page."""
    from cairn.adapters.aws import client

    paginator = client("stepfunctions").get_paginator("list_executions")
    for page in paginator.paginate(stateMachineArn=state_machine_arn, statusFilter="RUNNING"):
        for execution in page["executions"]:
            yield str(execution["name"])


def has_running_executions(state_machine_arn: str) -> bool:
    from botocore.exceptions import ClientError

    from cairn.adapters.aws import client

    try:
        page = client("stepfunctions").list_executions(
            stateMachineArn=state_machine_arn, statusFilter="RUNNING", maxResults=1
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "StateMachineDoesNotExist":
            return False
        raise
    return bool(page.get("executions"))


def events_since(cid: str, name: str, since: datetime) -> list[tuple[str, datetime, dict[str, Any]]]:
    """The contact's events called `name` at or after `since`: (messageId, timestamp, properties)."""
    from cairn.adapters.events import ts_key
    from cairn.adapters.tables import ByTimeIndex, EventItem

    found = []
    after = cast(Condition, ByTimeIndex.ts >= ts_key(since, ""))
    for item in EventItem.by_time.query(cid, after, scan_index_forward=True):
        if item.name != name:
            continue
        stamp = datetime.fromisoformat(item.ts.split("#", 1)[0].replace("Z", "+00:00"))
        props = item.properties
        found.append(
            (item.mid, stamp, props.as_dict() if isinstance(props, MapAttribute) else dict(props or {}))
        )
    return found
