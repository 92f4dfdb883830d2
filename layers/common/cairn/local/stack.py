"""Local mode's AWS: the real template.yaml (and the generated workflows template) built in moto."""

from __future__ import annotations

import io
import json
import secrets
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cairn.adapters.aws import client
from cairn.local.cfn import Resolver, load_template
from cairn.local.lambdas import FunctionHost, LocalFunction
from cairn.local.schedules import Rule, Schedule, Scheduler, parse_rate
from cairn.local.streams import Mapping, StreamDispatcher

STACK = "cairn-local"
REGION = "us-east-1"
ACCOUNT = "123456789012"
PSEUDO = {
    "AWS::StackName": STACK,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/local",
}


@dataclass
class LocalStack:
    tables: dict[str, str] = field(default_factory=dict)  # logical id -> table name
    functions: dict[str, LocalFunction] = field(default_factory=dict)  # logical id -> function
    state_machines: dict[str, str] = field(default_factory=dict)  # workflow id -> ARN
    machines: dict[str, str] = field(default_factory=dict)  # stack-level state machines: logical id -> ARN
    env: dict[str, str] = field(default_factory=dict)
    sender_domain: str = ""
    role: str = ""  # the state machines' role
    workflow_params: dict[str, Any] = field(default_factory=dict)  # the nested workflows stack's parameters


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", "# local mode runs the real handler in-process\n")
    return buffer.getvalue()


def _params(template: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    params: dict[str, Any] = dict(PSEUDO)
    for name, spec in (template.get("Parameters") or {}).items():
        if name in overrides:
            params[name] = overrides[name]
        elif "Default" in spec:
            params[name] = spec["Default"]
        else:
            raise ValueError(f"template parameter {name} needs a local value")
    return params


def _create_table(props: dict[str, Any], name: str) -> None:
    args: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": "PAY_PER_REQUEST",
    }
    for key in ("LocalSecondaryIndexes", "GlobalSecondaryIndexes"):
        if props.get(key):
            args[key] = props[key]
    if props.get("StreamSpecification"):
        args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    client("dynamodb").create_table(**args)


def build(
    root: Path,
    *,
    asl: dict[str, dict[str, Any]],
    nested: dict[str, Any],
    host: FunctionHost,
    streams: StreamDispatcher,
    scheduler: Scheduler,
    overrides: dict[str, str],
    env_overrides: dict[str, str],
) -> LocalStack:
    """Create every resource local mode emulates; other resource types (alarms, logs, API) are skipped."""
    template = load_template(root / "template.yaml")
    resolver = Resolver(params=_params(template, overrides), conditions=template.get("Conditions") or {})
    resources: dict[str, Any] = template["Resources"]
    stack = LocalStack()

    def of_type(kind: str) -> list[tuple[str, dict[str, Any]]]:
        return [(lid, r) for lid, r in resources.items() if r["Type"] == kind]

    for lid, res in of_type("AWS::DynamoDB::Table"):
        props = resolver.resolve(res["Properties"])
        name = props.get("TableName") or f"{STACK}-{lid}"
        _create_table(props, name)
        described = client("dynamodb").describe_table(TableName=name)["Table"]
        resolver.refs[lid] = name
        resolver.attrs[(lid, "Arn")] = described["TableArn"]
        resolver.attrs[(lid, "StreamArn")] = described.get("LatestStreamArn", "")
        stack.tables[lid] = name
    for lid, _res in of_type("AWS::SecretsManager::Secret"):
        name = f"{STACK}-{lid}"
        arn = client("secretsmanager").create_secret(Name=name, SecretString=secrets.token_hex(32))["ARN"]
        resolver.refs[lid] = arn
    for lid, _res in of_type("AWS::SQS::Queue"):
        url = client("sqs").create_queue(QueueName=f"{STACK}-{lid}")["QueueUrl"]
        resolver.refs[lid] = url
        resolver.attrs[(lid, "Arn")] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{STACK}-{lid}"
    for lid, _res in of_type("AWS::SES::ConfigurationSet"):
        name = f"{STACK}-{lid}".lower()
        client("sesv2").create_configuration_set(ConfigurationSetName=name)
        resolver.refs[lid] = name
    domain = str(resolver.params.get("SendingDomain", "example.com"))
    client("ses").verify_domain_identity(Domain=domain)
    stack.sender_domain = domain
    for lid, _res in [*of_type("AWS::Serverless::HttpApi"), *of_type("AWS::Serverless::LayerVersion")]:
        resolver.refs[lid] = f"local-{lid}"

    role = client("iam").create_role(
        RoleName=f"{STACK}-role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    global_env = resolver.resolve((globals_fn.get("Environment") or {}).get("Variables") or {})
    code = _zip()
    functions = of_type("AWS::Serverless::Function")
    for lid, res in of_type("AWS::Serverless::StateMachine"):  # ARNs are known before creation
        sm_name = resolver.resolve(res["Properties"].get("Name")) or f"{STACK}-{lid}"
        resolver.refs[lid] = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{sm_name}"
        resolver.attrs[(lid, "Name")] = sm_name
    for lid, _res in functions:  # names first: environments may refer to any function
        resolver.refs[lid] = f"{STACK}-{lid}"
        resolver.attrs[(lid, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-{lid}"
    merged_env: dict[str, str] = {}
    for lid, res in functions:
        props = res["Properties"]
        name = f"{STACK}-{lid}"
        env = {**global_env, **resolver.resolve((props.get("Environment") or {}).get("Variables") or {})}
        env = {k: str(v) for k, v in env.items()}
        env.update(env_overrides)
        merged_env.update(env)
        handler = props.get("Handler") or globals_fn.get("Handler", "app.handler")
        arn = client("lambda").create_function(
            FunctionName=name,
            Runtime="python3.13",
            Role=role,
            Handler=handler,
            Code={"ZipFile": code},
            Environment={"Variables": env},
            Timeout=int(props.get("Timeout", globals_fn.get("Timeout", 30))),
        )["FunctionArn"]
        fn = LocalFunction(
            name=name, logical_id=lid, code_dir=root / str(props["CodeUri"]), handler=handler, arn=arn
        )
        host.register(fn)
        stack.functions[lid] = fn
        for event in (props.get("Events") or {}).values():
            kind = event.get("Type")
            if kind in ("Schedule", "ScheduleV2"):
                ev = resolver.resolve(event["Properties"])
                expression = ev.get("Schedule") or ev.get("ScheduleExpression")
                payload = json.loads(ev["Input"]) if ev.get("Input") else None
                scheduler.add_schedule(Schedule(name, parse_rate(str(expression)), payload))
                continue
            if kind in ("EventBridgeRule", "CloudWatchEvent"):
                ev = resolver.resolve(event["Properties"])
                scheduler.add_rule(Rule(name, ev.get("Pattern") or {}))
                continue
            if kind != "DynamoDB":
                continue
            ev = resolver.resolve(event["Properties"])
            table = str(ev["Stream"]).split(":table/", 1)[1].split("/", 1)[0]
            filters = [json.loads(f["Pattern"]) for f in (ev.get("FilterCriteria") or {}).get("Filters", [])]
            streams.add_mapping(
                Mapping(
                    table,
                    name,
                    int(ev.get("BatchSize", 100)),
                    filters,
                    max_retries=int(ev.get("MaximumRetryAttempts", -1)),
                    max_record_age=int(ev.get("MaximumRecordAgeInSeconds", -1)),
                )
            )
    stack.env = merged_env

    for lid, res in of_type("AWS::Serverless::StateMachine"):
        # Stack-level state machines (not workflows), e.g. segment builds. A `<file>.local.asl.json`
        # beside the definition replaces it locally where moto lacks a feature (Distributed Map).
        props = resolver.resolve(res["Properties"])
        path = root / str(props["DefinitionUri"])
        local_variant = path.with_name(path.name.replace(".asl.json", ".local.asl.json"))
        text = (local_variant if local_variant.exists() else path).read_text(encoding="utf-8")
        for key, value in (props.get("DefinitionSubstitutions") or {}).items():
            text = text.replace("${" + key + "}", str(value))
        name = str(props.get("Name") or f"{STACK}-{lid}")
        arn = client("stepfunctions").create_state_machine(
            name=name, definition=text, roleArn=role, type="STANDARD"
        )["stateMachineArn"]
        resolver.refs[lid] = arn
        stack.machines[lid] = arn

    for lid, res in of_type("AWS::Serverless::Application"):
        # The workflows' nested template, as `cairn compile` would write it now (not the file on disk:
        # local mode runs what the project says, compiled or not).
        props = resolver.resolve(res["Properties"])
        _nested_state_machines(nested, props.get("Parameters") or {}, asl, role, stack)
        resolver.refs[lid] = f"local-{lid}"
    return stack


def _workflow_definitions(
    template: dict[str, Any], params: dict[str, Any], asl: dict[str, dict[str, Any]]
) -> dict[str, tuple[str, str]]:
    """Workflow id -> (state machine name, definition) of the nested template's state machines."""
    resolver = Resolver(params={**PSEUDO, **params}, conditions=template.get("Conditions") or {})
    out: dict[str, tuple[str, str]] = {}
    for res in (template.get("Resources") or {}).values():
        if res["Type"] != "AWS::Serverless::StateMachine":
            continue
        props = resolver.resolve(res["Properties"])
        workflow_id = str(props["DefinitionUri"]).removesuffix(".asl.json")
        definition = asl.get(workflow_id)
        if definition is None:
            continue  # a removed workflow: retained on AWS, nothing to run locally
        text = json.dumps(definition)
        for key, value in (props.get("DefinitionSubstitutions") or {}).items():
            text = text.replace("${" + key + "}", str(value))
        out[workflow_id] = (str(props["Name"]), text)
    return out


def _nested_state_machines(
    template: dict[str, Any],
    params: dict[str, Any],
    asl: dict[str, dict[str, Any]],
    role: str,
    stack: LocalStack,
) -> None:
    stack.role, stack.workflow_params = role, dict(params)
    for workflow_id, (name, text) in _workflow_definitions(template, params, asl).items():
        arn = client("stepfunctions").create_state_machine(
            name=name, definition=text, roleArn=role, type="STANDARD"
        )["stateMachineArn"]
        stack.state_machines[workflow_id] = arn


def redeploy_workflows(
    stack: LocalStack, asl: dict[str, dict[str, Any]], nested: dict[str, Any]
) -> dict[str, list[str]]:
    """The workflows part of a `sam deploy`: a changed definition is published as a new version of its
    state machine (AutoPublishAlias; runs in flight keep theirs), a new workflow gets a state machine, an
    unchanged one is left alone, a removed one is retained. Returns the ids created and updated."""
    sfn = client("stepfunctions")
    created: list[str] = []
    updated: list[str] = []
    definitions = _workflow_definitions(nested, stack.workflow_params, asl)
    for workflow_id, (name, text) in sorted(definitions.items()):
        arn = stack.state_machines.get(workflow_id)
        if arn is None:
            stack.state_machines[workflow_id] = sfn.create_state_machine(
                name=name, definition=text, roleArn=stack.role, type="STANDARD"
            )["stateMachineArn"]
            created.append(workflow_id)
        elif sfn.describe_state_machine(stateMachineArn=arn)["definition"] != text:
            sfn.update_state_machine(stateMachineArn=arn, definition=text, publish=True)
            updated.append(workflow_id)
    return {"created": created, "updated": updated}
