"""Intake routes: track and identify (write keys allowed, CORS answered here)."""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from cairn.api.auth import Auth
from cairn.api.models import IdentifyIn, TrackIn
from cairn.api.responses import CORS_HEADERS, ERRORS, json_response
from cairn.domain.errors import PayloadTooLarge
from cairn.services.intake import Intake

MAX_BODY = 32 * 1024


def register(app: APIGatewayHttpResolver, auth: Auth, intake: Intake) -> None:
    def size_guard() -> None:
        if len(app.current_event.body or "") > MAX_BODY:
            raise PayloadTooLarge(f"the body is larger than {MAX_BODY} bytes")

    @app.route("/v1/<path>", method="OPTIONS", include_in_schema=False)
    def preflight(path: str) -> Response[str]:
        return Response(204, None, "", CORS_HEADERS)

    @app.post("/v1/track", status_code=202, responses=ERRORS, tags=["intake"])
    def track(body: TrackIn) -> Response[str]:
        size_guard()
        key = auth.key(write_ok=True)
        return json_response(202, intake.track(key, body), CORS_HEADERS)

    @app.post("/v1/identify", responses=ERRORS, tags=["intake"])
    def identify(body: IdentifyIn) -> Response[str]:
        size_guard()
        key = auth.key(write_ok=True)
        return json_response(200, intake.identify(key, body), CORS_HEADERS)
