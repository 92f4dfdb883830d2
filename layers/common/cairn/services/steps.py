"""The step function's actions: waits that a goal or exit can interrupt, branches, and a run's end."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from cairn.adapters import clock
from cairn.bootstrap import Runtime
from cairn.domain import rules
from cairn.domain.errors import ContactConverted, ContactExited
from cairn.services.runs import RunRef, check_policy, live_view, open_enrollment

logger = Logger(child=True)


class Steps:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def handle(self, payload: dict[str, Any]) -> dict[str, Any]:
        action = payload["action"]
        if action == "wait":
            return self.wait(payload)
        if action == "branch":
            return self.branch(payload)
        if action == "finish":
            return self.finish(payload)
        raise ValueError(f"unknown step action {action!r}")

    def wait(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Register a waiting step: check goal and exit first, then park the task token on the run.

        Step Functions wakes the task when its TimeoutSeconds pass; a goal or exit answers the token."""
        ref = RunRef.from_payload(payload)
        open_enrollment(self.rt, ref)
        profile = self.rt.contacts.get(ref.cid)
        if profile is None:
            raise ContactExited("the contact no longer exists")
        now = clock.now()
        check_policy(live_view(self.rt, profile, ref, now, payload["policy"]), ref, payload["policy"])
        if not self.rt.enrollments.park(
            ref.cid, ref.workflow_id, ref.run, payload["step"]["id"], payload["token"]
        ):
            open_enrollment(self.rt, ref)  # raises the end the run came to meanwhile
            raise ContactExited("the run ended while its wait was registering")
        return {"parked": payload["step"]["id"]}

    def branch(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Evaluate the branch's conditions on the live contact: first match wins, -1 for else."""
        ref = RunRef.from_payload(payload)
        open_enrollment(self.rt, ref)
        profile = self.rt.contacts.get(ref.cid)
        if profile is None:
            raise ContactExited("the contact no longer exists")
        conditions = payload["step"]["rules"]
        view = live_view(self.rt, profile, ref, clock.now(), payload["policy"], *conditions)
        check_policy(view, ref, payload["policy"])
        for index, condition in enumerate(conditions):
            if rules.evaluate(rules.parse_rule(condition), view):
                return {"branch": index}
        return {"branch": -1}

    def finish(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Record how the run ended (idempotent: a run already closed by a goal stays as it is)."""
        ref = RunRef.from_payload(payload)
        outcome = payload["step"]["outcome"]
        reason = {"completed": "completed", "converted": "goal", "exited": "exit", "failed": "error"}[outcome]
        if outcome == "failed":
            logger.error("run failed", workflow=ref.workflow_id, error=payload.get("error", {}).get("Error"))
        self.rt.enrollments.close(ref.cid, ref.workflow_id, ref.run, outcome, reason, now=clock.now())
        return {"outcome": outcome}


__all__ = ["ContactConverted", "Steps"]
