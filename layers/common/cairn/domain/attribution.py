"""Cross-channel attribution: which messages earned a workflow's conversions.

For each conversion, its touches are the messages the contact received in the goal's window before it
(`converted_at - window <= sent_at < converted_at`), from any workflow and channel. Each conversion is then
credited to channels, workflows and templates by three models: first touch (all credit to the earliest
touch), last touch (all to the latest) and linear (equal shares). A conversion without touches is counted
as unattributed. Pure: plain records in, plain data out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

MODELS = ("firstTouch", "lastTouch", "linear")
DIMENSIONS = ("channel", "workflow", "template")
# A message counts as received unless the provider refused it or never got it.
NOT_RECEIVED = frozenset({"bounced", "failed", "skipped", "held", "claimed", "throttled", "unknown"})


@dataclass(frozen=True)
class Touch:
    """A message a contact received."""

    message_id: str
    channel: str
    workflow_id: str
    template: str
    sent_at: datetime
    status: str = "sent"

    def key(self, dimension: str) -> str:
        if dimension == "channel":
            return self.channel
        if dimension == "workflow":
            return self.workflow_id
        return f"{self.channel}:{self.template}"  # template names are unique per channel only


@dataclass(frozen=True)
class Conversion:
    """One conversion of a workflow's goal, by an opaque contact id."""

    cid: str
    workflow_id: str
    converted_at: datetime
    window: timedelta


def touches_before(conversion: Conversion, messages: Iterable[Touch]) -> list[Touch]:
    """The messages received within the window before the conversion, oldest first (ties by message id, so
    the order never depends on storage). A message sent at the very instant of the conversion is not before
    it: that is a message the converting event itself triggered (an order's thank-you, in local mode's
    virtual time, where both happen at once)."""
    start = conversion.converted_at - conversion.window
    found = [
        m for m in messages if m.status not in NOT_RECEIVED and start <= m.sent_at < conversion.converted_at
    ]
    return sorted(found, key=lambda m: (m.sent_at, m.message_id))


def credit(touches: Sequence[Touch], model: str) -> list[tuple[Touch, Fraction]]:
    """How one conversion's single unit of credit is shared among its touches under a model."""
    if not touches:
        return []
    if model == "firstTouch":
        return [(touches[0], Fraction(1))]
    if model == "lastTouch":
        return [(touches[-1], Fraction(1))]
    if model == "linear":
        share = Fraction(1, len(touches))
        return [(t, share) for t in touches]
    raise ValueError(f"unknown attribution model {model!r}")


@dataclass(frozen=True)
class Attributed:
    conversion: Conversion
    touches: tuple[Touch, ...]


def attribute(items: Iterable[Attributed]) -> dict[str, Any]:
    """Credits per model and dimension, summed over conversions (exact fractions, rounded at the end);
    the credits of every model and dimension add up to the number of attributed conversions."""
    totals: dict[str, dict[str, dict[str, Fraction]]] = {
        model: {dim: defaultdict(Fraction) for dim in DIMENSIONS} for model in MODELS
    }
    touches_per: dict[str, dict[str, int]] = {dim: defaultdict(int) for dim in DIMENSIONS}
    conversions = 0
    unattributed = 0
    touch_count = 0
    for item in items:
        conversions += 1
        if not item.touches:
            unattributed += 1
            continue
        touch_count += len(item.touches)
        for touch in item.touches:
            for dim in DIMENSIONS:
                touches_per[dim][touch.key(dim)] += 1
        for model in MODELS:
            for touch, share in credit(item.touches, model):
                for dim in DIMENSIONS:
                    totals[model][dim][touch.key(dim)] += share
    return {
        "conversions": conversions,
        "attributed": conversions - unattributed,
        "unattributed": unattributed,
        "touches": touch_count,
        "touchesPerConversion": round(touch_count / (conversions - unattributed), 6)
        if conversions > unattributed
        else None,
        "models": {
            model: {
                dim: {key: round(float(value), 6) for key, value in sorted(by_key.items())}
                for dim, by_key in by_dim.items()
            }
            for model, by_dim in totals.items()
        },
        "touchCounts": {dim: dict(sorted(by_key.items())) for dim, by_key in touches_per.items()},
    }
