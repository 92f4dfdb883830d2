"""`settings.yaml`: the policies and defaults of one Cairn project."""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

ConsentStatus = Literal["subscribed", "unsubscribed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sender(_Strict):
    name: str = "Cairn"
    email: str | None = None  # the SENDER_EMAIL stack parameter wins when set


class ConsentDefaults(_Strict):
    email: ConsentStatus = "unsubscribed"
    sms: ConsentStatus = "unsubscribed"


class Consent(_Strict):
    default: ConsentDefaults = ConsentDefaults()
    double_opt_in: bool = False


class Settings(_Strict):
    version: Literal[1] = 1
    timezone: str = "UTC"
    sender: Sender = Sender()
    postal_address: str = Field(default="", description="printed in every marketing email")
    consent: Consent = Consent()
    paused: bool = False

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone '{value}'") from exc
        return value
