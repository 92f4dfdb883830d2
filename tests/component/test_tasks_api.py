"""`GET /v1/tasks` through the real trigger handler: newest first, one page per call, a cursor that
continues exactly where the page ended (nothing repeated or skipped), filters, and a made-up cursor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.component.conftest import FakeClock, Handler, given_a_contact
from tests.component.test_stats_api import get

from cairn.adapters.journeys import Task, TaskStore

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def trigger(load_handler: Any, keys: dict[str, str], clock: FakeClock) -> Handler:
    handler: Handler = load_handler("trigger")
    return handler


def task(n: int, *, assignee: str = "sales", status: str = "open", cid: str = "c-erased") -> Task:
    at = T0 + timedelta(hours=n)
    return Task(
        id=f"t-{n:03d}",
        contact=cid,
        assignee=assignee,
        title=f"Call lead {n}",
        note=None,
        status=status,
        due=None,
        workflow_id="lead-nurture",
        step_id="call",
        run=1,
        created_at=at,
        updated_at=at,
    )


def listing(trigger: Handler, keys: dict[str, str], query: str) -> list[list[str]]:
    """Every page of the listing, following the cursors: the task ids of each page."""
    pages: list[list[str]] = []
    cursor = None
    while True:
        status, body = get(
            trigger, "/v1/tasks", query + (f"&cursor={cursor}" if cursor else ""), keys["secret"]
        )
        assert status == 200, body
        pages.append([t["id"] for t in body["tasks"]])
        cursor = body["cursor"]
        if cursor is None:
            return pages


def test_tasks_page_newest_first_and_the_cursor_continues_exactly(
    trigger: Handler, keys: dict[str, str]
) -> None:
    cid = given_a_contact("u-lead")
    store = TaskStore()
    for n in range(7):
        store.create(task(n, cid=cid))
    pages = listing(trigger, keys, "limit=3")
    assert pages == [["t-006", "t-005", "t-004"], ["t-003", "t-002", "t-001"], ["t-000"]]
    _, body = get(trigger, "/v1/tasks", "limit=3", keys["secret"])
    assert body["tasks"][0]["userId"] == "u-lead" and body["tasks"][0]["title"] == "Call lead 6"


def test_a_page_that_ends_the_list_has_no_cursor(trigger: Handler, keys: dict[str, str]) -> None:
    store = TaskStore()
    for n in range(4):
        store.create(task(n))
    assert listing(trigger, keys, "limit=2") == [["t-003", "t-002"], ["t-001", "t-000"]]
    assert listing(trigger, keys, "limit=50") == [["t-003", "t-002", "t-001", "t-000"]]


def test_tasks_added_between_pages_do_not_shift_the_listing(trigger: Handler, keys: dict[str, str]) -> None:
    store = TaskStore()
    for n in range(5):
        store.create(task(n))
    _, first = get(trigger, "/v1/tasks", "limit=2", keys["secret"])
    assert [t["id"] for t in first["tasks"]] == ["t-004", "t-003"]
    store.create(task(9))  # a newer task arrives while the user pages
    _, second = get(trigger, "/v1/tasks", f"limit=2&cursor={first['cursor']}", keys["secret"])
    assert [t["id"] for t in second["tasks"]] == ["t-002", "t-001"]


def test_filters_page_through_only_the_matching_tasks(trigger: Handler, keys: dict[str, str]) -> None:
    store = TaskStore()
    for n in range(12):
        store.create(task(n, assignee="sales" if n % 3 else "support", status="done" if n % 2 else "open"))
    # open sales tasks: n even and not a multiple of 3 -> 10, 8, 4, 2
    assert listing(trigger, keys, "assignee=sales&status=open&limit=3") == [
        ["t-010", "t-008", "t-004"],
        ["t-002"],
    ]
    store.update("t-008", {"status": "done"}, now=T0 + timedelta(days=1))
    assert listing(trigger, keys, "assignee=sales&status=open&limit=3") == [["t-010", "t-004", "t-002"]]


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        "eyJvZmZzZXQiOiAzfQ==",  # {"offset": 3}: another API's cursor
        # the right shape for another partition: {"cid": {"S": "c1"}, "sk": ..., "taskList": ...}
        "eyJjaWQiOiB7IlMiOiAiYzEifSwgInNrIjogeyJTIjogInRhc2sjeCJ9LCAidGFza0xpc3QiOiB7IlMiOiAidGFza3MifSwg"
        "InRhc2tPcmRlciI6IHsiUyI6ICJ4In19",
    ],
)
def test_a_cursor_this_api_did_not_give_is_a_422_naming_it(
    trigger: Handler, keys: dict[str, str], cursor: str
) -> None:
    status, body = get(trigger, "/v1/tasks", f"cursor={cursor}", keys["secret"])
    assert status == 422, body
    assert "cursor" in body["error"]["message"]


def test_a_page_reads_about_a_page_not_the_whole_list(
    trigger: Handler, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pynamodb.connection.base import Connection

    store = TaskStore()
    for n in range(60):
        store.create(task(n))
    scanned: list[int] = []
    query = Connection.query

    def counting(self: Connection, *args: Any, **kwargs: Any) -> Any:
        page = query(self, *args, **kwargs)
        scanned.append(int(page.get("ScannedCount", 0)))
        return page

    monkeypatch.setattr(Connection, "query", counting)
    status, body = get(trigger, "/v1/tasks", "limit=5", keys["secret"])
    assert status == 200 and len(body["tasks"]) == 5 and body["cursor"]
    assert sum(scanned) <= 6  # the page and one more (whether another page exists), of 60
