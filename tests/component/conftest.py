"""Component tier: the real handlers (`functions/<name>/app.py`, imported by path) against moto.

Handlers are loaded fresh for each test (a cold start: their caches start empty) and called with the
sample events under `events/`, as `sam local invoke -e events/...` would call them.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any, Protocol

import boto3
import pytest
from tests.conftest import ACCOUNT, REGION, ROOT, SECRET, SENDER_EMAIL, STACK, STATE_MACHINE_PREFIX

EVENTS = ROOT / "events"
# The raw keys the sample HTTP events carry (created in the keys table by the `keys` fixture).
WRITE_KEY = "cw_sample-write-key-for-tests-only"
SECRET_KEY = "cs_sample-secret-key-for-tests-only"
# The instant the sample events were recorded at: 2026-11-24 09:00 UTC.
SAMPLE_NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


class Handler(Protocol):
    """A loaded handler: `handler(event)` passes a fake Lambda context."""

    def __call__(self, event: dict[str, Any], context: Any = None) -> Any: ...


_counter = itertools.count()


def load_event(relative: str) -> dict[str, Any]:
    """A fresh copy of a sample event, e.g. `load_event("trigger/track.json")`."""
    data: dict[str, Any] = json.loads((EVENTS / relative).read_text(encoding="utf-8"))
    return data


@dataclass
class FakeLambdaContext:
    """What Powertools reads from Lambda's context object."""

    function_name: str
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


class FakeClock:
    """The clock port (`cairn.adapters.clock`), set by the test: time is injected, never slept."""

    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, when: datetime) -> None:
        self._now = when


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    from cairn.adapters import clock as clock_port

    fake = FakeClock(SAMPLE_NOW)
    clock_port.install(fake)
    yield fake
    clock_port.reset()


@pytest.fixture
def load_handler(tables: dict[str, str]) -> Iterator[Callable[[str], Handler]]:
    """Import `functions/<name>/app.py` by path under a unique module name (a fresh cold start) and return
    a callable `handler(event) -> response` that passes a fake Lambda context."""
    loaded: list[str] = []

    def load(name: str) -> Handler:
        path = ROOT / "functions" / name / "app.py"
        module_name = f"cairn_test_{name}_app_{next(_counter)}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module: ModuleType = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        loaded.append(module_name)
        spec.loader.exec_module(module)
        handler = module.handler

        def call(event: dict[str, Any], context: Any = None) -> Any:
            return handler(event, context or FakeLambdaContext(f"cairn-test-{name}"))

        return call

    yield load
    for module_name in loaded:
        sys.modules.pop(module_name, None)


@pytest.fixture
def keys(tables: dict[str, str]) -> dict[str, str]:
    """The write and secret keys the sample HTTP events use, stored hashed as `cairn keys create` does."""
    from cairn.adapters.keys import KeyStore
    from cairn.domain.keys import KeyKind

    return {
        "write": KeyStore.create(KeyKind.WRITE, "sample write key", WRITE_KEY),
        "secret": KeyStore.create(KeyKind.SECRET, "sample secret key", SECRET_KEY),
    }


@pytest.fixture
def send(load_handler: Callable[[str], Handler], clock: FakeClock, aws: None) -> Handler:
    """The send function, a second after the sample send event's moment; SES takes its mail (SES refuses a
    sender whose domain is not verified)."""
    boto3.client("ses", region_name=REGION).verify_domain_identity(Domain=SENDER_EMAIL.split("@")[1])
    clock.set(SAMPLE_NOW + timedelta(seconds=1))
    return load_handler("send")


@pytest.fixture
def feedback(load_handler: Callable[[str], Handler], send: Handler) -> Handler:
    """The feedback function, beside the send function whose messages it reports on."""
    return load_handler("feedback")


def cid_of(user_id: str) -> str:
    from cairn.domain.identity import cid_for_user

    return cid_for_user(SECRET.encode(), user_id)


@pytest.fixture(scope="session")
def project() -> Any:
    """The repo's project, loaded and compiled once (workflows, templates, settings, ASL)."""
    from cairn.project import load_project

    compiled = load_project(ROOT)
    assert compiled.ok, compiled.problems
    return compiled


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:cairn-test-{name}"


def create_state_machines(project: Any) -> dict[str, str]:
    """One state machine per workflow, from the compiled ASL, named as the stack names them (moto records
    executions without running them: execute_state_machine is off). Returns workflow id -> ARN."""
    import boto3

    sfn = boto3.client("stepfunctions", region_name=REGION)
    arns: dict[str, str] = {}
    for workflow_id, definition in project.asl.items():
        text = json.dumps(definition)
        text = text.replace("${StepFunctionArn}", function_arn("step"))
        text = text.replace("${SendFunctionArn}", function_arn("send"))
        arn = sfn.create_state_machine(
            name=f"{STACK}-wf-{workflow_id}",
            definition=text,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/{STACK}-workflows",
            type="STANDARD",
        )["stateMachineArn"]
        assert arn == STATE_MACHINE_PREFIX + workflow_id
        arns[workflow_id] = arn
    return arns


@pytest.fixture
def state_machines(aws: None, project: Any) -> dict[str, str]:
    return create_state_machines(project)


def given_a_contact(
    user_id: str = "u-ann",
    *,
    traits: dict[str, Any] | None = None,
    consent: dict[str, str] | None = None,
    at: datetime = SAMPLE_NOW,
) -> str:
    """A contact as intake leaves it (identify, then subscriptions); returns its cid."""
    from cairn.adapters.contacts import ContactStore

    contacts = ContactStore()
    cid = cid_of(user_id)
    contacts.merge_traits(cid, traits or {}, now=at, user_id=user_id)
    for channel, status in (consent or {}).items():
        contacts.set_consent(cid, channel, status, "test", now=at)
    return cid


def given_an_open_run(
    cid: str,
    workflow_id: str = "welcome-series",
    *,
    at: datetime = SAMPLE_NOW,
    policy: dict[str, Any] | None = None,
) -> int:
    """The contact's run as react leaves it once its execution started (status active); returns the run.
    `policy`: the goal and exit rule of the version it entered with (default: none kept with the run)."""
    from cairn.adapters.contacts import EnrollmentStore

    enrollments = EnrollmentStore()
    run = enrollments.begin(
        cid,
        workflow_id,
        "v-test",
        trigger_id="trigger-1",
        now=at,
        reentry="never",
        reentry_after_cutoff=None,
        policy=policy,
    )
    assert run is not None
    execution = (
        f"{STATE_MACHINE_PREFIX.replace(':stateMachine:', ':execution:')}{workflow_id}:{cid}-{run.run}"
    )
    enrollments.started(cid, workflow_id, run.run, execution)
    return run.run


def record_event(cid: str, name: str, at: datetime, properties: dict[str, Any] | None = None) -> None:
    """An event as intake stores it (what goals and rules read back)."""
    from cairn.adapters.events import EventStore, NewEvent

    EventStore(ttl=timedelta(days=400)).put_once(
        NewEvent(
            cid=cid,
            message_id=str(uuid.uuid4()),
            name=name,
            timestamp=at,
            received_at=at,
            properties=properties or {},
        )
    )
