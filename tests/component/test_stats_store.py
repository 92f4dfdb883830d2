"""The statistics store and recording API against moto: atomic, sharded counters that stay exact under
concurrent writers; one UpdateItem per recorded fact; opens and clicks once per contact; conversions once
per run; per-workflow metrics as EMF."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from cairn.adapters.aws import client
from cairn.adapters.stats import SHARDS, StatsStore, counter_sk, parse_counter_sk
from cairn.domain import statistics
from cairn.services import stats
from cairn.services.stats import Recorder, StatsReader

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
WF, V = "cart", "v1"


@pytest.fixture
def atomic_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """DynamoDB applies each write to an item atomically (a condition and an ADD included); moto's backend
    takes no lock, so two threads can both pass one condition. Give moto that atomicity, so what the tests
    race is Cairn's code (which must never read, modify and write back) rather than moto's."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    for name in ("put_item", "update_item", "delete_item"):
        original = getattr(DynamoDBBackend, name)

        def atomic(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, atomic)


@pytest.fixture
def recorder(tables: dict[str, str], atomic_writes: None) -> Recorder:
    return Recorder(StatsStore(rng=random.Random(7)))


@pytest.fixture
def calls(tables: dict[str, str]) -> Iterator[Counter[str]]:
    """Every DynamoDB operation the cached client makes during the test, by name."""
    seen: Counter[str] = Counter()

    def hook(model: Any, **_: Any) -> None:
        seen[model.name] += 1

    dynamodb = client("dynamodb")
    dynamodb.meta.events.register("before-call.dynamodb", hook)
    yield seen
    dynamodb.meta.events.unregister("before-call.dynamodb", hook)


def totals(workflow_id: str = WF) -> dict[tuple[str | None, str | None, str], int]:
    """(step, variant, counter) -> the sum over every shard and day."""
    out: Counter[tuple[str | None, str | None, str]] = Counter()
    for bucket in StatsStore().buckets(workflow_id):
        for name, value in bucket.counts.items():
            out[(bucket.step_id, bucket.variant, name)] += value
    return dict(out)


def in_threads(count: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            work(index)
        except BaseException as exc:  # surfaced below: a thread's failure must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_counter_keys_round_trip_whatever_the_names_contain() -> None:
    for step, variant in [(None, None), ("offer-b", "B"), ("a#b", "x/y#z"), ("s", "holdout")]:
        assert parse_counter_sk(counter_sk(date(2026, 12, 1), "v#1", step, variant)) == (
            date(2026, 12, 1),
            "v#1",
            step,
            variant,
        )


def test_concurrent_writers_lose_no_count_and_spread_over_the_shards(recorder: Recorder) -> None:
    def work(index: int) -> None:
        for n in range(125):
            recorder.record_message(WF, V, "reminder", None, "sent", at=T0)
            if n % 5 == 0:
                recorder.record_message(WF, V, "reminder", None, "skipped", "quiet hours", at=T0)
            recorder.record_step(WF, V, "wait-1", None, "waiting+" if n % 2 == 0 else "waiting-", at=T0)

    in_threads(8, work)
    got = totals()
    assert got[("reminder", None, "sent")] == 1000
    assert got[("reminder", None, "skipped:quiet hours")] == 200
    assert got[("wait-1", None, "waiting")] == 8  # 63 up and 62 down in each thread
    shards_used = {item["pk"]["S"] for item in client("dynamodb").scan(TableName=StatsStore().table)["Items"]}
    assert len(shards_used) == SHARDS  # a hot workflow's writes reach every shard


def test_every_recorded_fact_is_one_update_item(recorder: Recorder, calls: Counter[str]) -> None:
    recorder.record_entered(WF, V, None, T0)
    recorder.record_step(WF, V, "reminder", None, "entered", at=T0)
    recorder.record_message(WF, V, "reminder", None, "sent", at=T0)
    recorder.record_message(WF, V, "reminder", None, "held", at=T0)
    recorder.record_message(WF, V, "reminder", None, "skipped:no email consent (unsubscribed)", at=T0)
    recorder.record_message(WF, V, "reminder", None, "delivered", at=T0)
    recorder.record_ended(WF, V, None, "completed", at=T0)
    recorder.record_assigned(WF, V, "offer", "A", at=T0)
    recorder.record_conversion(WF, V, "A", T0, T0 + timedelta(hours=2))  # without a cid: no log
    assert dict(calls) == {"UpdateItem": 9}


def test_opens_and_clicks_count_once_per_contact_even_when_racing(
    recorder: Recorder, calls: Counter[str]
) -> None:
    counted: list[bool] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        for cid in ("ca", "cb", "cc"):
            first = recorder.record_message(WF, V, "reminder", None, "opened", cid=cid, at=T0)
            with lock:
                counted.append(first)
        recorder.record_message(WF, V, "reminder", None, "clicked", cid="ca", at=T0)

    in_threads(6, work)
    got = totals()
    assert got[("reminder", None, "opened")] == 3
    assert got[("reminder", None, "clicked")] == 1
    assert counted.count(True) == 3
    assert calls["UpdateItem"] == 4  # a repeat is one conditional PutItem, no update


def test_an_open_without_the_contact_is_a_programming_error(recorder: Recorder) -> None:
    with pytest.raises(ValueError, match="cid"):
        recorder.record_message(WF, V, "reminder", None, "opened", at=T0)
    with pytest.raises(ValueError):
        recorder.record_message(WF, V, "reminder", None, "teleported", at=T0)
    with pytest.raises(ValueError):
        recorder.record_step(WF, V, "reminder", None, "vanished", at=T0)
    with pytest.raises(ValueError):
        recorder.record_ended(WF, V, None, "converted", at=T0)


def test_a_conversion_counts_once_per_run_and_files_its_time_to_convert(recorder: Recorder) -> None:
    entered = T0
    for _ in range(3):  # a retried task records the same conversion again
        recorder.record_conversion(WF, V, "B", entered, entered + timedelta(hours=1), cid="c1")
    recorder.record_conversion(WF, V, "B", entered + timedelta(days=1), entered + timedelta(days=2), cid="c1")
    got = totals()
    assert got[(None, "B", "converted")] == 2
    assert got[(None, "B", f"ttc:{statistics.ttc_bucket(3600)}")] == 1
    assert got[(None, "B", f"ttc:{statistics.ttc_bucket(86400)}")] == 1
    logged = StatsStore().conversions(WF)
    assert sorted((c.cid, c.variant, c.converted_at) for c in logged) == [
        ("c1", "B", T0 + timedelta(hours=1)),
        ("c1", "B", T0 + timedelta(days=2)),
    ]


def test_facts_are_filed_under_the_day_they_happened(recorder: Recorder) -> None:
    recorder.record_entered(WF, V, None, T0)
    recorder.record_entered(WF, V, None, T0 + timedelta(days=1, hours=10))
    days = sorted(b.day for b in StatsStore().buckets(WF))
    assert days == [date(2026, 12, 1), date(2026, 12, 2)]
    assert [b.day for b in StatsStore().buckets(WF, until=date(2026, 12, 1))] == [date(2026, 12, 1)]


def test_a_throttled_write_is_logged_and_never_breaks_the_journey(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    def throttled(*args: Any, **kwargs: Any) -> None:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "UpdateItem")

    monkeypatch.setattr(recorder.store, "add", throttled)
    assert recorder.record_message(WF, V, "reminder", None, "sent", at=T0) is False  # no exception


def test_module_functions_record_through_the_process_recorder(tables: dict[str, str]) -> None:
    stats._default = None  # a fresh process
    stats.record_entered(WF, V, None, T0)
    stats.record_step(WF, V, "reminder", None, "entered", at=T0)
    stats.record_message(WF, V, "reminder", None, "sent", at=T0)
    assert stats.record_message(WF, V, "reminder", None, "opened", cid="c9", at=T0) is True
    assert stats.record_conversion(WF, V, None, T0, T0 + timedelta(minutes=5), cid="c9") is True
    stats.record_ended(WF, V, None, "exited", at=T0)
    stats.record_assigned(WF, V, "offer", "A", at=T0)
    got = totals()
    assert got[(None, None, "entered")] == 1 and got[(None, None, "exited")] == 1
    assert got[("reminder", None, "opened")] == 1 and got[(None, "A", "assigned")] == 1
    assert stats.WIRED in (True, False)


def test_each_fact_emits_a_per_workflow_emf_metric(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    recorder.record_entered(WF, V, None, T0)
    recorder.record_message(WF, V, "reminder", None, "sent", at=T0)
    recorder.record_message(WF, V, "reminder", None, "skipped", "no email consent (unsubscribed)", at=T0)
    recorder.record_message(WF, V, "reminder", None, "held", at=T0)
    recorder.record_conversion(WF, V, None, T0, T0 + timedelta(hours=1))
    recorder.record_ended(WF, V, None, "failed", at=T0)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    names = [line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"] for line in lines]
    assert names == ["Entered", "Sent", "Skipped", "Held", "Converted", "Failed"]
    for line in lines:
        directive = line["_aws"]["CloudWatchMetrics"][0]
        assert directive["Namespace"] == "Cairn"
        assert line["workflow"] == WF and line["service"] == "cairn"
        assert set(directive["Dimensions"][0]) <= {"service", "workflow", "reason"}
    assert lines[2]["reason"] == "no email consent"  # low cardinality: the reason's code, not its detail


def test_metrics_stay_quiet_when_disabled(recorder: Recorder, capsys: pytest.CaptureFixture[str]) -> None:
    recorder.record_entered(WF, V, None, T0)  # POWERTOOLS_METRICS_DISABLED=true in the test environment
    assert capsys.readouterr().out == ""


def test_the_reader_turns_recorded_facts_into_the_funnel(recorder: Recorder, clock: Any) -> None:
    clock.set(T0 + timedelta(days=2))
    for i in range(10):
        recorder.record_entered(WF, V, None, T0)
        recorder.record_message(WF, V, "reminder", None, "sent", at=T0)  # the step's entry and passage too
        if i < 4:
            recorder.record_conversion(WF, V, None, T0, T0 + timedelta(hours=3), cid=f"c{i}")
        else:
            recorder.record_ended(WF, V, None, "completed", at=T0 + timedelta(days=1))
    body = StatsReader().workflow_stats(WF, None)
    assert body is not None
    (version,) = body["versions"]
    assert (version["entered"], version["conversions"], version["completed"], version["waiting"]) == (
        10,
        4,
        6,
        0,
    )
    assert version["steps"][0]["messages"]["sent"] == 10
    assert (version["steps"][0]["entered"], version["steps"][0]["completed"]) == (10, 10)
    low, high = statistics.ttc_bounds(statistics.ttc_bucket(3 * 3600))
    assert low <= version["medianTimeToConvertSeconds"] <= high
    assert StatsReader().workflow_stats("nothing-here", None) is None


def test_a_wait_completes_when_its_timeout_comes_and_not_before(recorder: Recorder, clock: Any) -> None:
    clock.set(T0)
    for _ in range(3):
        recorder.record_wait(WF, V, "wait-2", None, seconds=2 * 86400, at=T0)

    def wait_step() -> dict[str, Any]:
        body = StatsReader().workflow_stats(WF, None)
        assert body is not None
        return next(s for s in body["versions"][0]["steps"] if s["stepId"] == "wait-2")

    assert (wait_step()["entered"], wait_step()["waiting"], wait_step()["completed"]) == (3, 3, 0)
    clock.set(T0 + timedelta(days=2))  # Step Functions fires the timeouts: no function sees it
    assert (wait_step()["waiting"], wait_step()["completed"]) == (0, 3)


def test_a_wait_ended_early_takes_back_its_planned_end(recorder: Recorder, clock: Any) -> None:
    clock.set(T0)
    for how in ("event", "converted", "exited"):
        recorder.record_wait(WF, V, "wait-2", None, seconds=86400, at=T0)
        recorder.record_wait_ended(
            WF, V, "wait-2", None, until=T0 + timedelta(days=1), how=how, at=T0 + timedelta(hours=1)
        )
    recorder.record_wait(WF, V, "wait-2", None, seconds=86400, at=T0)  # this one times out
    clock.set(T0 + timedelta(days=3))
    body = StatsReader().workflow_stats(WF, None)
    assert body is not None
    step = body["versions"][0]["steps"][0]
    assert (step["entered"], step["completed"], step["exited"], step["waiting"]) == (4, 2, 1, 0)
    with pytest.raises(ValueError):
        recorder.record_wait_ended(WF, V, "wait-2", None, until=T0, how="vanished")


def test_a_step_s_whole_story_is_one_update(recorder: Recorder, calls: Counter[str]) -> None:
    recorder.record_step(WF, V, "branch-3", None, "passed", at=T0)
    recorder.record_step(WF, V, "exit-4", None, "stopped", at=T0)
    recorder.record_step(WF, V, "webhook-5", None, "broke", at=T0)
    assert dict(calls) == {"UpdateItem": 3}
    got = totals()
    assert got[("branch-3", None, "entered")] == got[("branch-3", None, "completed")] == 1
    assert got[("exit-4", None, "exited")] == 1 and got[("webhook-5", None, "failed")] == 1
