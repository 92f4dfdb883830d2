"""The workflow language end to end: every trigger and step kind, pause, resume, retire, versions, a throttled
StartExecution and racing triggers — in local mode on the virtual clock, executing the real generated ASL of
a project made for these tests (the repo's template, functions, templates and segments; its own workflows).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from tests.e2e.projects import project
from tests.e2e.workflow_helpers import (
    DAY,
    HOUR,
    at,
    cid_of,
    contact,
    enrollments,
    ok,
    profile,
    runs,
    sent,
    steps_sent,
    track,
)
from tests.webhook_receiver import Receiver

from cairn.adapters.journeys import lists_of
from cairn.domain import timing
from cairn.domain import webhooks as signing
from cairn.local.runtime import LocalCairn
from cairn.services.workflows import STATE_TTL

pytestmark = pytest.mark.e2e
START = datetime(2027, 3, 27, 12, 0, tzinfo=UTC)  # the Saturday before Europe's clocks go forward
BERLIN = ZoneInfo("Europe/Berlin")

WORKFLOWS = {
    "steps-tour": """
id: steps-tour
name: A tour of the step kinds
trigger: {event: tour_started}
reentry: always
steps:
  - update: {set: {plan: trial}, add_tags: [touring], stage: touring}
  - add_to_list: tourists
  - wait: {until: {attribute: trial_ends_at, at: "09:00", offset: -1d}}
  - id: trial-reminder
    send_email: {template: welcome-our-story}
  - id: answered
    wait_for: {event: survey_answered, where: {property: score, gte: 8}, timeout: 2d}
    on_event: [{update: {add_tags: [promoter]}}]
    on_timeout: [{remove_from_list: tourists}]
  - id: crm
    webhook: {url: "RECEIVER", secret: tour-hook, retries: 2, body: {campaign: tour}}
  - enroll: tour-next
  - branch:
      - if: {tag: promoter}
        then: [{exit: {reason: promoter}}]
  - update: {unset: [plan], remove_tags: [touring]}
""",
    "tour-next": """
id: tour-next
name: What comes after the tour
trigger: api
reentry: always
steps:
  - id: next-email
    send_email: {template: follow-us}
""",
    "night-owl": """
id: night-owl
name: Half past two, local time
trigger: {event: night_owl}
steps:
  - wait: {until: {time: "02:30"}}
  - update: {set: {woke: up}}
""",
    "make-vip": """
id: make-vip
name: Tag big spenders
trigger: {event: big_order}
steps:
  - update: {add_tags: [vip]}
""",
    "vip-welcome": """
id: vip-welcome
name: Welcome to VIP
trigger: {segment_entered: vip}
steps:
  - id: vip-email
    send_email: {template: welcome-discount}
""",
    "pausable": """
id: pausable
name: Two emails a day apart
trigger: {event: pause_test}
steps:
  - id: first
    send_email: {template: welcome-discount}
  - wait: 1d
  - id: second
    send_email: {template: welcome-our-story}
""",
    "drain-me": """
id: drain-me
name: Drained
trigger: {event: drain_test}
steps:
  - wait: 1d
  - id: last
    send_email: {template: follow-us}
""",
    "stop-me": """
id: stop-me
name: Stopped
trigger: {event: stop_test}
steps:
  - wait: 2d
  - id: never
    send_email: {template: follow-us}
""",
    "stop-later": """
id: stop-later
name: Stopped by the hourly sweep
trigger: {event: stop_later_test}
steps:
  - wait: 2d
  - id: never
    send_email: {template: follow-us}
""",
    "versioned": """
id: versioned
name: Changes while contacts are in it
trigger: {event: versioned_test}
reentry: always
steps:
  - wait: 1d
  - id: message
    send_email: {template: welcome-discount}
""",
    "goal-versioned": """
id: goal-versioned
name: A goal that changes while contacts are in it
trigger: {event: goal_version_test}
goal: {event: goal_one, within: 7d}
steps:
  - wait: 1d
  - id: offer
    send_email: {template: welcome-discount}
""",
    "racy": """
id: racy
name: One run at a time
trigger: {event: race}
steps:
  - wait: 1d
  - send_email: {template: welcome-discount}
""",
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def workflows_for(receiver_url: str, versioned_template: str = "welcome-discount") -> dict[str, str]:
    """These workflows (id: YAML text), calling the receiver; `versioned` sends `versioned_template`."""
    texts = {wid: source.replace("RECEIVER", receiver_url).lstrip() for wid, source in WORKFLOWS.items()}
    texts["versioned"] = texts["versioned"].replace("welcome-discount", versioned_template)
    return texts


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[LocalCairn]:
    root = project(tmp_path_factory.mktemp("language"), workflows=workflows_for(receiver.url))
    with LocalCairn(root, start_time=START) as runtime:
        from cairn.adapters.aws import client

        client("secretsmanager").create_secret(
            Name="tour-hook",
            SecretString="shared-with-the-crm",
            Tags=[{"Key": "cairn:webhook", "Value": "true"}],
        )
        yield runtime
        assert runtime.streams.failed == []


def unexpected(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Function errors a story did not cause on purpose: a failing webhook (retried by its ASL Retry) and a
    throttled StartExecution (retried by the stream) are what some stories test."""
    return [
        e
        for e in errors
        if e["errorType"] != "WebhookFailed" and "ThrottlingException" not in e["errorMessage"]
    ]


@pytest.fixture
def local(shared: LocalCairn) -> Iterator[LocalCairn]:
    errors = len(shared.host.errors)
    yield shared
    shared.settle()
    assert unexpected(shared.host.errors[errors:]) == []


def ended(local: LocalCairn, workflow_id: str, user_id: str) -> str:
    [run] = runs(local, workflow_id, user_id)
    assert run["status"] == "SUCCEEDED", run
    return str(run["path"][-1])


def api(local: LocalCairn, method: str, path: str, body: Any = None) -> Any:
    return ok(local.request(method, path, body, key=local.secret_key))


# ---------------------------------------------------------------- steps


def test_a_time_of_day_inside_the_spring_gap_comes_at_the_end_of_the_gap(local: LocalCairn) -> None:
    # On 28 March 2027 Berlin's clocks go from 02:00 to 03:00: 02:30 does not exist that night.
    # (The first story of the module: the shared clock starts the Saturday before.)
    assert local.clock.now() == START
    contact(local, "cleo", timezone="Europe/Berlin")
    track(local, "cleo", "night_owl")
    local.advance(to=datetime(2027, 3, 28, 0, 59, tzinfo=UTC))
    assert "woke" not in profile(local, "cleo")["attributes"]
    local.advance(to=datetime(2027, 3, 28, 1, 0, tzinfo=UTC))  # 03:00 CEST: the first instant after the gap
    assert profile(local, "cleo")["attributes"]["woke"] == "up"


def test_a_promoter_goes_through_every_step_kind(local: LocalCairn, receiver: Receiver) -> None:
    t0 = local.clock.now()
    trial_ends = (t0 + timedelta(days=3)).date()
    contact(local, "ada", trial_ends_at=trial_ends.isoformat(), timezone="Europe/Berlin")
    track(local, "ada", "tour_started")
    local.settle()
    ada = profile(local, "ada")
    assert (ada["attributes"]["plan"], ada["attributes"]["stage"]) == ("trial", "touring")
    assert "touring" in ada["tags"] and lists_of(cid_of("ada")) == {"tourists"}

    # wait until the day before the trial ends, 09:00 in Berlin
    local.advance(seconds=3 * DAY)
    [reminder] = sent(local, "ada", "steps-tour")
    assert at(reminder) == timing.local_instant(trial_ends - timedelta(days=1), time(9), BERLIN)

    # a survey answer that does not match `where` does not end the wait; one that does, does at once
    track(local, "ada", "survey_answered", score=5)
    local.settle()
    assert runs(local, "steps-tour", "ada")[0]["path"][-1] == "answered"
    receiver.statuses = [503]  # the CRM fails once: the ASL Retry sends it again
    track(local, "ada", "survey_answered", score=9)
    local.advance(seconds=60)
    assert "promoter" in profile(local, "ada")["tags"]

    # the webhook: signed, with the contact, delivered on the retry
    deliveries = [
        json.loads(body) for _, body in receiver.received if json.loads(body)["contact"]["userId"] == "ada"
    ]
    assert len(deliveries) == 2 and deliveries[0]["id"] == deliveries[1]["id"]
    headers, body = receiver.received[-1]
    now = int(local.clock.now().timestamp())
    assert signing.verify(b"shared-with-the-crm", headers["Cairn-Signature"], body, now=now)
    assert deliveries[1]["data"] == {"campaign": "tour"}

    # enroll: into the next workflow, through a Lambda step
    assert steps_sent(local, "ada", "tour-next") == ["next-email"]
    # the promoter branch exits: the final update never ran
    assert ended(local, "steps-tour", "ada") == "Exited"
    assert profile(local, "ada")["attributes"]["plan"] == "trial"
    assert lists_of(cid_of("ada")) == {"tourists"}


def test_no_answer_takes_the_timeout_path_to_the_end(local: LocalCairn) -> None:
    contact(local, "ben", trial_ends_at="2000-01-01")  # long passed: the wait ends at once (in a second)
    track(local, "ben", "tour_started")
    local.advance(seconds=1)
    assert steps_sent(local, "ben", "steps-tour") == ["trial-reminder"]
    local.advance(seconds=2 * DAY)
    assert lists_of(cid_of("ben")) == frozenset()  # on_timeout: removed from the list
    assert ended(local, "steps-tour", "ben") == "Completed"
    ben = profile(local, "ben")
    assert "plan" not in ben["attributes"] and "touring" not in ben["tags"]
    assert ben["attributes"]["stage"] == "touring"


# ---------------------------------------------------------------- triggers


def test_entering_a_segment_starts_its_workflow(local: LocalCairn) -> None:
    contact(local, "dora")
    track(local, "dora", "big_order", total=900)  # make-vip tags her; the vip segment takes her in
    local.settle()
    assert "vip" in profile(local, "dora")["tags"]
    assert steps_sent(local, "dora", "vip-welcome") == ["vip-email"]
    track(local, "dora", "big_order", total=900)  # still a VIP: no second entry
    local.settle()
    assert len(runs(local, "vip-welcome", "dora")) == 1


# ---------------------------------------------------------------- pause, resume, retire


def test_a_paused_workflow_takes_no_one_and_holds_its_messages_until_resumed(local: LocalCairn) -> None:
    contact(local, "eve")
    contact(local, "fin")
    track(local, "eve", "pause_test")
    local.settle()
    assert steps_sent(local, "eve", "pausable") == ["first"]
    assert api(local, "POST", "/v1/workflows/pausable/pause")["status"] == "paused"
    assert api(local, "GET", "/v1/workflows/pausable")["status"] == "paused"
    local.advance(seconds=STATE_TTL)  # every function instance has seen it
    track(local, "fin", "pause_test")
    local.advance(seconds=DAY + HOUR)
    assert runs(local, "pausable", "fin") == []  # no entries while paused
    assert steps_sent(local, "eve", "pausable") == ["first"]  # held, not dropped
    [message] = [m for m in api(local, "GET", "/v1/contacts/eve")["messages"] if m["stepId"] == "second"]
    assert message["status"] == "held"
    t_resume = local.clock.now()
    assert api(local, "POST", "/v1/workflows/pausable/resume")["status"] == "active"
    local.settle()
    [_, second] = sent(local, "eve", "pausable")
    assert at(second) == t_resume  # at once, not at the next re-check
    assert ended(local, "pausable", "eve") == "Completed"
    local.advance(seconds=STATE_TTL)
    track(local, "fin", "pause_test")
    local.settle()
    assert steps_sent(local, "fin", "pausable") == ["first"]


def test_retire_drain_lets_runs_finish_then_moves_them_on(local: LocalCairn) -> None:
    contact(local, "gil")
    contact(local, "hal")
    track(local, "gil", "drain_test")
    local.settle()
    body = api(local, "POST", "/v1/workflows/drain-me/retire", {"mode": "drain", "moveTo": "tour-next"})
    assert (body["status"], body["moveTo"]) == ("draining", "tour-next")
    local.advance(seconds=STATE_TTL)
    track(local, "hal", "drain_test")
    local.advance(seconds=DAY)
    assert runs(local, "drain-me", "hal") == []
    assert steps_sent(local, "gil", "drain-me") == ["last"]  # finished its journey
    assert steps_sent(local, "gil", "tour-next") == ["next-email"]  # then moved on
    assert api(local, "GET", "/v1/workflows/drain-me")["status"] == "retired"  # no run left open


def test_retire_stop_ends_runs_now_and_moves_them_on(local: LocalCairn) -> None:
    contact(local, "ivy")
    track(local, "ivy", "stop_test")
    local.advance(seconds=HOUR)
    body = api(local, "POST", "/v1/workflows/stop-me/retire", {"mode": "stop", "moveTo": "tour-next"})
    assert (body["status"], body["stopped"]) == ("retired", 1)
    local.settle()
    assert ended(local, "stop-me", "ivy") == "Exited"
    [entry] = enrollments(local, "ivy", "stop-me")
    assert (entry["status"], entry["exitReason"]) == ("exited", "retired")
    assert steps_sent(local, "ivy", "tour-next") == ["next-email"]
    local.advance(seconds=2 * DAY)
    assert sent(local, "ivy", "stop-me") == []
    status, _, error = local.request("POST", "/v1/workflows/stop-me/resume", key=local.secret_key)
    assert status == 409 and error["error"]["code"] == "conflict"


def test_the_workflow_list_shows_each_with_its_version_and_status(local: LocalCairn) -> None:
    listed = {w["id"]: w for w in api(local, "GET", "/v1/workflows")["workflows"]}
    assert set(WORKFLOWS) <= set(listed)
    tour = listed["steps-tour"]
    assert tour["status"] == "active" and tour["trigger"] == {"event": "tour_started", "max_age": "24h"}
    assert [v["current"] for v in tour["versions"]] == [True]
    assert tour["versions"][0]["version"] == tour["version"]
    detail = api(local, "GET", "/v1/workflows/tour-next")
    assert detail["trigger"] == {"api": True} and detail["definition"]["steps"][0]["id"] == "next-email"
    status, _, _ = local.request("GET", "/v1/workflows/nope", key=local.secret_key)
    assert status == 404
    status, _, _ = local.request("GET", "/v1/workflows", key=local.write_key)
    assert status == 403


def test_runs_a_stop_retirement_could_not_reach_end_within_the_hour_and_get_nothing(
    local: LocalCairn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cairn.services import workflows

    contact(local, "ike")
    track(local, "ike", "stop_later_test")
    local.advance(seconds=HOUR)
    monkeypatch.setattr(workflows, "STOP_BUDGET", 0.0)  # the call runs out of time before the first run
    body = api(local, "POST", "/v1/workflows/stop-later/retire", {"mode": "stop", "moveTo": "tour-next"})
    assert (body["status"], body["stopped"], body["stopping"]) == ("retired", 0, True)
    [entry] = enrollments(local, "ike", "stop-later")
    assert entry["status"] == "active"
    local.advance(seconds=HOUR + 60)  # the hourly sweep, long before the 2-day wait ends
    [entry] = enrollments(local, "ike", "stop-later")
    assert (entry["status"], entry["exitReason"]) == ("exited", "retired")
    assert ended(local, "stop-later", "ike") == "Exited"
    assert steps_sent(local, "ike", "tour-next") == ["next-email"]
    local.advance(seconds=2 * DAY)
    assert sent(local, "ike", "stop-later") == []


# ---------------------------------------------------------------- versions


def test_runs_finish_on_their_version_and_new_contacts_get_the_new_one(
    local: LocalCairn, receiver: Receiver
) -> None:
    contact(local, "jay")
    contact(local, "kay")
    track(local, "jay", "versioned_test")
    local.settle()
    v1 = api(local, "GET", "/v1/workflows/versioned")["version"]
    root = local.root
    (root / "workflows" / "versioned.yaml").write_text(
        workflows_for(receiver.url, versioned_template="follow-us")["versioned"], encoding="utf-8"
    )
    changes = local.redeploy()  # as `sam deploy` would: a new version of the changed workflow only
    assert (changes["created"], changes["updated"]) == ([], ["versioned"])
    track(local, "kay", "versioned_test")
    local.advance(seconds=DAY)
    [jay] = sent(local, "jay", "versioned")
    [kay] = sent(local, "kay", "versioned")
    assert "WELCOME10" in jay["text"] and "Instagram" in kay["text"]  # each run on its own definition
    assert (jay["version"], kay["version"]) == (v1, api(local, "GET", "/v1/workflows/versioned")["version"])
    versions = api(local, "GET", "/v1/workflows/versioned")["versions"]
    assert [(v["version"], v["current"]) for v in versions] == [(v1, False), (kay["version"], True)]
    assert enrollments(local, "jay", "versioned")[0]["version"] == v1


def test_a_run_converts_on_the_goal_of_the_version_it_entered_with(local: LocalCairn) -> None:
    contact(local, "uma")
    contact(local, "val")
    track(local, "uma", "goal_version_test")
    local.settle()
    source = local.root / "workflows" / "goal-versioned.yaml"
    source.write_text(source.read_text(encoding="utf-8").replace("goal_one", "goal_two"), encoding="utf-8")
    local.redeploy()  # LocalCairn.redeploy: what `sam deploy` does
    track(local, "val", "goal_version_test")
    local.advance(seconds=HOUR)
    track(local, "uma", "goal_two")  # the new version's goal: not uma's
    track(local, "val", "goal_one")  # the old version's goal: not val's
    local.settle()
    assert [e["status"] for e in enrollments(local, "uma", "goal-versioned")] == ["active"]
    assert [e["status"] for e in enrollments(local, "val", "goal-versioned")] == ["active"]
    track(local, "uma", "goal_one")
    track(local, "val", "goal_two")
    local.settle()
    assert ended(local, "goal-versioned", "uma") == "Converted"
    assert ended(local, "goal-versioned", "val") == "Converted"
    local.advance(seconds=DAY)
    assert sent(local, "uma", "goal-versioned") == [] and sent(local, "val", "goal-versioned") == []


# ---------------------------------------------------------------- races and throttling


def test_racing_triggers_start_one_run(local: LocalCairn) -> None:
    contact(local, "lee")
    barrier = threading.Barrier(6)

    def fire() -> None:
        barrier.wait()
        track(local, "lee", "race")

    threads = [threading.Thread(target=fire) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    local.settle()
    [run] = runs(local, "racy", "lee")
    assert run["name"] == f"{cid_of('lee')}-1"


def test_a_throttled_start_execution_enrolls_the_contact_later(local: LocalCairn) -> None:
    from cairn.adapters.aws import client

    throttles = {"left": 2}

    def throttle(model: Any, params: dict[str, Any], **_: Any) -> Any:
        body = json.loads(params["body"])
        if throttles["left"] and body["stateMachineArn"].endswith("-wf-racy"):
            throttles["left"] -= 1

            class Http:
                status_code = 400
                headers: dict[str, str] = {}

            return Http(), {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}
        return None

    sfn = client("stepfunctions")
    sfn.meta.events.register("before-call.sfn.StartExecution", throttle)
    try:
        contact(local, "mo")
        track(local, "mo", "race")
        local.settle()
        assert throttles["left"] == 1  # the stream retries the record after a back-off, not at once
        local.advance(seconds=10)
    finally:
        sfn.meta.events.unregister("before-call.sfn.StartExecution", throttle)
    assert throttles["left"] == 0  # throttled twice: the stream delivered the record again each time
    [run] = runs(local, "racy", "mo")
    assert run["name"] == f"{cid_of('mo')}-1"
    assert enrollments(local, "mo", "racy")[0]["status"] == "active"
