"""template.yaml and statemachines/workflows.yaml: the contracts the code and the compiler rely on.

`sam validate --lint` (its own Makefile step) checks the templates against CloudFormation; these tests check
Cairn's own promises: table keys (TABLE_KEYS, for the pynamodb models), the runtime, the environment, stream
consumers that cannot lose or loop on records, and the shape of the generated workflows template.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
WORKFLOWS_PATH = ROOT / "statemachines" / "workflows.yaml"

# Key schema of every table, as docs/internals.md describes it. A test of the pynamodb models can assert
# against this dict: (attribute name, DynamoDB type) pairs; `range` None for a hash-only table.
TABLE_KEYS: dict[str, dict[str, Any]] = {
    "ContactsTable": {
        "env": "CONTACTS_TABLE",
        "hash": ("cid", "S"),
        "range": ("sk", "S"),
        "lsi": {},
        # GSIs (only this table has them): name -> (hash, range), each (attribute name, type).
        "gsi": {
            "byClaimedAt": (("cid", "S"), ("claimedAt", "S")),
            "tasksByCreation": (("taskList", "S"), ("taskOrder", "S")),
        },
        "stream": "NEW_AND_OLD_IMAGES",
        "ttl": "expiresAt",
    },
    "EventsTable": {
        "env": "EVENTS_TABLE",
        "hash": ("cid", "S"),
        "range": ("mid", "S"),
        "lsi": {"byTime": ("ts", "S")},
        "stream": "NEW_IMAGE",
        "ttl": "expiresAt",
    },
    "IdentitiesTable": {
        "env": "IDENTITIES_TABLE",
        "hash": ("key", "S"),
        "range": None,
        "lsi": {},
        "stream": None,
        "ttl": None,
    },
    "KeysTable": {
        "env": "KEYS_TABLE",
        "hash": ("keyHash", "S"),
        "range": None,
        "lsi": {},
        "stream": None,
        "ttl": None,
    },
    "StatsTable": {
        "env": "STATS_TABLE",
        "hash": ("pk", "S"),
        "range": ("sk", "S"),
        "lsi": {},
        "stream": None,
        "ttl": "expiresAt",
    },
    "SegmentsTable": {
        "env": "SEGMENTS_TABLE",
        "hash": ("pk", "S"),
        "range": ("sk", "S"),
        "lsi": {},
        "stream": None,
        "ttl": "expiresAt",
    },
}

# Environment every function gets through Globals (docs/internals.md, plus POSTAL_ADDRESS and
# POWERTOOLS_TRACER_CAPTURE_RESPONSE).
ENV_VARS = {
    "CONTACTS_TABLE",
    "EVENTS_TABLE",
    "IDENTITIES_TABLE",
    "KEYS_TABLE",
    "STATS_TABLE",
    "SEGMENTS_TABLE",
    "STATE_MACHINE_PREFIX",
    "SENDER_EMAIL",
    "SES_CONFIGURATION_SET",
    "POSTAL_ADDRESS",
    "SECRET_ARN",
    "CAIRN_SITE_PATH",
    "PUBLIC_BASE_URL",
    "STAGE",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "POWERTOOLS_TRACER_CAPTURE_RESPONSE",
    "LOG_LEVEL",
}

FUNCTIONS = {
    "TriggerFunction": "functions/trigger/",
    "ReactFunction": "functions/react/",
    "StepFunction": "functions/step/",
    "SendFunction": "functions/send/",
    "FeedbackFunction": "functions/feedback/",
    "SegmentsFunction": "functions/segments/",
}

WORKFLOW_PREFIX = "${AWS::StackName}-wf-"
NESTED_PARAMETERS = {
    "StepFunctionArn": {"Fn::GetAtt": ["StepFunction", "Arn"]},
    "SendFunctionArn": {"Fn::GetAtt": ["SendFunction", "Arn"]},
    "StackPrefix": {"Fn::Sub": WORKFLOW_PREFIX},
    "LogGroupArn": {"Fn::GetAtt": ["WorkflowsLogGroup", "Arn"]},
}


class _CfnLoader(yaml.SafeLoader):
    """PyYAML that reads CloudFormation short forms (!Ref, !Sub, !GetAtt, !If, ...) as their long forms."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    return {key: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # a SafeLoader
    return doc


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def workflows() -> dict[str, Any]:
    return load_template(WORKFLOWS_PATH)


def _of_type(doc: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in doc["Resources"].items() if res["Type"] == type_}


# ---------------------------------------------------------------- tables


def test_the_template_declares_exactly_the_tables_of_table_keys(template: dict[str, Any]) -> None:
    assert set(_of_type(template, "AWS::DynamoDB::Table")) == set(TABLE_KEYS)


@pytest.mark.parametrize("name", sorted(TABLE_KEYS))
def test_table_key_schema(template: dict[str, Any], name: str) -> None:
    expected = TABLE_KEYS[name]
    props = template["Resources"][name]["Properties"]
    types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    keys = {k["KeyType"]: k["AttributeName"] for k in props["KeySchema"]}

    hash_name, hash_type = expected["hash"]
    assert keys["HASH"] == hash_name
    assert types[hash_name] == hash_type
    if expected["range"] is None:
        assert "RANGE" not in keys
    else:
        range_name, range_type = expected["range"]
        assert keys["RANGE"] == range_name
        assert types[range_name] == range_type

    lsis = {i["IndexName"]: i for i in props.get("LocalSecondaryIndexes", [])}
    assert set(lsis) == set(expected["lsi"])
    for index_name, (sort_name, sort_type) in expected["lsi"].items():
        index_keys = {k["KeyType"]: k["AttributeName"] for k in lsis[index_name]["KeySchema"]}
        assert index_keys == {"HASH": hash_name, "RANGE": sort_name}
        assert types[sort_name] == sort_type
        assert lsis[index_name]["Projection"]["ProjectionType"] == "ALL"
    gsis = {i["IndexName"]: i for i in props.get("GlobalSecondaryIndexes", [])}
    assert set(gsis) == set(expected.get("gsi", {}))
    for index_name, keys in expected.get("gsi", {}).items():
        (gsi_hash, gsi_hash_type), (gsi_range, gsi_range_type) = keys
        index_keys = {k["KeyType"]: k["AttributeName"] for k in gsis[index_name]["KeySchema"]}
        assert index_keys == {"HASH": gsi_hash, "RANGE": gsi_range}
        assert (types[gsi_hash], types[gsi_range]) == (gsi_hash_type, gsi_range_type)
    # Every attribute definition is a key attribute (CloudFormation refuses the others).
    used = {hash_name} | ({expected["range"][0]} if expected["range"] else set())
    used |= {sort for sort, _ in expected["lsi"].values()}
    used |= {name for keys in expected.get("gsi", {}).values() for name, _ in keys}
    assert set(types) == used


@pytest.mark.parametrize("name", sorted(TABLE_KEYS))
def test_table_stream_and_ttl(template: dict[str, Any], name: str) -> None:
    expected = TABLE_KEYS[name]
    props = template["Resources"][name]["Properties"]
    stream = props.get("StreamSpecification", {}).get("StreamViewType")
    assert stream == expected["stream"]
    ttl = props.get("TimeToLiveSpecification")
    if expected["ttl"] is None:
        assert ttl is None
    else:
        assert ttl == {"AttributeName": expected["ttl"], "Enabled": True}


@pytest.mark.parametrize("name", sorted(TABLE_KEYS))
def test_tables_are_on_demand_recoverable_encrypted_and_retained(template: dict[str, Any], name: str) -> None:
    resource = template["Resources"][name]
    props = resource["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert "TableName" not in props  # names come from the environment, never hard-coded
    assert resource["DeletionPolicy"] == "Retain"
    assert resource["UpdateReplacePolicy"] == "Retain"


def test_the_hmac_secret_is_retained(template: dict[str, Any]) -> None:
    secret = template["Resources"]["HmacSecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert secret["DeletionPolicy"] == secret["UpdateReplacePolicy"] == "Retain"
    assert "GenerateSecretString" in secret["Properties"]


# ---------------------------------------------------------------- functions


def test_every_function_is_python313_on_arm64_via_globals(template: dict[str, Any]) -> None:
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    assert globals_["Architectures"] == ["arm64"]
    assert globals_["Tracing"] == "Active"
    assert globals_["LoggingConfig"]["LogFormat"] == "JSON"
    assert globals_["Layers"] == [{"Ref": "CommonLayer"}, {"Ref": "SiteLayer"}]
    functions = _of_type(template, "AWS::Serverless::Function")
    assert set(functions) == set(FUNCTIONS)
    for name, function in functions.items():
        props = function["Properties"]
        assert "Runtime" not in props, name
        assert "Architectures" not in props, name
        assert "Layers" not in props, name
        assert props["CodeUri"] == FUNCTIONS[name]
        assert props.get("Handler", globals_["Handler"]) == "app.handler"
        assert (ROOT / FUNCTIONS[name]).is_dir(), name


def test_globals_environment(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert set(env) == ENV_VARS
    for table, keys in TABLE_KEYS.items():
        assert env[keys["env"]] == {"Ref": table}
    assert env["SECRET_ARN"] == {"Ref": "HmacSecret"}
    assert env["CAIRN_SITE_PATH"] == "/opt/site.json"
    assert env["POWERTOOLS_SERVICE_NAME"] == "cairn"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Cairn"
    arn = "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:"
    assert env["STATE_MACHINE_PREFIX"] == {"Fn::Sub": arn + WORKFLOW_PREFIX}


def test_functions_override_no_environment_but_the_triggers_base_url(template: dict[str, Any]) -> None:
    for name, function in _of_type(template, "AWS::Serverless::Function").items():
        own = set(function["Properties"].get("Environment", {}).get("Variables", {}))
        assert own <= ({"PUBLIC_BASE_URL"} if name == "TriggerFunction" else set()), name


def test_layers(template: dict[str, Any]) -> None:
    common = template["Resources"]["CommonLayer"]
    assert common["Metadata"]["BuildMethod"] == "python3.13"
    assert common["Metadata"]["BuildArchitecture"] == "arm64"
    assert common["Properties"]["ContentUri"] == "layers/common/"
    site = template["Resources"]["SiteLayer"]
    assert "Metadata" not in site  # copied as is: site.json lands at /opt/site.json
    assert site["Properties"]["ContentUri"] == "statemachines/site/"
    assert (ROOT / "statemachines" / "site").is_dir()


def test_http_api_routes(template: dict[str, Any]) -> None:
    events = template["Resources"]["TriggerFunction"]["Properties"]["Events"]
    routes = {(e["Properties"]["Method"].upper(), e["Properties"]["Path"]) for e in events.values()}
    assert {("ANY", "/v1/{proxy+}"), ("GET", "/openapi.json"), ("GET", "/docs")} <= routes
    assert all(e["Type"] == "HttpApi" for e in events.values())
    assert all(e["Properties"]["ApiId"] == {"Ref": "HttpApi"} for e in events.values())


def _stream_events(template: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for fname, function in _of_type(template, "AWS::Serverless::Function").items():
        for ename, event in function["Properties"].get("Events", {}).items():
            if event["Type"] in ("DynamoDB", "Kinesis"):
                found.append((fname, ename, event["Properties"]))
    return found


def test_stream_consumers_never_lose_records_silently(template: dict[str, Any]) -> None:
    streams = _stream_events(template)
    assert {(f, e) for f, e, _ in streams} == {
        ("ReactFunction", "EventsStream"),
        ("ReactFunction", "ContactsStream"),
    }
    for fname, ename, props in streams:
        where = f"{fname}.{ename}"
        assert props["BisectBatchOnFunctionError"] is True, where
        assert 60 <= props["MaximumRecordAgeInSeconds"] <= 86400, where
        assert props["MaximumRetryAttempts"] >= 1, where
        assert props["DestinationConfig"]["OnFailure"]["Destination"], where
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"], where
        assert props.get("ParallelizationFactor", 1) == 1, where  # in order per contact
        assert props["StartingPosition"] == "LATEST", where


def test_stream_sources_match_their_tables(template: dict[str, Any]) -> None:
    by_event = {e: p for _, e, p in _stream_events(template)}
    assert by_event["EventsStream"]["Stream"] == {"Fn::GetAtt": ["EventsTable", "StreamArn"]}
    assert by_event["ContactsStream"]["Stream"] == {"Fn::GetAtt": ["ContactsTable", "StreamArn"]}


def test_contacts_stream_sees_only_profiles_so_the_reactor_never_retriggers_itself(
    template: dict[str, Any],
) -> None:
    by_event = {e: p for _, e, p in _stream_events(template)}
    patterns = [json.loads(f["Pattern"]) for f in by_event["ContactsStream"]["FilterCriteria"]["Filters"]]
    assert patterns == [{"dynamodb": {"Keys": {"sk": {"S": ["profile"]}}}}]


# ---------------------------------------------------------------- workflows (nested, generated)


def test_workflows_nested_app_gets_the_functions_and_the_prefix(template: dict[str, Any]) -> None:
    app = template["Resources"]["Workflows"]
    assert app["Type"] == "AWS::Serverless::Application"
    assert app["Properties"]["Location"] == "statemachines/workflows.yaml"
    assert app["Properties"]["Parameters"] == NESTED_PARAMETERS


def test_workflows_template_declares_exactly_the_parameters_passed(workflows: dict[str, Any]) -> None:
    assert workflows["Transform"] == "AWS::Serverless-2016-10-31"
    assert set(workflows["Parameters"]) == set(NESTED_PARAMETERS)


def test_every_state_machine_is_retained(workflows: dict[str, Any]) -> None:
    machines = _of_type(workflows, "AWS::Serverless::StateMachine")
    assert machines, "the workflows template declares no state machine"
    for name, machine in machines.items():
        assert machine.get("DeletionPolicy") == "Retain", name
        assert machine.get("UpdateReplacePolicy") == "Retain", name


def test_state_machines_follow_the_generated_shape(workflows: dict[str, Any]) -> None:
    for name, machine in _of_type(workflows, "AWS::Serverless::StateMachine").items():
        props = machine["Properties"]
        assert re.fullmatch(r"Wf[A-Z][A-Za-z0-9]*", name), name
        sub = props["Name"]["Fn::Sub"]
        assert sub.startswith("${StackPrefix}"), name
        workflow_id = sub.removeprefix("${StackPrefix}")
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", workflow_id), name
        assert props["Type"] == "STANDARD", name
        assert props["AutoPublishAlias"] == "live", name
        assert props["Tracing"] == {"Enabled": True}, name
        logging = props["Logging"]
        assert logging["Level"] == "ERROR", name
        assert logging["IncludeExecutionData"] is False, name  # no personal data in logs
        assert logging["Destinations"] == [
            {"CloudWatchLogsLogGroup": {"LogGroupArn": {"Ref": "LogGroupArn"}}}
        ]
        assert props["DefinitionSubstitutions"] == {
            "StepFunctionArn": {"Ref": "StepFunctionArn"},
            "SendFunctionArn": {"Ref": "SendFunctionArn"},
        }, name
        asl_path = WORKFLOWS_PATH.parent / props["DefinitionUri"]
        assert asl_path.is_file(), name
        asl = asl_path.read_text(encoding="utf-8")
        json.loads(asl)
        assert set(re.findall(r"\$\{(\w+)\}", asl)) <= set(props["DefinitionSubstitutions"]), name
