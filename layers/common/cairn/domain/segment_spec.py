"""Segment's wire rules, pure: clock-skew correction, message ids, reserved event names, sizes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

# A timestamp more than this far ahead of receivedAt (after skew correction) is clamped to it: an event
# from "next year" would otherwise sit outside every `within` window and start nothing.
MAX_FUTURE_SKEW = timedelta(hours=1)
MAX_EVENT_BYTES = 32 * 1024  # one track or identify call, or one batch item (Segment's limit)
MAX_BATCH_BYTES = 4 * 1024 * 1024  # a whole batch (Segment's limit)
MAX_BATCH_ITEMS = 500
DEDUPE_WINDOW = timedelta(days=30)  # a repeated messageId within this window is a duplicate (at least)

# Events Cairn records itself (DESIGN.md section 2): a write key may not send them.
RESERVED_EVENTS = frozenset(
    {
        "email_sent",
        "email_delivered",
        "email_opened",
        "email_clicked",
        "email_bounced",
        "email_complained",
        "unsubscribed",
        "sms_sent",
        "sms_delivered",
        "sms_failed",
        "segment_entered",
        "segment_exited",
        "workflow_entered",
        "workflow_converted",
        "workflow_exited",
    }
)


def aware(value: datetime, default_tz: datetime) -> datetime:
    """A naive time is taken as UTC (what Segment's libraries send is always UTC)."""
    return value.replace(tzinfo=default_tz.tzinfo or UTC) if value.tzinfo is None else value


def corrected_timestamp(
    timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Segment's clock-skew correction.

    - no `timestamp`: the event happened when it was received;
    - `timestamp` and `sentAt` (both from the device's clock): the device's skew is
      `sentAt - receivedAt`, so the event happened at `timestamp + (receivedAt - sentAt)`;
    - `timestamp` alone: taken as is (a server's clock is trusted).
    A result more than MAX_FUTURE_SKEW ahead of receivedAt is clamped to receivedAt + MAX_FUTURE_SKEW.
    """
    if timestamp is None:
        return received_at.astimezone(UTC)
    stamp = aware(timestamp, received_at)
    if sent_at is not None:
        stamp = stamp + (received_at - aware(sent_at, received_at))
    return min(stamp, received_at + MAX_FUTURE_SKEW).astimezone(UTC)


def new_message_id() -> str:
    return str(uuid.uuid4())


def is_reserved(event: str) -> bool:
    return event in RESERVED_EVENTS
