"""What the workflow end-to-end tests do through local mode: contacts, events, and reading what happened."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

from tests.conftest import SECRET

from cairn.domain.identity import cid_for_user
from cairn.domain.workflows import variant_for
from cairn.local.runtime import LocalCairn

DAY = 86400
HOUR = 3600
# Numbers reserved for fiction (555-01xx), on settings.yaml's SMS allowlist for stacks that are not prod.
_NUMBERS = itertools.count(100)
PHONES: dict[str, str] = {}


def phone_of(user_id: str) -> str:
    if user_id not in PHONES:
        PHONES[user_id] = f"+1202555{next(_NUMBERS) % 100 + 100:04d}"
    return PHONES[user_id]


def ok(result: tuple[int, dict[str, str], Any]) -> Any:
    status, _, body = result
    assert status < 300, (status, body)
    return body


def contact(local: LocalCairn, user_id: str, *, email: bool = True, sms: bool = False, **traits: Any) -> str:
    """A contact as a site makes one: identify, then consent; returns its opaque id."""
    body: dict[str, Any] = {"email": f"{user_id}@example.com", "firstName": user_id.title(), **traits}
    if sms:
        body.setdefault("phone", phone_of(user_id))
    ok(local.request("POST", "/v1/identify", {"userId": user_id, "traits": body}, key=local.secret_key))
    for channel, wanted in (("email", email), ("sms", sms)):
        if wanted:
            ok(
                local.request(
                    "PUT",
                    f"/v1/contacts/{user_id}/subscriptions/{channel}",
                    {"status": "subscribed", "source": "test"},
                    key=local.secret_key,
                )
            )
    return cid_of(user_id)


def cid_of(user_id: str) -> str:
    return cid_for_user(SECRET.encode(), user_id)


def track(local: LocalCairn, user_id: str, event: str, **properties: Any) -> str:
    body: dict[str, Any] = {"userId": user_id, "event": event, "properties": properties}
    timestamp = properties.pop("timestamp", None)
    if timestamp is not None:
        body["timestamp"] = timestamp
    return str(ok(local.request("POST", "/v1/track", body, key=local.secret_key))["messageId"])


def sent(local: LocalCairn, user_id: str, workflow_id: str | None = None) -> list[dict[str, Any]]:
    """What reached the contact (email and SMS), oldest first."""
    to = {f"{user_id}@example.com", PHONES.get(user_id)}
    out = [m for m in local.outbox() if m["to"] in to]
    if workflow_id is not None:
        out = [m for m in out if m["workflowId"] == workflow_id]
    return out


def steps_sent(local: LocalCairn, user_id: str, workflow_id: str) -> list[str]:
    return [m["stepId"] for m in sent(local, user_id, workflow_id)]


def at(message: dict[str, Any]) -> datetime:
    """When an outbox message was sent."""
    return datetime.fromisoformat(str(message["sentAt"]).replace("Z", "+00:00"))


def runs(local: LocalCairn, workflow_id: str, user_id: str | None = None) -> list[dict[str, Any]]:
    found = [r for r in local.executions() if r["workflowId"] == workflow_id]
    if user_id is not None:
        found = [r for r in found if r["name"].rsplit("-", 1)[0] == cid_of(user_id)]
    return found


def enrollments(local: LocalCairn, user_id: str, workflow_id: str) -> list[dict[str, Any]]:
    body = ok(local.request("GET", f"/v1/contacts/{user_id}", key=local.secret_key))
    return [e for e in body["enrollments"] if e["workflowId"] == workflow_id]


def user_in_variant(workflow_id: str, weights: dict[str, int], variant: str, prefix: str = "u") -> str:
    """A user id whose sticky split variant is `variant` (contacts are assigned by a hash of their id)."""
    for n in range(10_000):
        user_id = f"{prefix}-{n}"
        if variant_for(cid_of(user_id), workflow_id, weights) == variant:
            return user_id
    raise AssertionError(f"no user in variant {variant}")


def profile(local: LocalCairn, user_id: str) -> dict[str, Any]:
    body: dict[str, Any] = ok(local.request("GET", f"/v1/contacts/{user_id}", key=local.secret_key))
    return body


def morning(local: LocalCairn) -> datetime:
    """Move the clock on to the next 09:00 UTC (10:00 in Berlin, the project's zone): stories with SMS start
    where quiet hours (21:00-08:00) do not hold them. Returns the new now."""
    now = local.clock.now()
    nine = now.replace(hour=9, minute=0, second=0, microsecond=0)
    if nine <= now:
        nine += timedelta(days=1)
    local.advance(to=nine)
    return local.clock.now()
