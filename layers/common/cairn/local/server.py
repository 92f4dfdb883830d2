"""Local mode over HTTP on 127.0.0.1: the API through the real trigger handler, plus `/_local/*`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from cairn.local.runtime import LocalCairn


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body, default=str), status=status, content_type="application/json")


def _error(status: int, code: str, message: str, field: str | None = None) -> Response:
    details = [{"field": field, "problem": message}] if field else []
    return _json(status, {"error": {"code": code, "message": message, "details": details}})


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class App:
    def __init__(self, local: LocalCairn) -> None:
        self.local = local

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            response = self.dispatch(request)
        except ValueError as exc:
            response = _error(400, "bad_request", str(exc))
        return response(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        path = request.path
        if path == "/_local/clock/advance" and request.method == "POST":
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or ("seconds" not in body and "to" not in body):
                return _error(400, "malformed_request", 'send {"seconds": N} or {"to": ISO8601}', "seconds")
            if "to" in body:
                try:
                    to = _time(str(body["to"]))
                except ValueError:
                    return _error(422, "validation_failed", "not an ISO 8601 time", "to")
                if to.tzinfo is None:
                    return _error(422, "validation_failed", "needs a time zone (Z or +hh:mm)", "to")
                if to < self.local.clock.now():
                    return _error(400, "bad_request", "`to` is in the past", "to")
                return _json(200, self.local.advance(to=to))
            seconds = body["seconds"]
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
                return _error(422, "validation_failed", "a number of seconds, zero or more", "seconds")
            return _json(200, self.local.advance(seconds=float(seconds)))
        if path == "/_local/outbox" and request.method == "GET":
            since = request.args.get("since")
            return _json(200, self.local.outbox(_time(since) if since else None))
        if path == "/_local/feedback" and request.method == "POST":
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not body.get("messageId") or not body.get("type"):
                return _error(400, "malformed_request", 'send {"messageId": ..., "type": ...}', "messageId")
            try:
                delivered = self.local.feedback(str(body["messageId"]), str(body["type"]))
            except LookupError as exc:
                return _error(404, "not_found", str(exc), "messageId")
            except ValueError as exc:
                return _error(422, "validation_failed", str(exc), "type")
            return _json(200, {"delivered": delivered})
        if path == "/_local/executions" and request.method == "GET":
            return _json(200, self.local.executions())
        if path == "/_local/redeploy" and request.method == "POST":
            from cairn.local.runtime import ProjectInvalid

            try:
                return _json(200, self.local.redeploy())
            except ProjectInvalid as exc:  # nothing changed: the problems, as `cairn validate` lists them
                problems = [{"field": None, "problem": str(p)} for p in exc.problems]
                message = "the project has problems; nothing was deployed"
                return _json(
                    422, {"error": {"code": "project_invalid", "message": message, "details": problems}}
                )
        if path.startswith("/_local/"):
            return _error(404, "not_found", "no such local route")
        headers = {k.lower(): v for k, v in request.headers.items()}
        body = request.get_data(as_text=True) or None
        query = request.query_string.decode()
        result = self.local.invoke_http(request.method, path, query, headers, body)
        response = Response(result.get("body") or "", status=int(result["statusCode"]))
        for name, value in (result.get("headers") or {}).items():
            response.headers[name] = value
        for name, values in (result.get("multiValueHeaders") or {}).items():
            for value in values:
                response.headers.add(name, value)
        return response


def serve(local: LocalCairn, host: str = "127.0.0.1", port: int = 3000) -> BaseWSGIServer:
    """A threaded server; call `serve_forever()` (or run it in a thread, as the tests do)."""
    return make_server(host, port, App(local), threaded=True)
