"""Decoding DynamoDB stream records into the reactor's inputs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
)

from cairn.services.erase import Eraser
from cairn.services.identity import Identities
from cairn.services.react import IncomingEvent, Reactor


def _table(record: DynamoDBRecord) -> str:
    arn = record.event_source_arn or ""
    return arn.split(":table/", 1)[-1].split("/", 1)[0]


def route_record(reactor: Reactor, record: DynamoDBRecord) -> None:
    """One stream record: a new event, or a change to a contact's profile. Anything else is ignored
    (the reactor's own writes to enrollments and messages must never re-trigger it)."""
    data = record.dynamodb
    if data is None:
        return
    table = _table(record)
    config = reactor.rt.config
    if table == config.events_table and record.event_name == DynamoDBRecordEventName.INSERT:
        image: dict[str, Any] = data.new_image
        eraser = Eraser(reactor.rt)
        if eraser.drop_if_erased(image):
            return  # its contact was erased: the event goes and nothing reacts (cairn.services.erase)
        if image.get("source") == "merge":
            # Moved from an anonymous contact by an identify: it reacted there already; only the segments
            # of the contact it now belongs to follow its history.
            reactor.rt.segments.on_moved_event(str(image["cid"]), str(image["name"]))
            return
        if Identities(reactor.rt).forward_if_merged(image):
            return  # an anonymous contact's event after its merge: re-homed, it reacts as a new event there
        stamp = str(image["ts"]).split("#", 1)[0].replace("Z", "+00:00")
        reactor.on_event(
            IncomingEvent(
                cid=str(image["cid"]),
                message_id=str(image["mid"]),
                name=str(image["name"]),
                timestamp=datetime.fromisoformat(stamp),
                properties=_plain(image.get("properties") or {}),
                user_id=image.get("userId"),
            )
        )
        eraser.sweep_if_erased(image)  # erased while it reacted: what the reaction wrote goes too
    elif (
        table == config.contacts_table
        and data.keys
        and data.keys.get("sk") == "profile"
        and record.event_name in (DynamoDBRecordEventName.INSERT, DynamoDBRecordEventName.MODIFY)
    ):
        reactor.on_profile_change(str(data.keys["cid"]), old=data.old_image, new=data.new_image)


def _plain(value: Any) -> Any:
    """Stream images carry Decimals; the rule language wants ints and floats."""
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [_plain(v) for v in value]
    return value


class HaltedAfterFailure(Exception):
    """A record after a failed one in the same batch: reported failed unprocessed, so that Lambda retries
    the batch from the first failure with every later record still in order."""


class InOrder:
    """A record handler for one batch that stops at the first failure (Powertools would go on)."""

    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor
        self.failed = False

    def __call__(self, record: DynamoDBRecord) -> None:
        if self.failed:
            raise HaltedAfterFailure("an earlier record of this batch failed")
        try:
            route_record(self.reactor, record)
        except Exception:
            self.failed = True
            raise
