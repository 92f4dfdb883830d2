"""Every tier: a hermetic environment (fake AWS credentials, Powertools quiet, fixed table names), the
project's site bundle, and tables created from the pynamodb models inside moto.

The environment is set when this file is imported, before any test module imports
`cairn.adapters.tables` (pynamodb reads the table names and the region at import).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
STACK = "cairn-test"

TABLES = {
    "CONTACTS_TABLE": f"{STACK}-contacts",
    "EVENTS_TABLE": f"{STACK}-events",
    "IDENTITIES_TABLE": f"{STACK}-identities",
    "KEYS_TABLE": f"{STACK}-keys",
    "STATS_TABLE": f"{STACK}-stats",
    "SEGMENTS_TABLE": f"{STACK}-segments",
}
SECRET = "test-hmac-secret-not-for-production"
SENDER_EMAIL = "hello@mail.trailhead.example"
PUBLIC_BASE_URL = "https://cairn.trailhead.example"
STATE_MACHINE_PREFIX = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STACK}-wf-"

ENV = {
    # Fake credentials: nothing can reach a real account, even by mistake.
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",  # botocore 1.44 + moto's dynamodbstreams
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": str(ROOT / ".no-aws-config"),
    "AWS_SHARED_CREDENTIALS_FILE": str(ROOT / ".no-aws-credentials"),
    "MOTO_ACCOUNT_ID": ACCOUNT,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "cairn",
    "POWERTOOLS_METRICS_NAMESPACE": "Cairn",
    "POWERTOOLS_DEV": "false",
    **TABLES,
    "CAIRN_SECRET": SECRET,
    "STATE_MACHINE_PREFIX": STATE_MACHINE_PREFIX,
    "SENDER_EMAIL": SENDER_EMAIL,
    "SES_CONFIGURATION_SET": "",
    "PUBLIC_BASE_URL": PUBLIC_BASE_URL,
    "STAGE": "test",
}
for _name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)
os.environ.update(ENV)


def pytest_configure(config: pytest.Config) -> None:
    # Powertools' Metrics warns on every flush when a handler publishes only its cold-start metric.
    config.addinivalue_line("filterwarnings", "ignore:No application metrics to publish:UserWarning")


@pytest.fixture(scope="session", autouse=True)
def site_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The repo project's compiled site bundle (what the Site layer ships as /opt/site.json)."""
    from cairn.project import load_project

    project = load_project(ROOT)
    assert project.ok, project.problems
    path = tmp_path_factory.mktemp("site") / "site.json"
    path.write_text(json.dumps(project.site.to_data()), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAIRN_SITE_PATH", str(path))
        yield path


def _point_models_at_test_tables() -> None:
    """The models read their table names at import; something else in the process (local mode) may have
    re-pointed them since. Point them back at this run's tables."""
    from cairn.adapters import tables

    tables.bind_tables(TABLES)


@pytest.fixture
def aws() -> Iterator[None]:
    """moto for every AWS service, fresh for each test; the adapters' cached clients forgotten."""
    from moto import mock_aws

    from cairn.adapters import aws as aws_clients

    aws_clients.reset()
    with mock_aws():
        yield
    aws_clients.reset()


@pytest.fixture
def tables(aws: None) -> dict[str, str]:
    """Cairn's tables in moto, created from the pynamodb models: their keys, the events' LSI, and every
    GSI some model of a table declares (a table shared by several item types gets all of theirs)."""
    import boto3

    from cairn.adapters.tables import ALL_MODELS, bound_models

    _point_models_at_test_tables()
    for model in ALL_MODELS:
        model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for model in bound_models():
        schema = model._get_schema()
        table = dynamodb.describe_table(TableName=model.Meta.table_name)["Table"]
        have = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
        for index in schema["global_secondary_indexes"]:
            if index["index_name"] in have:
                continue
            dynamodb.update_table(
                TableName=model.Meta.table_name,
                AttributeDefinitions=table["AttributeDefinitions"]
                + [a for a in index["attribute_definitions"] if a not in table["AttributeDefinitions"]],
                GlobalSecondaryIndexUpdates=[
                    {
                        "Create": {
                            "IndexName": index["index_name"],
                            "KeySchema": index["key_schema"],
                            "Projection": index["projection"],
                        }
                    }
                ],
            )
            have.add(index["index_name"])
            table = dynamodb.describe_table(TableName=model.Meta.table_name)["Table"]
    return dict(TABLES)
