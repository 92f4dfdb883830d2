"""The HTTP API (v1): the gate (keys, throttling, size, CORS), then Powertools' resolver (validation,
OpenAPI, the route modules), one resolver per thread (Lambda runs one request per instance at a time;
local mode serves several at once, each thread standing for an instance of its own)."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from cairn.api.auth import Auth
from cairn.api.gate import CORS_HEADERS, Access, Gate, Rule
from cairn.api.responses import error_response
from cairn.api.routes import confirm, contacts, intake, segments, stats, tasks, unsubscribe, workflows
from cairn.bootstrap import Runtime
from cairn.domain.errors import CairnError, FieldProblem, MalformedRequest, NotFound, ValidationFailed
from cairn.services.intake import Intake

logger = Logger(child=True)


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _problem(error: dict[str, Any]) -> str:
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


class _ThreadResolver(APIGatewayHttpResolver):
    """Powertools keeps the current event on a class attribute shared by every resolver
    (`BaseRouter.current_event = ...`); this one keeps it, and the Lambda context, per thread."""

    _request = threading.local()

    @property  # type: ignore[override]
    def current_event(self) -> Any:
        return self._request.event

    @current_event.setter
    def current_event(self, value: Any) -> None:
        self._request.event = value

    @property  # type: ignore[override]
    def lambda_context(self) -> Any:
        return self._request.context

    @lambda_context.setter
    def lambda_context(self, value: Any) -> None:
        self._request.context = value

    def _to_proxy_event(self, event: dict[str, Any]) -> Any:
        proxy = super()._to_proxy_event(event)
        self._request.event = proxy
        return proxy

    def resolve(self, event: Any, context: Any) -> dict[str, Any]:
        self._request.context = context
        return super().resolve(event, context)


def build_resolver(rt: Runtime, auth: Auth, service: Intake) -> APIGatewayHttpResolver:
    """The resolver with every route module registered."""
    app = _ThreadResolver(enable_validation=True)
    app.enable_swagger(path="/docs", title="Cairn API", version="1")

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
        details = [FieldProblem(_field(tuple(e.get("loc", ()))), _problem(e)) for e in errors]
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
    unsubscribe.register(app, auth, service)
    confirm.register(app, auth, service)
    stats.register(app, auth, service)
    workflows.register(app, auth, service)
    tasks.register(app, auth, service)
    segments.register(app, auth, service)
    return app


class Api:
    """What the trigger function calls: `api.resolve(event, context)`."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.gate = Gate(rt.keys.lookup, lambda: rt.settings.api.rate_limits)
        self.gate.declare("GET", "/v1/confirm", Access.PUBLIC)  # double opt-in links (the sending side's)
        self.auth = Auth(self.gate)
        self.service = Intake(rt)
        self._local = threading.local()
        self.resolver  # noqa: B018 - build once now: route modules declare their gate rules

    @property
    def resolver(self) -> APIGatewayHttpResolver:
        app: APIGatewayHttpResolver | None = getattr(self._local, "app", None)
        if app is None:
            app = build_resolver(self.rt, self.auth, self.service)
            self._local.app = app
        return app

    def resolve(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        method, path = _method(event), str(event.get("rawPath"))
        rule = self.gate.rule_for(method, path)
        refused = self.gate.admit(event)
        if refused is not None:
            self._log(method, rule, path, refused)
            return refused
        response: dict[str, Any] = self.resolver.resolve(event, context)
        if rule is not None and rule.access is Access.WRITE:
            response.setdefault("headers", {}).update(CORS_HEADERS)
        self._log(method, rule, path, response)
        return response

    def _log(self, method: str, rule: Rule | None, path: str, response: dict[str, Any]) -> None:
        """One line per request: the route as declared (`/v1/contacts/<userId>`), never the path, which
        may hold a user id; the key's kind; the status and, for a refusal, the error code. Refusals at
        INFO, the rest at DEBUG."""
        status = int(response.get("statusCode") or 0)
        if status < 400 and not logging.getLogger(logger.name).isEnabledFor(logging.DEBUG):
            return
        if rule is not None:
            route = rule.route
        elif path in ("/openapi.json", "/docs") or method == "OPTIONS":
            route = path if method != "OPTIONS" else "preflight"
        else:
            route = "unknown"
        key = self.gate.key
        fields: dict[str, Any] = {
            "route": f"{method} {route}",
            "status": status,
            "key": key.kind.value if key is not None else None,
        }
        if status >= 400:
            fields["code"] = _error_code(response)
            logger.info("request refused", **fields)
        else:
            logger.debug("request", **fields)

    def get_openapi_json_schema(self, **kwargs: Any) -> str:
        return self.resolver.get_openapi_json_schema(**kwargs)


def _error_code(response: dict[str, Any]) -> str | None:
    try:
        body = json.loads(response.get("body") or "{}")
        return str(body["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


def _method(event: dict[str, Any]) -> str:
    return str(((event.get("requestContext") or {}).get("http") or {}).get("method") or "GET").upper()


def build_app(rt: Runtime) -> Api:
    return Api(rt)
