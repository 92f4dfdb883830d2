"""The compiler's ASL: readable states, self-contained tasks, interruptible waits, every step kind."""

from __future__ import annotations

from textwrap import dedent
from typing import Any

from cairn.domain.compiler import compile_workflow
from cairn.domain.workflows import Catalog, Workflow, validate
from cairn.domain.yamlsource import load

CATALOG = Catalog(
    email_templates=frozenset({"welcome", "reminder"}),
    sms_templates=frozenset({"nudge"}),
    segments=frozenset({"vips"}),
    workflows=frozenset({"demo", "other"}),
)


def compiled(text: str) -> dict[str, Any]:
    wf, problems = validate(load(dedent(text)), "workflows/demo.yaml", CATALOG)
    assert problems == [], problems
    assert isinstance(wf, Workflow)
    return compile_workflow(wf)


FLOW = """\
id: demo
name: Demo
trigger: {event: signed_up}
goal: {event: order_completed, within: 7d}
exit_when: {tag: do-not-contact}
steps:
  - send_email: {template: welcome}
  - wait: 1h
  - branch:
      - if: {attribute: plan, eq: pro}
        then: [{send_sms: {template: nudge, on_hold: skip}}]
      - else: [{send_email: {template: reminder}}, {exit: {}}]
"""


def test_states_follow_the_journey_and_end_in_named_outcomes() -> None:
    asl = compiled(FLOW)
    states = asl["States"]
    assert asl["StartAt"] == "send_email-welcome"
    assert states["send_email-welcome"]["Next"] == "send_email-welcome: held?"
    assert states["send_email-welcome: held?"]["Default"] == "wait-2"
    assert states["wait-2"]["Catch"][0] == {
        "ErrorEquals": ["States.Timeout"],
        "ResultPath": None,
        "Next": "branch-3",
    }
    choice = states["branch-3: which path"]
    assert choice["Type"] == "Choice"
    assert choice["Choices"] == [
        {"Variable": "$.decision.branch", "NumericEquals": 0, "Next": "send_sms-nudge"}
    ]
    assert choice["Default"] == "send_email-reminder"
    assert states["send_email-reminder: held?"]["Default"] == "exit-6"
    # An exit step records the run's end itself, naming the step (the statistics' funnel shows where).
    assert states["exit-6"]["Next"] == "Exited"
    assert states["exit-6"]["Parameters"]["Payload"]["step"] == {"outcome": "exited", "stepId": "exit-6"}
    assert states["send_sms-nudge"]["Next"] == "Complete"
    for end in ("Completed", "Converted", "Exited"):
        assert states[end]["Type"] == "Succeed"
    assert states["Failed"]["Type"] == "Fail"
    # The file reads top down: the start first, the ends last.
    names = list(states)
    assert names[0] == "send_email-welcome"
    assert names[-8:] == [
        "Complete",
        "Completed",
        "Record conversion",
        "Converted",
        "Record exit",
        "Exited",
        "Record failure",
        "Failed",
    ]


def test_a_wait_is_an_interruptible_task_token_task_timed_by_step_functions() -> None:
    wait = compiled(FLOW)["States"]["wait-2"]
    assert wait["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert wait["TimeoutSeconds"] == 3600
    assert wait["Parameters"]["Payload"]["token.$"] == "$$.Task.Token"
    catches = [c["ErrorEquals"][0] for c in wait["Catch"]]
    assert catches == ["States.Timeout", "ContactConverted", "ContactExited", "States.ALL"]


def test_a_held_send_waits_interruptibly_for_the_seconds_the_send_names_then_tries_again() -> None:
    states = compiled(FLOW)["States"]
    send = states["send_email-welcome"]
    assert send["ResultSelector"] == {"status.$": "$.Payload.status", "result.$": "$.Payload"}
    assert send["ResultPath"] == "$.send"
    held = states["send_email-welcome: held?"]
    assert held["Choices"] == [
        {"Variable": "$.send.status", "StringEquals": "held", "Next": "send_email-welcome: hold"}
    ]
    hold = states["send_email-welcome: hold"]
    assert hold["Resource"].endswith(".waitForTaskToken")
    assert hold["TimeoutSecondsPath"] == "$.send.result.seconds"
    assert hold["Next"] == "send_email-welcome"
    assert hold["Catch"][0]["Next"] == "send_email-welcome"  # timed out: the gate decides again
    assert hold["Parameters"]["Payload"]["held.$"] == "$.send.result"
    assert [c["ErrorEquals"][0] for c in hold["Catch"][1:]] == [
        "ContactConverted",
        "ContactExited",
        "States.ALL",
    ]


def test_on_hold_skip_is_one_task_that_tells_the_send_function() -> None:
    states = compiled(FLOW)["States"]
    sms = states["send_sms-nudge"]
    assert sms["Parameters"]["Payload"]["step"] == {
        "id": "send_sms-nudge",
        "channel": "sms",
        "template": "nudge",
        "onHold": "skip",
    }
    assert "send_sms-nudge: held?" not in states
    assert sms["ResultPath"] is None


def test_every_task_carries_its_configuration_and_the_run_policy() -> None:
    asl = compiled(FLOW)
    for name, state in asl["States"].items():
        if state["Type"] != "Task":
            continue
        payload = state["Parameters"]["Payload"]
        assert payload["run.$"] == "$$.Execution.Input", name
        assert payload["policy"] == {
            "goal": {"event": "order_completed", "within": "7d"},
            "exitWhen": {"tag": "do-not-contact"},
        }
        assert state["Parameters"]["FunctionName"] in ("${StepFunctionArn}", "${SendFunctionArn}")
        assert state["Retry"][0]["ErrorEquals"][0] == "Lambda.ServiceException"
        assert state["Retry"][0]["JitterStrategy"] == "FULL"
        assert state["Catch"][-1]["ErrorEquals"] == ["States.ALL"]


def test_compilation_is_deterministic() -> None:
    assert compiled(FLOW) == compiled(FLOW)


EVERY = """\
id: demo
name: Everything
trigger: api
goal: {event: order_completed, within: 7d}
steps:
  - wait: {until: {attribute: renewal, at: "09:00", offset: -1d}}
  - wait: {until: {time: "10:30", days: [mon]}}
  - id: clicked
    wait_for: {event: email_clicked, timeout: 2d}
    on_event: [{update: {add_tags: [clicked], stage: engaged}}]
    on_timeout: [{add_to_list: laggards}]
  - id: bought
    wait_for: {event: order_completed, where: {property: total, gte: 50}, timeout: 3d}
  - id: ab
    split: {A: 50, B: 40, holdout: 10}
    A: [{assign_task: {to: sales, title: Call, due: 1d, note: hot}}]
    B: [{webhook: {url: "https://crm.example.com/x", secret: crm, retries: 4, body: {list: b}}}]
  - enroll: other
"""


def test_a_wait_until_computes_its_length_then_waits_that_long_interruptibly() -> None:
    states = compiled(EVERY)["States"]
    compute = states["wait-1"]
    assert compute["Resource"] == "arn:aws:states:::lambda:invoke"
    assert compute["Parameters"]["Payload"]["action"] == "until"
    assert compute["Parameters"]["Payload"]["step"] == {
        "id": "wait-1",
        "attribute": "renewal",
        "at": "09:00",
        "offset": "-1d",
    }
    assert compute["ResultSelector"] == {"seconds.$": "$.Payload.seconds"}
    assert compute["Next"] == "wait-1: until"
    wait = states["wait-1: until"]
    assert wait["TimeoutSecondsPath"] == "$.until.seconds"
    assert wait["Next"] == wait["Catch"][0]["Next"] == "wait-2"
    assert states["wait-2"]["Parameters"]["Payload"]["step"] == {
        "id": "wait-2",
        "time": "10:30",
        "days": ["mon"],
    }


def test_a_wait_for_goes_on_by_the_event_or_by_its_timeout() -> None:
    states = compiled(EVERY)["States"]
    clicked = states["clicked"]
    assert clicked["Resource"].endswith(".waitForTaskToken")
    assert clicked["TimeoutSeconds"] == 2 * 86400
    assert clicked["Next"] == "update-4"  # on_event
    assert clicked["Catch"][0] == {
        "ErrorEquals": ["States.Timeout"],
        "ResultPath": None,
        "Next": "add_to_list-5",
    }
    payload = clicked["Parameters"]["Payload"]
    assert payload["step"] == {
        "id": "clicked",
        "event": "email_clicked",
        "timeout": 172800,
        "message": "email",
    }
    assert payload["since.$"] == "$$.State.EnteredTime"
    assert states["update-4"]["Next"] == states["add_to_list-5"]["Next"] == "bought"
    bought = states["bought"]["Parameters"]["Payload"]["step"]
    assert bought["where"] == {"property": "total", "gte": 50}
    assert "message" not in bought
    assert states["bought"]["Next"] == states["bought"]["Catch"][0]["Next"] == "ab"


def test_a_split_records_the_variant_and_its_holdout_waits_out_the_goal_window() -> None:
    states = compiled(EVERY)["States"]
    split = states["ab"]
    assert split["Parameters"]["Payload"]["step"] == {
        "id": "ab",
        "weights": {"A": 50, "B": 40, "holdout": 10},
    }
    assert split["ResultPath"] == "$.decision"
    choice = states["ab: which variant"]
    assert choice["Choices"] == [
        {"Variable": "$.decision.variant", "StringEquals": "A", "Next": "assign_task-8"},
        {"Variable": "$.decision.variant", "StringEquals": "B", "Next": "webhook-9"},
        {"Variable": "$.decision.variant", "StringEquals": "holdout", "Next": "ab: holdout"},
    ]
    holdout = states["ab: holdout"]
    assert holdout["TimeoutSecondsPath"] == "$.decision.holdoutSeconds"
    assert holdout["Next"] == holdout["Catch"][0]["Next"] == "Complete"
    # Without a goal there is nothing to measure: the holdout completes at once.
    no_goal = compiled(EVERY.replace("goal: {event: order_completed, within: 7d}\n", ""))["States"]
    assert no_goal["ab: which variant"]["Choices"][-1]["Next"] == "Complete"
    assert "ab: holdout" not in no_goal


def test_actions_carry_their_configuration() -> None:
    states = compiled(EVERY)["States"]
    assert states["update-4"]["Parameters"]["Payload"]["step"] == {
        "id": "update-4",
        "set": {"stage": "engaged"},
        "addTags": ["clicked"],
    }
    assert states["add_to_list-5"]["Parameters"]["Payload"]["step"] == {
        "id": "add_to_list-5",
        "list": "laggards",
        "op": "add",
    }
    assert states["assign_task-8"]["Parameters"]["Payload"]["step"] == {
        "id": "assign_task-8",
        "to": "sales",
        "title": "Call",
        "due": 86400,
        "note": "hot",
    }
    assert states["enroll-10"]["Parameters"]["Payload"]["step"] == {"id": "enroll-10", "workflow": "other"}


def test_a_webhook_retries_its_typed_error_then_goes_on_or_fails_as_told() -> None:
    states = compiled(EVERY)["States"]
    hook = states["webhook-9"]
    assert hook["Parameters"]["Payload"]["step"] == {
        "id": "webhook-9",
        "url": "https://crm.example.com/x",
        "secret": "crm",
        "timeout": 10,
        "body": {"list": "b"},
    }
    [retry] = [r for r in hook["Retry"] if r["ErrorEquals"] == ["WebhookFailed"]]
    assert retry["MaxAttempts"] == 4
    assert retry["JitterStrategy"] == "FULL"
    assert hook["Catch"][0] == {
        "ErrorEquals": ["WebhookFailed", "WebhookRejected"],
        "ResultPath": None,
        "Next": "enroll-10",
    }
    failing = compiled(EVERY.replace("retries: 4,", "retries: 0, on_failure: fail,"))["States"]["webhook-9"]
    assert not [r for r in failing["Retry"] if r["ErrorEquals"] == ["WebhookFailed"]]
    assert failing["Catch"][0]["Next"] == "Record failure"


def test_state_names_are_short_enough_for_step_functions() -> None:
    long_id = "x" * 64
    text = EVERY.replace("id: ab\n", f"id: {long_id}\n")
    for name in compiled(text)["States"]:
        assert len(name) <= 80, name
