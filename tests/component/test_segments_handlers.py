"""The segments function, the react function and the segment API through their real handlers with the
sample events; the segment-build state machine (and its local variant) and the template's segment
resources, checked offline."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import boto3
import pytest
from tests.component.conftest import (
    ACCOUNT,
    REGION,
    SAMPLE_NOW,
    FakeClock,
    Handler,
    cid_of,
    given_a_contact,
    load_event,
    record_event,
)
from tests.component.test_asl_contract import (
    LAMBDA_ERRORS,
    all_states,
    check_error_list,
    machines,
    targets,
)
from tests.component.test_template import load_template
from tests.conftest import ROOT, STATE_MACHINE_PREFIX

from cairn.adapters import segments as segment_store
from cairn.adapters.segments import MembershipItem, SegmentItem, SegmentStore
from cairn.adapters.tables import EventItem
from cairn.services.segments import build_state_machine_arn

DISTRIBUTED = ROOT / "statemachines" / "segment-build.asl.json"


def asl(path: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


def call(handler: Handler, event: dict[str, Any]) -> tuple[int, Any]:
    response = handler(event)
    body = response.get("body")
    return int(response["statusCode"]), json.loads(body) if body else None


def http(method: str, path: str, body: Any = None, query: str = "") -> dict[str, Any]:
    event = load_event("trigger/segments.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    event["rawQueryString"] = query
    event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&")) if query else None
    if body is not None:
        event["body"] = json.dumps(body)
        event["headers"]["content-type"] = "application/json"
    return event


def members_of(segment_id: str) -> set[str]:
    return {
        m.cid
        for m in MembershipItem.scan()
        if m.pk.startswith(f"m#{segment_id}#") and m.entered_at is not None
    }


# ---------------------------------------------------------------- the state machine


def test_the_build_machine_keeps_the_asl_contract(template: dict[str, Any]) -> None:
    path = DISTRIBUTED
    definition = asl(path)
    text = path.read_text(encoding="utf-8")
    substitutions = template["Resources"]["SegmentBuildStateMachine"]["Properties"]["DefinitionSubstitutions"]
    assert set(re.findall(r"\$\{(\w+)\}", text)) == set(substitutions) == {"SegmentsFunctionArn"}
    assert not re.search(r"arn:aws:(lambda|states):[a-z0-9-]+:\d{12}", text)
    for machine in machines(definition):
        names = set(machine["States"])
        assert machine["StartAt"] in names
        reached, queue = {machine["StartAt"]}, [machine["StartAt"]]
        while queue:
            for nxt in targets(machine["States"][queue.pop()]):
                assert nxt in names
                if nxt not in reached:
                    reached.add(nxt)
                    queue.append(nxt)
        assert reached == names
    tasks = [(n, s) for n, s in all_states(definition) if s["Type"] == "Task"]
    assert {n for n, _ in tasks} == {"Plan build", "Build scan segment", "Record build", "Record failure"}
    for name, state in tasks:
        assert state["Parameters"]["FunctionName"] == "${SegmentsFunctionArn}"
        check_error_list(f"{name}.Retry", state["Retry"])
        assert {e for r in state["Retry"] for e in r["ErrorEquals"]} >= LAMBDA_ERRORS, name
        check_error_list(f"{name}.Catch", state["Catch"])
        assert state["Catch"][-1]["ErrorEquals"] == ["States.ALL"], name


def test_the_build_fans_out_over_the_segments_of_a_parallel_scan_on_a_distributed_map() -> None:
    scan = asl(DISTRIBUTED)["States"]["Scan contacts"]
    assert scan["Type"] == "Map"
    assert scan["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert scan["ItemsPath"] == "$.plan.scan"
    assert scan["MaxConcurrency"] >= 100
    worker = scan["ItemProcessor"]["States"]
    assert worker["More to scan?"]["Choices"][0]["Next"] == "Build scan segment"  # page after page


def test_local_mode_runs_the_same_definition() -> None:
    """moto executes this Distributed Map as it is (the e2e build test runs it): no local variant exists
    to drift from it. A `.local.asl.json` beside it would replace it in local mode (cairn.local.stack)."""
    assert not (ROOT / "statemachines" / "segment-build.local.asl.json").exists()


# ---------------------------------------------------------------- the template


def test_the_segments_function_ticks_hourly_and_builds_run_as_a_state_machine(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    function = resources["SegmentsFunction"]["Properties"]
    assert function["CodeUri"] == "functions/segments/"
    [tick] = function["Events"].values()
    assert tick["Type"] == "ScheduleV2"
    assert tick["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    assert json.loads(tick["Properties"]["Input"]) == load_event("segments/tick.json")
    machine = resources["SegmentBuildStateMachine"]["Properties"]
    assert machine["DefinitionUri"] == "statemachines/segment-build.asl.json"
    assert machine["DefinitionSubstitutions"] == {
        "SegmentsFunctionArn": {"Fn::GetAtt": ["SegmentsFunction", "Arn"]}
    }
    assert machine["Logging"]["IncludeExecutionData"] is False  # no personal data in logs
    # The functions find the machine by its name, next to the workflows' prefix.
    assert machine["Name"] == {"Fn::Sub": "${AWS::StackName}-segment-build"}
    assert build_state_machine_arn(STATE_MACHINE_PREFIX).endswith(":stateMachine:cairn-test-segment-build")
    hook = resources["SegmentBuilds"]
    assert hook["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["SegmentsFunction", "Arn"]}
    assert hook["Properties"]["Site"] == {"Ref": "SiteLayer"}  # a new site bundle is an update


def test_every_function_that_reads_or_keeps_segments_may_use_the_table(template: dict[str, Any]) -> None:
    def policies(name: str) -> str:
        return json.dumps(template["Resources"][name]["Properties"]["Policies"])

    for name in ("ReactFunction", "TriggerFunction", "StepFunction", "SegmentsFunction"):
        assert '"DynamoDBCrudPolicy": {"TableName": {"Ref": "SegmentsTable"}}' in policies(name), name
    assert '"DynamoDBReadPolicy": {"TableName": {"Ref": "SegmentsTable"}}' in policies("SendFunction")


def test_every_item_type_of_the_segments_table_has_its_keys() -> None:
    key_schema = SegmentItem._get_schema()["key_schema"]
    item_types = [
        m for m in vars(segment_store).values() if isinstance(m, type) and issubclass(m, SegmentItem)
    ]
    assert len(item_types) >= 5
    for model in item_types:
        assert model._get_schema()["key_schema"] == key_schema, model.__name__
        assert model.Meta.table_name == SegmentItem.Meta.table_name, model.__name__


# ---------------------------------------------------------------- the segments function


@pytest.fixture
def segments_fn(load_handler: Any, clock: FakeClock) -> Handler:
    handler: Handler = load_handler("segments")
    return handler


def test_the_tick_event_moves_out_who_fell_due(segments_fn: Handler, clock: FakeClock) -> None:
    from cairn.bootstrap import runtime

    cid = given_a_contact("u-ann")
    last = SAMPLE_NOW - (30 * 24 - 1) * timedelta(hours=1)
    record_event(cid, "page_viewed", last)
    service = runtime().segments
    service.on_event(service.rt.contacts.get(cid), "page_viewed", last)  # type: ignore[arg-type]
    clock.advance(timedelta(hours=1))

    report = segments_fn(load_event("segments/tick.json"))

    assert report["exited"] == 1
    assert members_of("recent-visitors") == set()


def test_the_build_tasks_run_on_the_payloads_the_machine_sends(
    segments_fn: Handler, clock: FakeClock
) -> None:
    from tests.component.test_segments_membership import _tag

    vip = given_a_contact("u-vip")
    _tag(vip, "vip")
    given_a_contact("u-other")
    plan = segments_fn({"action": "plan", "segments": ["vip"], "build": "build-1"})
    sample = load_event("segments/build-scan-segment.json")
    assert set(sample) == {"action", "build", "segments", "versions", "scan", "cursor"}
    for part in plan["scan"]:
        event = {**sample, "segments": plan["segments"], "versions": plan["versions"], "scan": part}
        report = segments_fn(event)
        assert report["cursor"] is None
    assert segments_fn({"action": "finish", **{k: plan[k] for k in ("segments", "versions")}}) == {
        "segments": ["vip"],
        "status": "ready",
    }
    assert members_of("vip") == {vip}
    assert segments_fn({"action": "failed", "segments": ["vip"]})["status"] == "failed"


class _CloudFormation(BaseHTTPRequestHandler):
    answers: list[dict[str, Any]] = []

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        _CloudFormation.answers.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def cloudformation() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A stand-in for the pre-signed S3 URL a custom resource answers to, on 127.0.0.1."""
    _CloudFormation.answers = []
    server = HTTPServer(("127.0.0.1", 0), _CloudFormation)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/cloudformation-response", _CloudFormation.answers
    server.shutdown()


def test_a_deploy_starts_one_build_of_the_new_and_changed_segments_and_always_answers(
    segments_fn: Handler, cloudformation: tuple[str, list[dict[str, Any]]]
) -> None:
    url, answers = cloudformation
    event = {**load_event("segments/deploy-create.json"), "ResponseURL": url}

    segments_fn(event)  # no state machine yet: StartExecution fails, the deploy hears why

    assert answers[-1]["Status"] == "FAILED"
    assert "StateMachineDoesNotExist" in answers[-1]["Reason"]
    sfn = boto3.client("stepfunctions", region_name=REGION)
    definition = DISTRIBUTED.read_text(encoding="utf-8").replace(
        "${SegmentsFunctionArn}", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:cairn-test-segments"
    )
    arn = sfn.create_state_machine(
        name="cairn-test-segment-build", definition=definition, roleArn=f"arn:aws:iam::{ACCOUNT}:role/r"
    )["stateMachineArn"]

    segments_fn(event)
    segments_fn({**event, "RequestType": "Update"})

    assert [a["Status"] for a in answers[1:]] == ["SUCCESS", "SUCCESS"]
    assert (
        answers[1]["RequestId"] == event["RequestId"] and answers[1]["LogicalResourceId"] == "SegmentBuilds"
    )
    [execution] = sfn.list_executions(stateMachineArn=arn)["executions"]
    assert answers[1]["Data"]["Execution"] == execution["executionArn"]
    started = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert "vip" in started["segments"] and "webinar-guests" in started["segments"]
    segments_fn({**event, "RequestType": "Delete"})
    assert answers[-1]["Status"] == "SUCCESS"


# ---------------------------------------------------------------- the react function


def test_the_event_stream_keeps_membership_current(load_handler: Any, clock: FakeClock) -> None:
    react: Handler = load_handler("react")
    event = load_event("react/event-insert.json")
    image = event["Records"][0]["dynamodb"]["NewImage"]
    image["name"] = {"S": "page_viewed"}
    record_event(cid_of("u-ann"), "page_viewed", SAMPLE_NOW)  # what the record says was stored

    assert react(event) == {"batchItemFailures": []}
    assert react(event) == {"batchItemFailures": []}  # delivered twice

    assert members_of("recent-visitors") == {cid_of("u-ann")}
    entered = [i.mid for i in EventItem.query(cid_of("u-ann")) if i.name == "segment_entered"]
    assert entered == ["sg:recent-visitors:000001:in"]


def test_the_profile_stream_evaluates_what_its_images_say_changed(
    load_handler: Any, clock: FakeClock
) -> None:
    from tests.component.test_segments_membership import _tag

    react: Handler = load_handler("react")
    cid = given_a_contact("u-ann", traits={"firstName": "Ann", "country": "DE"})
    _tag(cid, "vip")
    assert react(load_event("react/profile-modify.json")) == {"batchItemFailures": []}
    assert members_of("vip") == {cid}
    assert members_of("dach-young-adults") == set()  # the record changed tags only: age was not looked at


# ---------------------------------------------------------------- the API


@pytest.fixture
def api(load_handler: Any, keys: dict[str, str], clock: FakeClock) -> Handler:
    handler: Handler = load_handler("trigger")
    return handler


def test_segments_are_listed_with_their_member_counts(api: Handler, clock: FakeClock) -> None:
    from tests.component.test_segments_membership import _tag

    from cairn.bootstrap import runtime

    for user in ("u-1", "u-2"):
        cid = given_a_contact(user)
        _tag(cid, "vip")
        rt = runtime()
        rt.segments.on_profile_change(rt.contacts.get(cid), {}, {"x": 1})  # type: ignore[arg-type]

    status, body = call(api, load_event("trigger/segments.json"))
    assert status == 200
    by_id = {s["id"]: s for s in body["segments"]}
    assert by_id["vip"]["memberCount"] == 2
    assert by_id["vip"]["rule"] == {"tag": "vip"}
    assert by_id["webinar-guests"]["kind"] == "static" and by_id["webinar-guests"]["rule"] is None
    assert set(by_id) == {p.stem for p in (ROOT / "segments").glob("*.yaml")}

    status, one = call(api, http("GET", "/v1/segments/vip"))
    assert status == 200 and one == by_id["vip"]
    status, missing = call(api, http("GET", "/v1/segments/nowhere"))
    assert status == 404 and missing["error"]["code"] == "not_found"

    status, page = call(api, http("GET", "/v1/segments/vip/members", query="limit=1"))
    assert status == 200 and len(page["members"]) == 1 and page["cursor"]
    status, rest = call(
        api, http("GET", "/v1/segments/vip/members", query=f"limit=1&cursor={page['cursor']}")
    )
    assert {m["userId"] for m in page["members"] + rest["members"]} == {"u-1", "u-2"}
    assert (
        rest["cursor"] is None
        or call(api, http("GET", "/v1/segments/vip/members", query=f"limit=1&cursor={rest['cursor']}"))[1][
            "members"
        ]
        == []
    )
    status, bad = call(api, http("GET", "/v1/segments/vip/members", query="cursor=nonsense"))
    assert status == 422 and bad["error"]["details"][0]["field"] == "cursor"


def test_a_rule_is_previewed_before_it_is_saved(api: Handler, clock: FakeClock) -> None:
    for n in range(6):
        cid = given_a_contact(f"u-{n}", traits={"country": "DE" if n < 4 else "FR"})
        if n % 2 == 0:
            record_event(cid, "order_completed", SAMPLE_NOW - timedelta(days=10))

    status, body = call(api, load_event("trigger/segment-preview.json"))

    assert status == 200
    assert body["count"] == 2 and body["exact"] is True and body["scanned"] == 6
    assert {s["userId"] for s in body["sample"]} == {"u-0", "u-2"}
    status, bad = call(
        api, http("POST", "/v1/segments/preview", {"rule": {"attribute": "country", "is": "DE"}})
    )
    assert status == 422
    assert bad["error"]["details"][0]["field"] == "rule.attribute.is"


def test_static_list_members_are_added_and_removed_through_the_api(api: Handler, clock: FakeClock) -> None:
    given_a_contact("u-ann")
    status, added = call(api, http("PUT", "/v1/segments/webinar-guests/members/u-ann"))
    assert status == 200 and added == {
        "id": "webinar-guests",
        "userId": "u-ann",
        "member": True,
        "enteredAt": SAMPLE_NOW.isoformat().replace("+00:00", "Z"),
    }
    assert members_of("webinar-guests") == {cid_of("u-ann")}
    status, removed = call(api, http("DELETE", "/v1/segments/webinar-guests/members/u-ann"))
    assert status == 200 and removed["member"] is False
    status, dynamic = call(api, http("PUT", "/v1/segments/vip/members/u-ann"))
    assert status == 409 and dynamic["error"]["code"] == "conflict"
    status, _ = call(api, http("PUT", "/v1/segments/webinar-guests/members/u-nobody"))
    assert status == 404


def test_segment_routes_need_a_secret_key(api: Handler, clock: FakeClock) -> None:
    from tests.component.conftest import WRITE_KEY

    event = load_event("trigger/segments.json")
    event["headers"]["authorization"] = f"Bearer {WRITE_KEY}"
    status, body = call(api, event)
    assert status == 403 and body["error"]["code"] == "forbidden"


def test_the_store_finds_no_item_it_did_not_write(tables: dict[str, str]) -> None:
    assert SegmentStore().memberships("c-none", ["vip"])["vip"].member is False
    assert SegmentStore().due("c-none").version == 0
