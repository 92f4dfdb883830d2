"""The events table: intake's single conditional write, and reading a contact's history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import MapAttribute
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
    context: Mapping[str, Any] | None = None
    sent_at: datetime | None = None


CAIRN = "cairn"  # the source of the events Cairn records itself (reserved events)


def ts_key(timestamp: datetime, message_id: str) -> str:
    return f"{timestamp.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{message_id}"


def _conditional_failed(exc: PutError) -> bool:
    cause = exc.cause_response_code if hasattr(exc, "cause_response_code") else None
    return cause == "ConditionalCheckFailedException"


def event_item(event: NewEvent, ttl: timedelta) -> EventItem:
    """The event's item, kept for `ttl` after the event's own time."""
    return EventItem(
        event.cid,
        event.message_id,
        ts=ts_key(event.timestamp, event.message_id),
        name=event.name,
        properties=dict(event.properties),
        user_id=event.user_id,
        anonymous_id=event.anonymous_id,
        received_at=event.received_at,
        source=event.source,
        context=dict(event.context) if event.context else None,
        sent_at=event.sent_at,
        expires_at=int((event.timestamp + ttl).timestamp()),
    )


class EventStore:
    def __init__(self, ttl: timedelta) -> None:
        self.ttl = ttl

    def put_once(self, event: NewEvent) -> bool:
        """Store the event unless its messageId is already stored for this contact: ONE write.

        Returns False for a duplicate (nothing written)."""
        return self.put_item_once(event_item(event, self.ttl))

    @staticmethod
    def put_item_once(item: EventItem) -> bool:
        try:
            item.save(condition=EventItem.mid.does_not_exist())
        except PutError as exc:
            if _conditional_failed(exc):
                return False
            raise
        return True

    def put_many(self, events: Sequence[NewEvent], workers: int = 8) -> list[bool | Exception]:
        """`put_once` for each event (one conditional PutItem each: a batch keeps intake's dedupe), a few
        at a time. Per event: True stored, False a duplicate, or the exception that write raised."""

        def one(event: NewEvent) -> bool | Exception:
            try:
                return self.put_once(event)
            except Exception as exc:  # reported per item: one failed write fails only its item
                return exc

        if len(events) <= 1 or workers <= 1:
            return [one(e) for e in events]
        with ThreadPoolExecutor(max_workers=min(workers, len(events))) as pool:
            return list(pool.map(one, events))

    def move(self, cid: str, to_cid: str, *, source: str | None = None) -> int:
        """Move the events the site sent for `cid` to `to_cid` (same messageIds, so a retry or a race stores
        each once), then delete the originals. `source` marks the moved copies. Returns how many moved.

        Cairn's own records about `cid` (source "cairn": segment entries and exits, runs, sends) are deleted,
        not moved: they describe memberships and runs that end with that contact, and their deterministic
        ids (`sg:<segment>:000001:in`) would collide with the same records of `to_cid`."""
        moved = 0
        for item in EventItem.query(cid, consistent_read=True):
            if item.source != CAIRN:
                copy = EventItem(to_cid, item.mid, **_fields(item))
                if source is not None:
                    copy.source = source
                if self.put_item_once(copy):
                    moved += 1
            item.delete()
        return moved

    def move_one(self, cid: str, message_id: str, to_cid: str) -> bool:
        """Re-home one event to `to_cid` as a new event there (it reacts as any new event), and delete the
        original. False if it is gone already or `to_cid` already had it."""
        from pynamodb.exceptions import DoesNotExist

        try:
            item = EventItem.get(cid, message_id, consistent_read=True)
        except DoesNotExist:
            return False
        stored = self.put_item_once(EventItem(to_cid, item.mid, **_fields(item)))
        item.delete()
        return stored

    @staticmethod
    def delete(cid: str, message_id: str) -> None:
        """Delete one event (idempotent: nothing happens if it is gone)."""
        EventItem(cid, message_id).delete()

    @staticmethod
    def delete_all(cid: str) -> int:
        items = list(EventItem.query(cid, attributes_to_get=["cid", "mid"], consistent_read=True))
        with EventItem.batch_write() as batch:
            for item in items:
                batch.delete(item)
        return len(items)

    def get(self, cid: str, message_id: str) -> NewEvent | None:
        """One stored event by its messageId (a run's trigger, for message templates)."""
        from pynamodb.exceptions import DoesNotExist

        try:
            item = EventItem.get(cid, message_id)
        except DoesNotExist:
            return None
        stamp = datetime.fromisoformat(item.ts.split("#", 1)[0].replace("Z", "+00:00"))
        return NewEvent(
            cid=item.cid,
            message_id=item.mid,
            name=item.name,
            timestamp=stamp,
            received_at=item.received_at,
            properties=_properties(item),
            user_id=item.user_id,
            anonymous_id=item.anonymous_id,
            source=item.source,
        )

    def history(self, cid: str, since: datetime | None, limit: int = 2000) -> list[EventRecord]:
        """The contact's events newest first, back to `since` (or all), as rule-language records."""
        from cairn.domain.rules import EventRecord

        condition: Condition | None = None
        if since is not None:
            condition = ByTimeIndex.ts >= ts_key(since, "")
        out: list[EventRecord] = []
        for item in EventItem.by_time.query(cid, condition, scan_index_forward=False, limit=limit):
            stamp = datetime.fromisoformat(item.ts.split("#", 1)[0].replace("Z", "+00:00"))
            out.append(EventRecord(name=item.name, timestamp=stamp, properties=_properties(item)))
        return out


def _fields(item: EventItem) -> dict[str, Any]:
    """An event item's attributes other than its key, to copy it to another contact."""
    return {
        name: getattr(item, name)
        for name in EventItem.get_attributes()
        if name not in ("cid", "mid") and getattr(item, name) is not None
    }


def _properties(item: EventItem) -> dict[str, Any]:
    """An event's properties as a plain dict (a raw MapAttribute iterates over its keys)."""
    props = item.properties
    if props is None:
        return {}
    return props.as_dict() if isinstance(props, MapAttribute) else dict(props)
