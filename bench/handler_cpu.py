"""The trigger's CPU time per `track` with AWS stubbed, as a ratio to Powertools' resolver answering an
empty route, both measured in this process in the same run (interleaved rounds, median)."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse

from bench.calls import ENV, CallCounter, Context, http_event, load_handler, unthrottled


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body

    def read(self, *_: Any) -> bytes:
        return self.body


def _stub(request: Any, **_: Any) -> AWSResponse:
    """Every AWS call answers at once with an empty success (botocore still builds and parses it)."""
    body = b"{}"
    return AWSResponse(request.url, 200, {"content-type": "application/x-amz-json-1.0"}, _Raw(body))


def _cpu(fn: Callable[[], Any], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n


def handler_cpu(requests: int = 400, rounds: int = 5) -> dict[str, float]:
    os.environ.update(ENV)
    import botocore.session
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from cairn.adapters import aws, tables
    from cairn.domain.keys import ApiKey, KeyKind

    aws.reset()
    original = botocore.session.Session.create_client

    def create_client(session: Any, *args: Any, **kwargs: Any) -> Any:
        client = original(session, *args, **kwargs)
        client.meta.events.register("before-send.*.*", _stub)
        return client

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
    try:
        for model in (tables.ContactItem, tables.EventItem, tables.IdentityItem, tables.KeyItem):
            model._connection = None
        trigger = load_handler("trigger")
        key = "cw_bench-key-for-cpu"
        # The key cache is warm (as after the first request of an instance): no key read.
        trigger.app.gate.lookup = lambda raw: ApiKey("h" * 64, KeyKind.WRITE, "bench")
        unthrottled(trigger)
        context = Context()
        body = {"userId": "user-1", "event": "page_viewed", "properties": {"path": "/tents", "price": 199.5}}
        events = [http_event("/v1/track", {**body, "messageId": f"cpu-{i}"}, key) for i in range(requests)]

        empty = APIGatewayHttpResolver()

        @empty.get("/ping")
        def ping() -> dict[str, Any]:
            return {}

        ping_event = http_event("/ping", {}, key)
        ping_event["requestContext"]["http"]["method"] = "GET"
        ping_event["body"] = None
        counter = CallCounter()
        track_times, empty_times = [], []
        with counter.installed():
            assert trigger.handler(events[0], context)["statusCode"] == 202
            for _ in range(rounds):
                pending = iter(events)
                track_times.append(_cpu(lambda: trigger.handler(next(pending), context), requests))  # noqa: B023
                empty_times.append(_cpu(lambda: empty.resolve(ping_event, context), requests))  # type: ignore[arg-type]
    finally:
        botocore.session.Session.create_client = original  # type: ignore[method-assign]
        aws.reset()
    t, e = statistics.median(track_times), statistics.median(empty_times)
    return {"track_us": t * 1e6, "empty_us": e * 1e6, "ratio": t / e, "requests": requests, "rounds": rounds}


def rows() -> list[tuple[str, str, str, str]]:
    """This module's rows of `python -m bench` (and the 500-item batch's calls)."""
    from bench.calls import calls_per_batch

    batch = calls_per_batch()
    detail = ", ".join(f"{k[6:-1]} {v:g}" for k, v in batch.items() if k.startswith("calls["))
    cpu = handler_cpu()
    return [
        (
            "AWS API calls per 500-item batch (key cache warm)",
            f"{batch['per_batch']:.0f}",
            "500",
            f"{batch['rounds']:.0f} batches of {batch['items']:.0f} tracks: {detail}",
        ),
        (
            "trigger CPU per track / empty Powertools route",
            f"{cpu['ratio']:.1f}x",
            "",
            f"AWS stubbed; median of {cpu['rounds']} rounds of {cpu['requests']}: track "
            f"{cpu['track_us']:.0f} us, empty route {cpu['empty_us']:.0f} us",
        ),
    ]
