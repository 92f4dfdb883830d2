"""Local mode's stream consumers (issue 5): a failing batch is retried after a back-off on the virtual clock,
as Lambda's event source mapping does, instead of at once; other consumers go on meanwhile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cairn.local.clock import VirtualClock
from cairn.local.lambdas import FunctionHost, LocalFunction
from cairn.local.streams import Mapping, StreamDispatcher

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
CONSUMER = """
calls = []
failing = {"left": 0, "records": set()}

def handler(event, context):
    sequence = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
    calls.append(sequence)
    if failing["left"] > 0:
        failing["left"] -= 1
        raise RuntimeError("the consumer is down")
    return {"batchItemFailures": [{"itemIdentifier": s} for s in sequence if s in failing["records"]]}
"""


class Streams:
    def __init__(self, tmp_path: Path, *mappings: Mapping) -> None:
        self.clock = VirtualClock(START)
        self.host = FunctionHost(self.clock)
        self.dispatcher = StreamDispatcher(self.clock, self.host)
        for mapping in mappings:
            folder = tmp_path / mapping.function
            folder.mkdir()
            (folder / "app.py").write_text(CONSUMER, encoding="utf-8")
            self.host.register(LocalFunction(mapping.function, mapping.function, folder, "app.handler"))
            self.dispatcher.add_mapping(mapping)
        self.dispatcher.start()
        self.sequence = 0

    def consumer(self, name: str) -> ModuleType:
        return self.host._module(self.host.functions[name])

    def write(self, table: str, count: int = 1) -> None:
        """What a writer does: it holds a unit of busy while its put_item hands the records over."""
        self.clock.enter()
        try:
            for _ in range(count):
                self.sequence += 1
                self.dispatcher.deliver(
                    table, {"eventName": "INSERT", "dynamodb": {"SequenceNumber": str(self.sequence)}}
                )
        finally:
            self.clock.leave()

    def advance(self, seconds: float) -> None:
        _, idle = self.clock.advance(self.clock.now() + timedelta(seconds=seconds), budget=3)
        assert idle

    def stop(self) -> None:
        self.dispatcher.stop()


@pytest.fixture
def streams(tmp_path: Path) -> Any:
    made: list[Streams] = []

    def make(*mappings: Mapping) -> Streams:
        made.append(Streams(tmp_path, *mappings))
        return made[-1]

    yield make
    for s in made:
        s.stop()


def test_a_failing_batch_is_retried_after_one_then_two_seconds_not_at_once(streams: Any) -> None:
    s = streams(Mapping("contacts", "react", batch_size=1, max_retries=10))
    react = s.consumer("react")
    react.failing["left"] = 2
    s.write("contacts", 2)
    s.advance(0)
    assert react.calls == [["1"]]  # no spinning, and record 2 waits: idle until the clock reaches the retry
    s.advance(0.9)
    assert react.calls == [["1"]]
    s.advance(0.1)
    assert react.calls == [["1"], ["1"]]  # first retry after 1 s
    s.advance(1.9)
    assert len(react.calls) == 2
    s.advance(0.1)
    assert react.calls == [["1"], ["1"], ["1"], ["2"]]  # second retry 2 s later succeeds; then the next
    s.advance(3600)
    assert len(react.calls) == 4 and s.dispatcher.failed == []


def test_records_behind_a_failing_batch_wait_in_order_while_other_consumers_go_on(streams: Any) -> None:
    s = streams(Mapping("contacts", "react", max_retries=10), Mapping("contacts", "segments", max_retries=10))
    react, segments = s.consumer("react"), s.consumer("segments")
    react.failing["records"] = {"2"}  # a partial failure: record 2 of 1..3
    s.write("contacts", 3)
    s.advance(0)
    assert react.calls == [["1", "2", "3"]]
    s.write("contacts")  # record 4 queues behind the retry of 2 and 3
    s.advance(0)
    assert segments.calls == [["1", "2", "3"], ["4"]]  # the other consumer of the table goes on
    assert react.calls == [["1", "2", "3"]]
    react.failing["records"] = set()
    s.advance(1)
    assert react.calls == [["1", "2", "3"], ["2", "3", "4"]]  # from the failed record on, in order


def test_after_the_maximum_retries_the_records_go_to_the_on_failure_destination(streams: Any) -> None:
    s = streams(Mapping("events", "react", max_retries=2))
    react = s.consumer("react")
    react.failing["left"] = 100
    s.write("events")
    s.advance(60)
    assert len(react.calls) == 3  # the first attempt and 2 retries
    assert [r["dynamodb"]["SequenceNumber"] for r in s.dispatcher.failed] == ["1"]
    assert s.clock.pending() == []  # nothing left to retry
