"""Statistics in local mode, on the real ASL: an `exit` step shows in the funnel where the runs left, and
nothing is counted twice when the DynamoDB streams deliver every record again (Lambda's event source mapping
delivers at least once: a retried batch, a re-run shard) or SES reports the same event twice."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import START
from tests.e2e.projects import project, running
from tests.e2e.sending import contact, track

from cairn.local.runtime import LocalCairn

pytestmark = pytest.mark.e2e

WF = "leave-early"
USERS = ("ann", "bob", "cem")


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalCairn]:
    root = project(
        tmp_path,
        workflows={
            WF: {
                "name": "Leaves at an exit step",
                "trigger": {"event": "go"},
                "steps": [
                    {"id": "hello", "send_email": {"template": "welcome-discount"}},
                    {"id": "pause", "wait": "1h"},
                    {"id": "bye", "exit": {"reason": "done here"}},
                ],
            }
        },
    )
    with running(root) as runtime:
        yield runtime


def stats(local: LocalCairn) -> dict[str, Any]:
    status, _, body = local.request("GET", f"/v1/workflows/{WF}/stats", key=local.secret_key)
    assert status == 200, body
    (version,) = body["versions"]
    return dict(version)


def test_exits_show_at_their_step_and_redelivered_records_count_nothing_twice(
    local: LocalCairn, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches: list[tuple[str, dict[str, Any]]] = []  # (function, {"Records": [...]}) as the streams sent
    call = local.host.call_safely

    def spy(name: str, event: dict[str, Any]) -> dict[str, Any] | None:
        if "Records" in event:
            batches.append((name, event))
        return call(name, event)

    monkeypatch.setattr(local.host, "call_safely", spy)
    for user in USERS:
        contact(local, user)
        track(local, user, "go")
    local.settle()
    (first, *_) = local.outbox()
    assert local.feedback(first["id"], "delivery") == 1
    assert local.feedback(first["id"], "delivery") == 1  # SES reported it twice: the same event
    local.advance(to=START + timedelta(hours=2))

    before = stats(local)
    assert (before["entered"], before["exited"], before["waiting"]) == (3, 3, 0)
    steps = {s["stepId"]: s for s in before["steps"]}
    assert steps["hello"]["messages"]["sent"] == 3
    assert steps["hello"]["messages"]["delivered"] == 1
    assert (steps["pause"]["entered"], steps["pause"]["completed"]) == (3, 3)
    assert (steps["bye"]["entered"], steps["bye"]["exited"]) == (3, 3)
    assert before["biggestDropOff"]["stepId"] == "bye"

    react = [e for f, e in batches if f.endswith("ReactFunction")]
    assert sum(len(e["Records"]) for e in react) >= 2 * len(USERS)  # identify and track, at least
    for function, event in list(batches):  # every stream batch again, in order
        assert call(function, event) is not None
    local.settle()

    assert stats(local) == before
    assert len(local.outbox()) == 3
