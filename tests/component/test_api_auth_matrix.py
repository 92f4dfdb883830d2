"""The auth matrix: every route of the served spec x {no key, write key, secret key}.

Write keys reach only track, identify and batch; secret keys reach everything; unsubscribe and
confirmation links, the spec and the docs need no key. A route added later is secret-only unless it
says otherwise (the gate fails closed), so it joins this matrix by being in the spec."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from tests.component.conftest import SECRET_KEY, WRITE_KEY, FakeClock, Handler
from tests.component.test_trigger import request, trigger

from cairn.adapters.tables import EventItem

__all__ = ["trigger"]

WRITE_ROUTES = {("POST", "/v1/track"), ("POST", "/v1/identify"), ("POST", "/v1/batch")}
PUBLIC_ROUTES = {("GET", "/v1/unsubscribe"), ("POST", "/v1/unsubscribe"), ("GET", "/v1/confirm")}
BODIES: dict[str, Any] = {
    "/v1/track": {"userId": "u-ann", "event": "viewed"},
    "/v1/identify": {"userId": "u-ann", "traits": {"firstName": "Ann"}},
    "/v1/batch": {"batch": [{"type": "track", "userId": "u-ann", "event": "viewed"}]},
    "/v1/contacts/import": {"contacts": [{"userId": "u-ann"}]},
    "/v1/contacts/{userId}/subscriptions/{channel}": {"status": "unsubscribed"},
}
PARAMS = {"userId": "u-ann", "channel": "email", "id": "welcome-series"}


def routes(handler: Handler) -> list[tuple[str, str]]:
    status, _, spec = request(handler, "GET", "/openapi.json")
    assert status == 200
    found = [(m.upper(), path) for path, ops in spec["paths"].items() for m in ops]
    return sorted(found)


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: PARAMS.get(m.group(1), "x"), path)


def call(handler: Handler, method: str, path: str, key: str | None) -> int:
    body = BODIES.get(path)
    if method == "POST" and path == "/v1/unsubscribe":
        body = "List-Unsubscribe=One-Click"
    query = "token=not-a-token&form=profile" if method == "GET" or "unsubscribe" in path else ""
    return request(
        handler,
        method,
        concrete(path),
        body if method in ("POST", "PUT", "PATCH") else None,
        key=key,
        query=query,
    )[0]


def test_the_spec_lists_every_route_of_this_issue(trigger: Handler) -> None:
    listed = set(routes(trigger))

    assert {
        ("POST", "/v1/track"),
        ("POST", "/v1/identify"),
        ("POST", "/v1/batch"),
        ("POST", "/v1/contacts/import"),
        ("GET", "/v1/contacts/{userId}"),
        ("DELETE", "/v1/contacts/{userId}"),
        ("PUT", "/v1/contacts/{userId}/subscriptions/{channel}"),
        ("GET", "/v1/contacts/{userId}/next-fields"),
        ("GET", "/v1/unsubscribe"),
        ("POST", "/v1/unsubscribe"),
    } <= listed
    assert not any("user_id" in path for _, path in listed)


def test_every_route_by_every_kind_of_key(trigger: Handler, clock: FakeClock) -> None:
    table: list[str] = []
    failures: list[str] = []
    for method, path in routes(trigger):
        got = {
            name: call(trigger, method, path, key)
            for name, key in (("none", None), ("write", WRITE_KEY), ("secret", SECRET_KEY))
        }
        table.append(f"{method:6} {path:50} {got}")
        if (method, path) in PUBLIC_ROUTES:
            ok = got["none"] == got["write"] == got["secret"] and 401 not in got.values()
        elif (method, path) in WRITE_ROUTES:
            ok = got["none"] == 401 and got["write"] not in (401, 403) and got["secret"] not in (401, 403)
        else:
            ok = got["none"] == 401 and got["write"] == 403 and got["secret"] not in (401, 403)
        if not ok or 500 in got.values():
            failures.append(table[-1])
    assert failures == [], "\n".join(table)


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
def test_the_spec_and_the_docs_need_no_key(trigger: Handler, path: str) -> None:
    status, _headers, _ = request(trigger, "GET", path)

    assert status == 200


def test_an_unknown_v1_route_asks_for_a_key_first(trigger: Handler) -> None:
    assert request(trigger, "GET", "/v1/no-such-thing")[0] == 401
    assert request(trigger, "GET", "/v1/no-such-thing", key=WRITE_KEY)[0] == 403
    assert request(trigger, "GET", "/v1/no-such-thing", key=SECRET_KEY)[0] == 404


def test_a_refused_key_writes_nothing(trigger: Handler) -> None:
    for key in (None, "cw_unknown", "Basic abc"):
        request(trigger, "POST", "/v1/batch", json.dumps(BODIES["/v1/batch"]), key=key)
    assert list(EventItem.scan()) == []
