"""Workflow routes (secret keys): definitions, versions and status; API enrollment; pause, resume, retire."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import BaseModel, ConfigDict, Field

from cairn.api.auth import Auth
from cairn.api.gate import Access
from cairn.api.responses import errors, json_response
from cairn.services.intake import Intake

if TYPE_CHECKING:
    from cairn.services.workflows import Workflows

WorkflowId = Annotated[str, Path(alias="workflowId", min_length=1, max_length=64)]


class EnrollIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(alias="userId", min_length=1, max_length=255)
    data: dict[str, Any] = Field(
        default_factory=dict, description="what the run's templates read as `event.properties`"
    )


class RetireIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["drain", "stop"] = Field(
        default="drain", description="drain: running contacts finish; stop: they end now"
    )
    move_to: str | None = Field(
        default=None, alias="moveTo", min_length=1, max_length=64, description="enroll them there"
    )


def register(app: APIGatewayHttpResolver, auth: Auth, intake: Intake) -> None:
    for method, rule in (
        ("GET", "/v1/workflows"),
        ("GET", "/v1/workflows/<workflowId>"),
        ("POST", "/v1/workflows/<workflowId>/enroll"),
        ("POST", "/v1/workflows/<workflowId>/pause"),
        ("POST", "/v1/workflows/<workflowId>/resume"),
        ("POST", "/v1/workflows/<workflowId>/retire"),
    ):
        auth.gate.declare(method, rule, Access.SECRET)

    loaded: list[Workflows] = []

    def service() -> Workflows:
        """The workflows service, loaded with the first workflow request: the workflow language and its
        rules are not imported on the trigger function's cold start (a track never needs them)."""
        if not loaded:
            from cairn.services.workflows import Workflows

            loaded.append(Workflows(intake.rt))
        return loaded[0]

    @app.get("/v1/workflows", responses=errors(), tags=["workflows"], summary="Every workflow")
    def list_workflows() -> Response[str]:
        auth.secret()
        return json_response(200, {"workflows": service().list()})

    @app.get(
        "/v1/workflows/<workflowId>",
        responses=errors(404),
        tags=["workflows"],
        summary="A workflow: definition, versions and status (active, paused, draining, retired)",
    )
    def get_workflow(workflow_id: WorkflowId) -> Response[str]:
        auth.secret()
        return json_response(200, service().describe(workflow_id, full=True))

    @app.post(
        "/v1/workflows/<workflowId>/enroll",
        responses=errors(404, 409, 422),
        tags=["workflows"],
        summary="Enter a contact now (trigger `api`), honouring the audience and re-entry",
    )
    def enroll(workflow_id: WorkflowId, body: EnrollIn) -> Response[str]:
        auth.secret()
        result = service().enroll_api(workflow_id, body.user_id, body.data)
        return json_response(202 if result["enrolled"] else 200, result)

    @app.post(
        "/v1/workflows/<workflowId>/pause",
        responses=errors(404, 409),
        tags=["workflows"],
        summary="No new entries; messages wait (not dropped) until resumed",
    )
    def pause(workflow_id: WorkflowId) -> Response[str]:
        auth.secret()
        return json_response(200, service().pause(workflow_id))

    @app.post(
        "/v1/workflows/<workflowId>/resume",
        responses=errors(404, 409),
        tags=["workflows"],
        summary="Entries again; held messages go out (through the gate) at once",
    )
    def resume(workflow_id: WorkflowId) -> Response[str]:
        auth.secret()
        return json_response(200, service().resume(workflow_id))

    @app.post(
        "/v1/workflows/<workflowId>/retire",
        responses=errors(404, 422),
        tags=["workflows"],
        summary="No new entries; running contacts finish (drain) or end now (stop), then move to moveTo",
    )
    def retire(workflow_id: WorkflowId, body: RetireIn) -> Response[str]:
        auth.secret()
        return json_response(200, service().retire(workflow_id, body.mode, body.move_to))
