"""The one error shape, and response helpers shared by the route modules."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response

from cairn.api.gate import CORS_HEADERS
from cairn.api.models import ErrorOut
from cairn.domain.errors import CairnError, Throttled

__all__ = ["CORS_HEADERS", "ERRORS", "error_body", "error_response", "json_response"]

_ERROR_CONTENT = {"application/json": {"schema": ErrorOut.model_json_schema()}}
_TEXTS = {
    400: "malformed request",
    401: "no or unknown key",
    403: "key not allowed here",
    404: "not found",
    409: "conflict",
    413: "too large",
    422: "a field failed validation",
    429: "throttled (see Retry-After)",
}
ERRORS: dict[int, Any] = {
    code: {"description": text, "content": _ERROR_CONTENT} for code, text in _TEXTS.items()
}


def errors(*codes: int, ok: int | None = 200, description: str = "success") -> dict[int, Any]:
    """The documented responses of a route: its success (`ok`, described by the route's return type;
    None for none) and its errors (every route may answer 401, 403 and 429 too)."""
    out: dict[int, Any] = {ok: {"description": description}} if ok is not None else {}
    out.update({code: ERRORS[code] for code in sorted({401, 403, 429, *codes})})
    return out


def error_body(exc: CairnError) -> dict[str, Any]:
    return {
        "code": exc.code,
        "message": exc.message,
        "details": [{"field": d.field, "problem": d.problem} for d in exc.details],
    }


def error_response(exc: CairnError) -> Response[str]:
    headers = {}
    if isinstance(exc, Throttled):
        headers["Retry-After"] = str(exc.retry_after)
    return Response(exc.status, "application/json", json.dumps({"error": error_body(exc)}), headers)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    text = body.model_dump_json(by_alias=True) if hasattr(body, "model_dump_json") else json.dumps(body)
    return Response(status, "application/json", text, headers or {})
