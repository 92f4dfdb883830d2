"""State transitions per message and per journey for each canonical workflow, read from the execution
histories of local mode (the real ASL on moto's interpreter), with what Step Functions charges for them.

Standard workflows are billed per state transition ($0.025 per 1,000 in us-east-1): every state a run
enters is one. The figures come from contacts played through each journey's main paths, so they are what
the journeys cost as written, not an estimate.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DAY, HOUR = 86400, 3600
USD_PER_TRANSITION = 0.025 / 1000
CANONICAL = (
    "welcome-series",
    "abandoned-cart",
    "post-purchase",
    "browse-abandonment",
    "email-engagement",
    "first-purchase",
    "social-follow",
    "lead-nurture",
    "birthday",
)


def _ok(result: tuple[int, dict[str, str], Any]) -> Any:
    status, _, body = result
    if status >= 300:
        raise RuntimeError(f"the API answered {status}: {body}")
    return body


def _contact(local: Any, user_id: str, *, sms: bool = False, **traits: Any) -> None:
    body = {"email": f"{user_id}@bench.example", "firstName": user_id.title(), **traits}
    if sms:
        body["phone"] = "+4915112345678"  # on the project's SMS allowlist
    _ok(local.request("POST", "/v1/identify", {"userId": user_id, "traits": body}, key=local.secret_key))
    for channel in ("email", "sms") if sms else ("email",):
        path = f"/v1/contacts/{user_id}/subscriptions/{channel}"
        _ok(local.request("PUT", path, {"status": "subscribed"}, key=local.secret_key))


def _track(local: Any, user_id: str, event: str, **properties: Any) -> None:
    body = {"userId": user_id, "event": event, "properties": properties}
    _ok(local.request("POST", "/v1/track", body, key=local.secret_key))


def _sent(local: Any, user_id: str, workflow_id: str) -> list[dict[str, Any]]:
    return [
        m for m in local.outbox() if m["to"] == f"{user_id}@bench.example" and m["workflowId"] == workflow_id
    ]


def _play(local: Any) -> None:
    """Contacts through every canonical journey's main paths (each contact in one journey only)."""
    for n in range(3):  # welcome series: email only, SMS too, and one who unsubscribes
        _contact(local, f"w{n}", sms=n == 1)
        _track(local, f"w{n}", "newsletter_subscribed")
    for n in range(8):  # abandoned cart: A, B and holdout by hash; some click, one buys, the rest get SMS
        _contact(local, f"c{n}", sms=n % 2 == 0)
        _track(local, f"c{n}", "cart_abandoned", cart_value=70)
    for n in range(2):
        _contact(local, f"p{n}")
        _track(local, f"p{n}", "product_viewed", name="Boots")
    for n in range(3):
        _contact(local, f"e{n}")
        path = "/v1/workflows/email-engagement/enroll"
        _ok(local.request("POST", path, {"userId": f"e{n}"}, key=local.secret_key))
    for n in range(2):
        _contact(local, f"s{n}", sms=n == 0)
        _track(local, f"s{n}", "social_followed", network="Instagram")
    for n, score in enumerate((90, 20)):
        _contact(local, f"l{n}", lead_score=score)
        _track(local, f"l{n}", "lead_created")
    for n in range(2):
        _contact(local, f"b{n}", birthday="1990-12-02")
    for n in range(2):
        _contact(local, f"o{n}", sms=n == 0)
        _track(local, f"o{n}", "order_completed", total=60, products=[{"name": "Tent"}])
    local.settle()
    local.advance(seconds=HOUR + 60)
    for n in range(2):
        for message in _sent(local, f"e{n}", "email-engagement"):
            local.feedback(message["id"], "open")
    for message in _sent(local, "c1", "abandoned-cart") + _sent(local, "c3", "abandoned-cart"):
        local.feedback(message["id"], "click")
    _track(local, "c5", "order_completed", total=70)
    _ok(
        local.request(
            "PUT", "/v1/contacts/w2/subscriptions/email", {"status": "unsubscribed"}, key=local.secret_key
        )
    )
    local.advance(seconds=14 * DAY)


def measure() -> dict[str, dict[str, float]]:
    """Per canonical workflow: runs, completed journeys, messages, transitions per message and journey."""
    import warnings

    from cairn.adapters.aws import client
    from cairn.local.runtime import LocalCairn

    warnings.filterwarnings("ignore")
    with contextlib.redirect_stdout(io.StringIO()), LocalCairn(ROOT, start_time=START) as local:
        _play(local)
        assert local.stack is not None
        sfn = client("stepfunctions")
        transitions: Counter[str] = Counter()
        send_transitions: Counter[str] = Counter()
        finished: Counter[str] = Counter()
        started: Counter[str] = Counter()
        for workflow_id in CANONICAL:
            arn = local.stack.state_machines[workflow_id]
            definition = _definition(local, workflow_id)
            sending = _send_states(definition)
            for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
                for execution in page["executions"]:
                    started[workflow_id] += 1
                    if execution["status"] == "SUCCEEDED":
                        finished[workflow_id] += 1
                    events = _history(sfn, execution["executionArn"])
                    entered = [
                        e["stateEnteredEventDetails"]["name"]
                        for e in events
                        if "stateEnteredEventDetails" in e
                    ]
                    transitions[workflow_id] += len(entered)
                    send_transitions[workflow_id] += sum(1 for name in entered if name in sending)
        messages = Counter(m["workflowId"] for m in local.outbox())
        errors = list(local.host.errors)
    if errors:
        raise RuntimeError(f"function errors while measuring: {errors[0]['errorMessage'][:200]}")
    out: dict[str, dict[str, float]] = {}
    for workflow_id in CANONICAL:
        sent_count = messages[workflow_id]
        runs = started[workflow_id]
        per_journey = transitions[workflow_id] / runs if runs else 0.0
        out[workflow_id] = {
            "runs": runs,
            "completed": finished[workflow_id],
            "messages": sent_count,
            "transitions": transitions[workflow_id],
            "per_message_sending": send_transitions[workflow_id] / sent_count if sent_count else 0.0,
            "per_message_all": transitions[workflow_id] / sent_count if sent_count else 0.0,
            "per_journey": per_journey,
            "usd_per_1000_journeys": per_journey * 1000 * USD_PER_TRANSITION,
        }
    return out


def _definition(local: Any, workflow_id: str) -> dict[str, Any]:
    assert local.project is not None
    definition: dict[str, Any] = local.project.asl[workflow_id]
    return definition


def _send_states(definition: dict[str, Any]) -> set[str]:
    """The states a message costs: its send Task, the Choice after it and its hold (when held)."""
    states = definition["States"]
    names: set[str] = set()
    for name, state in states.items():
        if state["Type"] == "Task" and state["Parameters"]["FunctionName"] == "${SendFunctionArn}":
            names |= {name, f"{name}: held?", f"{name}: hold"}
    return names & set(states)


def _history(sfn: Any, arn: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        events.extend(page["events"])
    return events


def rows() -> list[tuple[str, str, str, str]]:
    """`make bench` rows: transitions per message (sending) with the journey's figures beside them."""
    figures = measure()
    table: list[tuple[str, str, str, str]] = []
    for workflow_id, f in figures.items():
        table.append(
            (
                f"state transitions per message: {workflow_id}",
                f"{f['per_message_sending']:.2f}",
                "≤3",
                f"{int(f['messages'])} messages, {int(f['runs'])} runs ({int(f['completed'])} done): "
                f"{f['per_message_all']:.1f} per message all told, {f['per_journey']:.1f} per journey, "
                f"${f['usd_per_1000_journeys']:.3f} per 1,000 journeys",
            )
        )
    return table


if __name__ == "__main__":
    for row in rows():
        print(" | ".join(row))
