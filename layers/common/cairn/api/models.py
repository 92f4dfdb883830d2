"""Request and response shapes of the HTTP API (v1), Segment-compatible where Segment has one."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

Id = Field(min_length=1, max_length=255)


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class TrackIn(_In):
    user_id: str | None = Field(None, alias="userId", min_length=1, max_length=255)
    # One of userId and anonymousId is required: Intake.track checks it, so that the 422 names the field.
    anonymous_id: str | None = Field(None, alias="anonymousId", min_length=1, max_length=255)
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)
    timestamp: datetime | None = None
    sent_at: datetime | None = Field(None, alias="sentAt")
    message_id: str | None = Field(
        None, validation_alias=AliasChoices("messageId", "id"), min_length=1, max_length=200
    )
    context: dict[str, Any] | None = None


class TrackOut(BaseModel):
    messageId: str
    duplicate: bool


class IdentifyIn(_In):
    user_id: str = Field(alias="userId", min_length=1, max_length=255)
    anonymous_id: str | None = Field(None, alias="anonymousId", min_length=1, max_length=255)
    traits: dict[str, Any] = Field(default_factory=dict)
    message_id: str | None = Field(
        None, validation_alias=AliasChoices("messageId", "id"), min_length=1, max_length=200
    )


class ConsentOut(BaseModel):
    status: str
    source: str | None = None
    updatedAt: str | None = None


class ContactOut(BaseModel):
    userId: str | None
    attributes: dict[str, Any]
    tags: list[str]
    consent: dict[str, ConsentOut]
    suppression: str | None = None


class SubscriptionIn(_In):
    status: Literal["subscribed", "unsubscribed"]
    source: str = Field("api", max_length=100)


class ErrorDetail(BaseModel):
    field: str
    problem: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorOut(BaseModel):
    error: ErrorBody
