"""A Cairn project on disk: workflows/, segments/, templates/ and settings.yaml, loaded and compiled."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cairn.domain import compiler, workflows
from cairn.domain import segments as segment_files
from cairn.domain.rendering import Renderer, known_attributes
from cairn.domain.settings import Settings
from cairn.domain.site import Site
from cairn.domain.templates import load_templates
from cairn.domain.yamlsource import Problem, line_of, load, plain

STATEMACHINES = "statemachines"
SITE_FILE = Path(STATEMACHINES) / "site" / "site.json"
NESTED_TEMPLATE = Path(STATEMACHINES) / "workflows.yaml"
# Stack-level state machines declared by template.yaml itself (not generated from workflows/): the segment
# build, and the variant local mode runs instead (moto has no Distributed Map).
STACK_MACHINES = frozenset({"segment-build.asl.json", "segment-build.local.asl.json"})
RESERVED_WORKFLOW_IDS = frozenset({"segment-build"})


@dataclass
class CompiledProject:
    root: Path
    site: Site
    asl: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def outputs(self) -> dict[Path, str]:
        """Every generated file, by path relative to the project root, with its exact content."""
        files: dict[Path, str] = {}
        for wid, definition in sorted(self.asl.items()):
            files[Path(STATEMACHINES) / f"{wid}.asl.json"] = json.dumps(definition, indent=2) + "\n"
        files[NESTED_TEMPLATE] = nested_template(sorted(self.asl))
        files[SITE_FILE] = json.dumps(self.site.to_data(), indent=1, sort_keys=True) + "\n"
        return files


def logical_id(workflow_id: str) -> str:
    """A stable CloudFormation logical id for a workflow's state machine."""
    return "Wf" + "".join(part.capitalize() for part in workflow_id.split("-"))


def _load_yaml(path: Path, root: Path, problems: list[Problem]) -> Any:
    rel = str(path.relative_to(root))
    try:
        return load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problems.append(Problem(rel, mark.line + 1 if mark else None, f"not valid YAML: {exc}"))
        return None


def load_settings(root: Path, problems: list[Problem]) -> Settings:
    path = root / "settings.yaml"
    if not path.exists():
        return Settings()
    raw = _load_yaml(path, root, problems)
    try:
        return Settings.model_validate(plain(raw) or {})
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            field_name = ".".join(str(p) for p in loc)
            problems.append(Problem("settings.yaml", line_of(raw, loc), f"{field_name}: {err['msg']}"))
        return Settings()


def load_project(root: Path) -> CompiledProject:
    """Read, validate and compile a project; every problem is collected, none stops the others."""
    root = root.resolve()
    problems: list[Problem] = []
    settings = load_settings(root, problems)
    templates, template_problems = load_templates(root / "templates")
    template_problems += Renderer(templates, timezone_fallback=settings.timezone).check()
    problems.extend(Problem(p.file, p.line, p.message) for p in template_problems)
    if not settings.postal_address and any(t.kind == "marketing" for t in templates.email.values()):
        problems.append(
            Problem("settings.yaml", None, "postal_address is required: every marketing email carries it")
        )
    segment_sources = [
        (str(path.relative_to(root)), raw)
        for path in sorted((root / "segments").glob("*.y*ml"))
        if (raw := _load_yaml(path, root, problems)) is not None
    ]
    retention = event_retention(root)
    segments, segment_problems = segment_files.load_segments(segment_sources, retention=retention)
    problems.extend(segment_problems)
    segment_ids = frozenset(
        str(raw["id"]) for _, raw in segment_sources if isinstance(raw, dict) and "id" in raw
    )
    catalog = workflows.Catalog(
        email_templates=frozenset(templates.email),
        sms_templates=frozenset(templates.sms),
        segments=segment_ids,
        workflows=frozenset(p.name.split(".", 1)[0] for p in (root / "workflows").glob("*.y*ml")),
    )
    parsed: dict[str, workflows.Workflow] = {}
    workflow_sources: list[tuple[str, Any]] = []
    for path in sorted((root / "workflows").glob("*.y*ml")):
        raw = _load_yaml(path, root, problems)
        if raw is None:
            continue
        wf, wf_problems = workflows.validate(raw, str(path.relative_to(root)), catalog)
        problems.extend(wf_problems)
        workflow_sources.append((str(path.relative_to(root)), raw))
        if wf is not None:
            parsed[wf.id] = wf
    # Template variables no contact could have (sending): known attributes come from settings and rules.
    known = set(settings.attributes) | known_attributes(
        [wf.model_dump(mode="json", by_alias=True) for wf in parsed.values()], segments
    )
    checker = Renderer(templates, timezone_fallback=settings.timezone)
    problems.extend(Problem(p.file, p.line, p.message) for p in checker.check_variables(known))
    if not segment_problems:
        problems.extend(check_workflow_windows(workflow_sources, segments, retention))
    site = Site(workflows=parsed, templates=templates, settings=settings, segments=segments)
    asl = {wid: compiler.compile_workflow(wf) for wid, wf in parsed.items()}
    return CompiledProject(root=root, site=site, asl=asl, problems=problems)


def write_outputs(project: CompiledProject) -> list[Path]:
    """Write what changed; return the paths written."""
    written: list[Path] = []
    for rel, content in project.outputs().items():
        path = project.root / rel
        if path.exists() and path.read_text(encoding="utf-8") == content:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(rel)
    stale = {
        p.relative_to(project.root)
        for p in (project.root / STATEMACHINES).glob("*.asl.json")
        if p.name not in STACK_MACHINES
    }
    for rel in sorted(stale - set(project.outputs())):
        # A removed workflow: its state machine stays deployed (Retain) until its runs end.
        (project.root / rel).unlink()
        written.append(rel)
    return written


def stale_outputs(project: CompiledProject) -> list[Path]:
    """Generated files that differ from what `cairn compile` would write now."""
    stale = []
    for rel, content in project.outputs().items():
        path = project.root / rel
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            stale.append(rel)
    return stale


_NESTED_HEAD = """\
# GENERATED by `cairn compile` from workflows/: do not edit by hand.
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Description: Cairn workflows, one Standard state machine per workflow (nested in the Cairn stack).

Parameters:
  StepFunctionArn:
    Type: String
    Description: ARN of the stack's step function (conditions, branches, updates, waits).
  SendFunctionArn:
    Type: String
    Description: ARN of the stack's send function.
  StackPrefix:
    Type: String
    Description: State machine name prefix, "<parent stack name>-wf-".
  LogGroupArn:
    Type: String
    Description: Log group (ARN ending in ":*") receiving every state machine's ERROR logs.

Resources:
  # Logical id: "Wf" + the workflow id in PascalCase. Retained with its role, version and alias when the
  # workflow is removed, so open runs finish.
"""

_NESTED_MACHINE = """\
  {logical_id}:
    Type: AWS::Serverless::StateMachine
    DeletionPolicy: Retain
    UpdateReplacePolicy: Retain
    Properties:
      Name: !Sub "${{StackPrefix}}{wid}"
      Type: STANDARD
      DefinitionUri: {wid}.asl.json
      DefinitionSubstitutions:
        StepFunctionArn: !Ref StepFunctionArn
        SendFunctionArn: !Ref SendFunctionArn
      AutoPublishAlias: live
      Logging:
        Level: ERROR
        IncludeExecutionData: false
        Destinations:
          - CloudWatchLogsLogGroup:
              LogGroupArn: !Ref LogGroupArn
      Tracing:
        Enabled: true
      Tags:
        cairn:workflow: {wid}
      Policies:
        - Statement:
            - Effect: Allow
              Action: lambda:InvokeFunction
              Resource:
                - !Ref StepFunctionArn
                - !Sub "${{StepFunctionArn}}:*"
                - !Ref SendFunctionArn
                - !Sub "${{SendFunctionArn}}:*"
            # Step Functions delivers logs through CloudWatch Logs vended log deliveries (no resource ARNs).
            - Effect: Allow
              Action:
                - logs:CreateLogDelivery
                - logs:GetLogDelivery
                - logs:UpdateLogDelivery
                - logs:DeleteLogDelivery
                - logs:ListLogDeliveries
                - logs:PutResourcePolicy
                - logs:DescribeResourcePolicies
                - logs:DescribeLogGroups
              Resource: "*"
"""


def nested_template(workflow_ids: list[str]) -> str:
    """The generated SAM template declaring one state machine per workflow (included by template.yaml)."""
    body = "".join(_NESTED_MACHINE.format(logical_id=logical_id(w), wid=w) for w in workflow_ids)
    if not workflow_ids:
        # CloudFormation needs at least one resource: a harmless wait condition handle.
        body = "  NoWorkflows:\n    Type: AWS::CloudFormation::WaitConditionHandle\n"
    return _NESTED_HEAD + body


# ---------------------------------------------------------------- segments: event retention, windows


DEFAULT_EVENT_TTL_DAYS = 400  # Config's default when template.yaml sets no EVENT_TTL_DAYS


class _TemplateLoader(yaml.SafeLoader):
    """Reads template.yaml for plain values only: CloudFormation's tags (!Ref, !Sub, ...) become None."""


_TemplateLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def event_retention(root: Path) -> timedelta:
    """How long the stack keeps events: EVENT_TTL_DAYS of template.yaml's function environment, or
    the functions' default. Every `within` a rule reads must fit in it."""
    path = root / "template.yaml"
    days: Any = None
    if path.exists():
        try:
            template = yaml.load(path.read_text(encoding="utf-8"), Loader=_TemplateLoader) or {}
            env = (((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}).get(
                "Variables"
            ) or {}
            days = env.get("EVENT_TTL_DAYS")
        except (yaml.YAMLError, AttributeError):
            days = None
    try:
        return timedelta(days=int(days)) if days is not None else timedelta(days=DEFAULT_EVENT_TTL_DAYS)
    except (TypeError, ValueError):
        return timedelta(days=DEFAULT_EVENT_TTL_DAYS)


def check_workflow_windows(
    sources: list[tuple[str, Any]], segments: dict[str, Any], retention: timedelta
) -> list[Problem]:
    """Every rule of a workflow (audience, exit_when, branch conditions, through the segments they
    name) and its goal must read no further back than events are kept; also, workflow ids that would
    take a stack-level state machine's file."""
    from cairn.domain import durations, rules
    from cairn.domain.segments import SegmentCatalog, retention_problem

    problems: list[Problem] = []
    catalog = SegmentCatalog.from_data(segments)

    def visit(node: Any, loc: tuple[str | int, ...], file: str, raw: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = (*loc, key)
                window = None
                if key in ("audience", "exit_when", "if") and isinstance(value, dict):
                    try:
                        window = rules.max_within(catalog.expand(rules.parse_rule(plain(value))))
                    except rules.RuleError:
                        window = None  # the workflow validator reports it
                elif key == "goal" and isinstance(value, dict) and isinstance(value.get("within"), str):
                    try:
                        window = durations.parse_duration(value["within"])
                    except durations.DurationError:
                        window = None
                if window is not None and window > retention:
                    where = ".".join(str(p) for p in here)
                    problems.append(
                        Problem(file, line_of(raw, here), retention_problem(where, window, retention))
                    )
                visit(value, here, file, raw)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                visit(value, (*loc, index), file, raw)

    for file, raw in sources:
        if isinstance(raw, dict) and raw.get("id") in RESERVED_WORKFLOW_IDS:
            problems.append(
                Problem(
                    file,
                    line_of(raw, ("id",)),
                    f"id '{raw['id']}' is reserved (a state machine of the stack)",
                )
            )
        visit(raw, (), file, raw)
    return problems
