"""Statistics routes (secret keys): a workflow's funnel, splits and holdout, and its attribution.

`from` and `to` are dates (`2026-12-01`) or ISO 8601 times (their UTC day is used), both inclusive; they
filter on the time things happened (entries, sends, conversions), kept as daily counters.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from cairn.api.auth import Auth
from cairn.api.gate import Access
from cairn.api.responses import errors, json_response
from cairn.domain.errors import FieldProblem, NotFound, ValidationFailed
from cairn.services.intake import Intake

if TYPE_CHECKING:
    from cairn.services.stats import StatsReader

# The most recent conversions one attribution request reads (the API's bound; the statistics modules
# load with the first statistics request, not on the trigger function's cold start).
ATTRIBUTION_LIMIT = 1000

WorkflowId = Annotated[str, Path(alias="workflowId", min_length=1, max_length=64)]
Day = Annotated[
    str | None,
    Query(
        max_length=40,
        description="a date (2026-12-01) or an ISO 8601 time (its UTC day); inclusive",
    ),
]


def parse_day(value: str | None, field: str) -> date | None:
    if value is None or value == "":
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValidationFailed(
            f"`{field}` is not a date", [FieldProblem(field, "a date (YYYY-MM-DD) or an ISO 8601 time")]
        ) from None
    if moment.tzinfo is None:
        raise ValidationFailed(
            f"`{field}` needs a time zone", [FieldProblem(field, "an ISO 8601 time needs Z or +hh:mm")]
        )
    return moment.date()


def _range(from_: str | None, to: str | None) -> tuple[date | None, date | None]:
    since, until = parse_day(from_, "from"), parse_day(to, "to")
    if since is not None and until is not None and since > until:
        raise ValidationFailed("`from` is after `to`", [FieldProblem("from", "must not be after `to`")])
    return since, until


def register(app: APIGatewayHttpResolver, auth: Auth, intake: Intake) -> None:
    gate = auth.gate
    gate.declare("GET", "/v1/workflows/<workflowId>/stats", Access.SECRET)
    gate.declare("GET", "/v1/workflows/<workflowId>/attribution", Access.SECRET)
    loaded: list[StatsReader] = []

    def reader() -> StatsReader:
        if not loaded:
            from cairn.services.stats import StatsReader

            loaded.append(StatsReader())
        return loaded[0]

    def found(body: dict[str, Any] | None) -> Response[str]:
        """The reader's answer; None: neither defined nor ever counted."""
        if body is None:
            raise NotFound("no workflow with that id")
        return json_response(200, body)

    @app.get(
        "/v1/workflows/<workflowId>/stats",
        responses=errors(404, 422),
        tags=["statistics"],
        summary="A workflow's funnel per version, step, variant and holdout, with the splits' tests",
    )
    def workflow_stats(
        workflow_id: WorkflowId,
        version: Annotated[str | None, Query(max_length=64, description="only this version")] = None,
        from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
        to: Day = None,
    ) -> Response[str]:
        auth.secret()
        since, until = _range(from_, to)
        workflow = intake.rt.site.workflows.get(workflow_id)
        return found(
            reader().workflow_stats(workflow_id, workflow, version=version, since=since, until=until)
        )

    @app.get(
        "/v1/workflows/<workflowId>/attribution",
        responses=errors(404, 422),
        tags=["statistics"],
        summary="Credit for a workflow's conversions by channel, workflow and template (first, last, linear)",
    )
    def workflow_attribution(
        workflow_id: WorkflowId,
        from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
        to: Day = None,
        limit: Annotated[int, Query(ge=1, le=ATTRIBUTION_LIMIT)] = ATTRIBUTION_LIMIT,
    ) -> Response[str]:
        auth.secret()
        since, until = _range(from_, to)
        workflow = intake.rt.site.workflows.get(workflow_id)
        return found(reader().attribution(workflow_id, workflow, since=since, until=until, limit=limit))
