"""The segments table: memberships, member counts, each contact's time-driven changes, the hourly
time-due index, builds and the tick's cursor (docs/internals.md).

Item types (pk / sk):

- ``m#<segment>#<shard>`` / cid: a contact's membership. ``in`` (the time it entered) exists only while
  it is a member; ``n`` counts its entries, so the n-th entry and exit have deterministic event ids.
  A membership left stays (with a TTL) to keep ``n``. Sharded by the cid so a segment of millions is
  listed and written across many partitions.
- ``n#<segment>#<shard>`` / ``count``: member counts, one per shard, changed in the same transaction as
  the membership they count.
- ``c#<cid>`` / ``due``: when each time-driven segment may next change for the contact, the hour it is
  indexed under (``bucket``) and a version for optimistic writes.
- ``d#<day>`` / ``<hour>#<cid>``: the sparse time-due index, by hour. The hourly tick reads the hours of
  its day up to its own (entries leave the index when processed, so that is only what fell due and
  was not done yet) and yesterday's leftovers: two queries, however many contacts there are.
- ``b#<segment>`` / ``build``: the state of a segment's last build.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from pynamodb.attributes import MapAttribute, NumberAttribute, UnicodeAttribute, UTCDateTimeAttribute
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from cairn.adapters.contacts import Profile, _profile
from cairn.adapters.events import NewEvent, event_item, ts_key
from cairn.adapters.tables import PROFILE, ByTimeIndex, ContactItem, EventItem, SegmentItem
from cairn.domain.rules import EventRecord

SHARDS: Final = 16  # memberships and counts of one segment
MAX_TRANSACTION: Final = 25  # items per TransactWriteItems call
LEFT_TTL: Final = timedelta(days=430)  # a left membership outlives the events that named its entries


def shard(cid: str, shards: int = SHARDS) -> int:
    return int(hashlib.sha256(cid.encode()).hexdigest()[:8], 16) % shards


class MembershipItem(SegmentItem):
    class Meta(SegmentItem.Meta):
        pass

    segment = UnicodeAttribute(attr_name="seg")
    cid = UnicodeAttribute()
    entered_at = UTCDateTimeAttribute(null=True, attr_name="in")
    entries = NumberAttribute(null=True, attr_name="n")
    exited_at = UTCDateTimeAttribute(null=True, attr_name="out")

    @staticmethod
    def partition(segment_id: str, cid: str) -> str:
        return f"m#{segment_id}#{shard(cid)}"


class CountItem(SegmentItem):
    class Meta(SegmentItem.Meta):
        pass

    total = NumberAttribute(default=0, attr_name="count")


class DueItem(SegmentItem):
    class Meta(SegmentItem.Meta):
        pass

    at = MapAttribute[str, object](default=dict)  # segment id -> ISO time of its next time-driven change
    bucket = UnicodeAttribute(null=True)  # the hour the contact is indexed under
    v = NumberAttribute(default=0)


class DueEntry(SegmentItem):
    class Meta(SegmentItem.Meta):
        pass


class BuildItem(SegmentItem):
    class Meta(SegmentItem.Meta):
        pass

    version = UnicodeAttribute()
    status = UnicodeAttribute()  # requested | building | ready | failed
    execution = UnicodeAttribute(null=True)
    requested_at = UTCDateTimeAttribute(null=True, attr_name="requestedAt")
    started_at = UTCDateTimeAttribute(null=True, attr_name="startedAt")
    finished_at = UTCDateTimeAttribute(null=True, attr_name="finishedAt")
    scanned = NumberAttribute(default=0)
    attempts = NumberAttribute(default=0)


def _due_key(cid: str) -> tuple[str, str]:
    return f"c#{cid}", "due"


def _entry_key(bucket: str, cid: str) -> tuple[str, str]:
    """The index entry of a contact under an hour: the day's partition, sorted by hour then cid."""
    day, hour = bucket.split("T", 1)
    return f"d#{day}", f"{hour}#{cid}"


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Membership:
    segment: str
    entered_at: datetime | None = None  # None: not a member
    entries: int = 0
    exited_at: datetime | None = None

    @property
    def member(self) -> bool:
        return self.entered_at is not None


@dataclass(frozen=True)
class Due:
    at: dict[str, datetime] = field(default_factory=dict)
    bucket: str | None = None
    version: int = 0


@dataclass(frozen=True)
class Transition:
    """A contact entering (``enter``) or leaving a segment, from the membership as it was read."""

    segment: str
    enter: bool
    before: Membership

    @property
    def event_name(self) -> str:
        return "segment_entered" if self.enter else "segment_exited"

    @property
    def number(self) -> int:
        """Which entry this is (or whose exit): 1 for the first."""
        return self.before.entries + 1 if self.enter else self.before.entries


def event_id(segment_id: str, transition: Transition) -> str:
    """The event's messageId: the n-th entry or exit of a contact and segment, the same on every retry
    (``sg:<segment>:000002:in``; the events of one instant sort in the order they happened)."""
    return f"sg:{segment_id}:{transition.number:06d}:{'in' if transition.enter else 'out'}"


@dataclass(frozen=True)
class DueWrite:
    """The contact's new time-driven changes (``at``, empty: none) and the hour they index under."""

    at: dict[str, datetime]
    bucket: str | None
    before: Due


@dataclass
class Plan:
    """Everything one evaluation of one contact writes, committed together."""

    cid: str
    now: datetime
    transitions: list[Transition] = field(default_factory=list)
    due: DueWrite | None = None
    emit: bool = True  # record segment_entered / segment_exited (a build sets membership quietly)

    @property
    def empty(self) -> bool:
        return not self.transitions and self.due is None


class Conflict(Exception):
    """What was read changed before the write (another evaluation of the same contact won the race)."""

    def __init__(self, cids: Iterable[str]) -> None:
        self.cids = sorted(set(cids))
        super().__init__(f"{len(self.cids)} contact(s) changed while being evaluated")


SENT_ORDER: Final = {"delete": 0, "save": 1, "update": 2}  # pynamodb's TransactWrite sends them so


@dataclass
class _Op:
    kind: str  # update | save | delete
    model: Model
    actions: list[Action] = field(default_factory=list)
    condition: Condition | None = None
    plan: int = -1  # index of the plan it belongs to; -1 for a shared counter
    event: bool = False  # a segment_entered / segment_exited event (its id: the n-th entry or exit)


# --------------------------------------------------------------------------- the store


class SegmentStore:
    def __init__(self, event_ttl: timedelta = timedelta(days=400)) -> None:
        self.event_ttl = event_ttl

    # -- reading a contact ----------------------------------------------------------------------
    def memberships(self, cid: str, segment_ids: Iterable[str]) -> dict[str, Membership]:
        """The contact's membership of each segment (consistent reads: a retry sees its own writes)."""
        ids = sorted(set(segment_ids))
        out = {sid: Membership(sid) for sid in ids}
        if not ids:
            return out
        keys = [(MembershipItem.partition(sid, cid), cid) for sid in ids]
        for item in MembershipItem.batch_get(keys, consistent_read=True):
            out[item.segment] = _membership(item)
        return out

    def memberships_of_many(
        self, cids: Sequence[str], segment_ids: Iterable[str]
    ) -> dict[str, dict[str, Membership]]:
        ids = sorted(set(segment_ids))
        out = {cid: {sid: Membership(sid) for sid in ids} for cid in cids}
        keys = [(MembershipItem.partition(sid, cid), cid) for cid in cids for sid in ids]
        if keys:
            for item in MembershipItem.batch_get(keys, consistent_read=True):
                out[item.cid][item.segment] = _membership(item)
        return out

    def due(self, cid: str) -> Due:
        try:
            return _due(DueItem.get(*_due_key(cid), consistent_read=True))
        except DoesNotExist:
            return Due()

    def due_of_many(self, cids: Sequence[str]) -> dict[str, Due]:
        out = {cid: Due() for cid in cids}
        if cids:
            for item in DueItem.batch_get([_due_key(cid) for cid in cids], consistent_read=True):
                out[item.pk.removeprefix("c#")] = _due(item)
        return out

    @staticmethod
    def history(cid: str, since: datetime | None, names: Iterable[str]) -> list[EventRecord]:
        """The contact's events called one of ``names`` at or after ``since`` (None: all kept)."""
        wanted = sorted(set(names))
        if not wanted:
            return []
        condition = None if since is None else ByTimeIndex.ts >= ts_key(since, "")
        out: list[EventRecord] = []
        for item in EventItem.by_time.query(
            cid,
            condition,
            filter_condition=EventItem.name.is_in(*wanted),
            scan_index_forward=False,
        ):
            stamp = datetime.fromisoformat(item.ts.split("#", 1)[0].replace("Z", "+00:00"))
            out.append(EventRecord(name=item.name, timestamp=stamp, properties=_properties(item)))
        return out

    # -- writing --------------------------------------------------------------------------------
    def commit(self, plan: Plan) -> None:
        """Write one contact's plan: each entry or exit atomically with its member count and event, in
        as few transactions as fit. ``Conflict`` if what the plan was computed from changed meanwhile."""
        if plan.empty:
            return
        units = [self._transition_ops(plan, t, 0, shard(plan.cid)) for t in plan.transitions]
        if plan.due is not None:
            units.append(_due_ops(plan.cid, plan.due, 0))
        chunk: list[_Op] = []
        for unit in units:
            if chunk and len(chunk) + len(unit) > MAX_TRANSACTION:
                if self._transact(chunk):
                    raise Conflict([plan.cid])
                chunk = []
            chunk.extend(unit)
        if chunk and self._transact(chunk):
            raise Conflict([plan.cid])

    def commit_many(self, plans: Sequence[Plan]) -> list[str]:
        """Write many contacts' plans (a build): whole plans packed into transactions, member counts
        added up per transaction. Returns the cids whose plan met a conflict and was not written
        (evaluate them again)."""
        conflicted: list[str] = []
        group: list[Plan] = []
        for plan in (p for p in plans if not p.empty):
            if group and len(self._group_ops([*group, plan])) > MAX_TRANSACTION:
                conflicted += self._commit_group(group)
                group = []
            group.append(plan)
        if group:
            conflicted += self._commit_group(group)
        return conflicted

    def _commit_group(self, group: list[Plan]) -> list[str]:
        conflicted: list[str] = []
        while group:
            ops = self._group_ops(group)
            if len(ops) > MAX_TRANSACTION:  # a single plan too big for one transaction
                for plan in group:
                    try:
                        self.commit(plan)
                    except Conflict:
                        conflicted.append(plan.cid)
                return conflicted
            failed = self._transact(ops)
            if not failed:
                return conflicted
            conflicted += [group[i].cid for i in sorted(failed)]
            group = [p for i, p in enumerate(group) if i not in failed]
        return conflicted

    def _group_ops(self, group: Sequence[Plan]) -> list[_Op]:
        ops: list[_Op] = []
        counts: dict[str, int] = {}
        for index, plan in enumerate(group):
            for transition in plan.transitions:
                ops.extend(self._transition_ops(plan, transition, index, None))
                counts[transition.segment] = counts.get(transition.segment, 0) + (
                    1 if transition.enter else -1
                )
            if plan.due is not None:
                ops.extend(_due_ops(plan.cid, plan.due, index))
        number = shard(group[0].cid)
        ops.extend(_count_op(sid, number, delta) for sid, delta in sorted(counts.items()) if delta)
        return ops

    def _transition_ops(
        self, plan: Plan, transition: Transition, index: int, number: int | None
    ) -> list[_Op]:
        """The membership update, its event (if the plan emits) and, with a shard ``number``, its count."""
        ops = [_membership_op(plan, transition, index)]
        if plan.emit:
            event = NewEvent(
                cid=plan.cid,
                message_id=event_id(transition.segment, transition),
                name=transition.event_name,
                timestamp=plan.now,
                received_at=plan.now,
                properties={"segment": transition.segment},
                source="cairn",
            )
            ops.append(
                _Op(
                    "save",
                    event_item(event, self.event_ttl),
                    [],
                    EventItem.mid.does_not_exist(),
                    index,
                    event=True,
                )
            )
        if number is not None:
            ops.append(_count_op(transition.segment, number, 1 if transition.enter else -1))
        return ops

    def _transact(self, ops: list[_Op]) -> set[int]:
        """Run one transaction; the plans whose conditions failed (nothing written), or an empty set.
        A transaction that collides with another in flight on a hot counter is retried with jitter.

        A segment event whose id is already stored, while every membership and index condition held, is
        the same entry or exit written before (its id is the n-th entry or exit of the contact): the rest
        is written without it, so a retry records the change once and succeeds."""
        attempt = 0
        while True:
            # pynamodb sends deletes, then puts, then updates: the cancellation reasons come in that order.
            ops = sorted(ops, key=lambda op: SENT_ORDER[op.kind])
            try:
                with TransactWrite(connection=_connection()) as tx:
                    for op in ops:
                        if op.kind == "update":
                            tx.update(op.model, actions=op.actions, condition=op.condition)
                        elif op.kind == "save":
                            tx.save(op.model, condition=op.condition)
                        else:
                            tx.delete(op.model, condition=op.condition)
                return set()
            except TransactWriteError as exc:
                reasons = [getattr(r, "code", None) for r in (exc.cancellation_reasons or [])]
                failed = [i for i, code in enumerate(reasons) if code == "ConditionalCheckFailed"]
                if failed and all(ops[i].event for i in failed):
                    ops = [op for i, op in enumerate(ops) if i not in set(failed)]  # stored already
                    continue
                if failed:
                    return {ops[i].plan for i in failed}
                if any(code == "TransactionConflict" for code in reasons) and attempt < 7:
                    time.sleep(random.uniform(0, 0.02 * 2**attempt))  # jitter, not security
                    attempt += 1
                    continue
                raise

    # -- lists, counts, reads for the API ----------------------------------------------------------
    @staticmethod
    def counts(segment_ids: Iterable[str]) -> dict[str, int]:
        ids = sorted(set(segment_ids))
        out = dict.fromkeys(ids, 0)
        keys = [(f"n#{sid}#{n}", "count") for sid in ids for n in range(SHARDS)]
        if keys:
            for item in CountItem.batch_get(keys):
                out[item.pk.split("#", 2)[1]] += int(item.total or 0)
        return out

    @staticmethod
    def members(
        segment_id: str, limit: int, cursor: str | None
    ) -> tuple[list[tuple[str, datetime | None]], str | None]:
        """A page of members, in shard and cid order: ``[(cid, enteredAt)]`` and the next cursor."""
        start_shard, after = _decode_cursor(cursor)
        page: list[tuple[str, datetime | None]] = []
        for number in range(start_shard, SHARDS):
            condition = None if after is None or number != start_shard else MembershipItem.sk > after
            for item in MembershipItem.query(
                f"m#{segment_id}#{number}",
                condition,
                filter_condition=MembershipItem.entered_at.exists(),
                page_size=max(limit, 25),
            ):
                page.append((item.cid, item.entered_at))
                if len(page) == limit:
                    return page, _encode_cursor(number, item.cid)
        return page, None

    def segments_of(self, cid: str, segment_ids: Iterable[str]) -> list[Membership]:
        """The segments the contact is a member of, of those named."""
        return [m for m in self.memberships(cid, segment_ids).values() if m.member]

    def forget(self, cid: str, segment_ids: Iterable[str], now: datetime, attempts: int = 8) -> int:
        """Erase the contact's memberships (member counts go down), its time-driven changes and index
        entry. Returns how many items went. Idempotent; a membership changed by a concurrent evaluation
        (the stream reacting to the contact) is read again and forgotten as it is then. ``Conflict`` only
        if that keeps happening ``attempts`` times."""
        removed = 0
        for read in self.memberships(cid, segment_ids).values():
            membership = read
            for attempt in range(attempts):
                if not membership.member:
                    break
                plan = Plan(cid, now, [Transition(membership.segment, False, membership)], emit=False)
                try:
                    self.commit(plan)
                    break
                except Conflict:
                    time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 6)))  # jitter, not security
                    membership = self.memberships(cid, [membership.segment])[membership.segment]
            else:
                raise Conflict([cid])
            if membership.entries:
                MembershipItem(MembershipItem.partition(membership.segment, cid), cid).delete()
                removed += 1
        due = self.due(cid)
        if due.bucket is not None:
            DueEntry(*_entry_key(due.bucket, cid)).delete()
            removed += 1
        if due.version:
            DueItem(*_due_key(cid)).delete()
            removed += 1
        return removed

    # -- the time-due index -----------------------------------------------------------------------
    @staticmethod
    def due_contacts(day: str, through_hour: str | None = None) -> Iterator[tuple[str, str]]:
        """``(hour label, cid)`` of every entry of the day's index, of hours up to ``through_hour``
        ("HH", inclusive; None: the whole day), oldest hour first."""
        condition = None if through_hour is None else DueEntry.sk < f"{int(through_hour) + 1:02d}#"
        for item in DueEntry.query(f"d#{day}", condition):
            hour, cid = item.sk.split("#", 1)
            yield f"{day}T{hour}", cid

    @staticmethod
    def drop_due_entry(bucket: str, cid: str) -> None:
        DueEntry(*_entry_key(bucket, cid)).delete()

    # -- builds -----------------------------------------------------------------------------------
    @staticmethod
    def builds(segment_ids: Iterable[str]) -> dict[str, BuildItem]:
        keys = [(f"b#{sid}", "build") for sid in sorted(set(segment_ids))]
        return {item.pk.removeprefix("b#"): item for item in BuildItem.batch_get(keys)} if keys else {}

    @staticmethod
    def update_build(segment_id: str, **fields: Any) -> None:
        item = BuildItem(f"b#{segment_id}", "build")
        actions: list[Action] = []
        for name, value in fields.items():
            attribute = getattr(BuildItem, name)
            if name == "scanned":
                actions.append(attribute.add(value))
            elif value is None:
                actions.append(attribute.remove())
            else:
                actions.append(attribute.set(value))
        item.update(actions=actions)


# --------------------------------------------------------------------------- helpers


def _connection() -> Any:
    return SegmentItem._get_connection().connection


def _properties(item: EventItem) -> dict[str, Any]:
    raw: Any = item.properties
    if raw is None:
        return {}
    return dict(raw.as_dict()) if hasattr(raw, "as_dict") else dict(raw)


def _membership(item: MembershipItem) -> Membership:
    return Membership(
        segment=item.segment,
        entered_at=item.entered_at,
        entries=int(item.entries or 0),
        exited_at=item.exited_at,
    )


def _due(item: DueItem) -> Due:
    raw = item.at.as_dict() if item.at is not None else {}
    return Due(
        at={sid: datetime.fromisoformat(str(v)) for sid, v in raw.items()},
        bucket=item.bucket,
        version=int(item.v or 0),
    )


def _membership_op(plan: Plan, transition: Transition, index: int) -> _Op:
    before = transition.before
    item = MembershipItem(MembershipItem.partition(transition.segment, plan.cid), plan.cid)
    if transition.enter:
        entries = (
            MembershipItem.entries == before.entries
            if before.entries
            else MembershipItem.entries.does_not_exist()
        )
        return _Op(
            "update",
            item,
            [
                MembershipItem.segment.set(transition.segment),
                MembershipItem.cid.set(plan.cid),
                MembershipItem.entered_at.set(plan.now),
                MembershipItem.entries.set(before.entries + 1),
                MembershipItem.exited_at.remove(),
                MembershipItem.expires_at.remove(),
            ],
            MembershipItem.entered_at.does_not_exist() & entries,
            index,
        )
    assert before.entered_at is not None
    return _Op(
        "update",
        item,
        [
            MembershipItem.entered_at.remove(),
            MembershipItem.exited_at.set(plan.now),
            MembershipItem.expires_at.set(int((plan.now + LEFT_TTL).timestamp())),
        ],
        (MembershipItem.entered_at == before.entered_at) & (MembershipItem.entries == before.entries),
        index,
    )


def _due_ops(cid: str, due: DueWrite, index: int) -> list[_Op]:
    before = due.before
    item = DueItem(*_due_key(cid))
    unchanged = DueItem.v == before.version if before.version else DueItem.v.does_not_exist()
    ops: list[_Op] = []
    if due.at:
        actions: list[Action] = [
            DueItem.at.set({sid: t.isoformat() for sid, t in sorted(due.at.items())}),
            DueItem.v.set(before.version + 1),
        ]
        actions.append(DueItem.bucket.set(due.bucket) if due.bucket else DueItem.bucket.remove())
        ops.append(_Op("update", item, actions, unchanged, index))
    elif before.version:
        ops.append(_Op("delete", item, [], unchanged, index))
    if due.bucket and due.bucket != before.bucket:
        ops.append(_Op("save", DueEntry(*_entry_key(due.bucket, cid)), [], None, index))
    if before.bucket and before.bucket != due.bucket:
        ops.append(_Op("delete", DueEntry(*_entry_key(before.bucket, cid)), [], None, index))
    return ops


def _count_op(segment_id: str, number: int, delta: int) -> _Op:
    return _Op("update", CountItem(f"n#{segment_id}#{number}", "count"), [CountItem.total.add(delta)])


def _encode_cursor(number: int, cid: str) -> str:
    return base64.urlsafe_b64encode(f"{number}:{cid}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> tuple[int, str | None]:
    if not cursor:
        return 0, None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        number, cid = text.split(":", 1)
        value = int(number)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a cursor this API returned") from exc
    if not 0 <= value < SHARDS or not cid:
        raise ValueError("not a cursor this API returned")
    return value, cid


# --------------------------------------------------------------------------- the contacts a build reads


def scan_profiles(
    segment: int, total: int, cursor: dict[str, Any] | None, *, page: int
) -> Iterator[tuple[list[Profile], dict[str, Any] | None]]:
    """Profiles of one segment of a parallel scan of the contacts table, ``page`` at a time, each page
    with the key to go on from (None after the last)."""
    items = ContactItem.scan(
        ContactItem.sk == PROFILE,
        segment=segment,
        total_segments=total,
        last_evaluated_key=cursor,
        page_size=page,
    )
    batch: list[Profile] = []
    for item in items:
        batch.append(_profile(item))
        if len(batch) == page:
            yield batch, items.last_evaluated_key
            batch = []
    yield batch, None


def contacts_estimate() -> int:
    """Items in the contacts table (DynamoDB refreshes the figure about every six hours)."""
    return int(ContactItem.describe_table().get("ItemCount", 0))


def user_ids(cids: Sequence[str]) -> dict[str, str | None]:
    """The userId of each contact (anonymous contacts have none)."""
    if not cids:
        return {}
    return {item.cid: item.user_id for item in ContactItem.batch_get([(cid, PROFILE) for cid in cids])}


# --------------------------------------------------------------------------- the deploy hook


def answer_cloudformation(
    event: Mapping[str, Any], status: str, reason: str, data: Mapping[str, Any]
) -> None:
    """Answer a custom resource request: PUT the result to its pre-signed ResponseURL."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason or "see the segments function's log",
            "PhysicalResourceId": event.get("PhysicalResourceId") or "segment-builds",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "NoEcho": False,
            "Data": dict(data),
        }
    ).encode()
    request = urllib.request.Request(
        str(event["ResponseURL"]),
        data=body,
        method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
