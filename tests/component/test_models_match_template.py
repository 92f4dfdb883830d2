"""The pynamodb models and template.yaml agree on every table's keys (TABLE_KEYS is the template's side,
checked against template.yaml by test_template.py)."""

from __future__ import annotations

import os
from typing import Any

import boto3
import pytest
from pynamodb.attributes import NumberAttribute
from pynamodb.models import Model
from tests.component.test_template import TABLE_KEYS
from tests.conftest import REGION

from cairn.adapters import tables as cairn_tables

MODELS: list[type[Model]] = [
    cairn_tables.ContactItem,
    cairn_tables.EnrollmentItem,
    cairn_tables.RunItem,
    cairn_tables.MessageItem,
    cairn_tables.EventItem,
    cairn_tables.IdentityItem,
    cairn_tables.KeyItem,
    cairn_tables.StatsItem,
    cairn_tables.SegmentItem,
]


# The table names the models read from the environment at import (collection time, before any test could
# re-point them).
IMPORTED_NAMES = {m: m.Meta.table_name for m in MODELS}


def models_of(table: str) -> list[type[Model]]:
    name = os.environ[TABLE_KEYS[table]["env"]]
    return [m for m in MODELS if IMPORTED_NAMES[m] == name]


def keys_of(schema: dict[str, Any]) -> dict[str, tuple[str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in schema["attribute_definitions"]}
    return {k["KeyType"]: (k["AttributeName"], types[k["AttributeName"]]) for k in schema["key_schema"]}


def test_every_model_lives_in_one_table_and_every_table_has_a_model() -> None:
    assert sorted(m.__name__ for table in TABLE_KEYS for m in models_of(table)) == sorted(
        m.__name__ for m in MODELS
    )
    for table in TABLE_KEYS:
        assert models_of(table), table
    # ALL_MODELS (what creates the tables) holds one model per table.
    assert sorted(IMPORTED_NAMES[m] for m in cairn_tables.ALL_MODELS) == sorted(
        os.environ[k["env"]] for k in TABLE_KEYS.values()
    )


@pytest.mark.parametrize("table", sorted(TABLE_KEYS))
def test_model_keys_match_the_template(table: str) -> None:
    expected = TABLE_KEYS[table]
    for model in models_of(table):
        schema = model._get_schema()
        keys = keys_of(schema)
        assert keys["HASH"] == expected["hash"], model.__name__
        assert keys.get("RANGE") == expected["range"], model.__name__
        lsis = {}
        for index in schema["local_secondary_indexes"]:
            types = {a["AttributeName"]: a["AttributeType"] for a in index["attribute_definitions"]}
            index_keys = {k["KeyType"]: k["AttributeName"] for k in index["key_schema"]}
            assert index_keys["HASH"] == expected["hash"][0], model.__name__
            assert index["projection"]["ProjectionType"] == "ALL", model.__name__
            lsis[index["index_name"]] = (index_keys["RANGE"], types[index_keys["RANGE"]])
        assert lsis == expected["lsi"], model.__name__
        for index in schema["global_secondary_indexes"]:  # declared by the model that queries it
            types = {a["AttributeName"]: a["AttributeType"] for a in index["attribute_definitions"]}
            gsi = {k["KeyType"]: (k["AttributeName"], types[k["AttributeName"]]) for k in index["key_schema"]}
            wanted = expected.get("gsi", {}).get(index["index_name"])
            assert (gsi["HASH"], gsi["RANGE"]) == wanted, model.__name__


@pytest.mark.parametrize("table", sorted(TABLE_KEYS))
def test_a_ttl_attribute_a_model_writes_is_a_number(table: str) -> None:
    ttl = TABLE_KEYS[table]["ttl"]
    for model in models_of(table):
        for attribute in model.get_attributes().values():
            if attribute.attr_name == ttl:
                assert isinstance(attribute, NumberAttribute), model.__name__  # epoch seconds
    if table == "EventsTable":
        assert any(a.attr_name == ttl for a in cairn_tables.EventItem.get_attributes().values())


def test_the_tables_created_from_the_models_have_the_templates_keys(tables: dict[str, str]) -> None:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for table, expected in TABLE_KEYS.items():
        described = dynamodb.describe_table(TableName=tables[expected["env"]])["Table"]
        types = {a["AttributeName"]: a["AttributeType"] for a in described["AttributeDefinitions"]}
        keys = {k["KeyType"]: k["AttributeName"] for k in described["KeySchema"]}
        assert (keys["HASH"], types[keys["HASH"]]) == expected["hash"], table
        assert ((keys["RANGE"], types[keys["RANGE"]]) if "RANGE" in keys else None) == expected["range"], (
            table
        )
        lsis = {
            i["IndexName"]: next(k["AttributeName"] for k in i["KeySchema"] if k["KeyType"] == "RANGE")
            for i in described.get("LocalSecondaryIndexes", [])
        }
        assert {name: (sort, types[sort]) for name, sort in lsis.items()} == expected["lsi"], table
        gsis = {i["IndexName"] for i in described.get("GlobalSecondaryIndexes", [])}
        assert gsis == set(expected.get("gsi", {})), table
