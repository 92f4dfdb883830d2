"""`POST /v1/contacts/import` fires no triggers (DESIGN.md section 2), also through segments: an imported
contact becomes a member of the segments it matches, quietly (no `segment_entered` event, so no
segment-triggered workflow starts); the same contact's later live changes emit as usual."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.projects import project, running

from cairn.local.runtime import LocalCairn

pytestmark = pytest.mark.e2e
SEGMENT = "dach-young-adults"  # country in DE, AT, CH and age 25 to 34 (segments/)
WORKFLOW = "dach-welcome"


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalCairn]:
    root = project(
        tmp_path,
        workflows={
            WORKFLOW: {
                "name": "Welcome to the DACH young adults",
                "trigger": {"segment_entered": SEGMENT},
                "reentry": "always",
                "steps": [{"wait": "30d"}],
            }
        },
    )
    with running(root) as runtime:
        yield runtime


def ok(result: tuple[int, dict[str, str], Any], status: int = 200) -> Any:
    assert result[0] == status, result
    return result[2]


def members(local: LocalCairn) -> list[str | None]:
    page = ok(local.request("GET", f"/v1/segments/{SEGMENT}/members", key=local.secret_key))
    return [m["userId"] for m in page["members"]]


def segment_events() -> list[str]:
    """The `segment_entered`/`segment_exited` events recorded (their deterministic ids)."""
    from cairn.adapters.tables import EventItem

    return sorted(item.mid for item in EventItem.scan() if item.name in ("segment_entered", "segment_exited"))


def runs(local: LocalCairn) -> int:
    return len([r for r in local.executions() if r["workflowId"] == WORKFLOW])


def identify(local: LocalCairn, user_id: str, **traits: Any) -> None:
    ok(local.request("POST", "/v1/identify", {"userId": user_id, "traits": traits}, key=local.secret_key))


def test_an_imported_contact_joins_its_segments_quietly_and_its_later_changes_emit(local: LocalCairn) -> None:
    contacts = [{"userId": "u-jana", "traits": {"email": "jana@example.com", "country": "DE", "age": 29}}]
    answer = ok(local.request("POST", "/v1/contacts/import", {"contacts": contacts}, key=local.secret_key))
    assert answer["results"][0]["status"] == 200, answer
    local.settle()

    assert members(local) == ["u-jana"]
    assert segment_events() == []  # entered without an event ...
    assert runs(local) == 0  # ... so the segment-triggered workflow did not start

    identify(local, "u-jana", age=40)  # a live change takes her out: that emits
    local.settle()
    assert members(local) == []
    assert segment_events() == [f"sg:{SEGMENT}:000001:out"]

    identify(local, "u-jana", age=31)  # and back in: the entry emits and starts the workflow
    local.settle()
    assert members(local) == ["u-jana"]
    assert segment_events() == [f"sg:{SEGMENT}:000001:out", f"sg:{SEGMENT}:000002:in"]
    assert runs(local) == 1
