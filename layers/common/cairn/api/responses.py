"""The one error shape, and response helpers shared by the route modules."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response

from cairn.api.models import ErrorOut
from cairn.domain.errors import CairnError

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Max-Age": "600",
}

ERRORS: dict[int, Any] = {
    code: {"description": text, "content": {"application/json": {"schema": ErrorOut.model_json_schema()}}}
    for code, text in [
        (400, "malformed request"),
        (401, "no or unknown key"),
        (403, "key not allowed here"),
        (404, "not found"),
        (409, "conflict"),
        (413, "too large"),
        (422, "a field failed validation"),
        (429, "throttled"),
    ]
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


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    text = body.model_dump_json(by_alias=True) if hasattr(body, "model_dump_json") else json.dumps(body)
    return Response(status, "application/json", text, headers or {})
