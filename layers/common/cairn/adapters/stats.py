"""The stats table: atomic, sharded daily counters; unique-per-contact markers; the conversion log.

Layout (table STATS_TABLE, pk/sk strings, on demand):

- counters: pk ``c#<workflowId>#<shard>``, sk ``<day>#<version>#<r|s>#<stepId>#<variant>`` (each part
  percent-encoded, empty for None). One item per workflow, shard, UTC day, version, step (``r``: the run as a
  whole) and variant; its counters are top-level Number attributes named by what they count (``entered``,
  ``sent``, ``skipped:<reason>``, ``ttc:<bucket>``, ...). Every recorded fact is ONE UpdateItem ``ADD`` on
  one item of a shard picked at random, so a popular workflow spreads its writes over `SHARDS` partition
  keys; a read sums the shards (one Query each).
- markers: pk ``m#<sha256>``, sk ``m``: a conditional put makes an open or click count once per contact.
- conversion log: pk ``v#<workflowId>#<shard of the contact>``, sk ``<cid>#<enteredAt>``: one item per
  converted run (idempotent by its key), read by attribution.

No personal data: contacts appear only by their opaque ``cid``.
"""

from __future__ import annotations

import hashlib
import random
import threading
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from botocore.exceptions import ClientError

from cairn.adapters.aws import client
from cairn.adapters.tables import MessageItem, StatsItem
from cairn.domain.attribution import Touch
from cairn.domain.statistics import Bucket

SHARDS = 8  # fixed: readers sum exactly these shards (raise it only together with a migration)
MARKER_TTL = timedelta(days=400)
CONVERSION_LOG_TTL = timedelta(days=400)
_SAFE = "-_.~:"
_CLIENT_LOCK = threading.Lock()


def _dynamodb() -> Any:
    """The shared DynamoDB client. boto3 creates clients unsafely across threads (local mode runs handlers
    in several at once), so the first creation happens under a lock; later calls return the cached one."""
    with _CLIENT_LOCK:
        return client("dynamodb")


def _enc(value: str | None) -> str:
    return "" if value is None else quote(value, safe=_SAFE)


def _dec(value: str) -> str | None:
    return None if value == "" else unquote(value)


def counter_sk(day: date, version: str | None, step_id: str | None, variant: str | None) -> str:
    kind = "r" if step_id is None else "s"
    return "#".join((day.isoformat(), _enc(version), kind, _enc(step_id), _enc(variant)))


def parse_counter_sk(sk: str) -> tuple[date, str | None, str | None, str | None]:
    day, version, kind, step, variant = sk.split("#")
    return date.fromisoformat(day), _dec(version), (None if kind == "r" else _dec(step)), _dec(variant)


def _day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _conditional_failed(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


@dataclass(frozen=True)
class LoggedConversion:
    cid: str
    workflow_id: str
    version: str | None
    variant: str | None
    entered_at: datetime
    converted_at: datetime


class StatsStore:
    def __init__(self, shards: int = SHARDS, rng: random.Random | None = None) -> None:
        self.shards = shards
        self._rng = rng or random.Random()
        self._lock = threading.Lock()

    @property
    def table(self) -> str:
        return str(StatsItem.Meta.table_name)

    def _shard(self) -> int:
        with self._lock:  # random.Random is not safe to share between threads without it
            return self._rng.randrange(self.shards)

    def _stable_shard(self, key: str) -> int:
        return zlib.crc32(key.encode()) % self.shards

    # -- writes --------------------------------------------------------------------------------
    def add(
        self,
        workflow_id: str,
        version: str | None,
        at: datetime,
        *,
        step_id: str | None,
        variant: str | None,
        counts: Mapping[str, int],
    ) -> None:
        """Add `counts` to one counter item: ONE UpdateItem (ADD), on a shard picked at random."""
        if not counts:
            return
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        parts: list[str] = []
        for index, (name, value) in enumerate(sorted(counts.items())):
            names[f"#c{index}"] = name
            values[f":v{index}"] = {"N": str(int(value))}
            parts.append(f"#c{index} :v{index}")
        _dynamodb().update_item(
            TableName=self.table,
            Key={
                "pk": {"S": f"c#{workflow_id}#{self._shard():02d}"},
                "sk": {"S": counter_sk(_day(at), version, step_id, variant)},
            },
            UpdateExpression="ADD " + ", ".join(parts),
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def once(self, *parts: str, now: datetime) -> bool:
        """True the first time these parts are seen (a conditional put of a marker), False after."""
        digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
        try:
            _dynamodb().put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": f"m#{digest}"},
                    "sk": {"S": "m"},
                    "expiresAt": {"N": str(int((now + MARKER_TTL).timestamp()))},
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
            return True
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise

    def log_conversion(self, conversion: LoggedConversion) -> bool:
        """Log a converted run once (a conditional put keyed by contact and entry); False if logged before."""
        item: dict[str, Any] = {
            "pk": {"S": f"v#{conversion.workflow_id}#{self._stable_shard(conversion.cid):02d}"},
            "sk": {"S": f"{conversion.cid}#{_iso(conversion.entered_at)}"},
            "cid": {"S": conversion.cid},
            "enteredAt": {"S": _iso(conversion.entered_at)},
            "convertedAt": {"S": _iso(conversion.converted_at)},
            "expiresAt": {"N": str(int((conversion.converted_at + CONVERSION_LOG_TTL).timestamp()))},
        }
        if conversion.version is not None:
            item["version"] = {"S": conversion.version}
        if conversion.variant is not None:
            item["variant"] = {"S": conversion.variant}
        try:
            _dynamodb().put_item(
                TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)"
            )
            return True
        except ClientError as exc:
            if _conditional_failed(exc):
                return False
            raise

    # -- reads ---------------------------------------------------------------------------------
    def _query(self, pk: str, sk_below: str | None = None) -> Iterator[dict[str, Any]]:
        args: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
        }
        if sk_below is not None:
            args["KeyConditionExpression"] += " AND sk < :below"
            args["ExpressionAttributeValues"][":below"] = {"S": sk_below}
        paginator = _dynamodb().get_paginator("query")
        for page in paginator.paginate(**args):
            yield from page["Items"]

    def buckets(self, workflow_id: str, *, until: date | None = None) -> list[Bucket]:
        """Every counter item of the workflow on days up to `until` (all shards; the caller sums)."""
        below = (until + timedelta(days=1)).isoformat() if until is not None else None
        out: list[Bucket] = []
        for shard in range(self.shards):
            for item in self._query(f"c#{workflow_id}#{shard:02d}", below):
                day, version, step_id, variant = parse_counter_sk(item["sk"]["S"])
                counts = {k: int(v["N"]) for k, v in item.items() if k not in ("pk", "sk") and "N" in v}
                out.append(Bucket(day, version, step_id, variant, counts))
        return out

    def conversions(self, workflow_id: str) -> list[LoggedConversion]:
        out: list[LoggedConversion] = []
        for shard in range(self.shards):
            for item in self._query(f"v#{workflow_id}#{shard:02d}"):
                out.append(
                    LoggedConversion(
                        cid=item["cid"]["S"],
                        workflow_id=workflow_id,
                        version=item.get("version", {}).get("S"),
                        variant=item.get("variant", {}).get("S"),
                        entered_at=_parse(item["enteredAt"]["S"]),
                        converted_at=_parse(item["convertedAt"]["S"]),
                    )
                )
        return out

    @staticmethod
    def received(cid: str) -> list[Touch]:
        """The messages stored for a contact (any workflow, any channel), as attribution touches."""
        touches: list[Touch] = []
        for item in MessageItem.query(cid, MessageItem.sk.startswith("msg#")):
            if item.sent_at is None:
                continue
            touches.append(
                Touch(
                    message_id=item.message_id,
                    channel=item.channel,
                    workflow_id=item.workflow_id,
                    template=item.template,
                    sent_at=item.sent_at,
                    status=item.status,
                )
            )
        return touches


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
