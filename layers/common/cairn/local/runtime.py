"""Local mode: the whole application in one process — moto for AWS, the real handlers, the real ASL,
and a virtual clock so that waits of days take no real time."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_string, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from cairn.adapters import aws
from cairn.adapters import clock as clock_port
from cairn.local import patches
from cairn.local.cfn import load_template_text
from cairn.local.clock import VirtualClock
from cairn.local.lambdas import FunctionHost
from cairn.local.schedules import Scheduler, ses_event
from cairn.local.stack import ACCOUNT, REGION, LocalStack, build, redeploy_workflows
from cairn.local.streams import StreamDispatcher
from cairn.project import CompiledProject, load_project, nested_template


class ProjectInvalid(Exception):
    def __init__(self, problems: list[Any]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


BASE_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "MOTO_ACCOUNT_ID": ACCOUNT,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_DEV": "false",
}


class LocalCairn:
    """Start with `start()`, drive with `request()`, `advance()`, read with `outbox()` / `executions()`."""

    def __init__(
        self,
        root: Path,
        *,
        port: int = 3000,
        secret_key: str | None = None,
        write_key: str | None = None,
        start_time: datetime | None = None,
        log_level: str = "WARNING",
    ) -> None:
        self.root = root.resolve()
        self.port = port
        self.secret_key = secret_key or os.environ.get("CAIRN_LOCAL_SECRET_KEY")
        self.write_key = write_key or os.environ.get("CAIRN_LOCAL_WRITE_KEY")
        self.clock = VirtualClock(start_time)
        self.host = FunctionHost(self.clock)
        self.streams = StreamDispatcher(self.clock, self.host)
        self.scheduler = Scheduler(self.clock, self.host)
        self.log_level = log_level
        self.project: CompiledProject | None = None
        self.stack: LocalStack | None = None
        self._mock: Any = None
        self._tmp = tempfile.TemporaryDirectory(prefix="cairn-local-")
        self._saved_env: dict[str, str | None] = {}
        self._saved_tables: dict[Any, str] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LocalCairn:
        project = _load_project(self.root)
        if not project.ok:
            raise ProjectInvalid(project.problems)
        self.project = project
        site_path = Path(self._tmp.name) / "site.json"
        site_path.write_text(json.dumps(project.site.to_data()), encoding="utf-8")
        self._setenv(BASE_ENV)
        from moto import mock_aws

        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        aws.reset()
        clock_port.install(self.clock)
        patches.patch_stepfunctions(self.clock)
        patches.patch_lambda(self.host.invoke)
        patches.patch_streams(self.streams.deliver)
        patches.patch_dynamodb_atomic()
        patches.patch_dynamodb_transactions()
        patches.patch_asl_parsing()
        patches.patch_ses_account()
        settings = project.site.settings
        sender = settings.sender.email or "hello@example.com"
        nested = load_template_text(nested_template(sorted(project.asl)))
        self.stack = build(
            self.root,
            asl=project.asl,
            nested=nested,
            host=self.host,
            streams=self.streams,
            scheduler=self.scheduler,
            overrides={
                "SendingDomain": sender.rsplit("@", 1)[1],
                "SenderEmail": sender,
                "PostalAddress": settings.postal_address or "Cairn local mode",
                "Stage": "dev",
            },
            env_overrides={
                "CAIRN_SITE_PATH": str(site_path),
                "PUBLIC_BASE_URL": f"http://127.0.0.1:{self.port}",
                "LOG_LEVEL": self.log_level,
                "POWERTOOLS_LOG_LEVEL": self.log_level,
            },
        )
        self._setenv(self.stack.env)
        self._point_models_at_tables()
        self.streams.start()
        self.scheduler.start()
        from cairn.adapters.keys import KeyStore
        from cairn.domain.keys import KeyKind

        self.secret_key = KeyStore.create(KeyKind.SECRET, "local secret key", self.secret_key)
        self.write_key = KeyStore.create(KeyKind.WRITE, "local write key", self.write_key)
        return self

    def redeploy(self) -> dict[str, list[str]]:
        """What `sam deploy` of the changed project does, without restarting local mode.

        The project is compiled again from disk (a problem raises ProjectInvalid and changes nothing).
        Each workflow's state machine gets its new definition as a new published version (AutoPublishAlias),
        runs in flight finish on the definition they started with, and new runs get the new one; a new
        workflow gets its state machine; a removed one keeps its state machine (retained) so open runs
        finish. The functions start cold with the new site bundle. Segment builds are not started (local
        mode does not run the stack's deploy hook, at start either). Returns the workflow ids created,
        updated and retained.
        """
        assert self.stack is not None, "start() first"
        project = _load_project(self.root)
        if not project.ok:
            raise ProjectInvalid(project.problems)
        self.settle()  # a deploy does not cut through work in progress
        nested = load_template_text(nested_template(sorted(project.asl)))
        before = dict(self.stack.state_machines)
        changes = redeploy_workflows(self.stack, project.asl, nested)
        self.project = project
        site_path = Path(self.stack.env["CAIRN_SITE_PATH"])
        site_path.write_text(json.dumps(project.site.to_data()), encoding="utf-8")
        self.host.cold_start()
        changes["retained"] = sorted(set(before) - set(project.asl))
        return changes

    def stop(self) -> None:
        self.clock.settle(5)
        self.streams.stop()
        patches.restore()
        clock_port.reset()
        if self._mock is not None:
            self._mock.stop()
            self._mock = None
        aws.reset()
        for model, table in self._saved_tables.items():
            model.Meta.table_name = table
            model._connection = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._tmp.cleanup()

    def __enter__(self) -> LocalCairn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _setenv(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _point_models_at_tables(self) -> None:
        """pynamodb reads table names when its models are imported; point them at this stack's tables."""
        from cairn.adapters import tables

        for model, table in tables.bind_tables(os.environ).items():
            self._saved_tables.setdefault(model, table)

    # -- the HTTP API, in-process ------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        query: str = "",
    ) -> tuple[int, dict[str, str], Any]:
        """Call the API through the real trigger handler; returns (status, headers, parsed body)."""
        hdrs = {k.lower(): v for k, v in (headers or {}).items()}
        if key is not None:
            hdrs["authorization"] = f"Bearer {key}"
        text = body if isinstance(body, str) or body is None else json.dumps(body)
        if text is not None:
            hdrs.setdefault("content-type", "application/json")
        result = self.invoke_http(method, path, query, hdrs, text)
        out_headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
        raw = result.get("body") or ""
        try:
            parsed: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            parsed = raw
        return int(result["statusCode"]), out_headers, parsed

    def invoke_http(
        self, method: str, path: str, query: str, headers: dict[str, str], body: str | None
    ) -> dict[str, Any]:
        now = self.clock.now()
        event = {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": query,
            "headers": headers,
            "queryStringParameters": _query(query),
            "requestContext": {
                "accountId": ACCOUNT,
                "apiId": "local",
                "domainName": f"127.0.0.1:{self.port}",
                "domainPrefix": "127",
                "http": {
                    "method": method.upper(),
                    "path": path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": headers.get("user-agent", "cairn-local"),
                },
                "requestId": str(uuid.uuid4()),
                "routeKey": "$default",
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(now.timestamp() * 1000),
            },
            "body": body,
            "isBase64Encoded": False,
        }
        assert self.stack is not None
        trigger = self.stack.functions["TriggerFunction"]
        self.clock.enter()
        try:
            result: dict[str, Any] = self.host.call(trigger.name, event)
        finally:
            self.clock.leave()
        return result

    # -- time --------------------------------------------------------------------------------
    def advance(self, seconds: float | None = None, to: datetime | None = None) -> dict[str, Any]:
        now = self.clock.now()
        target = to if to is not None else now + timedelta(seconds=seconds or 0)
        if target < now:
            raise ValueError("`to` is in the past")
        fired, idle = self.clock.advance(target)
        return {"now": _iso(self.clock.now()), "fired": fired, "idle": idle}

    def settle(self) -> dict[str, Any]:
        return self.advance(0)

    def feedback(self, message_id: str, kind: str) -> int:
        """Publish what SES would report for a sent email (moto produces none); returns deliveries."""
        from cairn.adapters.tables import MessageItem

        if kind not in ("delivery", "open", "click", "bounce", "complaint"):
            raise ValueError("type must be delivery, open, click, bounce or complaint")
        sent = [m for m in self.outbox() if m["id"] == message_id and m["channel"] == "email"]
        if not sent:
            raise LookupError("no sent email with that messageId")
        item = next(MessageItem.scan(MessageItem.message_id == message_id))
        event = ses_event(
            kind,
            provider_id=str(item.provider_id),
            message_id=message_id,
            recipient=sent[0]["to"],
            at=self.clock.now(),
        )
        delivered = self.scheduler.publish(event)
        self.settle()
        return delivered

    # -- what happened -----------------------------------------------------------------------
    def outbox(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """Every email and SMS the providers accepted, oldest first, with the step that sent it."""
        from moto.ses.models import ses_backends
        from moto.sns.models import sns_backends

        from cairn.adapters.tables import MessageItem

        by_provider: dict[str, MessageItem] = {}
        for item in MessageItem.scan(MessageItem.sk.startswith("msg#")):
            if item.provider_id:
                by_provider[item.provider_id] = item
        out: list[dict[str, Any]] = []
        for raw in ses_backends[ACCOUNT][REGION].sent_messages:
            msg = by_provider.get(raw.id)
            if msg is None or not hasattr(raw, "raw_data"):
                continue
            mail = message_from_string(raw.raw_data, policy=policy.default)
            assert isinstance(mail, EmailMessage)
            html = mail.get_body(("html",))
            text = mail.get_body(("plain",))
            out.append(
                {
                    "id": msg.message_id,
                    "channel": "email",
                    "to": raw.destinations[0],
                    "from": str(mail["From"]),
                    "subject": str(mail["Subject"]),
                    "html": html.get_content() if html is not None else "",
                    "text": text.get_content() if text is not None else "",
                    "headers": {k: str(v) for k, v in mail.items()},
                    **_meta(msg),
                }
            )
        for provider_id, (phone, body) in sns_backends[ACCOUNT][REGION].sms_messages.items():
            msg = by_provider.get(provider_id)
            if msg is None:
                continue
            out.append({"id": msg.message_id, "channel": "sms", "to": phone, "body": body, **_meta(msg)})
        out.sort(key=lambda m: (m["sentAt"] or "", m["id"]))
        if since is not None:
            out = [m for m in out if m["sentAt"] and m["sentAt"] >= _iso(since)]
        return out

    def executions(self) -> list[dict[str, Any]]:
        """Every run with its status and its path through the states."""
        sfn = aws.client("stepfunctions")
        runs: list[dict[str, Any]] = []
        assert self.stack is not None
        for workflow_id, arn in sorted(self.stack.state_machines.items()):
            for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=arn):
                for ex in page["executions"]:
                    history = sfn.get_execution_history(executionArn=ex["executionArn"], maxResults=1000)
                    path = [
                        e["stateEnteredEventDetails"]["name"]
                        for e in history["events"]
                        if "stateEnteredEventDetails" in e
                    ]
                    stop = ex.get("stopDate")
                    runs.append(
                        {
                            "workflowId": workflow_id,
                            "name": ex["name"],
                            "status": ex["status"],
                            "startDate": _iso(ex["startDate"]),  # on the virtual clock, as every date here
                            "stopDate": _iso(stop) if stop is not None else None,
                            "path": path,
                        }
                    )
        return runs


# What `load_project` reads: the project's own folders and files (template.yaml for EVENT_TTL_DAYS).
PROJECT_INPUTS = ("workflows", "segments", "templates", "settings.yaml", "template.yaml")
_PROJECTS: dict[tuple[Path, str], CompiledProject] = {}


def _load_project(root: Path) -> CompiledProject:
    """`load_project`, kept per content of its inputs: each test's LocalCairn compiles the same project,
    and a project changed on disk (a redeploy) has other contents, so it is compiled again. The project
    is read, never changed, by local mode."""
    digest = hashlib.sha256()
    for name in PROJECT_INPUTS:
        top = root / name
        files = (
            [top]
            if top.is_file()
            else sorted(
                Path(folder) / file for folder, _, names in os.walk(top, followlinks=True) for file in names
            )
        )
        for path in files:
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    key = (root, digest.hexdigest())
    if key not in _PROJECTS:
        if len(_PROJECTS) >= 8:
            _PROJECTS.pop(next(iter(_PROJECTS)))
        _PROJECTS[key] = load_project(root)
    return _PROJECTS[key]


def _meta(msg: Any) -> dict[str, Any]:
    return {
        "workflowId": msg.workflow_id,
        "version": msg.version,
        "stepId": msg.step_id,
        "sentAt": _iso(msg.sent_at) if msg.sent_at else None,
    }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _query(query: str) -> dict[str, str] | None:
    from urllib.parse import parse_qsl

    pairs = parse_qsl(query, keep_blank_values=True)
    return dict(pairs) if pairs else None
