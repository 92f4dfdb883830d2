"""Workflows as a whole: entering contacts (any trigger), status (pause, resume, retire), versions.

Every entry goes through :meth:`Workflows.enroll` — an event, a segment entry, a yearly date, the API, an
`enroll` step or a retirement's `moveTo` — so `audience`, `reentry` and the workflow's status apply to all
of them alike. One conditional update opens the run (never two at once for a contact and workflow), and the
execution is named after the contact's opaque id and the run number, so a retried enrollment starts the
same execution again instead of a second one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from aws_lambda_powertools import Logger

from cairn.adapters import clock
from cairn.adapters.contacts import Enrollment, Profile
from cairn.adapters.executions import ExecutionThrottled
from cairn.adapters.journeys import (
    DateIndex,
    HeldRuns,
    TaskStore,
    WorkflowState,
    WorkflowStore,
    has_running_executions,
    running_executions,
)
from cairn.bootstrap import Runtime
from cairn.domain import durations, rules
from cairn.domain.errors import Conflict, ContactExited, NotFound, TransientError, ValidationFailed
from cairn.domain.workflows import ReentryAfter, Workflow
from cairn.services import stats
from cairn.services.runs import consent_defaults, record_run_event
from cairn.services.views import contact_view

logger = Logger(child=True)

# Seconds a function instance trusts a workflow's status: a pause or a retirement binds within this (the
# clock port's seconds, so local mode's virtual clock ages the cache too).
STATE_TTL = 10.0
STATUSES = ("active", "paused", "draining", "retired")
# Real seconds one call spends ending runs of a workflow retired with `stop` (the HTTP API answers within
# 30 s); what is left ends at its next task and is swept up by the hourly job.
STOP_BUDGET = 20.0


@dataclass(frozen=True)
class Entry:
    """Why a contact enters: what the run's input says of its trigger, and a stable id for retries."""

    trigger: dict[str, Any]
    trigger_id: str
    distinct: bool = False  # one run per trigger id, ever (a yearly date's day)


class Workflows:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._states: dict[str, tuple[float, WorkflowState]] = {}
        self._lock = threading.Lock()

    @cached_property
    def store(self) -> WorkflowStore:
        return WorkflowStore()

    @cached_property
    def tasks(self) -> TaskStore:
        return TaskStore()

    @cached_property
    def held(self) -> HeldRuns:
        return HeldRuns()

    @cached_property
    def dates(self) -> DateIndex:
        return DateIndex()

    # -- status ---------------------------------------------------------------------------------
    def state(self, workflow_id: str, *, fresh: bool = False) -> WorkflowState:
        now = clock.now().timestamp()
        with self._lock:
            cached = self._states.get(workflow_id)
        if cached is not None and not fresh and now - cached[0] < STATE_TTL:
            return cached[1]
        state = self.store.get(workflow_id)
        with self._lock:
            self._states[workflow_id] = (now, state)
        return state

    def status(self, workflow_id: str, *, fresh: bool = False) -> str:
        """active | paused | draining | retired. A workflow whose file was removed is retired (its state
        machine stays deployed until its runs end); the global pause in settings.yaml pauses every one."""
        if workflow_id not in self.rt.site.workflows:
            return "retired"
        status = self.state(workflow_id, fresh=fresh).status
        if status == "active" and self.rt.site.settings.paused:
            return "paused"
        return status

    def paused(self, workflow_id: str) -> bool:
        """Whether the workflow's messages wait (the send gate asks): its own pause or the global one."""
        return self.rt.site.settings.paused or self.state(workflow_id).status == "paused"

    # -- entering -------------------------------------------------------------------------------
    def enroll(
        self, wf: Workflow, profile: Profile, entry: Entry, now: datetime, *, audience: bool = True
    ) -> Enrollment | None:
        """Enter the contact if the workflow takes entries, the audience holds and re-entry allows it;
        start its run. Returns the run, or None when the contact does not enter."""
        if self.status(wf.id) != "active":
            return None
        if audience and wf.audience is not None and not self.in_audience(wf, profile, now):
            return None
        cutoff = None
        if isinstance(wf.reentry, ReentryAfter):
            cutoff = now - durations.parse_duration(wf.reentry.after)
        reentry = "after" if isinstance(wf.reentry, ReentryAfter) else wf.reentry
        enrollment = self.rt.enrollments.begin(
            profile.cid,
            wf.id,
            wf.content_hash(),
            trigger_id=entry.trigger_id,
            now=now,
            reentry=reentry,
            reentry_after_cutoff=cutoff,
            distinct_trigger=entry.distinct,
            policy=wf.policy,
        )
        if enrollment is None:
            return None
        self.start(wf, enrollment, entry.trigger)
        return enrollment

    def in_audience(self, wf: Workflow, profile: Profile, now: datetime) -> bool:
        assert wf.audience is not None
        audience = rules.parse_rule(wf.audience)
        needs = rules.dependencies(audience).events
        view = contact_view(
            profile,
            now=now,
            consent_defaults=consent_defaults(self.rt),
            events=self.rt.events if needs else None,
            window=rules.max_within(audience),
            segments=self.rt.segments,  # {segment: id} evaluates live
        )
        return rules.evaluate(audience, view)

    def start(self, wf: Workflow, enrollment: Enrollment, trigger: dict[str, Any]) -> None:
        """Start (or, for a retry, start again: same name, same execution) the run's execution."""
        payload = {
            "cid": enrollment.cid,
            "workflowId": wf.id,
            "version": enrollment.version,
            "run": enrollment.run,
            "enteredAt": enrollment.entered_at.isoformat() if enrollment.entered_at else None,
            "trigger": trigger,
        }
        name = f"{enrollment.cid}-{enrollment.run}"
        try:
            arn = self.rt.executions.start(self.rt.config.state_machine_arn(wf.id), name, payload)
        except ExecutionThrottled:
            logger.warning("start throttled: retried later, never dropped", workflow=wf.id)
            raise
        self.rt.enrollments.started(enrollment.cid, wf.id, enrollment.run, arn)
        at = enrollment.entered_at or clock.now()
        if enrollment.version:
            self.store.note_version(wf.id, enrollment.version, at)
        first = record_run_event(
            self.rt,
            enrollment.cid,
            "entered",
            workflow_id=wf.id,
            run=enrollment.run,
            version=enrollment.version,
            at=at,
            trigger=trigger.get("event"),
        )
        if first:  # a throttled start retried later finds the event there: counted once
            stats.record_entered(wf.id, enrollment.version, None, at)

    def enroll_from_step(self, workflow_id: str, cid: str, entry: Entry) -> Enrollment | None:
        """An `enroll` step or a retirement's `moveTo`: throttling becomes the state machine's retry."""
        wf = self.rt.site.workflows.get(workflow_id)
        profile = self.rt.contacts.get(cid)
        if wf is None or profile is None:
            return None
        try:
            return self.enroll(wf, profile, entry, clock.now())
        except ExecutionThrottled as exc:
            raise TransientError(f"StartExecution throttled: {exc}") from exc

    # -- the API --------------------------------------------------------------------------------
    def definition(self, workflow_id: str) -> Workflow:
        wf = self.rt.site.workflows.get(workflow_id)
        if wf is None:
            raise NotFound("no workflow with that id")
        return wf

    def describe(self, workflow_id: str, *, full: bool = False) -> dict[str, Any]:
        wf = self.rt.site.workflows.get(workflow_id)
        state = self.state(workflow_id, fresh=True)
        if wf is None and not state.versions and state.updated_at is None:
            raise NotFound("no workflow with that id")
        status = self.status(workflow_id, fresh=True)
        if status == "draining" and not self._has_open_runs(workflow_id):
            self.store.set_status(workflow_id, "retired", now=clock.now(), move_to=state.move_to)
            status = "retired"
        current = wf.content_hash() if wf is not None else None
        versions = [
            {"version": v, "firstEnteredAt": at, "current": v == current}
            for v, at in sorted(state.versions.items(), key=lambda kv: kv[1])
        ]
        if current is not None and current not in state.versions:
            versions.append({"version": current, "firstEnteredAt": None, "current": True})
        out: dict[str, Any] = {
            "id": workflow_id,
            "name": wf.name if wf is not None else workflow_id,
            "description": wf.description if wf is not None else "",
            "status": status,
            "version": current,
            "versions": versions,
            "trigger": _trigger_out(wf) if wf is not None else None,
            "moveTo": state.move_to,
        }
        if full and wf is not None:
            out["definition"] = wf.model_dump(mode="json", by_alias=True, exclude_none=True)
        return out

    def list(self) -> list[dict[str, Any]]:
        ids = set(self.rt.site.workflows) | {s.workflow_id for s in self.store.all()}
        return [self.describe(w) for w in sorted(ids)]

    def pause(self, workflow_id: str) -> dict[str, Any]:
        self.definition(workflow_id)
        if not self.store.set_status(workflow_id, "paused", now=clock.now(), only_from=("active", "paused")):
            raise Conflict(f"the workflow is {self.state(workflow_id, fresh=True).status}: it cannot pause")
        self._forget(workflow_id)
        return self.describe(workflow_id)

    def resume(self, workflow_id: str) -> dict[str, Any]:
        """Take entries again and wake every message the pause held (they go through the gate again)."""
        self.definition(workflow_id)
        if not self.store.set_status(workflow_id, "active", now=clock.now(), only_from=("active", "paused")):
            raise Conflict(f"the workflow is {self.state(workflow_id, fresh=True).status}: it cannot resume")
        self._forget(workflow_id)
        woken = 0
        for cid, run in self.held.all(workflow_id):
            enrollment = self.rt.enrollments.get(cid, workflow_id)
            token = enrollment.token if enrollment is not None and enrollment.run == run else None
            if token and self.rt.executions.resume(token, {"resumed": True}):
                self.rt.enrollments.unpark(cid, workflow_id, run, token)
                woken += 1
            self.held.remove(workflow_id, cid)
        logger.info("workflow resumed", workflow=workflow_id, woken=woken)
        return self.describe(workflow_id)

    def retire(self, workflow_id: str, mode: str, move_to: str | None) -> dict[str, Any]:
        """No new entries. `drain`: running contacts finish (then move on); `stop`: they end now (and move
        on at once). `moveTo` enrolls them in another workflow, honouring its audience and re-entry."""
        if move_to is not None:
            if move_to == workflow_id:
                raise ValidationFailed("moveTo names the workflow being retired")
            if move_to not in self.rt.site.workflows:
                raise NotFound("moveTo names no workflow")
        if workflow_id not in self.rt.site.workflows and self.state(workflow_id).updated_at is None:
            raise NotFound("no workflow with that id")
        now = clock.now()
        status = "draining" if mode == "drain" else "retired"
        self.store.set_status(workflow_id, status, now=now, move_to=move_to)
        self._forget(workflow_id)
        stopped, more = 0, False
        if mode == "stop":
            stopped, more = self.stop_runs(workflow_id, move_to, now, budget=STOP_BUDGET)
        out = self.describe(workflow_id)
        out["stopped"] = stopped
        if mode == "stop":
            out["stopping"] = more  # runs left: they end at their next task, and the hourly sweep ends them
        return out

    def stop_runs(
        self, workflow_id: str, move_to: str | None, now: datetime, *, budget: float
    ) -> tuple[int, bool]:
        """End the open runs of the workflow as exited (a waiting step is woken to its Exited state; a
        running one stops at its next task), and move each contact on; for at most `budget` real seconds.
        Returns how many ended and whether runs may be left (the budget ran out first)."""
        arn = self.rt.config.state_machine_arn(workflow_id)
        deadline = time.monotonic() + budget
        stopped = 0
        for name in running_executions(arn):
            if time.monotonic() > deadline:
                return stopped, True
            cid, _, run = name.rpartition("-")
            if not run.isdigit():
                continue
            if self.end_run(cid, workflow_id, int(run), status="exited", reason="retired", now=now):
                stopped += 1
                if move_to is not None:
                    self.move_on(cid, workflow_id, int(run), move_to)
        return stopped, False

    def end_if_retired(self, cid: str, workflow_id: str, run: int) -> None:
        """Before every task: a run of a workflow retired with `stop` ends here as exited (and moves on),
        whether or not the retire call reached it; the run's execution ends in its Exited state."""
        state = self.state(workflow_id)
        if state.status != "retired":
            return
        ended = self.end_run(cid, workflow_id, run, status="exited", reason="retired", now=clock.now())
        if ended and state.move_to is not None:
            self.move_on(cid, workflow_id, run, state.move_to)
        raise ContactExited("the workflow was retired")

    def sweep_retired(self, *, budget: float) -> int:
        """The hourly sweep: end the runs a `stop` retirement left open (its call ran out of time, or a run
        was starting while it listed them). Returns how many ended."""
        deadline = time.monotonic() + budget
        stopped = 0
        for state in self.store.all():
            left = deadline - time.monotonic()
            if state.status != "retired" or left <= 0:
                continue
            if not self._has_open_runs(state.workflow_id):
                continue
            ended, _ = self.stop_runs(state.workflow_id, state.move_to, clock.now(), budget=left)
            stopped += ended
        if stopped:
            logger.info("retired runs swept", stopped=stopped)
        return stopped

    def end_run(
        self, cid: str, workflow_id: str, run: int, *, status: str, reason: str, now: datetime
    ) -> bool:
        """Close a run and wake its waiting step so the execution ends in its Converted/Exited state."""
        before = self.rt.enrollments.close(cid, workflow_id, run, status, reason, now=now)
        if before is None:
            return False
        if before.token:
            error = "ContactConverted" if status == "converted" else "ContactExited"
            self.rt.executions.interrupt(before.token, error, reason)
        if status in ("converted", "exited"):
            record_run_event(
                self.rt,
                cid,
                status,
                workflow_id=workflow_id,
                run=run,
                version=before.version,
                at=now,
                reason=reason,
            )
        record_run_end(workflow_id, before, status, now)
        logger.info("run ended", workflow=workflow_id, run=run, status=status)
        return True

    def move_on(self, cid: str, workflow_id: str, run: int, move_to: str) -> None:
        entry = Entry({"event": "moved", "from": workflow_id}, f"moved:{workflow_id}:{run}")
        self.enroll_from_step(move_to, cid, entry)

    def enroll_api(self, workflow_id: str, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        """`POST /v1/workflows/{id}/enroll`: the contact enters now if audience and re-entry allow.

        `data` is recorded as an `enrollment_requested` event (source cairn) that the run's templates read
        as `event.properties`; the execution input carries only its id."""
        import uuid

        from cairn.adapters.events import NewEvent
        from cairn.domain.identity import cid_for_user

        wf = self.definition(workflow_id)
        status = self.status(workflow_id, fresh=True)
        if status != "active":
            raise Conflict(f"the workflow is {status}: it takes no entries")
        cid = cid_for_user(self.rt.secret, user_id)
        profile = self.rt.contacts.get(cid)
        if profile is None:
            raise NotFound("no contact with that userId")
        now = clock.now()
        message_id = f"cairn.enroll.{uuid.uuid4()}"
        self.rt.events.put_once(
            NewEvent(
                cid=cid,
                message_id=message_id,
                name="enrollment_requested",
                timestamp=now,
                received_at=now,
                properties=data,
                user_id=user_id,
                source="cairn",
            )
        )
        entry = Entry({"event": "api", "messageId": message_id}, message_id)
        try:
            enrollment = self.enroll(wf, profile, entry, now)
        except ExecutionThrottled:
            # The run is open (`starting`) under its final name: a retry of this call starts it.
            raise TransientError("Step Functions throttled the start: retry the request") from None
        if enrollment is None:
            current = self.rt.enrollments.get(cid, workflow_id)
            reason = "audience"
            if current is not None and current.status in ("starting", "active"):
                reason = "already in the workflow"
            elif current is not None:
                reason = "re-entry not allowed yet"
            return {"enrolled": False, "reason": reason}
        return {"enrolled": True, "run": enrollment.run, "version": enrollment.version}

    # -- helpers --------------------------------------------------------------------------------
    def _forget(self, workflow_id: str) -> None:
        with self._lock:
            self._states.pop(workflow_id, None)

    def _has_open_runs(self, workflow_id: str) -> bool:
        return has_running_executions(self.rt.config.state_machine_arn(workflow_id))


def record_run_end(workflow_id: str, before: Enrollment, outcome: str, now: datetime) -> None:
    """A run's end in the statistics (once: the caller closed the run), and the end of the wait it was
    parked at when a goal or exit cut that wait short."""
    if outcome == "converted":
        entered = before.entered_at or now
        stats.record_conversion(workflow_id, before.version, before.variant, entered, now, cid=before.cid)
    else:
        stats.record_ended(workflow_id, before.version, before.variant, outcome, at=now)
    if before.waiting_step and before.waiting_until is not None and before.waiting_until > now:
        how = "converted" if outcome == "converted" else "exited"
        stats.record_wait_ended(
            workflow_id,
            before.version,
            before.waiting_step,
            before.variant,
            until=before.waiting_until,
            how=how,
            at=now,
        )


def _trigger_out(wf: Workflow) -> dict[str, Any]:
    trigger = wf.trigger
    if trigger == "api":
        return {"api": True}
    return dict(trigger.model_dump(mode="json", exclude_none=True))  # type: ignore[union-attr]
