"""The generated state machines (statemachines/*.asl.json), checked offline against the rules that
Step Functions (or a quiet runtime failure) would otherwise enforce: substitutions, targets, reachability,
real error names, timeouts on task-token waits, and generated files that are up to date."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.component.test_template import load_template
from tests.conftest import ROOT

from cairn.domain import errors, workflows
from cairn.project import (
    NESTED_TEMPLATE,
    STACK_MACHINES,
    load_project,
    logical_id,
    nested_template,
    stale_outputs,
)

# Workflows' state machines; stack-level ones (segment builds): tests/component/test_segments_handlers.py.
ASL_FILES = sorted(p for p in (ROOT / "statemachines").glob("*.asl.json") if p.name not in STACK_MACHINES)
ONE_YEAR = 365 * 86400

LAMBDA_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
}
# Step Functions' predefined error names (a misspelt one is legal ASL that never matches).
STATES_ERRORS = {
    "States.ALL",
    "States.BranchFailed",
    "States.DataLimitExceeded",
    "States.ExceedToleratedFailureThreshold",
    "States.HeartbeatTimeout",
    "States.Http.Socket",
    "States.IntrinsicFailure",
    "States.ItemReaderFailed",
    "States.NoChoiceMatched",
    "States.ParameterPathFailure",
    "States.Permissions",
    "States.QueryEvaluationError",
    "States.ResultPathMatchFailure",
    "States.ResultWriterFailed",
    "States.Runtime",
    "States.TaskFailed",
    "States.Timeout",
}
# Cairn's own errors, matched by class name (Lambda reports errorType = the exception's class name).
CAIRN_ERRORS = {"TransientError", "ContactConverted", "ContactExited", "WebhookFailed", "WebhookRejected"}
REAL_ERRORS = LAMBDA_ERRORS | STATES_ERRORS | CAIRN_ERRORS


def load_asl(path: Path) -> dict[str, Any]:
    definition: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return definition


def machines(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The definition and every nested machine in it (Parallel branches, Map processors)."""
    yield definition
    for state in definition["States"].values():
        for branch in state.get("Branches", []):
            yield from machines(branch)
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from machines(state[key])


def targets(state: dict[str, Any]) -> list[str]:
    found = [state[k] for k in ("Next", "Default") if k in state]
    found += [choice["Next"] for choice in state.get("Choices", [])]
    found += [catcher["Next"] for catcher in state.get("Catch", [])]
    return found


def all_states(definition: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for machine in machines(definition):
        yield from machine["States"].items()


def substitutions() -> dict[str, set[str]]:
    """DefinitionUri -> the DefinitionSubstitutions the generated template declares for it."""
    template = load_template(ROOT / NESTED_TEMPLATE)
    out: dict[str, set[str]] = {}
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::StateMachine":
            props = resource["Properties"]
            out[props["DefinitionUri"]] = set(props.get("DefinitionSubstitutions", {}))
    return out


asl_files = pytest.mark.parametrize("path", ASL_FILES, ids=[p.name for p in ASL_FILES])


def test_there_is_a_state_machine_for_every_workflow() -> None:
    workflows = {p.stem for p in (ROOT / "workflows").glob("*.y*ml")}
    assert workflows, "no workflows to check"
    assert {p.name.removesuffix(".asl.json") for p in ASL_FILES} == workflows


@asl_files
def test_it_parses_and_starts_at_a_state(path: Path) -> None:
    definition = load_asl(path)
    for machine in machines(definition):
        assert machine["StartAt"] in machine["States"]
        for name, state in machine["States"].items():
            assert 1 <= len(name) <= 80, name
            assert state["Type"] in {"Task", "Pass", "Choice", "Wait", "Succeed", "Fail", "Parallel", "Map"}


@asl_files
def test_every_substitution_has_a_definition_substitution(path: Path) -> None:
    declared = substitutions()
    assert path.name in declared, f"{NESTED_TEMPLATE} declares no state machine for {path.name}"
    used = set(re.findall(r"\$\{([^}]*)\}", path.read_text(encoding="utf-8")))
    assert used, "ARNs come through DefinitionSubstitutions"
    assert used <= declared[path.name]


@asl_files
def test_every_arn_comes_through_a_substitution(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"arn:aws:(lambda|states|sns|ses|dynamodb):[a-z0-9-]+:\d{12}", text)
    for name, state in all_states(load_asl(path)):
        if state["Type"] == "Task" and state["Resource"].startswith("arn:aws:states:::lambda:invoke"):
            assert re.fullmatch(r"\$\{\w+\}", state["Parameters"]["FunctionName"]), name


@asl_files
def test_every_target_exists(path: Path) -> None:
    for machine in machines(load_asl(path)):
        names = set(machine["States"])
        for name, state in machine["States"].items():
            missing = set(targets(state)) - names
            assert not missing, f"{name} goes to {missing}"


@asl_files
def test_every_state_is_reachable_from_start_at(path: Path) -> None:
    for machine in machines(load_asl(path)):
        seen = {machine["StartAt"]}
        queue = deque(seen)
        while queue:
            for nxt in targets(machine["States"][queue.popleft()]):
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        assert set(machine["States"]) - seen == set()


@asl_files
def test_every_state_either_ends_or_goes_on(path: Path) -> None:
    for name, state in all_states(load_asl(path)):
        if state["Type"] in ("Succeed", "Fail"):
            assert "Next" not in state, name
        elif state["Type"] == "Choice":
            assert state["Choices"], name
        else:
            assert ("Next" in state) != bool(state.get("End")), name


def test_cairn_error_names_are_the_classes_that_raise_them() -> None:
    for name in CAIRN_ERRORS:
        cls = getattr(errors, name, None)
        assert isinstance(cls, type) and issubclass(cls, Exception), name
        assert cls.__name__ == name


def check_error_list(where: str, entries: list[dict[str, Any]]) -> None:
    for index, entry in enumerate(entries):
        names = entry["ErrorEquals"]
        assert names, where
        unknown = set(names) - REAL_ERRORS
        assert not unknown, f"{where}: no such error {unknown}"
        if "States.ALL" in names:
            assert names == ["States.ALL"], f"{where}: States.ALL stands alone"
            assert index == len(entries) - 1, f"{where}: States.ALL comes last"


@asl_files
def test_every_task_retries_real_errors_and_catches_everything(path: Path) -> None:
    tasks = [(name, state) for name, state in all_states(load_asl(path)) if state["Type"] == "Task"]
    assert tasks
    for name, state in tasks:
        assert state.get("Retry"), f"{name} has no Retry"
        check_error_list(f"{name}.Retry", state["Retry"])
        assert state.get("Catch"), f"{name} has no Catch"
        check_error_list(f"{name}.Catch", state["Catch"])
        assert state["Catch"][-1]["ErrorEquals"] == ["States.ALL"], f"{name}: the last Catch is States.ALL"


@asl_files
def test_every_lambda_task_retries_lambdas_transient_errors(path: Path) -> None:
    for name, state in all_states(load_asl(path)):
        if state["Type"] == "Task" and "lambda:invoke" in state["Resource"]:
            retried = {error for retrier in state["Retry"] for error in retrier["ErrorEquals"]}
            assert retried >= LAMBDA_ERRORS, name


@asl_files
def test_task_token_waits_have_a_timeout_and_go_on_when_it_passes(path: Path) -> None:
    for name, state in all_states(load_asl(path)):
        if state["Type"] != "Task" or not state["Resource"].endswith(".waitForTaskToken"):
            continue
        assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, name
        if "TimeoutSeconds" in state:
            assert 0 < state["TimeoutSeconds"] <= ONE_YEAR, name
        assert "$$.Task.Token" in json.dumps(state["Parameters"]), name
        # A wait that times out is a wait that is over: the journey continues (DESIGN section 3) — with the
        # same state, or for a `wait_for` with its `on_timeout` steps.
        [timeout] = [c for c in state["Catch"] if "States.Timeout" in c["ErrorEquals"]]
        if state["Parameters"]["Payload"]["action"] == "wait_for":
            assert timeout["Next"] not in ("Record failure", "Failed"), name
        else:
            assert timeout["Next"] == state["Next"], name


# ---------------------------------------------------------------- generated files


def test_statemachines_are_up_to_date_with_workflows() -> None:
    project = load_project(ROOT)
    assert project.ok, project.problems
    assert stale_outputs(project) == [], "run `cairn compile` and commit statemachines/"


def _state_machines(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::StateMachine"}


def test_each_state_machine_is_declared_under_its_workflows_logical_id() -> None:
    declared = _state_machines(load_template(ROOT / NESTED_TEMPLATE))
    workflow_ids = sorted(p.stem for p in (ROOT / "workflows").glob("*.y*ml"))
    assert {logical_id(w): f"{w}.asl.json" for w in workflow_ids} == {
        lid: res["Properties"]["DefinitionUri"] for lid, res in declared.items()
    }
    assert logical_id("welcome-series") == "WfWelcomeSeries"  # deployed stacks know it by this name


def test_recompiling_keeps_every_logical_id(tmp_path: Path) -> None:
    first, again = load_project(ROOT), load_project(ROOT)
    assert first.outputs() == again.outputs()

    # A new workflow adds a state machine and leaves the others exactly as they were.
    before = _state_machines(_parse(nested_template(sorted(first.asl)), tmp_path / "before.yaml"))
    after = _state_machines(
        _parse(nested_template([*sorted(first.asl), "zz-added-later"]), tmp_path / "a.yaml")
    )
    assert set(after) == set(before) | {logical_id("zz-added-later")}
    assert {lid: after[lid] for lid in before} == before


def test_the_projects_workflows_have_distinct_logical_ids() -> None:
    ids = sorted(load_project(ROOT).asl)
    assert len({logical_id(w) for w in ids}) == len(ids)


def test_workflow_ids_the_validator_accepts_never_share_a_logical_id() -> None:
    catalog = workflows.Catalog(
        email_templates=frozenset({"t"}), sms_templates=frozenset(), segments=frozenset()
    )
    candidates = ["a1b", "a-1b", "ab", "ab-", "a-b", "a--b"]
    valid = []
    for wid in candidates:
        raw = {
            "id": wid,
            "name": wid,
            "trigger": {"event": "e"},
            "steps": [{"send_email": {"template": "t"}}],
        }
        workflow, _ = workflows.validate(raw, f"workflows/{wid}.yaml", catalog)
        if workflow is not None:
            valid.append(wid)
    assert len({logical_id(w) for w in valid}) == len(valid), valid


def _parse(text: str, path: Path) -> dict[str, Any]:
    path.write_text(text, encoding="utf-8")
    return load_template(path)


# ---------------------------------------------------------------- the sample task events


def _task_payloads() -> dict[str, dict[str, Any]]:
    payloads = {}
    for path in ASL_FILES:
        for name, state in all_states(load_asl(path)):
            if state["Type"] == "Task":
                payloads[f"{path.name}:{name}"] = {
                    "function": state["Parameters"]["FunctionName"],
                    "payload": state["Parameters"]["Payload"],
                }
    return payloads


SAMPLES = sorted([*(ROOT / "events" / "step").glob("*.json"), *(ROOT / "events" / "send").glob("*.json")])


@pytest.mark.parametrize("path", SAMPLES, ids=[f"{p.parent.name}/{p.name}" for p in SAMPLES])
def test_the_sample_task_events_are_what_a_state_machine_sends(path: Path) -> None:
    sample = json.loads(path.read_text(encoding="utf-8"))
    expected_function = "${SendFunctionArn}" if path.parent.name == "send" else "${StepFunctionArn}"
    matches = [
        task
        for task in _task_payloads().values()
        if task["function"] == expected_function
        and {key.removesuffix(".$") for key in task["payload"]} == set(sample)
        and all(sample[key] == value for key, value in task["payload"].items() if not key.endswith(".$"))
    ]
    assert matches, f"no Task of statemachines/ sends {path.name} (action, step, policy and keys)"
    assert set(sample["run"]) == {"cid", "workflowId", "version", "run", "enteredAt", "trigger"}


# ---------------------------------------------------------------- sends, holds and the cost per message


@asl_files
def test_a_held_send_waits_interruptibly_and_goes_back_to_the_send(path: Path) -> None:
    states = load_asl(path)["States"]
    for name, state in states.items():
        if state["Type"] != "Task" or state["Parameters"]["FunctionName"] != "${SendFunctionArn}":
            continue
        if state["Parameters"]["Payload"]["step"].get("onHold") == "skip":
            assert "ResultSelector" not in state, name  # the send function records the skip itself
            continue
        choice = states[state["Next"]]
        assert choice["Type"] == "Choice", name
        [held] = choice["Choices"]
        assert (held["Variable"], held["StringEquals"]) == ("$.send.status", "held"), name
        hold = states[held["Next"]]
        assert hold["Resource"].endswith(".waitForTaskToken") and hold["TimeoutSecondsPath"], name
        assert hold["Next"] == name, name  # then the gate decides again
        assert hold["Parameters"]["Payload"]["action"] == "hold", name


@asl_files
def test_a_message_costs_at_most_three_state_transitions(path: Path) -> None:
    """Goal ≤3 per message, gate and goal checks included: they live inside the send Task, not in states
    of their own. A message that is not held enters its Task and one Choice."""
    states = load_asl(path)["States"]
    for name, state in states.items():
        if state["Type"] == "Task" and state["Parameters"]["FunctionName"] == "${SendFunctionArn}":
            entered = [name]
            nxt = state["Next"]
            while states[nxt]["Type"] in ("Choice", "Pass") and len(entered) < 4:
                entered.append(nxt)
                nxt = states[nxt].get("Default") or states[nxt]["Next"]
                if states[nxt]["Type"] == "Task":
                    break
            assert len(entered) <= 3, entered
