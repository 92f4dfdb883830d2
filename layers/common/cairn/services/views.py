"""Building the rule language's view of a contact from its stored state."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cairn.adapters.contacts import Profile
from cairn.adapters.events import EventStore
from cairn.domain import rules
from cairn.domain.rules import ContactView, EventRecord


def attributes_of(profile: Profile) -> dict[str, Any]:
    attrs = dict(profile.attributes)
    for name in ("email", "phone", "timezone"):
        value = getattr(profile, name)
        if value is not None:
            attrs[name] = value
    if profile.user_id is not None:
        attrs.setdefault("userId", profile.user_id)
    return attrs


def consent_of(profile: Profile, defaults: dict[str, str]) -> dict[str, str]:
    out = dict(defaults)
    for channel, entry in profile.consent.items():
        if isinstance(entry, dict) and entry.get("status"):
            out[channel] = str(entry["status"])
    return out


def needs_events(*parsed: rules.Rule | None) -> bool:
    return any(r is not None and rules.dependencies(r).events for r in parsed)


def contact_view(
    profile: Profile,
    *,
    now: datetime,
    consent_defaults: dict[str, str],
    events: EventStore | None = None,
    window: timedelta | None = None,
    extra_events: list[EventRecord] | None = None,
) -> ContactView:
    """A view for evaluating rules; events are read only when a rule needs them, back to `window`."""
    history: list[EventRecord] = []
    if events is not None:
        history = events.history(profile.cid, since=(now - window) if window is not None else None)
    if extra_events:
        history = [*extra_events, *history]
    return ContactView(
        attributes=attributes_of(profile),
        tags=profile.tags,
        consent=consent_of(profile, consent_defaults),
        events=history,
        now=now,
    )
