"""AWS API calls made by the trigger function per request, counted through botocore's event hooks."""

from __future__ import annotations

import importlib.util
import json
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import botocore.session

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_METRICS_NAMESPACE": "Cairn",
    "POWERTOOLS_SERVICE_NAME": "cairn",
    "POWERTOOLS_LOG_LEVEL": "ERROR",
    "LOG_LEVEL": "ERROR",
    "CONTACTS_TABLE": "bench-contacts",
    "EVENTS_TABLE": "bench-events",
    "IDENTITIES_TABLE": "bench-identities",
    "KEYS_TABLE": "bench-keys",
    "STATE_MACHINE_PREFIX": "arn:aws:states:us-east-1:123456789012:stateMachine:bench-wf-",
    "CAIRN_SECRET": "bench-secret-of-sufficient-length",
}


class CallCounter:
    """Counts every API call of every botocore client created while installed (boto3's and pynamodb's)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    @contextmanager
    def installed(self) -> Iterator[CallCounter]:
        original = botocore.session.Session.create_client
        counter = self

        def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
            client = original(session, *args, **kwargs)
            client.meta.events.register("before-call.*.*", counter._count)
            return client

        botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
        try:
            yield self
        finally:
            botocore.session.Session.create_client = original  # type: ignore[method-assign]


def load_handler(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "functions" / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def http_event(path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"authorization": f"Bearer {key}", "content-type": "application/json"},
        "requestContext": {
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": "bench",
            "stage": "$default",
            "domainName": "bench.local",
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


class Context:
    function_name = "bench-trigger"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-trigger"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def unthrottled(trigger: ModuleType) -> None:
    """Lift the per-key rate limit (settings.yaml's default write rate would throttle a benchmark)."""
    from cairn.domain.settings import KeyRate, RateLimits

    limits = RateLimits(write=KeyRate(rate=1e9, burst=10**9), secret=KeyRate(rate=1e9, burst=10**9))
    trigger.app.gate.limits = lambda: limits


@contextmanager
def warm_trigger() -> Iterator[tuple[ModuleType, Context, str, CallCounter]]:
    """In moto: the tables `track` writes, a write key, and the trigger handler loaded under a call counter
    and warmed by one `track` (the cold start's key lookup); yields them with the counter emptied."""
    os.environ.update(ENV)
    from moto import mock_aws

    with mock_aws():
        from cairn.adapters import aws, tables

        aws.reset()
        models = (tables.ContactItem, tables.EventItem, tables.IdentityItem, tables.KeyItem)
        for model in models:
            model._connection = None
            if not model.exists():
                model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        from cairn.adapters.keys import KeyStore
        from cairn.domain.keys import KeyKind

        key = KeyStore.create(KeyKind.WRITE, "bench")
        counter = CallCounter()
        with counter.installed():
            for model in models:
                model._connection = None  # new clients, created under the counter
            trigger = load_handler("trigger")
            unthrottled(trigger)
            context = Context()
            trigger.handler(http_event("/v1/track", {"userId": "warm", "event": "page_viewed"}, key), context)
            counter.calls.clear()
            yield trigger, context, key, counter


def calls_per_track(requests: int = 200) -> dict[str, float]:
    """Calls per `track` with the key cache warm (after one request), in moto."""
    with warm_trigger() as (trigger, context, key, counter):
        for i in range(requests):
            body = {"userId": f"user-{i % 20}", "event": "page_viewed", "messageId": f"bench-{i}"}
            response = trigger.handler(http_event("/v1/track", body, key), context)
            assert response["statusCode"] == 202, response
    total = sum(counter.calls.values())
    return {
        "requests": requests,
        "calls": total,
        "per_track": total / requests,
        **{f"calls[{name}]": n / requests for name, n in counter.calls.items()},
    }


def calls_per_batch(items: int = 500, rounds: int = 3) -> dict[str, float]:
    """Calls per `/v1/batch` of `items` track calls (key cache warm), in moto: one conditional PutItem
    per event, as for `track`."""
    with warm_trigger() as (trigger, context, key, counter):
        for r in range(rounds):
            batch = [
                {
                    "type": "track",
                    "userId": f"user-{i % 50}",
                    "event": "page_viewed",
                    "messageId": f"b{r}-{i}",
                }
                for i in range(items)
            ]
            response = trigger.handler(http_event("/v1/batch", {"batch": batch}, key), context)
            assert response["statusCode"] == 200, response
            assert '"status":202' in response["body"]
    total = sum(counter.calls.values())
    return {
        "items": items,
        "rounds": rounds,
        "per_batch": total / rounds,
        **{f"calls[{name}]": n / rounds for name, n in counter.calls.items()},
    }
