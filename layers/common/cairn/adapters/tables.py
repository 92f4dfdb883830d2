"""pynamodb models of Cairn's tables (keys as in docs/internals.md and template.yaml)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime

from pynamodb.attributes import (
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection, LocalSecondaryIndex
from pynamodb.models import Model

REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
PROFILE = "profile"


def _table(var: str, default: str) -> str:
    return os.environ.get(var, default)


class _Base(Model):
    class Meta:
        abstract = True
        region = REGION
        max_retry_attempts = 3


# One base per table: a model names its table by its base (the item types of a table share its Meta).


class _ContactsTable(_Base):
    class Meta(_Base.Meta):
        table_name = _table("CONTACTS_TABLE", "cairn-contacts")
        table_env = "CONTACTS_TABLE"


class _EventsTable(_Base):
    class Meta(_Base.Meta):
        table_name = _table("EVENTS_TABLE", "cairn-events")
        table_env = "EVENTS_TABLE"


class _IdentitiesTable(_Base):
    class Meta(_Base.Meta):
        table_name = _table("IDENTITIES_TABLE", "cairn-identities")
        table_env = "IDENTITIES_TABLE"


class _KeysTable(_Base):
    class Meta(_Base.Meta):
        table_name = _table("KEYS_TABLE", "cairn-keys")
        table_env = "KEYS_TABLE"


class _StatsTable(_Base):
    class Meta(_Base.Meta):
        table_name = _table("STATS_TABLE", "cairn-stats")
        table_env = "STATS_TABLE"


class _SegmentsTable(_Base):
    class Meta(_Base.Meta):
        table_name = _table("SEGMENTS_TABLE", "cairn-segments")
        table_env = "SEGMENTS_TABLE"


_TABLES: tuple[type[Model], ...] = (
    _ContactsTable,
    _EventsTable,
    _IdentitiesTable,
    _KeysTable,
    _StatsTable,
    _SegmentsTable,
)


class ContactItem(_ContactsTable):
    """The contact's profile (sk = "profile")."""

    cid = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True, default=PROFILE)
    user_id = UnicodeAttribute(null=True, attr_name="userId")
    anonymous_ids = UnicodeSetAttribute(null=True, attr_name="anonymousIds")
    attributes = MapAttribute[str, object](default=dict)
    tags = UnicodeSetAttribute(null=True)
    consent = MapAttribute[str, object](default=dict)
    suppression = UnicodeAttribute(null=True)
    email = UnicodeAttribute(null=True)
    phone = UnicodeAttribute(null=True)
    timezone = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute(null=True, attr_name="createdAt")
    updated_at = UTCDateTimeAttribute(null=True, attr_name="updatedAt")
    event_count = NumberAttribute(default=0, attr_name="eventCount")
    lists = UnicodeSetAttribute(null=True)  # static lists (workflows' add_to_list / remove_from_list)
    # Set equal to updatedAt by `POST /v1/contacts/import`: a stream consumer can tell an imported change
    # (which must fire no triggers) from a live one.
    imported_at = UTCDateTimeAttribute(null=True, attr_name="importedAt")


class EnrollmentItem(_ContactsTable):
    """A contact's current enrollment in one workflow (sk = "enr#<workflowId>")."""

    cid = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    workflow_id = UnicodeAttribute(attr_name="workflowId")
    run = NumberAttribute(default=0)
    status = UnicodeAttribute()  # starting | active | completed | converted | exited | failed
    version = UnicodeAttribute(null=True)
    trigger_id = UnicodeAttribute(null=True, attr_name="triggerId")
    entered_at = UTCDateTimeAttribute(null=True, attr_name="enteredAt")
    exited_at = UTCDateTimeAttribute(null=True, attr_name="exitedAt")
    exit_reason = UnicodeAttribute(null=True, attr_name="exitReason")
    execution = UnicodeAttribute(null=True)
    token = UnicodeAttribute(null=True)
    waiting_step = UnicodeAttribute(null=True, attr_name="waitingStep")
    waiting_until = UTCDateTimeAttribute(null=True, attr_name="waitingUntil")  # when the wait times out
    # A `wait_for` step's awaited event (event, where?, messageId?, since), set with its token.
    wait_for = MapAttribute[str, object](null=True, attr_name="waitFor")
    variant = UnicodeAttribute(null=True)  # the last split's variant (A, B, holdout)
    variants = MapAttribute[str, object](null=True)  # every split of the run: step id -> variant
    # The goal and exit rule of the version the run entered with (JSON `{"goal", "exitWhen"}`): react
    # checks these, not the workflow's current definition, so a run finishes on its own version.
    policy = UnicodeAttribute(null=True)

    @staticmethod
    def key(workflow_id: str) -> str:
        return f"enr#{workflow_id}"


class RunItem(_ContactsTable):
    """One finished or running run, kept as history (sk = "run#<workflowId>#<run>")."""

    cid = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    workflow_id = UnicodeAttribute(attr_name="workflowId")
    run = NumberAttribute()
    version = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    entered_at = UTCDateTimeAttribute(null=True, attr_name="enteredAt")
    exited_at = UTCDateTimeAttribute(null=True, attr_name="exitedAt")
    exit_reason = UnicodeAttribute(null=True, attr_name="exitReason")
    variant = UnicodeAttribute(null=True)

    @staticmethod
    def key(workflow_id: str, run: int) -> str:
        return f"run#{workflow_id}#{run:06d}"


class StatusEntry(MapAttribute[str, object]):
    """One step of a message's status history (held, sent, delivered, opened, bounced, ...)."""

    status = UnicodeAttribute()
    at = UTCDateTimeAttribute()
    reason = UnicodeAttribute(null=True)
    until = UTCDateTimeAttribute(null=True)  # a hold: the next allowed moment


class MessagesByTime(GlobalSecondaryIndex["MessageItem"]):
    """A contact's messages by claim time (GSI `byClaimedAt` of the contacts table; sparse: only messages
    have `claimedAt`), carrying the fields `GET /v1/contacts/{userId}` shows, so that reading the last 50
    reads 50 items, not every message the contact ever got."""

    class Meta:
        index_name = "byClaimedAt"
        projection = IncludeProjection(
            ["messageId", "channel", "template", "workflowId", "stepId", "status", "sentAt", "skipReason"]
        )

    cid = UnicodeAttribute(hash_key=True)
    claimed_at = UTCDateTimeAttribute(range_key=True, attr_name="claimedAt")


class MessageItem(_ContactsTable):
    """A message and its send claim (sk = "msg#<messageId>")."""

    cid = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    message_id = UnicodeAttribute(attr_name="messageId")
    channel = UnicodeAttribute()
    template = UnicodeAttribute()
    workflow_id = UnicodeAttribute(attr_name="workflowId")
    version = UnicodeAttribute(null=True)
    run = NumberAttribute()
    step_id = UnicodeAttribute(attr_name="stepId")
    status = UnicodeAttribute()  # claimed | sent | skipped | unknown | failed | held | delivered | ...
    provider_id = UnicodeAttribute(null=True, attr_name="providerId")
    claimed_at = UTCDateTimeAttribute(attr_name="claimedAt")
    sent_at = UTCDateTimeAttribute(null=True, attr_name="sentAt")
    skip_reason = UnicodeAttribute(null=True, attr_name="skipReason")
    kind = UnicodeAttribute(null=True)  # marketing | transactional
    history = ListAttribute(of=StatusEntry, null=True)
    by_time = MessagesByTime()

    @staticmethod
    def key(message_id: str) -> str:
        return f"msg#{message_id}"


class ByTimeIndex(LocalSecondaryIndex["EventItem"]):
    class Meta:
        index_name = "byTime"
        projection = AllProjection()

    cid = UnicodeAttribute(hash_key=True)
    ts = UnicodeAttribute(range_key=True)


class EventItem(_EventsTable):
    """One tracked event; its conditional put is the whole of intake."""

    cid = UnicodeAttribute(hash_key=True)
    mid = UnicodeAttribute(range_key=True)
    ts = UnicodeAttribute()  # ISO-8601 UTC timestamp + "#" + mid, sortable
    name = UnicodeAttribute()
    properties = MapAttribute[str, object](default=dict)
    user_id = UnicodeAttribute(null=True, attr_name="userId")
    anonymous_id = UnicodeAttribute(null=True, attr_name="anonymousId")
    received_at = UTCDateTimeAttribute(attr_name="receivedAt")
    # api | cairn (reserved events Cairn records itself) | merge (moved from an anonymous contact by an
    # identify: already reacted to once, so it fires nothing again)
    source = UnicodeAttribute(default="api")
    context = MapAttribute[str, object](null=True)  # Segment's `context` (library, page, ip, ...)
    sent_at = UTCDateTimeAttribute(null=True, attr_name="sentAt")
    expires_at = NumberAttribute(attr_name="expiresAt")
    by_time = ByTimeIndex()


class IdentityItem(_IdentitiesTable):
    # user#<id> | anon#<id> | email#<sha256> | tomb#<sha256> | erased#<cid> (cairn.services.erase)
    key = UnicodeAttribute(hash_key=True)
    cid = UnicodeAttribute(null=True)  # null for tombstones: an erased contact has no id left
    state = UnicodeAttribute(null=True)  # anon#: merging | merged (an identify moved its contact)
    created_at = UTCDateTimeAttribute(null=True, attr_name="createdAt")


class KeyItem(_KeysTable):
    key_hash = UnicodeAttribute(hash_key=True, attr_name="keyHash")
    kind = UnicodeAttribute()
    name = UnicodeAttribute(default="")
    revoked = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute(null=True, attr_name="createdAt")


class StatsItem(_StatsTable):
    """Workflow statistics (cairn.adapters.stats): sharded daily counters (pk "c#<workflow>#<shard>"),
    unique-per-contact markers ("m#...") and the conversion log for attribution ("v#<workflow>#<shard>").
    Counters are top-level Number attributes named by what they count, updated by ADD (read raw)."""

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    expires_at = NumberAttribute(null=True, attr_name="expiresAt")  # markers and the conversion log only


class SegmentItem(_SegmentsTable):
    """The segments table's keys (cairn.adapters.segments holds its item types): memberships
    (pk "m#<segment>#<shard>", sk the cid), sharded member counts, each contact's time-driven changes
    and the hourly time-due index, builds. No stream: nothing reacts to these writes."""

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    expires_at = NumberAttribute(null=True, attr_name="expiresAt")  # memberships a contact left


# ---------------------------------------------------------------- workflows (cairn.adapters.journeys)
# Items of the contacts table outside any contact's partition: their keys start with "#", which no
# cid does. The contacts stream ignores them (react reads only sk = "profile").


class WorkflowItem(_ContactsTable):
    """A workflow's state (pk "#workflows", sk "wf#<id>"): pause/retire status and the versions that ran."""

    cid = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    workflow_id = UnicodeAttribute(attr_name="workflowId")
    status = UnicodeAttribute(default="active")  # active | paused | draining | retired
    move_to = UnicodeAttribute(null=True, attr_name="moveTo")
    updated_at = UTCDateTimeAttribute(null=True, attr_name="updatedAt")
    versions = MapAttribute[str, object](null=True)  # version -> first entry (ISO time)

    PK = "#workflows"

    @staticmethod
    def key(workflow_id: str) -> str:
        return f"wf#{workflow_id}"


class TasksByCreation(GlobalSecondaryIndex["TaskItem"]):
    """Every task, newest first (GSI `tasksByCreation` of the contacts table; sparse: only tasks have
    `taskList`): `GET /v1/tasks` reads one page, not the whole list."""

    class Meta:
        index_name = "tasksByCreation"
        projection = AllProjection()

    task_list = UnicodeAttribute(hash_key=True, attr_name="taskList")
    task_order = UnicodeAttribute(range_key=True, attr_name="taskOrder")


class TaskItem(_ContactsTable):
    """A human follow-up task from an `assign_task` step (pk "#tasks", sk "task#<id>"; in the
    `tasksByCreation` index under "tasks", ordered by `<createdAt>#<id>`)."""

    cid = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    task_id = UnicodeAttribute(attr_name="taskId")
    contact = UnicodeAttribute()  # the contact's cid
    assignee = UnicodeAttribute()
    title = UnicodeAttribute()
    note = UnicodeAttribute(null=True)
    status = UnicodeAttribute(default="open")  # open | done | dismissed
    due = UTCDateTimeAttribute(null=True)
    workflow_id = UnicodeAttribute(attr_name="workflowId")
    step_id = UnicodeAttribute(attr_name="stepId")
    run = NumberAttribute()
    created_at = UTCDateTimeAttribute(attr_name="createdAt")
    updated_at = UTCDateTimeAttribute(attr_name="updatedAt")
    task_list = UnicodeAttribute(null=True, attr_name="taskList")
    task_order = UnicodeAttribute(null=True, attr_name="taskOrder")
    by_creation = TasksByCreation()

    PK = "#tasks"
    LIST = "tasks"

    @staticmethod
    def order(created_at: datetime, task_id: str) -> str:
        return f"{created_at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}#{task_id}"

    @staticmethod
    def key(task_id: str) -> str:
        return f"task#{task_id}"


class DateIndexItem(_ContactsTable):
    """Yearly date triggers: contacts by the month-day of a date attribute (pk "#date#<wf>#<MM-DD>",
    sk the cid), and in the contact's partition where it is indexed (pk cid, sk "date#<wf>")."""

    cid = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    month_day = UnicodeAttribute(attr_name="monthDay")
    timezone = UnicodeAttribute(null=True)

    @staticmethod
    def partition(workflow_id: str, month_day: str) -> str:
        return f"#date#{workflow_id}#{month_day}"

    @staticmethod
    def pointer(workflow_id: str) -> str:
        return f"date#{workflow_id}"


class HeldItem(_ContactsTable):
    """A run whose message waits for a paused workflow (pk "#held#<wf>", sk the cid): a resume wakes it."""

    cid = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    run = NumberAttribute()

    @staticmethod
    def partition(workflow_id: str) -> str:
        return f"#held#{workflow_id}"


ALL_MODELS: tuple[type[Model], ...] = (
    MessageItem,  # the contacts table: MessageItem declares its keys and its one GSI (byClaimedAt)
    EventItem,
    IdentityItem,
    KeyItem,
    StatsItem,
    SegmentItem,
)


def bound_models() -> list[type[Model]]:
    """Every concrete model (one per item type; several may share a table, and then its Meta). A new
    model subclasses its table's base (or a model of that table) and is found here."""
    found: list[type[Model]] = []
    pending: list[type[Model]] = list(_Base.__subclasses__())
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if model not in _TABLES and getattr(model.Meta, "table_env", None):
            found.append(model)
    return found


def bind_tables(names: Mapping[str, str]) -> dict[type[Model], str]:
    """Point every model at the table `names[Meta.table_env]` (pynamodb reads table names at import);
    returns the previous names, for putting them back."""
    moves: dict[type[Model], tuple[str, str]] = {}  # model -> (previous, new); read all before moving any
    for model in bound_models():
        table = names.get(model.Meta.table_env)  # type: ignore[attr-defined]
        if table and model.Meta.table_name != table:  # type: ignore[attr-defined]
            moves[model] = (model.Meta.table_name, table)  # type: ignore[attr-defined]
    for model, (_, table) in moves.items():
        model.Meta.table_name = table  # type: ignore[attr-defined]
        model._connection = None
    return {model: previous for model, (previous, _) in moves.items()}
