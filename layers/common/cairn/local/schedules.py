"""Schedules and EventBridge rules in local mode: moto stores them but never fires them, so the
virtual clock does — `rate(...)` schedules of the template's functions, and SES events on demand."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cairn.local.clock import VirtualClock
from cairn.local.lambdas import FunctionHost

RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def parse_rate(expression: str) -> timedelta:
    match = RATE.match(expression.strip())
    if match is None:
        raise ValueError(f"local mode runs rate(...) schedules only, not {expression!r}")
    return timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])


@dataclass
class Schedule:
    function: str
    every: timedelta
    payload: dict[str, Any] | None = None


@dataclass
class Rule:
    function: str
    pattern: dict[str, Any]


class Scheduler:
    """Fires each schedule on the virtual clock, aligned to the period (hourly jobs at :00)."""

    def __init__(self, clock: VirtualClock, host: FunctionHost) -> None:
        self.clock = clock
        self.host = host
        self.schedules: list[Schedule] = []
        self.rules: list[Rule] = []
        self.fired = 0

    def add_schedule(self, schedule: Schedule) -> None:
        self.schedules.append(schedule)

    def add_rule(self, rule: Rule) -> None:
        self.rules.append(rule)

    def start(self) -> None:
        for schedule in self.schedules:
            self._arm(schedule, self._next(self.clock.now(), schedule.every))

    @staticmethod
    def _next(now: datetime, every: timedelta) -> datetime:
        period = int(every.total_seconds())
        epoch = int(now.timestamp())
        return datetime.fromtimestamp((epoch // period + 1) * period, tz=now.tzinfo)

    def _arm(self, schedule: Schedule, due: datetime) -> None:
        def fire(at: datetime) -> None:
            self._arm(schedule, at + schedule.every)
            self.fired += 1
            event = schedule.payload or {
                "version": "0",
                "id": str(uuid.uuid4()),
                "detail-type": "Scheduled Event",
                "source": "aws.scheduler",
                "time": at.isoformat().replace("+00:00", "Z"),
                "resources": [],
                "detail": {},
            }
            self.host.invoke(schedule.function, event)

        self.clock.call_at(due, fire)

    def publish(self, event: dict[str, Any]) -> int:
        """Deliver an EventBridge event to every rule whose pattern matches; returns how many."""
        delivered = 0
        for rule in self.rules:
            if _matches(rule.pattern, event):
                self.clock.enter()
                try:
                    self.host.invoke(rule.function, event)
                finally:
                    self.clock.leave()
                delivered += 1
        return delivered


def _matches(pattern: Any, value: Any) -> bool:
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and _matches(v, value[k]) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        candidates = value if isinstance(value, list) else [value]
        return any(p == c for p in pattern for c in candidates)
    return bool(pattern == value)


SES_EVENTS = {
    "delivery": ("Email Delivered", "Delivery"),
    "open": ("Email Opened", "Open"),
    "click": ("Email Clicked", "Click"),
    "bounce": ("Email Bounced", "Bounce"),
    "complaint": ("Email Complaint Received", "Complaint"),
}


def ses_event(
    kind: str, *, provider_id: str, message_id: str, recipient: str, at: datetime
) -> dict[str, Any]:
    """What SES publishes to EventBridge for a sent email (configuration set event destination)."""
    detail_type, event_type = SES_EVENTS[kind]
    stamp = at.isoformat().replace("+00:00", "Z")
    detail: dict[str, Any] = {
        "eventType": event_type,
        "mail": {
            "timestamp": stamp,
            "messageId": provider_id,
            "destination": [recipient],
            "tags": {"cairn-message-id": [message_id]},
        },
    }
    if kind == "delivery":
        detail["delivery"] = {"timestamp": stamp, "recipients": [recipient], "smtpResponse": "250 ok"}
    elif kind == "open":
        detail["open"] = {"timestamp": stamp, "userAgent": "local", "ipAddress": "127.0.0.1"}
    elif kind == "click":
        detail["click"] = {"timestamp": stamp, "link": "https://example.com/", "linkTags": {}}
    elif kind == "bounce":
        detail["bounce"] = {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [{"emailAddress": recipient}],
            "timestamp": stamp,
        }
    elif kind == "complaint":
        detail["complaint"] = {"complainedRecipients": [{"emailAddress": recipient}], "timestamp": stamp}
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.ses",
        "account": "123456789012",
        "time": stamp,
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    }
