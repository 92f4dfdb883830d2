"""The HTTP API (v1) on Powertools' resolver: auth, validation, routes, and the one error shape."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path

from cairn.api.models import ContactOut, ErrorOut, IdentifyIn, SubscriptionIn, TrackIn, TrackOut
from cairn.domain.errors import (
    CairnError,
    Forbidden,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from cairn.domain.keys import ApiKey, KeyKind
from cairn.services.intake import Intake, contact_out

logger = Logger(child=True)
MAX_BODY = 32 * 1024
WRITE_ROUTES = {"/v1/track", "/v1/identify", "/v1/batch"}
ERRORS: dict[int, Any] = {
    code: {"description": text, "content": {"application/json": {"schema": ErrorOut.model_json_schema()}}}
    for code, text in [
        (400, "malformed request"),
        (401, "no or unknown key"),
        (403, "key not allowed here"),
        (413, "too large"),
        (422, "a field failed validation"),
        (429, "throttled"),
    ]
}
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Max-Age": "600",
}


def error_response(exc: CairnError) -> Response[str]:
    body = {
        "error": {
            "code": exc.code,
            "message": exc.message,
            "details": [{"field": d.field, "problem": d.problem} for d in exc.details],
        }
    }
    headers = {}
    if exc.status == 429:
        headers["Retry-After"] = str(getattr(exc, "retry_after", 1))
    return Response(exc.status, "application/json", json.dumps(body), headers)


def _field(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def build_app(intake: Intake, lookup_key: Callable[[str], ApiKey | None]) -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver(enable_validation=True)
    app.enable_swagger(path="/docs", title="Cairn API", version="1")

    def authorize(*, write_ok: bool) -> ApiKey:
        header = app.current_event.headers.get("authorization") or ""
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != "bearer" or not raw:
            raise Unauthorized("send `Authorization: Bearer <key>`")
        key = lookup_key(raw.strip())
        if key is None or key.revoked:
            raise Unauthorized("unknown or revoked key")
        if key.kind is KeyKind.WRITE and not write_ok:
            raise Forbidden("a write key may only call track, identify and batch")
        return key

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
        from cairn.domain.errors import FieldProblem, ValidationFailed

        details = [FieldProblem(_field(e.get("loc", ())), str(e.get("msg", "invalid"))) for e in errors]
        return error_response(ValidationFailed("request validation failed", details))

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> Response[str]:
        return Response(200, "application/json", app.get_openapi_json_schema(title="Cairn API", version="1"))

    def _size_guard() -> None:
        if len(app.current_event.body or "") > MAX_BODY:
            raise PayloadTooLarge(f"the body is larger than {MAX_BODY} bytes")

    @app.route("/v1/<path>", method="OPTIONS", include_in_schema=False)
    def preflight(path: str) -> Response[str]:
        return Response(204, None, "", CORS_HEADERS)

    @app.post("/v1/track", status_code=202, responses=ERRORS, tags=["intake"])
    def track(body: TrackIn) -> Response[str]:
        _size_guard()
        key = authorize(write_ok=True)
        out = intake.track(key, body)
        return Response(202, "application/json", out.model_dump_json(), CORS_HEADERS)

    @app.post("/v1/identify", responses=ERRORS, tags=["intake"])
    def identify(body: IdentifyIn) -> Response[str]:
        _size_guard()
        key = authorize(write_ok=True)
        return Response(200, "application/json", intake.identify(key, body).model_dump_json(), CORS_HEADERS)

    @app.get("/v1/contacts/<user_id>", responses=ERRORS, tags=["contacts"])
    def get_contact(user_id: Annotated[str, Path(min_length=1, max_length=255)]) -> ContactOut:
        authorize(write_ok=False)
        profile = intake.get_contact(user_id)
        if profile is None:
            raise NotFound("no contact with that userId")
        return contact_out(profile)

    @app.put("/v1/contacts/<user_id>/subscriptions/<channel>", responses=ERRORS, tags=["contacts"])
    def put_subscription(
        user_id: Annotated[str, Path(min_length=1, max_length=255)],
        channel: Annotated[str, Path(pattern="^(email|sms)$")],
        body: SubscriptionIn,
    ) -> ContactOut:
        key = authorize(write_ok=False)
        return intake.set_subscription(key, user_id, channel, body)

    app.not_found(lambda exc: error_response(NotFound("no such route")))  # type: ignore[arg-type]
    _ = TrackOut  # documented response model of track
    return app
