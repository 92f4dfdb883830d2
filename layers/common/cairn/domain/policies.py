"""Run policies checked before every action: goal (conversion) and exit_when."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from cairn.domain import durations, rules
from cairn.domain.rules import ContactView


def goal_met(goal: dict[str, Any] | None, view: ContactView, entered_at: datetime) -> bool:
    """A matching goal event with entered_at < t <= min(now, entered_at + within)."""
    if not goal:
        return False
    end = min(view.now, entered_at + durations.parse_duration(goal["within"]))
    in_window = [e for e in view.events if entered_at < e.timestamp <= end]
    condition: dict[str, Any] = {"event": goal["event"]}
    if goal.get("where"):
        condition["where"] = goal["where"]
    return rules.evaluate(rules.parse_rule(condition), replace(view, events=in_window, now=end))


def goal_reached_at(goal: dict[str, Any] | None, view: ContactView, entered_at: datetime) -> datetime | None:
    """When the run converted: the time of the first goal event in the window (None: not reached). The
    conversion is dated by the event, not by when it was processed (statistics filter on event time)."""
    if not goal:
        return None
    end = min(view.now, entered_at + durations.parse_duration(goal["within"]))
    condition: dict[str, Any] = {"event": goal["event"]}
    if goal.get("where"):
        condition["where"] = goal["where"]
    rule = rules.parse_rule(condition)
    for event in sorted(view.events, key=lambda e: e.timestamp):
        if not entered_at < event.timestamp <= end:
            continue
        if rules.evaluate(rule, replace(view, events=[event], now=end)):
            return event.timestamp
    return None


def exit_holds(exit_when: dict[str, Any] | None, view: ContactView) -> bool:
    return bool(exit_when) and rules.evaluate(rules.parse_rule(exit_when), view)


def goal_window(goal: dict[str, Any] | None) -> Any:
    return durations.parse_duration(goal["within"]) if goal else None
