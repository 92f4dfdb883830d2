"""Building the rule language's view of a contact from its stored state."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cairn.adapters.contacts import Profile
from cairn.adapters.events import EventStore
from cairn.domain import rules
from cairn.domain.rules import ContactView, EventRecord

if TYPE_CHECKING:
    from cairn.services.segments import Segments


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
    segments: Segments | None = None,
) -> ContactView:
    """A view for evaluating rules; events are read only when a rule needs them, back to `window`.

    With `segments`, `{segment: id}` evaluates live (DESIGN.md section 4): a dynamic segment's rule on
    this contact now (reading the history it needs if this view holds less), a static list's
    membership. Without, a segment reference raises `SegmentUnavailable`."""
    history: list[EventRecord] = []
    since = (now - window) if window is not None else None
    if events is not None:
        history = events.history(profile.cid, since=since)
    if extra_events:
        history = [*extra_events, *history]
    view = ContactView(
        attributes=attributes_of(profile),
        tags=profile.tags,
        consent=consent_of(profile, consent_defaults),
        events=history,
        now=now,
    )
    if segments is not None:
        view.segment = segments.resolver(profile, view, loaded=events is not None, since=since)
    return view
