"""React: what the stream says happened -> goals and exits of open runs, waits that were waiting for it,
then new enrollments. Per contact and in order (the stream's order)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from aws_lambda_powertools import Logger

from cairn.adapters import clock
from cairn.adapters.contacts import Enrollment, Profile
from cairn.bootstrap import Runtime
from cairn.domain import durations, policies, rules, timing
from cairn.domain.rules import EventRecord
from cairn.domain.workflows import DateTrigger, EventTrigger, SegmentTrigger, Workflow, awaited_matches
from cairn.services import stats
from cairn.services.runs import variant_of_run
from cairn.services.views import attributes_of, contact_view
from cairn.services.workflows import Entry, Workflows

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

    @cached_property
    def workflows(self) -> Workflows:
        return Workflows(self.rt)

    # -- entry points ---------------------------------------------------------------------------
    def on_event(self, event: IncomingEvent) -> None:
        now = clock.now()
        self.rt.contacts.ensure(event.cid, now=now, user_id=event.user_id)
        profile = self.rt.contacts.get(event.cid)
        if profile is None:  # erased meanwhile: ensure creates none (cairn.services.erase)
            return
        # Segment membership first: its segment_entered events start workflows (through the stream).
        self.rt.segments.on_event(profile, event.name, event.timestamp, now)
        still_open = self.check_open_runs(profile, now, new_event=event.record)
        self.resume_waits(still_open, event)
        if event.name == "unsubscribed":
            self.count_unsubscribe(event)
        for wf in self.rt.site.workflows_triggered_by(event.name):
            self.maybe_enroll(wf, profile, event, now)

    def on_profile_change(
        self, cid: str, old: dict[str, Any] | None = None, new: dict[str, Any] | None = None
    ) -> None:
        profile = self.rt.contacts.get(cid)
        if profile is not None:
            self.rt.segments.on_profile_change(profile, old, new)  # the stream's images: what changed
            self.check_open_runs(profile, clock.now())
            self.index_dates(profile)

    # -- goals and exits ----------------------------------------------------------------------
    def check_open_runs(
        self, profile: Profile, now: datetime, new_event: EventRecord | None = None
    ) -> list[Enrollment]:
        """End the runs whose goal or exit now holds; returns the runs still open."""
        still_open: list[Enrollment] = []
        for enrollment in self.rt.enrollments.active(profile.cid):
            policy = self._policy_of(enrollment)
            if policy is None or enrollment.entered_at is None:
                still_open.append(enrollment)
                continue
            goal, exit_when = policy.get("goal"), policy.get("exitWhen")
            window = durations.parse_duration(goal["within"]) if goal else None
            needs_history = goal is not None or _needs_events(exit_when)
            view = contact_view(
                profile,
                now=now,
                consent_defaults=self._consent_defaults(),
                events=self.rt.events if needs_history else None,
                window=max(window or timedelta(0), now - enrollment.entered_at) if needs_history else None,
                segments=self.rt.segments,  # {segment: id} evaluates live
            )
            if goal is not None and policies.goal_met(goal, view, enrollment.entered_at):
                # dated by the goal event (a stream that lags does not lengthen the time to convert)
                at = policies.goal_reached_at(goal, view, enrollment.entered_at) or now
                self.end_run(enrollment, "converted", "goal", at)
            elif policies.exit_holds(exit_when, view):
                self.end_run(enrollment, "exited", "exit_when", now)
            else:
                still_open.append(enrollment)
        return still_open

    def _policy_of(self, enrollment: Enrollment) -> dict[str, Any] | None:
        """The goal and exit rule of the version the run entered with (a run finishes on its own version);
        runs begun before enrollments carried them fall back to the current definition."""
        if enrollment.policy is not None:
            return enrollment.policy
        wf = self.rt.site.workflows.get(enrollment.workflow_id)
        return wf.policy if wf is not None else None

    def end_run(self, enrollment: Enrollment, status: str, reason: str, now: datetime) -> None:
        """Close the run, then wake its waiting step so the execution ends in its Converted/Exited state."""
        self.workflows.end_run(
            enrollment.cid, enrollment.workflow_id, enrollment.run, status=status, reason=reason, now=now
        )

    # -- wait_for -------------------------------------------------------------------------------
    def resume_waits(self, runs: list[Enrollment], event: IncomingEvent) -> None:
        """Answer the token of every run waiting for this event: its journey goes on at once."""
        for enrollment in runs:
            awaited = enrollment.wait_for
            if not awaited or not enrollment.token:
                continue
            if not awaited_matches(awaited, event.name, event.timestamp, event.properties):
                continue
            if self.rt.executions.resume(enrollment.token, {"event": event.name}):
                logger.info("wait answered", workflow=enrollment.workflow_id, run=enrollment.run)
                if enrollment.waiting_step and enrollment.waiting_until is not None:
                    stats.record_wait_ended(
                        enrollment.workflow_id,
                        enrollment.version,
                        enrollment.waiting_step,
                        enrollment.variant,
                        until=enrollment.waiting_until,
                        how="event",
                    )
            self.rt.enrollments.unpark(
                enrollment.cid, enrollment.workflow_id, enrollment.run, enrollment.token
            )

    # -- statistics -------------------------------------------------------------------------------
    def count_unsubscribe(self, event: IncomingEvent) -> None:
        """An unsubscribe through a workflow email's link counts at that message's step (and variant), once
        per message whatever the redeliveries, and only where it took the contact off email (a second link
        clicked later changes nothing). `unsubscribed` is reserved: only Cairn records it."""
        message_id = event.properties.get("messageId")
        if not message_id or event.properties.get("changed") is not True:
            return
        message = self.rt.messages.get(event.cid, str(message_id))
        if message is None or message.workflow_id == "cairn":  # the double opt-in email
            return
        stats.record_message(
            message.workflow_id,
            message.version,
            message.step_id,
            variant_of_run(self.rt, event.cid, message.workflow_id, int(message.run)),
            "unsubscribed",
            cid=event.cid,
            at=event.timestamp,
            once=message.message_id,
        )

    # -- enrollment ---------------------------------------------------------------------------
    def maybe_enroll(self, wf: Workflow, profile: Profile, event: IncomingEvent, now: datetime) -> None:
        """An event (or a segment entry) that triggers the workflow: `max_age`, `where`, then the common
        entry rules (status, audience, re-entry)."""
        trigger = wf.trigger
        if isinstance(trigger, SegmentTrigger) and _segment_of(event) != trigger.segment_entered:
            return
        if not isinstance(trigger, EventTrigger | SegmentTrigger):
            return
        if now - event.timestamp > durations.parse_duration(trigger.max_age):
            return  # a backfill: it updates the contact but starts nothing
        if isinstance(trigger, EventTrigger) and trigger.where is not None:
            match = rules.parse_rule({"event": trigger.event, "where": trigger.where})
            only = contact_view(
                profile, now=event.timestamp, consent_defaults={}, extra_events=[event.record]
            )
            if not rules.evaluate(match, only):
                return
        entry = Entry({"event": event.name, "messageId": event.message_id}, event.message_id)
        self.workflows.enroll(wf, profile, entry, now)

    # -- yearly dates ---------------------------------------------------------------------------
    def index_dates(self, profile: Profile) -> None:
        """Keep the contact in the index the hourly date job reads (one read; writes only on change)."""
        date_workflows = [wf for wf in self.rt.site.workflows.values() if isinstance(wf.trigger, DateTrigger)]
        if not date_workflows:
            return
        attributes = attributes_of(profile)
        where = self.workflows.dates.pointers(profile.cid)
        for wf in date_workflows:
            assert isinstance(wf.trigger, DateTrigger)
            month_day = timing.MonthDay.of(attributes.get(wf.trigger.date_attribute.attribute))
            want = (month_day.key, profile.timezone) if month_day is not None else None
            was = where.get(wf.id)
            if want != was:
                self.workflows.dates.place(
                    profile.cid, wf.id, want[0] if want else None, profile.timezone, was
                )

    def _consent_defaults(self) -> dict[str, str]:
        d = self.rt.site.settings.consent.default
        return {"email": d.email, "sms": d.sms}


def _segment_of(event: IncomingEvent) -> str | None:
    props = event.properties
    value = props.get("segment", props.get("segmentId"))
    return str(value) if value is not None else None


def _needs_events(rule: dict[str, Any] | None) -> bool:
    return rule is not None and bool(rules.dependencies(rules.parse_rule(rule)).events)
