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


def exit_holds(exit_when: dict[str, Any] | None, view: ContactView) -> bool:
    return bool(exit_when) and rules.evaluate(rules.parse_rule(exit_when), view)


def goal_window(goal: dict[str, Any] | None) -> Any:
    return durations.parse_duration(goal["within"]) if goal else None
