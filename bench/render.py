"""Sending benchmarks: rendering cost against bare Jinja2, and AWS calls per message sent."""

from __future__ import annotations

import json
import os
import tempfile
import timeit
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.calls import ENV, ROOT, CallCounter, Context, load_handler


def _context(settings: Any) -> dict[str, Any]:
    from cairn.cli.render import preview_context

    attributes = {
        "firstName": "Ann",
        "lastName": "Lind",
        "email": "ann@example.com",
        "timezone": "Europe/Berlin",
    }
    event = {"event": "order_completed", "messageId": "m1", "properties": {"total": 129.9, "items": []}}
    return preview_context(settings, attributes, event=event, now=datetime(2026, 12, 1, 9, tzinfo=UTC))


def render_ratio(number: int = 300, repeat: int = 7) -> dict[str, float]:
    """Rendering every email template of the project with Cairn's renderer (sandbox, strict undefined, the
    contact's time zone, footer and one-click link) after a warm-up, against rendering the same texts as
    bare Jinja2 templates (a plain Environment, compiled once) with the same context."""
    from jinja2 import DictLoader, Environment

    from cairn.domain.rendering import Renderer
    from cairn.domain.templates import EMAIL_PARTS
    from cairn.project import load_project

    project = load_project(ROOT)
    templates = project.site.templates
    settings = project.site.settings
    renderer = Renderer(templates, timezone_fallback=settings.timezone)
    context = _context(settings)
    names = [n for n, t in sorted(templates.email.items()) if "confirm_url" not in t.html]
    sources = {f"{n}.{part}": getattr(templates.email[n], part) for n in names for part in EMAIL_PARTS}
    bare_env = Environment(loader=DictLoader({**templates.partials, **sources}), autoescape=False)
    bare_env.filters["money"] = lambda value, currency="EUR": f"{value} {currency}"
    bare_env.filters["date"] = lambda value, fmt="%d %b %Y", tz=None: str(value)
    bare = [bare_env.get_template(key) for key in sources]
    flat = {**context["contact"], **context}

    def cairn() -> None:
        for name in names:
            renderer.render_email(name, context)

    def plain() -> None:
        for template in bare:
            template.render(flat)

    cairn()
    plain()  # warm: every template compiled and cached
    cairn_s = min(timeit.repeat(cairn, number=number, repeat=repeat)) / (number * len(names))
    bare_s = min(timeit.repeat(plain, number=number, repeat=repeat)) / (number * len(names))
    return {
        "templates": len(names),
        "cairn_us": cairn_s * 1e6,
        "bare_us": bare_s * 1e6,
        "ratio": cairn_s / bare_s,
    }


def calls_per_message(messages: int = 60) -> dict[str, Any]:
    """AWS calls the send function makes per message it sends (email, then SMS), its caches warm, in moto:
    the run check, the claim, the gate's reads (contact, tombstone, frequency caps), the provider, the
    message's status and the reserved `email_sent` / `sms_sent` event."""
    os.environ.update(ENV)
    from cairn.project import load_project

    site = Path(tempfile.mkdtemp(prefix="cairn-bench-")) / "site.json"
    site.write_text(json.dumps(load_project(ROOT).site.to_data()), encoding="utf-8")
    own = {"CAIRN_SITE_PATH": str(site), "STAGE": "prod", "SENDER_EMAIL": "hello@mail.trailhead.example"}
    saved = {k: os.environ.get(k) for k in own}
    os.environ.update(own)
    results: dict[str, Any] = {}
    try:
        _count_sends(messages, results)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return results


def _count_sends(messages: int, results: dict[str, Any]) -> None:
    from moto import mock_aws

    with mock_aws():
        import boto3

        from cairn.adapters import aws, clock, tables
        from cairn.adapters.contacts import ContactStore, EnrollmentStore
        from cairn.domain.identity import cid_for_user

        aws.reset()
        for model in tables.ALL_MODELS:
            model._connection = None
            if not model.exists():
                model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
        boto3.client("ses").verify_domain_identity(Domain="mail.trailhead.example")
        now = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)  # 11:00 in Berlin: no quiet hours
        clock.install(type("Fixed", (), {"now": staticmethod(lambda: now)})())
        secret = os.environ["CAIRN_SECRET"].encode()
        payloads: dict[str, list[dict[str, Any]]] = {"email": [], "sms": []}
        for i in range(messages + 1):
            cid = cid_for_user(secret, f"bench-{i}")
            ContactStore().merge_traits(
                cid,
                {"email": f"bench-{i}@example.com", "phone": "+4915112345678"},
                now=now,
                user_id=f"bench-{i}",
            )
            for channel in ("email", "sms"):
                ContactStore().set_consent(cid, channel, "subscribed", "bench", now=now)
            run = EnrollmentStore().begin(
                cid,
                "welcome-series",
                "v",
                trigger_id="t",
                now=now,
                reentry="never",
                reentry_after_cutoff=None,
            )
            assert run is not None
            EnrollmentStore().started(cid, "welcome-series", run.run, "arn")
            for channel, template in (("email", "welcome-discount"), ("sms", "follow-us-sms")):
                payloads[channel].append(
                    {
                        "action": "send",
                        "run": {
                            "cid": cid,
                            "workflowId": "welcome-series",
                            "version": "v",
                            "run": run.run,
                            "enteredAt": now.isoformat(),
                            "trigger": {"event": "bench", "messageId": "t"},
                        },
                        "step": {"id": f"{channel}-{template}", "channel": channel, "template": template},
                        "policy": {"goal": None, "exitWhen": None},
                    }
                )
        counter = CallCounter()
        with counter.installed():
            for model in tables.ALL_MODELS:
                model._connection = None
            aws.reset()
            send = load_handler("send")
            context = Context()
            for channel in ("email", "sms"):
                warm, *rest = payloads[channel]
                assert send.handler(warm, context)["status"] == "sent"  # cold start and caches
                counter.calls.clear()
                for payload in rest:
                    assert send.handler(payload, context)["status"] == "sent"
                total = sum(counter.calls.values())
                results[channel] = {
                    "per_message": total / len(rest),
                    "detail": {name: n / len(rest) for name, n in sorted(counter.calls.items())},
                }
        clock.reset()


def rows() -> list[tuple[str, str, str, str]]:
    render = render_ratio()
    calls = calls_per_message()
    out = [
        (
            "render per email, warm cache / bare Jinja2, same text",
            f"{render['ratio']:.2f}x",
            "",
            f"{render['templates']:.0f} templates: {render['cairn_us']:.0f} µs vs {render['bare_us']:.0f} µs "
            "(sandbox, strict undefined, zones, footer)",
        )
    ]
    for channel in ("email", "sms"):
        detail = ", ".join(f"{k.split('.', 1)[1]} {v:g}" for k, v in calls[channel]["detail"].items())
        out.append(
            (
                f"AWS calls per {channel} sent (caps on, warm)",
                f"{calls[channel]['per_message']:.2f}",
                "",
                detail,
            )
        )
    return out
