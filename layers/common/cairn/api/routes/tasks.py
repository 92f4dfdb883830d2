"""Task routes (secret keys): the human follow-ups that `assign_task` steps create."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from cairn.adapters import clock
from cairn.adapters.journeys import Task, TaskStore
from cairn.api.auth import Auth
from cairn.api.gate import Access
from cairn.api.responses import errors, json_response
from cairn.domain.errors import NotFound, ValidationFailed
from cairn.services.intake import Intake

TaskId = Annotated[str, Path(alias="taskId", min_length=1, max_length=64)]
Status = Literal["open", "done", "dismissed"]


class TaskPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status | None = None
    assignee: str | None = Field(default=None, min_length=1, max_length=128)
    due: AwareDatetime | None = None
    note: str | None = Field(default=None, max_length=2000)


def task_out(task: Task, user_id: str | None) -> dict[str, Any]:
    return {
        "id": task.id,
        "assignee": task.assignee,
        "title": task.title,
        "note": task.note,
        "status": task.status,
        "due": _iso(task.due),
        "userId": user_id,
        "workflowId": task.workflow_id,
        "stepId": task.step_id,
        "createdAt": _iso(task.created_at),
        "updatedAt": _iso(task.updated_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def register(app: APIGatewayHttpResolver, auth: Auth, intake: Intake) -> None:
    auth.gate.declare("GET", "/v1/tasks", Access.SECRET)
    auth.gate.declare("PATCH", "/v1/tasks/<taskId>", Access.SECRET)
    store = TaskStore()

    def out(task: Task) -> dict[str, Any]:
        profile = intake.rt.contacts.get(task.contact)
        return task_out(task, profile.user_id if profile is not None else None)

    @app.get(
        "/v1/tasks",
        responses=errors(422),
        tags=["tasks"],
        summary="Follow-up tasks, newest first (filter by assignee and status)",
    )
    def list_tasks(
        assignee: Annotated[str | None, Query(max_length=128)] = None,
        status: Annotated[Status | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
    ) -> Response[str]:
        auth.secret()
        try:
            tasks, following = store.list(assignee=assignee, status=status, limit=limit, cursor=cursor)
        except ValueError:
            raise ValidationFailed("the cursor is not one this API gave") from None
        return json_response(200, {"tasks": [out(t) for t in tasks], "cursor": following})

    @app.patch(
        "/v1/tasks/<taskId>",
        responses=errors(404, 422),
        tags=["tasks"],
        summary="Update a task: status (open, done, dismissed), assignee, due, note",
    )
    def patch_task(task_id: TaskId, body: TaskPatch) -> Response[str]:
        auth.secret()
        changes = body.model_dump(exclude_unset=True)
        for required in ("status", "assignee"):  # a task always has these: null changes nothing
            if changes.get(required, "") is None:
                changes.pop(required)
        task = store.update(task_id, changes, now=clock.now())
        if task is None:
            raise NotFound("no task with that id")
        return json_response(200, out(task))
