"""The events table: intake's single conditional write, and reading a contact's history."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pynamodb.exceptions import PutError
from pynamodb.expressions.condition import Condition

from cairn.adapters.tables import ByTimeIndex, EventItem

if TYPE_CHECKING:
    from cairn.domain.rules import EventRecord


@dataclass(frozen=True)
class NewEvent:
    cid: str
    message_id: str
    name: str
    timestamp: datetime
    received_at: datetime
    properties: Mapping[str, Any]
    user_id: str | None = None
    anonymous_id: str | None = None
    source: str = "api"


def ts_key(timestamp: datetime, message_id: str) -> str:
    return f"{timestamp.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{message_id}"


def _conditional_failed(exc: PutError) -> bool:
    cause = exc.cause_response_code if hasattr(exc, "cause_response_code") else None
    return cause == "ConditionalCheckFailedException"


class EventStore:
    def __init__(self, ttl: timedelta) -> None:
        self.ttl = ttl

    def put_once(self, event: NewEvent) -> bool:
        """Store the event unless its messageId is already stored for this contact: ONE write.

        Returns False for a duplicate (nothing written)."""
        item = EventItem(
            event.cid,
            event.message_id,
            ts=ts_key(event.timestamp, event.message_id),
            name=event.name,
            properties=dict(event.properties),
            user_id=event.user_id,
            anonymous_id=event.anonymous_id,
            received_at=event.received_at,
            source=event.source,
            expires_at=int((event.timestamp + self.ttl).timestamp()),
        )
        try:
            item.save(condition=EventItem.mid.does_not_exist())
        except PutError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def history(self, cid: str, since: datetime | None, limit: int = 2000) -> list[EventRecord]:
        """The contact's events newest first, back to `since` (or all), as rule-language records."""
        from cairn.domain.rules import EventRecord

        condition: Condition | None = None
        if since is not None:
            condition = ByTimeIndex.ts >= ts_key(since, "")
        out: list[EventRecord] = []
        for item in EventItem.by_time.query(cid, condition, scan_index_forward=False, limit=limit):
            stamp = datetime.fromisoformat(item.ts.split("#", 1)[0].replace("Z", "+00:00"))
            out.append(EventRecord(name=item.name, timestamp=stamp, properties=dict(item.properties or {})))
        return out
