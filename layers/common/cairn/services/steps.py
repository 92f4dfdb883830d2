"""The step function's actions: every step that is not a send, the waits that a goal, an exit or an awaited
event can interrupt, a run's end, and the hourly job that enters contacts on their yearly dates.

Each action first checks that its run is still open and that neither its goal nor its exit rule holds
(raising the typed end the run came to: ASL catches `ContactConverted` and `ContactExited` by name)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from aws_lambda_powertools import Logger

from cairn.adapters import clock, journeys, webhooks
from cairn.adapters.contacts import Enrollment, Profile
from cairn.adapters.executions import ExecutionThrottled
from cairn.bootstrap import Runtime
from cairn.domain import durations, rules, timing
from cairn.domain import webhooks as signing
from cairn.domain.errors import ContactConverted, ContactExited, TransientError
from cairn.domain.identity import message_key
from cairn.domain.rules import ContactView
from cairn.domain.workflows import HOLDOUT, DateTrigger, awaited_matches, variant_for
from cairn.services import stats
from cairn.services.runs import RunRef, check_policy, live_view, open_enrollment, record_run_event
from cairn.services.views import attributes_of
from cairn.services.workflows import Entry, Workflows, record_run_end

logger = Logger(child=True)
MIN_WAIT = 1  # seconds: Step Functions' TimeoutSecondsPath needs a positive whole number


@dataclass(frozen=True)
class _Run:
    ref: RunRef
    enrollment: Enrollment
    profile: Profile
    now: datetime
    view: ContactView


class Steps:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @cached_property
    def workflows(self) -> Workflows:
        return Workflows(self.rt)

    def handle(self, payload: dict[str, Any]) -> dict[str, Any]:
        action = payload.get("action")
        handler = {
            "wait": self.wait,
            "until": self.until,
            "hold": self.hold,
            "wait_for": self.wait_for,
            "branch": self.branch,
            "split": self.split,
            "update": self.update,
            "list": self.lists,
            "assign_task": self.assign_task,
            "webhook": self.webhook,
            "enroll": self.enroll,
            "finish": self.finish,
            "date_triggers": self.date_triggers,
            "hourly": self.hourly,
        }.get(str(action))
        if handler is None:
            raise ValueError(f"unknown step action {action!r}")
        return handler(payload)

    # -- every action starts here -----------------------------------------------------------------
    def _begin(self, payload: dict[str, Any], *more_rules: Any) -> _Run:
        """The run is open, the contact exists, the goal and exit rule do not hold (else: the typed end)."""
        ref = RunRef.from_payload(payload)
        enrollment = open_enrollment(self.rt, ref)
        self.workflows.end_if_retired(ref.cid, ref.workflow_id, ref.run)
        try:
            profile = self.rt.contacts.get(ref.cid)
            if profile is None:
                raise ContactExited("the contact no longer exists")
            now = clock.now()
            view = live_view(self.rt, profile, ref, now, payload["policy"], *more_rules)
            check_policy(view, ref, payload["policy"])
        except ContactExited:  # the run leaves here: the step's funnel shows it (once per run and step)
            step_id = str(payload["step"]["id"]).split(": ")[0]
            stats.record_exit(
                ref.workflow_id, ref.version, step_id, enrollment.variant, cid=ref.cid, run=ref.run
            )
            raise
        return _Run(ref, enrollment, profile, now, view)

    def _park(
        self,
        run: _Run,
        step_id: str,
        token: str,
        *,
        seconds: float | None = None,
        awaited: dict[str, Any] | None = None,
    ) -> None:
        """Park the wait's token on the run (with when it times out); count the wait once (a retried
        registration finds its token parked already)."""
        ref = run.ref
        until = run.now + timedelta(seconds=seconds) if seconds else None
        parked = self.rt.enrollments.park(
            ref.cid, ref.workflow_id, ref.run, step_id, token, wait_for=awaited, until=until
        )
        if not parked:
            open_enrollment(self.rt, ref)  # raises the end the run came to meanwhile
            raise ContactExited("the run ended while its wait was registering")
        if seconds and run.enrollment.token != token and ": " not in step_id:
            stats.record_wait(
                ref.workflow_id, ref.version, step_id, run.enrollment.variant, seconds=seconds, at=run.now
            )

    def _passed(self, run: _Run, step_id: str) -> None:
        """A step that ran and let the run go on, in the statistics (entered and completed at once)."""
        stats.record_step(
            run.ref.workflow_id, run.ref.version, step_id, run.enrollment.variant, "passed", at=run.now
        )

    # -- waits ------------------------------------------------------------------------------------
    def wait(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Register a waiting step: park its task token on the run. Step Functions wakes the task when its
        timeout passes; a goal or exit answers the token at once."""
        run = self._begin(payload)
        step = payload["step"]
        seconds = payload.get("seconds") or step.get("seconds")
        self._park(run, step["id"], payload["token"], seconds=float(seconds) if seconds else None)
        return {"parked": step["id"]}

    def until(self, payload: dict[str, Any]) -> dict[str, Any]:
        """How long to wait until an attribute's date or a time of day, in the contact's time zone."""
        run = self._begin(payload)
        ref, profile, now = run.ref, run.profile, run.now
        step = payload["step"]
        tz = timing.zone(profile.timezone, self.rt.site.settings.timezone)
        due: datetime | None
        if "time" in step:
            days = timing.weekday_numbers(step.get("days"))
            due = timing.next_time_of_day(now, timing.parse_clock(step["time"]), tz, days)
        else:
            value = attributes_of(profile).get(step["attribute"])
            at = timing.parse_clock(step["at"]) if step.get("at") else None
            offset = timing.parse_offset(step["offset"]) if step.get("offset") else timedelta()
            due = timing.attribute_instant(value, tz, at, offset)
        if due is None or due <= now:
            return {"seconds": MIN_WAIT}  # no date, or it has passed: go on at once
        if due - ref.entered_at > durations.MAX_DURATION:
            raise ContactExited("the date is more than a year after the contact entered")
        return {"seconds": max(MIN_WAIT, math.ceil((due - now).total_seconds()))}

    def hold(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A message the gate held: wait (interruptibly) until the send may try again. A pause's holds are
        listed so that a resume wakes them at once."""
        run = self._begin(payload)
        ref = run.ref
        step_id = payload["step"]["id"]
        held = payload.get("held") or {}
        seconds = held.get("seconds")
        self._park(run, f"{step_id}: hold", payload["token"], seconds=float(seconds) if seconds else None)
        if str(held.get("reason", "")).startswith("paused"):
            self.workflows.held.add(ref.workflow_id, ref.cid, ref.run)
        return {"parked": step_id}

    def wait_for(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Wait for an event (the react function answers the token when it arrives). The awaited event is
        stored with the token; an event that arrived while the wait was registering is found in the history
        here, so it is never missed."""
        run = self._begin(payload)
        ref, now = run.ref, run.now
        step = payload["step"]
        since = _instant(payload.get("since")) or now
        awaited: dict[str, Any] = {"event": step["event"], "since": min(since, now).isoformat()}
        if step.get("where"):
            awaited["where"] = step["where"]
        if step.get("message"):
            message = journeys.last_message(ref.cid, ref.workflow_id, ref.run, step["message"])
            if message is not None:
                awaited["messageId"] = message
        token = payload["token"]
        timeout = float(step["timeout"])
        self._park(run, step["id"], token, seconds=timeout, awaited=awaited)
        trigger_id = (payload["run"].get("trigger") or {}).get("messageId")
        lookback = ref.entered_at if awaited.get("messageId") else datetime.fromisoformat(awaited["since"])
        for mid, stamp, properties in journeys.events_since(ref.cid, step["event"], lookback):
            if mid != trigger_id and awaited_matches(awaited, step["event"], stamp, properties):
                if self.rt.executions.resume(token, {"event": step["event"]}):
                    self.rt.enrollments.unpark(ref.cid, ref.workflow_id, ref.run, token)
                    stats.record_wait_ended(
                        ref.workflow_id,
                        ref.version,
                        step["id"],
                        run.enrollment.variant,
                        until=now + timedelta(seconds=timeout),
                        how="event",
                        at=now,
                    )
                break
        return {"parked": step["id"]}

    # -- decisions --------------------------------------------------------------------------------
    def branch(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Evaluate the branch's conditions on the live contact: first match wins, -1 for else."""
        conditions = payload["step"]["rules"]
        run = self._begin(payload, *conditions)
        self._passed(run, payload["step"]["id"])
        for index, condition in enumerate(conditions):
            if rules.evaluate(rules.parse_rule(condition), run.view):
                return {"branch": index}
        return {"branch": -1}

    def split(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The contact's variant: sticky (hash of contact and workflow), recorded on the enrollment. The
        holdout's wait lasts until the goal's window closes (at least a second)."""
        run = self._begin(payload)
        ref, now = run.ref, run.now
        step = payload["step"]
        variant = variant_for(ref.cid, ref.workflow_id, step["weights"])
        self.rt.enrollments.set_variant(ref.cid, ref.workflow_id, ref.run, step["id"], variant)
        if run.enrollment.variant is None:  # the run's first assignment (a retry finds it set)
            stats.record_assigned(ref.workflow_id, ref.version, step["id"], variant, at=now)
        stats.record_step(ref.workflow_id, ref.version, step["id"], None, "passed", at=now)
        holdout = MIN_WAIT
        goal = payload["policy"].get("goal")
        if variant == HOLDOUT and goal:
            end = ref.entered_at + durations.parse_duration(goal["within"])
            holdout = max(MIN_WAIT, math.ceil((end - now).total_seconds()))
        return {"variant": variant, "holdoutSeconds": holdout}

    # -- actions ----------------------------------------------------------------------------------
    def update(self, payload: dict[str, Any]) -> dict[str, Any]:
        run = self._begin(payload)
        ref, now = run.ref, run.now
        step = payload["step"]
        change = journeys.StepChange(
            set=dict(step.get("set") or {}),
            unset=tuple(step.get("unset") or ()),
            add_tags=frozenset(step.get("addTags") or ()),
            remove_tags=frozenset(step.get("removeTags") or ()),
        )
        if not journeys.apply_change(ref.cid, change, now=now):
            raise ContactExited("the contact no longer exists")
        self._passed(run, step["id"])
        return {"updated": step["id"]}

    def lists(self, payload: dict[str, Any]) -> dict[str, Any]:
        run = self._begin(payload)
        ref, now = run.ref, run.now
        step = payload["step"]
        lists = frozenset({step["list"]})
        change = journeys.StepChange(
            add_lists=lists if step["op"] == "add" else frozenset(),
            remove_lists=lists if step["op"] == "remove" else frozenset(),
        )
        if not journeys.apply_change(ref.cid, change, now=now):
            raise ContactExited("the contact no longer exists")
        self._passed(run, step["id"])
        return {step["op"]: step["list"]}

    def assign_task(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A task for a person (GET /v1/tasks): once per run and step, whatever the retries."""
        run = self._begin(payload)
        ref, now = run.ref, run.now
        step = payload["step"]
        task_id = "t" + message_key(ref.cid, ref.workflow_id, str(ref.run), step["id"])[:24]
        task = self.workflows.tasks.create(
            journeys.Task(
                id=task_id,
                contact=ref.cid,
                assignee=step["to"],
                title=step["title"],
                note=step.get("note"),
                status="open",
                due=now + timedelta(seconds=int(step["due"])) if step.get("due") else None,
                workflow_id=ref.workflow_id,
                step_id=step["id"],
                run=ref.run,
                created_at=now,
                updated_at=now,
            )
        )
        logger.info("task assigned", workflow=ref.workflow_id, task=task.id, assignee=task.assignee)
        self._passed(run, step["id"])
        return {"task": task.id}

    def webhook(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One signed HTTPS POST. WebhookFailed (retried by the ASL Retry) or WebhookRejected on failure."""
        run = self._begin(payload)
        ref, profile, now = run.ref, run.profile, run.now
        step = payload["step"]
        delivery = "d" + message_key(ref.cid, ref.workflow_id, str(ref.run), step["id"])[:24]
        body = signing.body_bytes(
            {
                "id": delivery,
                "workflowId": ref.workflow_id,
                "stepId": step["id"],
                "run": ref.run,
                "sentAt": now.isoformat(),
                "contact": {
                    "userId": profile.user_id,
                    "email": profile.email,
                    "phone": profile.phone,
                    "attributes": profile.attributes,
                    "tags": sorted(profile.tags),
                },
                "data": step.get("body") or {},
            }
        )
        secret = webhooks.signing_secret(step["secret"])
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Cairn-Webhook/1",
            signing.SIGNATURE_HEADER: signing.sign(secret, int(now.timestamp()), body),
            signing.DELIVERY_HEADER: delivery,
        }
        status = webhooks.post(step["url"], body, headers, timeout=float(step.get("timeout", 10)))
        self._passed(run, step["id"])
        return {"status": status, "delivery": delivery}

    def enroll(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Enter the contact in another workflow (its audience and re-entry apply), through this Lambda:
        Step Functions cannot start a nested execution of its own in local mode, and needs none."""
        run = self._begin(payload)
        ref = run.ref
        step = payload["step"]
        entry = Entry(
            {"event": "enroll", "from": ref.workflow_id},
            f"enroll:{ref.workflow_id}:{ref.run}:{step['id']}",
        )
        enrollment = self.workflows.enroll_from_step(step["workflow"], ref.cid, entry)
        self._passed(run, step["id"])
        return {"enrolled": enrollment is not None}

    # -- the end ----------------------------------------------------------------------------------
    def finish(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Record how the run ended (idempotent: a run already closed by a goal stays as it is), with the
        reserved event; a draining workflow with `moveTo` moves the contact on."""
        ref = RunRef.from_payload(payload)
        outcome = payload["step"]["outcome"]
        reason = {"completed": "completed", "converted": "goal", "exited": "exit", "failed": "error"}[outcome]
        if outcome == "failed":
            logger.error(
                "run failed", workflow=ref.workflow_id, error=(payload.get("error") or {}).get("Error")
            )
        now = clock.now()
        before = self.rt.enrollments.close(ref.cid, ref.workflow_id, ref.run, outcome, reason, now=now)
        if before is None:
            return {"outcome": outcome}
        record_run_end(ref.workflow_id, before, outcome, now)
        if payload["step"].get("stepId"):  # an `exit` step: the run left the workflow there
            stats.record_exit(
                ref.workflow_id,
                before.version,
                payload["step"]["stepId"],
                before.variant,
                cid=ref.cid,
                run=ref.run,
                at=now,
            )
        if outcome in ("converted", "exited"):
            record_run_event(
                self.rt,
                ref.cid,
                outcome,
                workflow_id=ref.workflow_id,
                run=ref.run,
                version=ref.version,
                at=now,
                reason=reason,
            )
        state = self.workflows.state(ref.workflow_id, fresh=True)
        if state.status in ("draining", "retired") and state.move_to and outcome != "failed":
            self.workflows.move_on(ref.cid, ref.workflow_id, ref.run, state.move_to)
        return {"outcome": outcome}

    # -- yearly dates (EventBridge Scheduler, hourly) ---------------------------------------------
    def hourly(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The hourly schedule: end what `stop` retirements left open, then enter the yearly dates due."""
        swept = self.workflows.sweep_retired(budget=SWEEP_BUDGET)
        return {**self.date_triggers(payload), "retiredRunsEnded": swept}

    def date_triggers(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Enter every contact whose yearly date (birthday, anniversary) comes due in the past hour, at its
        `at` time in the contact's own zone. Reads only the index entries of the days concerned; a repeated
        run enters nobody twice (one run per workflow, contact and day)."""
        end = _instant(payload.get("time")) or clock.now()
        end = end.replace(minute=0, second=0, microsecond=0)
        start = end - timedelta(hours=1)
        fallback = self.rt.site.settings.timezone
        entered = throttled = 0
        for wf in self.rt.site.workflows.values():
            if not isinstance(wf.trigger, DateTrigger):
                continue
            spec = wf.trigger.date_attribute
            at = timing.parse_clock(spec.at)
            offset_days = timing.parse_offset(spec.offset).days if spec.offset else 0
            for day in timing.candidate_days(start, end):
                if not timing.may_fall_due(day, at, start, end):
                    continue  # no time zone has that day's `at` in this hour: nothing to read
                for month_day in timing.month_days_firing_on(day, offset_days):
                    for cid, tz_name in self.workflows.dates.members(wf.id, month_day.key):
                        due = timing.local_instant(day, at, timing.zone(tz_name, fallback))
                        if not start < due <= end:
                            continue
                        profile = self.rt.contacts.get(cid)
                        if profile is None:
                            continue
                        entry = Entry(
                            {"event": "date_attribute", "attribute": spec.attribute, "day": day.isoformat()},
                            f"date:{wf.id}:{day.isoformat()}",
                            distinct=True,
                        )
                        try:
                            if self.workflows.enroll(wf, profile, entry, due):
                                entered += 1
                        except ExecutionThrottled:
                            throttled += 1
        if throttled:
            # The runs stay `starting` under their names: the scheduler's retry of this hour starts them.
            raise TransientError(f"{throttled} starts throttled; the hour is retried")
        return {"entered": entered, "window": [start.isoformat(), end.isoformat()]}


# Real seconds of each hourly run spent ending runs of workflows retired with `stop` (the function's timeout
# is 30 s; the yearly dates come after).
SWEEP_BUDGET = 10.0


def _instant(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


__all__ = ["ContactConverted", "Steps"]
