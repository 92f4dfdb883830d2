"""Frequency caps: each contact's counted sends per channel, in rolling windows, without races.

One item per contact and channel in the contacts table (``sk = "cap#<channel>"``) maps the ids of the
messages counted against the caps to the instant each was counted, pruned to the last 8 days (the
7-day window and a margin). A send reads the item (:meth:`CapLedger.read`), lets the gate decide on
the exact rolling 24-hour and 7-day counts, then reserves its place with ONE conditional write on the
item's version (:meth:`CapLedger.reserve`): two sends racing for the last place cannot both win — the
loser re-reads and is held. A reservation is idempotent per message id, and released if the provider
refused or throttled the message (:meth:`CapLedger.release`).

The contacts stream ignores these items (the reactor's filter passes profiles only); erasing a
contact deletes them with everything else under its ``cid``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from cairn.adapters.aws import client
from cairn.adapters.tables import ContactItem

RETENTION = timedelta(days=8)


def _table() -> str:
    # Read at call time: tests and local mode point the models at their own tables.
    return str(ContactItem.Meta.table_name)


def key(cid: str, channel: str) -> dict[str, Any]:
    return {"cid": {"S": cid}, "sk": {"S": f"cap#{channel}"}}


@dataclass(frozen=True)
class CapState:
    """The counted sends of one contact on one channel, as read; `version` 0 means no item yet."""

    sends: dict[str, datetime] = field(default_factory=dict)
    version: int = 0

    def times(self, excluding: str | None = None) -> list[datetime]:
        return [at for mid, at in self.sends.items() if mid != excluding]


class CapLedger:
    def read(self, cid: str, channel: str) -> CapState:
        item = client("dynamodb").get_item(TableName=_table(), Key=key(cid, channel), ConsistentRead=True)
        data = item.get("Item")
        if not data:
            return CapState()
        sends = {
            mid: datetime.fromtimestamp(int(value["N"]), UTC)
            for mid, value in data.get("sends", {}).get("M", {}).items()
        }
        return CapState(sends=sends, version=int(data.get("ver", {}).get("N", "0")))

    def reserve(self, cid: str, channel: str, message_id: str, at: datetime, state: CapState) -> bool:
        """Count `message_id` at `at` if the item is still as `state` read it; False if another send
        changed it meanwhile (read again and decide again)."""
        if message_id in state.sends:
            return True  # a retry of a counted message: counted once
        kept = {mid: when for mid, when in state.sends.items() if when > at - RETENTION}
        kept[message_id] = at
        values: dict[str, Any] = {
            ":sends": {"M": {mid: {"N": str(int(when.timestamp()))} for mid, when in kept.items()}},
            ":next": {"N": str(state.version + 1)},
        }
        if state.version == 0:
            condition = "attribute_not_exists(sk)"
        else:
            condition = "ver = :ver"
            values[":ver"] = {"N": str(state.version)}
        try:
            client("dynamodb").update_item(
                TableName=_table(),
                Key=key(cid, channel),
                UpdateExpression="SET sends = :sends, ver = :next",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def release(self, cid: str, channel: str, message_id: str) -> None:
        """Uncount a message the provider did not take (idempotent)."""
        try:
            client("dynamodb").update_item(
                TableName=_table(),
                Key=key(cid, channel),
                UpdateExpression="REMOVE sends.#m SET ver = ver + :one",
                ConditionExpression="attribute_exists(sends.#m)",
                ExpressionAttributeNames={"#m": message_id},
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
