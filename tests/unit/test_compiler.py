"""The compiler's ASL: readable states, self-contained tasks, interruptible waits."""

from __future__ import annotations

from textwrap import dedent
from typing import Any

from cairn.domain.compiler import compile_workflow
from cairn.domain.workflows import Catalog, Workflow, validate
from cairn.domain.yamlsource import load

CATALOG = Catalog(email_templates=frozenset({"welcome", "reminder"}), sms_templates=frozenset({"nudge"}))


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
        then: [{send_sms: {template: nudge}}]
      - else: [{send_email: {template: reminder}}, {exit: {}}]
"""


def test_states_follow_the_journey_and_end_in_named_outcomes() -> None:
    asl = compiled(FLOW)
    states = asl["States"]
    assert asl["StartAt"] == "send_email-welcome"
    assert states["send_email-welcome"]["Next"] == "wait-2"
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
    assert states["send_email-reminder"]["Next"] == "exit-6"
    assert states["exit-6"]["Next"] == "Record exit"
    assert states["send_sms-nudge"]["Next"] == "Complete"
    for end in ("Completed", "Converted", "Exited"):
        assert states[end]["Type"] == "Succeed"
    assert states["Failed"]["Type"] == "Fail"


def test_a_wait_is_an_interruptible_task_token_task_timed_by_step_functions() -> None:
    wait = compiled(FLOW)["States"]["wait-2"]
    assert wait["Resource"] == "arn:aws:states:::lambda:invoke.waitForTaskToken"
    assert wait["TimeoutSeconds"] == 3600
    assert wait["Parameters"]["Payload"]["token.$"] == "$$.Task.Token"
    catches = [c["ErrorEquals"][0] for c in wait["Catch"]]
    assert catches == ["States.Timeout", "ContactConverted", "ContactExited", "States.ALL"]


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
    send = asl["States"]["send_sms-nudge"]["Parameters"]["Payload"]["step"]
    assert send == {"id": "send_sms-nudge", "channel": "sms", "template": "nudge"}


def test_compilation_is_deterministic() -> None:
    assert compiled(FLOW) == compiled(FLOW)
