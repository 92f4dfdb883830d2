"""pynamodb models of Cairn's tables (keys as in docs/internals.md and template.yaml)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pynamodb.attributes import (
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.indexes import AllProjection, LocalSecondaryIndex
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


class ContactItem(_Base):
    """The contact's profile (sk = "profile")."""

    class Meta(_Base.Meta):
        table_name = _table("CONTACTS_TABLE", "cairn-contacts")
        table_env = "CONTACTS_TABLE"

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


class EnrollmentItem(_Base):
    """A contact's current enrollment in one workflow (sk = "enr#<workflowId>")."""

    class Meta(_Base.Meta):
        table_name = _table("CONTACTS_TABLE", "cairn-contacts")
        table_env = "CONTACTS_TABLE"

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

    @staticmethod
    def key(workflow_id: str) -> str:
        return f"enr#{workflow_id}"


class RunItem(_Base):
    """One finished or running run, kept as history (sk = "run#<workflowId>#<run>")."""

    class Meta(_Base.Meta):
        table_name = _table("CONTACTS_TABLE", "cairn-contacts")
        table_env = "CONTACTS_TABLE"

    cid = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    workflow_id = UnicodeAttribute(attr_name="workflowId")
    run = NumberAttribute()
    version = UnicodeAttribute(null=True)
    status = UnicodeAttribute()
    entered_at = UTCDateTimeAttribute(null=True, attr_name="enteredAt")
    exited_at = UTCDateTimeAttribute(null=True, attr_name="exitedAt")
    exit_reason = UnicodeAttribute(null=True, attr_name="exitReason")

    @staticmethod
    def key(workflow_id: str, run: int) -> str:
        return f"run#{workflow_id}#{run:06d}"


class MessageItem(_Base):
    """A message and its send claim (sk = "msg#<messageId>")."""

    class Meta(_Base.Meta):
        table_name = _table("CONTACTS_TABLE", "cairn-contacts")
        table_env = "CONTACTS_TABLE"

    cid = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    message_id = UnicodeAttribute(attr_name="messageId")
    channel = UnicodeAttribute()
    template = UnicodeAttribute()
    workflow_id = UnicodeAttribute(attr_name="workflowId")
    version = UnicodeAttribute(null=True)
    run = NumberAttribute()
    step_id = UnicodeAttribute(attr_name="stepId")
    status = UnicodeAttribute()  # claimed | sent | skipped | unknown | failed
    provider_id = UnicodeAttribute(null=True, attr_name="providerId")
    claimed_at = UTCDateTimeAttribute(attr_name="claimedAt")
    sent_at = UTCDateTimeAttribute(null=True, attr_name="sentAt")
    skip_reason = UnicodeAttribute(null=True, attr_name="skipReason")

    @staticmethod
    def key(message_id: str) -> str:
        return f"msg#{message_id}"


class ByTimeIndex(LocalSecondaryIndex["EventItem"]):
    class Meta:
        index_name = "byTime"
        projection = AllProjection()

    cid = UnicodeAttribute(hash_key=True)
    ts = UnicodeAttribute(range_key=True)


class EventItem(_Base):
    """One tracked event; its conditional put is the whole of intake."""

    class Meta(_Base.Meta):
        table_name = _table("EVENTS_TABLE", "cairn-events")
        table_env = "EVENTS_TABLE"

    cid = UnicodeAttribute(hash_key=True)
    mid = UnicodeAttribute(range_key=True)
    ts = UnicodeAttribute()  # ISO-8601 UTC timestamp + "#" + mid, sortable
    name = UnicodeAttribute()
    properties = MapAttribute[str, object](default=dict)
    user_id = UnicodeAttribute(null=True, attr_name="userId")
    anonymous_id = UnicodeAttribute(null=True, attr_name="anonymousId")
    received_at = UTCDateTimeAttribute(attr_name="receivedAt")
    source = UnicodeAttribute(default="api")  # api | cairn (reserved events Cairn records itself)
    expires_at = NumberAttribute(attr_name="expiresAt")
    by_time = ByTimeIndex()


class IdentityItem(_Base):
    class Meta(_Base.Meta):
        table_name = _table("IDENTITIES_TABLE", "cairn-identities")
        table_env = "IDENTITIES_TABLE"

    key = UnicodeAttribute(hash_key=True)
    cid = UnicodeAttribute()


class KeyItem(_Base):
    class Meta(_Base.Meta):
        table_name = _table("KEYS_TABLE", "cairn-keys")
        table_env = "KEYS_TABLE"

    key_hash = UnicodeAttribute(hash_key=True, attr_name="keyHash")
    kind = UnicodeAttribute()
    name = UnicodeAttribute(default="")
    revoked = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute(null=True, attr_name="createdAt")


ALL_MODELS: tuple[type[Model], ...] = (ContactItem, EventItem, IdentityItem, KeyItem)


def bound_models() -> list[type[Model]]:
    """Every concrete model (one per item type; several may share a table). A new model declares
    `Meta.table_env`, the environment variable naming its table, and is found here."""
    found: list[type[Model]] = []
    pending: list[type[Model]] = list(_Base.__subclasses__())
    while pending:
        model = pending.pop()
        pending.extend(model.__subclasses__())
        if getattr(model.Meta, "table_env", None):
            found.append(model)
    return found


def bind_tables(names: Mapping[str, str]) -> dict[type[Model], str]:
    """Point every model at the table `names[Meta.table_env]` (pynamodb reads table names at import);
    returns the previous names, for putting them back."""
    previous: dict[type[Model], str] = {}
    for model in bound_models():
        table = names.get(model.Meta.table_env)  # type: ignore[attr-defined]
        if table and model.Meta.table_name != table:  # type: ignore[attr-defined]
            previous[model] = model.Meta.table_name  # type: ignore[attr-defined]
            model.Meta.table_name = table  # type: ignore[attr-defined]
            model._connection = None
    return previous
