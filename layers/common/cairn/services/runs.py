"""What every task of a run needs: its identity, its open enrollment, and the goal/exit check."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cairn.adapters.contacts import Enrollment, Profile
from cairn.bootstrap import Runtime
from cairn.domain import durations, policies, rules
from cairn.domain.errors import ContactConverted, ContactExited, StaleRun
from cairn.domain.rules import ContactView
from cairn.services.views import contact_view


@dataclass(frozen=True)
class RunRef:
    cid: str
    workflow_id: str
    version: str | None
    run: int
    entered_at: datetime

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> RunRef:
        run = payload["run"]
        return cls(
            cid=str(run["cid"]),
            workflow_id=str(run["workflowId"]),
            version=run.get("version"),
            run=int(run["run"]),
            entered_at=datetime.fromisoformat(str(run["enteredAt"])),
        )


def consent_defaults(rt: Runtime) -> dict[str, str]:
    d = rt.site.settings.consent.default
    return {"email": d.email, "sms": d.sms}


def open_enrollment(rt: Runtime, ref: RunRef) -> Enrollment:
    """The run's enrollment if it is still this run and open; else the typed end it came to."""
    enrollment = rt.enrollments.get(ref.cid, ref.workflow_id)
    if enrollment is None or enrollment.run != ref.run:
        raise StaleRun(f"run {ref.run} of {ref.workflow_id} is not the contact's current run")
    if enrollment.status == "converted":
        raise ContactConverted("the goal was met")
    if enrollment.status in ("exited", "failed", "completed"):
        raise ContactExited(f"the run is {enrollment.status}")
    return enrollment


def variant_of_run(rt: Runtime, cid: str, workflow_id: str, run: int) -> str | None:
    """The split variant of a run, for what happens after its message left (opens, clicks, unsubscribes):
    one read of the enrollment, used when it is still that run; None when the run had none, or the contact
    has moved on to a later run since (the enrollment item keeps the current run only)."""
    enrollment = rt.enrollments.get(cid, workflow_id)
    if enrollment is None or enrollment.run != run:
        return None
    return enrollment.variant


def live_view(
    rt: Runtime, profile: Profile, ref: RunRef, now: datetime, policy: dict[str, Any], *more: Any
) -> ContactView:
    """A view of the contact with as much history as the goal, exit rule and `more` rules need."""
    goal = policy.get("goal")
    windows: list[timedelta] = []
    needs = False
    if goal:
        needs = True
        windows.append(max(now - ref.entered_at, durations.parse_duration(goal["within"])))
    for rule in (policy.get("exitWhen"), *more):
        if rule:
            parsed = rules.parse_rule(rule)
            if rules.dependencies(parsed).events:
                needs = True
                w = rules.max_within(parsed)
                windows.append(w if w is not None else timedelta(days=3650))
    return contact_view(
        profile,
        now=now,
        consent_defaults=consent_defaults(rt),
        events=rt.events if needs else None,
        window=max(windows) if windows else None,
        segments=rt.segments,  # {segment: id} evaluates live
    )


def check_policy(view: ContactView, ref: RunRef, policy: dict[str, Any]) -> None:
    """Goal and exit_when, checked before every action: raise the end the run has come to."""
    if policies.goal_met(policy.get("goal"), view, ref.entered_at):
        raise ContactConverted("the goal was met")
    if policies.exit_holds(policy.get("exitWhen"), view):
        raise ContactExited("the exit condition holds")


# Reserved events Cairn records about runs (deterministic ids: a retried task records them once).
RUN_EVENTS = {"entered": "workflow_entered", "converted": "workflow_converted", "exited": "workflow_exited"}


def record_run_event(
    rt: Runtime,
    cid: str,
    what: str,
    *,
    workflow_id: str,
    run: int,
    version: str | None,
    at: datetime,
    **extra: Any,
) -> bool:
    """`workflow_entered`, `workflow_converted` or `workflow_exited` for the contact, once per run: True
    the first time (what statistics hang on, so a retry counts nothing twice)."""
    from cairn.adapters.events import NewEvent

    name = RUN_EVENTS[what]
    properties: dict[str, Any] = {"workflowId": workflow_id, "run": run, **extra}
    if version:
        properties["version"] = version
    return rt.events.put_once(
        NewEvent(
            cid=cid,
            message_id=f"cairn.{name}.{workflow_id}.{run}",
            name=name,
            timestamp=at,
            received_at=at,
            properties={k: v for k, v in properties.items() if v is not None},
            source="cairn",
        )
    )
