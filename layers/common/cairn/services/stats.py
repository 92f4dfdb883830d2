"""Statistics: the recording API the functions call as things happen, the per-workflow CloudWatch metrics
(EMF), and the reads behind `GET /v1/workflows/{id}/stats` and `/attribution`.

Recording (see docs/stats-wiring.md for where each call goes). Every call is ONE atomic DynamoDB update
(an ``ADD`` on one sharded counter item), except: an open or click first puts a marker so it counts once
per contact, a conversion first logs itself once for attribution, and a wait files its timeout ahead (none
of them on the send path). ``at`` defaults to the clock's now; it files the fact under its UTC day, which is
what the `from`/`to` filters of the API read.

    record_entered(workflow_id, version, variant, at)       a run entered (variant if known, else None)
    record_assigned(workflow_id, version, step_id, variant)  a run was assigned a split's variant
    record_step(workflow_id, version, step_id, variant, outcome)
        outcome: entered | completed | exited | failed | waiting+ | waiting-, or in one update
                 passed (entered+completed) | stopped (entered+exited) | broke (entered+failed)
    record_exit(workflow_id, version, step_id, variant, cid=..., run=...)  a run left at a step (once)
    record_wait(workflow_id, version, step_id, variant, seconds=...)     a run parked at a wait
    record_wait_ended(workflow_id, version, step_id, variant, until=..., how=event|converted|exited)
    record_message(workflow_id, version, step_id, variant, status, reason=None, cid=...)
        status: sent | delivered | opened | clicked | bounced | complained | unsubscribed | failed | held |
                skipped (with reason) | skipped:<reason>;  opened/clicked need the contact's `cid`;
                sent, failed and skipped also count the step entered and passed (same update);
                once=<message id>: that status counts once per message (feedback redeliveries)
    record_conversion(workflow_id, version, variant, entered_at, converted_at, cid=...)
    record_ended(workflow_id, version, variant, outcome)       completed | exited | failed (not converted)

A failed write (DynamoDB throttling after botocore's retries) is logged and dropped: statistics never fail a
contact's journey. Each call also emits a per-workflow CloudWatch metric as an EMF log line (no API call).
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from cairn.adapters import clock
from cairn.adapters.stats import LoggedConversion, StatsStore
from cairn.domain import attribution, statistics
from cairn.domain.statistics import SKIPPED_PREFIX, TTC_PREFIX, WAITING, StepInfo

# True: react, steps, send and feedback call the recording API (docs/stats-wiring.md); the exact-statistics
# end-to-end test runs against that wiring.
WIRED = True

logger = Logger(child=True)
P = ParamSpec("P")
R = TypeVar("R")

# Step outcomes and what each adds (one update each; "passed" and "stopped" are a step's whole story at once).
STEP_OUTCOMES: dict[str, dict[str, int]] = {
    "entered": {"entered": 1},
    "completed": {"completed": 1},
    "exited": {"exited": 1},
    "failed": {"failed": 1},
    "waiting+": {WAITING: 1},
    "waiting-": {WAITING: -1},
    "passed": {"entered": 1, "completed": 1},  # a step that ran and let the run go on
    "stopped": {"entered": 1, "exited": 1},  # a step at which the run ended (goal absent, exit_when, exit)
    "broke": {"entered": 1, "failed": 1},  # a step that failed the run
}
WAIT_ENDS = ("event", "converted", "exited")
RUN_ENDS = ("completed", "exited", "failed")
MESSAGE_STATUSES = frozenset(statistics.MESSAGE_COUNTERS)
UNIQUE_PER_CONTACT = frozenset({"opened", "clicked"})
# A message step's final outcome is also the run passing the step: counted in the same single update.
FINAL = frozenset({"sent", "failed", "skipped"})
PASSED = {"entered": 1, "completed": 1}
MAX_REASON = 100
ATTRIBUTION_LIMIT = 1000  # conversions read per attribution request (the most recent)

# EMF metric names per recorded fact (namespace POWERTOOLS_METRICS_NAMESPACE, dimensions service + workflow).
METRIC_OF_MESSAGE = {
    "sent": "Sent",
    "delivered": "Delivered",
    "bounced": "Bounced",
    "complained": "Complained",
    "unsubscribed": "Unsubscribed",
    "failed": "SendFailed",
    "held": "Held",
}
METRIC_OF_END = {"completed": "Completed", "exited": "Exited", "failed": "Failed"}


# ---------------------------------------------------------------------------------------------- metrics
def _metrics_disabled() -> bool:
    """Powertools' own rule (POWERTOOLS_METRICS_DISABLED, and POWERTOOLS_DEV without it)."""
    from aws_lambda_powertools.metrics.functions import is_metrics_disabled

    return is_metrics_disabled()


def reason_code(reason: str) -> str:
    """A short, low-cardinality form of a skip reason for a metric dimension ("no email consent
    (unsubscribed)" -> "no email consent")."""
    return reason.split("(", 1)[0].strip()[:60] or "unspecified"


def emit(workflow_id: str, name: str, value: float = 1, **dimensions: str) -> None:
    """One EMF log line: metric `name` (Count) with dimensions service, workflow and `dimensions`.

    Printed to stdout, where Lambda's log stream turns it into a CloudWatch metric; nothing when
    POWERTOOLS_METRICS_DISABLED is true (tests, local mode)."""
    if _metrics_disabled():
        return
    dims = {
        "service": os.environ.get("POWERTOOLS_SERVICE_NAME", "cairn"),
        "workflow": workflow_id,
        **dimensions,
    }
    blob = {
        "_aws": {
            "Timestamp": int(clock.now().timestamp() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Cairn"),
                    "Dimensions": [sorted(dims)],
                    "Metrics": [{"Name": name, "Unit": "Count"}],
                }
            ],
        },
        **dims,
        name: value,
    }
    print(json.dumps(blob, separators=(",", ":")), flush=True)


# ---------------------------------------------------------------------------------------------- recording
class Recorder:
    """The recording API over a stats store. Use the module-level functions; this class is for tests."""

    def __init__(self, store: StatsStore | None = None) -> None:
        self.store = store or StatsStore()

    def _add(
        self,
        fact: str,
        workflow_id: str,
        version: str | None,
        at: datetime,
        *,
        step_id: str | None,
        variant: str | None,
        counts: Mapping[str, int],
    ) -> bool:
        try:
            self.store.add(workflow_id, version, at, step_id=step_id, variant=variant, counts=counts)
            return True
        except (ClientError, BotoCoreError) as exc:
            logger.warning(
                "statistics not recorded", workflow=workflow_id, fact=fact, error=type(exc).__name__
            )
            return False

    def record_entered(
        self, workflow_id: str, version: str | None, variant: str | None, at: datetime | None = None
    ) -> None:
        """A run entered the workflow (once per run). `variant` is the run's split variant when it is known at
        entry; otherwise None, and the split records the assignment with `record_assigned`."""
        self._add(
            "entered",
            workflow_id,
            version,
            at or clock.now(),
            step_id=None,
            variant=variant,
            counts={"entered": 1},
        )
        emit(workflow_id, "Entered")

    def record_assigned(
        self,
        workflow_id: str,
        version: str | None,
        step_id: str,
        variant: str,
        at: datetime | None = None,
    ) -> None:
        """A run reached split `step_id` and was assigned `variant` (the variant's denominator). Call it
        instead of, never in addition to, passing the variant to `record_entered`."""
        self._add(
            "assigned",
            workflow_id,
            version,
            at or clock.now(),
            step_id=None,
            variant=variant,
            counts={"assigned": 1},
        )
        emit(workflow_id, "Assigned", variant=variant)

    def record_step(
        self,
        workflow_id: str,
        version: str | None,
        step_id: str,
        variant: str | None,
        outcome: str,
        *,
        at: datetime | None = None,
    ) -> None:
        """A run reached a step (`entered`), went past it (`completed`), ended at it (`exited`: exit_when or
        an exit step; `failed`), or started or stopped waiting there (`waiting+`, `waiting-`: a gauge).
        `passed`, `stopped` and `broke` record a step's entry with its end in the same single update. For
        waits use `record_wait` and `record_wait_ended`."""
        if outcome not in STEP_OUTCOMES:
            raise ValueError(f"unknown step outcome {outcome!r}; one of {sorted(STEP_OUTCOMES)}")
        self._add(
            f"step {outcome}",
            workflow_id,
            version,
            at or clock.now(),
            step_id=step_id,
            variant=variant,
            counts=STEP_OUTCOMES[outcome],
        )
        if outcome in ("failed", "broke"):
            emit(workflow_id, "StepFailed")

    def record_exit(
        self,
        workflow_id: str,
        version: str | None,
        step_id: str,
        variant: str | None,
        *,
        cid: str,
        run: int,
        at: datetime | None = None,
    ) -> bool:
        """The run ended at step `step_id` by leaving the workflow there: an `exit` step, or the exit rule
        (or the contact's erasure) found holding when the step began. The step's entry and exit in one
        update, once per run and step (a marker first: a retried task counts nothing twice). The run's own end
        is recorded by `record_ended` where the run closes. Returns whether it counted."""
        when = at or clock.now()
        try:
            first = self.store.once("x", workflow_id, version or "", step_id, cid, str(run), now=when)
        except (ClientError, BotoCoreError) as exc:
            logger.warning("statistics not recorded", workflow=workflow_id, error=type(exc).__name__)
            return False
        if not first:
            return False
        return self._add(
            "step exit",
            workflow_id,
            version,
            when,
            step_id=step_id,
            variant=variant,
            counts=STEP_OUTCOMES["stopped"],
        )

    def record_wait(
        self,
        workflow_id: str,
        version: str | None,
        step_id: str,
        variant: str | None,
        *,
        seconds: float,
        at: datetime | None = None,
    ) -> None:
        """A run parked at a wait of `seconds` (a task-token wait whose timeout Step Functions itself fires,
        unseen by any function). Two updates: now, the step is entered and one more run waits there; at the
        timeout, the run has completed the step and waits no more (filed under that day in advance, so the
        API reads it from then on). A wait that ends early calls `record_wait_ended`."""
        start = at or clock.now()
        end = start + timedelta(seconds=seconds)
        where = {"step_id": step_id, "variant": variant}
        self._add("wait", workflow_id, version, start, **where, counts={"entered": 1, WAITING: 1})
        self._add("wait end", workflow_id, version, end, **where, counts={"completed": 1, WAITING: -1})

    def record_wait_ended(
        self,
        workflow_id: str,
        version: str | None,
        step_id: str,
        variant: str | None,
        *,
        until: datetime,
        how: str,
        at: datetime | None = None,
    ) -> None:
        """A wait recorded by `record_wait` ended before its timeout `until` (the parking time plus its
        seconds): `event` (a wait_for's event arrived: the run goes on), `converted` (the goal ended the run)
        or `exited` (exit_when, a stop). Two updates: the end filed under the timeout's day is taken back,
        and the real one is filed now. Call it only when `until` is still ahead (else the timeout fired)."""
        if how not in WAIT_ENDS:
            raise ValueError(f"unknown end of a wait {how!r}; one of {WAIT_ENDS}")
        now = at or clock.now()
        planned = until
        where = {"step_id": step_id, "variant": variant}
        self._add(
            "wait end undone", workflow_id, version, planned, **where, counts={"completed": -1, WAITING: 1}
        )
        counts = {
            WAITING: -1,
            **({"completed": 1} if how == "event" else {"exited": 1} if how == "exited" else {}),
        }
        self._add(f"wait ended ({how})", workflow_id, version, now, **where, counts=counts)

    def record_message(  # noqa: PLR0917 (the recording API's contract is positional)
        self,
        workflow_id: str,
        version: str | None,
        step_id: str,
        variant: str | None,
        status: str,
        reason: str | None = None,
        *,
        cid: str | None = None,
        at: datetime | None = None,
        once: str | None = None,
    ) -> bool:
        """What became of a message step's message. Its final outcome in the send function (`sent`,
        `failed`, `skipped`) also counts the run entering and passing the step, in the same single update;
        `held` is an outcome on the way. `once` (a message id): count this status once for that message
        whatever the redeliveries (a marker first; the feedback function's reports). Returns whether it was
        counted (False for a repeated open or click of the same contact, a repeated `once`, or a write that
        failed)."""
        when = at or clock.now()
        if once is not None and status not in UNIQUE_PER_CONTACT:
            try:
                first = self.store.once("r", workflow_id, version or "", step_id, status, once, now=when)
            except (ClientError, BotoCoreError) as exc:
                logger.warning("statistics not recorded", workflow=workflow_id, error=type(exc).__name__)
                return False
            if not first:
                return False
        if status.startswith(SKIPPED_PREFIX):
            status, reason = "skipped", status[len(SKIPPED_PREFIX) :]
        if status == "skipped":
            text = (reason or "unspecified").strip()[:MAX_REASON] or "unspecified"
            counted = self._add(
                "message skipped",
                workflow_id,
                version,
                when,
                step_id=step_id,
                variant=variant,
                counts={SKIPPED_PREFIX + text: 1, **PASSED},
            )
            emit(workflow_id, "Skipped", reason=reason_code(text))
            return counted
        if status not in MESSAGE_STATUSES:
            raise ValueError(f"unknown message status {status!r}")
        if status in UNIQUE_PER_CONTACT:
            if not cid:
                raise ValueError(f"`{status}` counts once per contact: pass the contact's cid")
            try:
                first = self.store.once("u", workflow_id, version or "", step_id, status, cid, now=when)
            except (ClientError, BotoCoreError) as exc:
                logger.warning("statistics not recorded", workflow=workflow_id, error=type(exc).__name__)
                return False
            if not first:
                return False
        counted = self._add(
            f"message {status}",
            workflow_id,
            version,
            when,
            step_id=step_id,
            variant=variant,
            counts={status: 1, **(PASSED if status in FINAL else {})},
        )
        if status in METRIC_OF_MESSAGE:
            emit(workflow_id, METRIC_OF_MESSAGE[status])
        return counted

    def record_conversion(
        self,
        workflow_id: str,
        version: str | None,
        variant: str | None,
        entered_at: datetime,
        converted_at: datetime,
        *,
        cid: str | None = None,
    ) -> bool:
        """A run met its goal. With the contact's `cid` the conversion is logged once (a retry counts
        nothing twice) and attribution can find the messages that earned it. Returns whether it counted."""
        if cid is not None:
            try:
                first = self.store.log_conversion(
                    LoggedConversion(cid, workflow_id, version, variant, entered_at, converted_at)
                )
            except (ClientError, BotoCoreError) as exc:
                logger.warning("statistics not recorded", workflow=workflow_id, error=type(exc).__name__)
                return False
            if not first:
                return False
        seconds = max(0.0, (converted_at - entered_at).total_seconds())
        counted = self._add(
            "converted",
            workflow_id,
            version,
            converted_at,
            step_id=None,
            variant=variant,
            counts={"converted": 1, f"{TTC_PREFIX}{statistics.ttc_bucket(seconds)}": 1},
        )
        emit(workflow_id, "Converted")
        return counted

    def record_ended(
        self,
        workflow_id: str,
        version: str | None,
        variant: str | None,
        outcome: str,
        at: datetime | None = None,
    ) -> None:
        """A run ended without converting: `completed` (went through every step), `exited` or `failed`.
        (A conversion is recorded by `record_conversion` alone.)"""
        if outcome not in RUN_ENDS:
            raise ValueError(
                f"unknown run end {outcome!r}; one of {RUN_ENDS} (conversions: record_conversion)"
            )
        self._add(
            f"run {outcome}",
            workflow_id,
            version,
            at or clock.now(),
            step_id=None,
            variant=variant,
            counts={outcome: 1},
        )
        emit(workflow_id, METRIC_OF_END[outcome])


_default: Recorder | None = None
_default_lock = threading.Lock()


def recorder() -> Recorder:
    """The process's recorder (built on first use: the stats table is named by STATS_TABLE)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Recorder()
        return _default


def _on_recorder(method: Callable[Concatenate[Recorder, P], R]) -> Callable[P, R]:
    """The module-level form of a Recorder method: the same call on the process's recorder."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(recorder(), *args, **kwargs)

    return call


record_entered = _on_recorder(Recorder.record_entered)
record_assigned = _on_recorder(Recorder.record_assigned)
record_step = _on_recorder(Recorder.record_step)
record_wait = _on_recorder(Recorder.record_wait)
record_wait_ended = _on_recorder(Recorder.record_wait_ended)
record_message = _on_recorder(Recorder.record_message)
record_exit = _on_recorder(Recorder.record_exit)
record_conversion = _on_recorder(Recorder.record_conversion)
record_ended = _on_recorder(Recorder.record_ended)


# ---------------------------------------------------------------------------------------------- reading
def layout_of(workflow: Any) -> list[StepInfo]:
    """The workflow's steps in document order, each split with its variants in declared order."""
    from cairn.domain.workflows import walk

    out: list[StepInfo] = []
    for placed in walk(list(workflow.steps)):
        weights = getattr(placed.step, "split", None)
        variants = tuple(weights) if isinstance(weights, Mapping) else ()
        out.append(StepInfo(placed.step_id, placed.kind, variants))
    return out


class StatsReader:
    """What the API serves: a workflow's statistics and its attribution, from the stats store."""

    def __init__(self, store: StatsStore | None = None) -> None:
        self.store = store or StatsStore()

    def workflow_stats(
        self,
        workflow_id: str,
        workflow: Any | None,
        *,
        version: str | None = None,
        since: date | None = None,
        until: date | None = None,
    ) -> dict[str, Any] | None:
        """The statistics, or None when the workflow is neither defined nor has any counter. Nothing after
        today is read: waits file their timeouts ahead, under the day they will fire."""
        requested = until
        today = clock.now().astimezone(UTC).date()
        until = today if until is None or until > today else until
        buckets = self.store.buckets(workflow_id, until=until)
        if workflow is None and not buckets:
            return None
        layout = layout_of(workflow) if workflow is not None else []
        current = workflow.content_hash() if workflow is not None else None
        body = statistics.summarize(
            buckets,
            layout,
            workflow_id=workflow_id,
            current_version=current,
            since=since,
            until=until,
            version=version,
        )
        body["to"] = requested.isoformat() if requested else None
        return body

    def attribution(
        self,
        workflow_id: str,
        workflow: Any | None,
        *,
        since: date | None = None,
        until: date | None = None,
        limit: int = ATTRIBUTION_LIMIT,
    ) -> dict[str, Any] | None:
        """Credits of the workflow's conversions (converted within [since, until], the most recent `limit`)
        to channels, workflows and templates, by first touch, last touch and linear models."""
        logged = self.store.conversions(workflow_id)
        if workflow is None and not logged:
            return None
        window = _goal_window(workflow)
        kept = [
            c
            for c in logged
            if (since is None or c.converted_at.astimezone(UTC).date() >= since)
            and (until is None or c.converted_at.astimezone(UTC).date() <= until)
        ]
        kept.sort(key=lambda c: (c.converted_at, c.cid), reverse=True)
        sampled = len(kept) > limit
        kept = kept[:limit]
        received: dict[str, list[attribution.Touch]] = {}
        items: list[attribution.Attributed] = []
        for c in kept:
            if c.cid not in received:
                received[c.cid] = self.store.received(c.cid)
            conversion = attribution.Conversion(c.cid, workflow_id, c.converted_at, window)
            items.append(
                attribution.Attributed(
                    conversion, tuple(attribution.touches_before(conversion, received[c.cid]))
                )
            )
        result = attribution.attribute(items)
        return {
            "workflowId": workflow_id,
            "from": since.isoformat() if since else None,
            "to": until.isoformat() if until else None,
            "windowSeconds": int(window.total_seconds()),
            "sampled": sampled,
            **result,
        }


def _goal_window(workflow: Any | None) -> timedelta:
    from cairn.domain.durations import parse_duration

    goal = getattr(workflow, "goal", None)
    if goal is None:
        return timedelta(days=7)
    return parse_duration(goal.within)
