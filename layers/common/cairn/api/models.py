"""Request and response shapes of the HTTP API (v1), Segment-compatible where Segment has one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field

from cairn.domain.values import text_ok

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, tzinfo=UTC)


def _text(value: str) -> str:
    if not text_ok(value):
        raise ValueError("not valid Unicode text")
    return value


def _time(value: datetime) -> datetime:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not EARLIEST <= aware <= LATEST:
        raise ValueError("must be between 1970 and 2999")
    return value


Text = Annotated[str, AfterValidator(_text)]
Time = Annotated[datetime, AfterValidator(_time)]
UserIdField = Annotated[Text, Field(min_length=1, max_length=255)]
MessageIdField = Annotated[Text, Field(min_length=1, max_length=200)]
Channel = Literal["email", "sms"]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ConsentIn(_In):
    status: Literal["subscribed", "unsubscribed"]
    source: Text = Field("api", min_length=1, max_length=100)


class TrackIn(_In):
    """Segment's track call. One of userId and anonymousId is required (422 naming `userId` if neither)."""

    user_id: UserIdField | None = Field(None, alias="userId")
    anonymous_id: UserIdField | None = Field(None, alias="anonymousId")
    event: Text = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)
    timestamp: Time | None = None
    sent_at: Time | None = Field(None, alias="sentAt")
    message_id: MessageIdField | None = Field(None, validation_alias=AliasChoices("messageId", "id"))
    context: dict[str, Any] | None = None
    user_id_hash: Text | None = Field(None, alias="userIdHash", max_length=128)


class TrackOut(BaseModel):
    messageId: str
    duplicate: bool


class IdentifyIn(_In):
    """Segment's identify call; `consent` asks for subscriptions (a write key's email becomes pending)."""

    user_id: UserIdField = Field(alias="userId")
    anonymous_id: UserIdField | None = Field(None, alias="anonymousId")
    traits: dict[str, Any] = Field(default_factory=dict)
    message_id: MessageIdField | None = Field(None, validation_alias=AliasChoices("messageId", "id"))
    timestamp: Time | None = None
    context: dict[str, Any] | None = None
    user_id_hash: Text | None = Field(None, alias="userIdHash", max_length=128)
    consent: dict[Channel, ConsentIn] = Field(default_factory=dict)


class BatchIn(_In):
    """Up to 500 track and identify calls (4 MB); each item is checked alone."""

    batch: list[Any] = Field(description='objects with "type": "track" (the default) or "identify"')
    sent_at: Time | None = Field(None, alias="sentAt")
    context: dict[str, Any] | None = None


class ErrorDetail(BaseModel):
    field: str
    problem: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorOut(BaseModel):
    error: ErrorBody


class ItemResult(BaseModel):
    index: int
    status: int
    messageId: str | None = None
    duplicate: bool | None = None
    error: ErrorBody | None = None


class BatchOut(BaseModel):
    results: list[ItemResult]


class ConsentOut(BaseModel):
    status: str
    source: str | None = None
    updatedAt: str | None = None


class ContactOut(BaseModel):
    userId: str | None
    anonymousIds: list[str] = Field(default_factory=list)
    attributes: dict[str, Any]
    tags: list[str]
    consent: dict[str, ConsentOut]
    suppression: str | None = None


class SegmentOut(BaseModel):
    id: str
    enteredAt: str | None = None


class EnrollmentOut(BaseModel):
    workflowId: str
    run: int | None = None
    version: str | None = None
    status: str | None = None
    variant: str | None = None
    enteredAt: str | None = None
    exitedAt: str | None = None
    exitReason: str | None = None


class MessageOut(BaseModel):
    id: str
    channel: str
    template: str | None = None
    workflowId: str | None = None
    stepId: str | None = None
    status: str | None = None
    sentAt: str | None = None
    skipReason: str | None = None


class ContactDetailOut(ContactOut):
    segments: list[SegmentOut] = Field(default_factory=list)
    enrollments: list[EnrollmentOut] = Field(default_factory=list)
    messages: list[MessageOut] = Field(default_factory=list, description="the last 50, newest first")


class SubscriptionIn(_In):
    status: Literal["subscribed", "unsubscribed"]
    source: Text = Field("api", min_length=1, max_length=100)


class ImportConsentIn(_In):
    status: Literal["subscribed", "unsubscribed", "pending"]
    source: Text = Field("import", min_length=1, max_length=100)
    updated_at: Time | None = Field(None, alias="updatedAt")


class ImportContactIn(_In):
    user_id: UserIdField = Field(alias="userId")
    traits: dict[str, Any] = Field(default_factory=dict)
    tags: list[Annotated[Text, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=100
    )
    consent: dict[Channel, ImportConsentIn] = Field(default_factory=dict)
    suppression: Literal["bounced", "complained", "unsubscribed", "sms_opt_out", "manual", "none"] | None = (
        Field(None, description='"none" lifts a suppression; absent leaves it as it is')
    )


class ImportIn(_In):
    contacts: list[Any] = Field(description="up to 500 contacts; each is checked alone")


class NextFieldsOut(BaseModel):
    form: str
    fields: list[str]
