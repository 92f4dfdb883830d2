"""The HTTP API (v1) on Powertools' resolver: error mapping, OpenAPI, and the route modules."""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from cairn.api.auth import Auth
from cairn.api.responses import error_response
from cairn.api.routes import contacts, intake
from cairn.bootstrap import Runtime
from cairn.domain.errors import CairnError, FieldProblem, MalformedRequest, NotFound, ValidationFailed
from cairn.services.intake import Intake

logger = Logger(child=True)


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) or "body"


def build_app(rt: Runtime) -> APIGatewayHttpResolver:
    """The resolver with every route module registered; services are built lazily from `rt`."""
    app = APIGatewayHttpResolver(enable_validation=True)
    app.enable_swagger(path="/docs", title="Cairn API", version="1")
    auth = Auth(app, rt.keys.lookup)
    service = Intake(rt)

    @app.exception_handler(CairnError)
    def _cairn_error(exc: CairnError) -> Response[str]:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response[str]:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(MalformedRequest("the body is not valid JSON"))
        if any(tuple(e.get("loc", ())) == ("body",) for e in errors):
            # No body, or JSON that is not an object: the body as a whole is malformed (400), not a field.
            return error_response(MalformedRequest("the body must be a JSON object"))
        details = [
            FieldProblem(_field(tuple(e.get("loc", ()))), str(e.get("msg", "invalid"))) for e in errors
        ]
        return error_response(ValidationFailed("request validation failed", details))

    @app.not_found
    def _not_found(exc: Exception) -> Response[str]:
        return error_response(NotFound("no such route"))

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> Response[str]:
        return Response(200, "application/json", app.get_openapi_json_schema(title="Cairn API", version="1"))

    # One line per route module: each registers its routes on `app` (see cairn/api/routes/).
    intake.register(app, auth, service)
    contacts.register(app, auth, service)
    return app
