"""The gate every request passes before the resolver parses its body: which key may call which route,
the per-key token bucket, the size limit and CORS. So 401/403 come before 422, 429 before any read of
the body, and a 4 MB body is refused before it is parsed."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cairn.domain.errors import CairnError, Forbidden, PayloadTooLarge, Throttled, Unauthorized
from cairn.domain.keys import ApiKey, KeyKind
from cairn.domain.settings import RateLimits
from cairn.domain.throttle import Buckets, retry_after_header

DEFAULT_MAX_BODY = 256 * 1024

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Max-Age": "600",
}


class Access(StrEnum):
    PUBLIC = "public"  # no key (unsubscribe links, the spec, the docs)
    WRITE = "write"  # a write or a secret key; answered with CORS (browsers call these)
    SECRET = "secret"  # a secret key only


@dataclass(frozen=True)
class Rule:
    method: str
    pattern: re.Pattern[str]
    access: Access
    max_body: int
    route: str = ""  # as declared (`/v1/contacts/<userId>`): what logs name, never the path itself


def compile_rule(rule: str) -> re.Pattern[str]:
    """`/v1/contacts/<userId>` -> a pattern matching one path segment per placeholder."""
    parts = re.split(r"(<[A-Za-z_][A-Za-z0-9_]*>)", rule)
    body = "".join("[^/]+" if p.startswith("<") else re.escape(p) for p in parts)
    return re.compile(f"^{body}/?$")


def error_dict(exc: CairnError, extra_headers: dict[str, str] | None = None) -> dict[str, Any]:
    """An HTTP API (payload v2) response in the one error shape."""
    headers = {"Content-Type": "application/json", **(extra_headers or {})}
    if isinstance(exc, Throttled):
        headers["Retry-After"] = str(exc.retry_after)
    body = {
        "error": {
            "code": exc.code,
            "message": exc.message,
            "details": [{"field": d.field, "problem": d.problem} for d in exc.details],
        }
    }
    return {
        "statusCode": exc.status,
        "headers": headers,
        "body": json.dumps(body),
        "isBase64Encoded": False,
        "cookies": [],
    }


class Gate:
    def __init__(
        self,
        lookup: Callable[[str], ApiKey | None],
        limits: Callable[[], RateLimits],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lookup = lookup
        self.limits = limits
        self.monotonic = monotonic
        self.buckets = Buckets()
        self.rules: list[Rule] = []
        self._declared: set[tuple[str, str]] = set()
        self._local = threading.local()

    # -- declaring routes -------------------------------------------------------------------------
    def declare(self, method: str, rule: str, access: Access, *, max_body: int = DEFAULT_MAX_BODY) -> None:
        if (method.upper(), rule) in self._declared:
            return
        self._declared.add((method.upper(), rule))
        self.rules.append(Rule(method.upper(), compile_rule(rule), access, max_body, rule))

    def rule_for(self, method: str, path: str) -> Rule | None:
        for rule in self.rules:
            if rule.method == method and rule.pattern.match(path):
                return rule
        return None

    def _browser_path(self, path: str) -> bool:
        return any(r.access is Access.WRITE and r.pattern.match(path) for r in self.rules)

    # -- per request ------------------------------------------------------------------------------
    @property
    def key(self) -> ApiKey | None:
        """The key the current request was admitted with (None on a public route)."""
        return getattr(self._local, "key", None)

    def admit(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """None to let the request through, else the response that refuses it."""
        self._local.key = None
        http = (event.get("requestContext") or {}).get("http") or {}
        method = str(http.get("method") or "GET").upper()
        path = str(event.get("rawPath") or http.get("path") or "/")
        if method == "OPTIONS":
            if self._browser_path(path):
                return {
                    "statusCode": 204,
                    "headers": dict(CORS_HEADERS),
                    "body": "",
                    "isBase64Encoded": False,
                }
            return None
        rule = self.rule_for(method, path)
        if rule is None:
            if not path.startswith("/v1/"):
                return None  # the resolver answers (the spec, the docs, or 404)
            # Routes other modules add are secret-only unless they declare otherwise: fail closed.
            rule = Rule(method, compile_rule(path), Access.SECRET, DEFAULT_MAX_BODY)
        cors = CORS_HEADERS if rule.access is Access.WRITE else None
        try:
            if rule.access is not Access.PUBLIC:
                self._local.key = self._authorise(event, rule.access)
            self._check_size(event, rule.max_body)
        except CairnError as exc:
            return error_dict(exc, dict(cors) if cors else None)
        return None

    def _authorise(self, event: dict[str, Any], access: Access) -> ApiKey:
        headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
        scheme, _, raw = str(headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not raw.strip():
            raise Unauthorized("send `Authorization: Bearer <key>`")
        key = self.lookup(raw.strip())
        if key is None or key.revoked:
            raise Unauthorized("unknown or revoked key")
        if key.kind is KeyKind.WRITE and access is not Access.WRITE:
            raise Forbidden("a write key may only call track, identify and batch")
        limits = self.limits()
        limit = limits.secret if key.kind is KeyKind.SECRET else limits.write
        wait = self.buckets.take(key.key_hash, rate=limit.rate, burst=limit.burst, now=self.monotonic())
        if wait > 0:
            raise Throttled(retry_after_header(wait))
        return key

    @staticmethod
    def _check_size(event: dict[str, Any], limit: int) -> None:
        body = event.get("body") or ""
        size = len(body)
        if event.get("isBase64Encoded"):
            size = len(body) * 3 // 4
        elif size * 4 > limit:  # cheap bound first; count UTF-8 bytes only near the limit
            size = len(body.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")


def decoded_body(event: dict[str, Any]) -> str:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body).decode("utf-8", "replace")
    return str(body)
