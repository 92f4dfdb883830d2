"""React: what the stream says happened -> goals and exits of open runs, then new enrollments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from cairn.adapters import clock
from cairn.adapters.contacts import Enrollment, Profile
from cairn.adapters.executions import ExecutionThrottled
from cairn.bootstrap import Runtime
from cairn.domain import durations, policies, rules
from cairn.domain.rules import EventRecord
from cairn.domain.workflows import ReentryAfter, Workflow
from cairn.services.views import contact_view

logger = Logger(child=True)


@dataclass(frozen=True)
class IncomingEvent:
    cid: str
    message_id: str
    name: str
    timestamp: datetime
    properties: dict[str, Any]
    user_id: str | None

    @property
    def record(self) -> EventRecord:
        return EventRecord(name=self.name, timestamp=self.timestamp, properties=self.properties)


class Reactor:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # -- events -------------------------------------------------------------------------------
    def on_event(self, event: IncomingEvent) -> None:
        now = clock.now()
        self.rt.contacts.ensure(event.cid, now=now, user_id=event.user_id)
        profile = self.rt.contacts.get(event.cid)
        assert profile is not None
        self.check_open_runs(profile, now, new_event=event.record)
        for wf in self.rt.site.workflows_triggered_by(event.name):
            self.maybe_enroll(wf, profile, event, now)

    def on_profile_change(self, cid: str) -> None:
        profile = self.rt.contacts.get(cid)
        if profile is not None:
            self.check_open_runs(profile, clock.now())

    # -- goals and exits ----------------------------------------------------------------------
    def check_open_runs(self, profile: Profile, now: datetime, new_event: EventRecord | None = None) -> None:
        for enrollment in self.rt.enrollments.active(profile.cid):
            wf = self.rt.site.workflows.get(enrollment.workflow_id)
            if wf is None or enrollment.entered_at is None:
                continue
            goal = wf.goal.model_dump(mode="json", exclude_none=True) if wf.goal else None
            window = durations.parse_duration(wf.goal.within) if wf.goal else None
            needs_history = goal is not None or _needs_events(wf.exit_when)
            view = contact_view(
                profile,
                now=now,
                consent_defaults=self._consent_defaults(),
                events=self.rt.events if needs_history else None,
                window=max(window or timedelta(0), now - enrollment.entered_at) if needs_history else None,
            )
            if goal is not None and policies.goal_met(goal, view, enrollment.entered_at):
                self.end_run(enrollment, "converted", "goal", now)
            elif policies.exit_holds(wf.exit_when, view):
                self.end_run(enrollment, "exited", "exit_when", now)

    def end_run(self, enrollment: Enrollment, status: str, reason: str, now: datetime) -> None:
        """Close the run, then wake its waiting step so the execution ends in its Converted/Exited state."""
        before = self.rt.enrollments.close(
            enrollment.cid, enrollment.workflow_id, enrollment.run, status, reason, now=now
        )
        if before is not None and before.token:
            error = "ContactConverted" if status == "converted" else "ContactExited"
            self.rt.executions.interrupt(before.token, error, reason)
        logger.info("run ended", workflow=enrollment.workflow_id, run=enrollment.run, status=status)

    # -- enrollment ---------------------------------------------------------------------------
    def maybe_enroll(self, wf: Workflow, profile: Profile, event: IncomingEvent, now: datetime) -> None:
        if self.rt.site.settings.paused:
            return
        if now - event.timestamp > durations.parse_duration(wf.trigger.max_age):
            return  # a backfill: it updates the contact but starts nothing
        if wf.trigger.where is not None:
            match = rules.parse_rule({"event": wf.trigger.event, "where": wf.trigger.where})
            only = contact_view(
                profile, now=event.timestamp, consent_defaults={}, extra_events=[event.record]
            )
            if not rules.evaluate(match, only):
                return
        if wf.audience is not None:
            audience = rules.parse_rule(wf.audience)
            needs = rules.dependencies(audience).events
            view = contact_view(
                profile,
                now=now,
                consent_defaults=self._consent_defaults(),
                events=self.rt.events if needs else None,
                window=rules.max_within(audience),
            )
            if not rules.evaluate(audience, view):
                return
        cutoff = None
        if isinstance(wf.reentry, ReentryAfter):
            cutoff = now - durations.parse_duration(wf.reentry.after)
        reentry = "after" if isinstance(wf.reentry, ReentryAfter) else wf.reentry
        version = wf.content_hash()
        enrollment = self.rt.enrollments.begin(
            profile.cid,
            wf.id,
            version,
            trigger_id=event.message_id,
            now=now,
            reentry=reentry,
            reentry_after_cutoff=cutoff,
        )
        if enrollment is None:
            return
        self.start(wf, enrollment, trigger={"event": event.name, "messageId": event.message_id})

    def start(self, wf: Workflow, enrollment: Enrollment, trigger: dict[str, Any]) -> None:
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
            logger.warning("start throttled; the record will be retried", workflow=wf.id)
            raise
        self.rt.enrollments.started(enrollment.cid, wf.id, enrollment.run, arn)

    def _consent_defaults(self) -> dict[str, str]:
        d = self.rt.site.settings.consent.default
        return {"email": d.email, "sms": d.sms}


def _needs_events(rule: dict[str, Any] | None) -> bool:
    return rule is not None and bool(rules.dependencies(rules.parse_rule(rule)).events)
