"""`settings.yaml`: the policies and defaults of one Cairn project."""

from __future__ import annotations

import re
from datetime import date, time
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

ConsentStatus = Literal["subscribed", "unsubscribed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sender(_Strict):
    name: str = "Cairn"
    email: str | None = None  # the SENDER_EMAIL stack parameter wins when set
    sms_id: str | None = Field(
        default=None, description="alphanumeric SMS sender ID where the destination country supports one"
    )

    @field_validator("sms_id")
    @classmethod
    def _sender_id(cls, value: str | None) -> str | None:
        if value is not None and (not re.match(r"^[A-Za-z0-9]{1,11}$", value) or value.isdigit()):
            raise ValueError("1 to 11 letters and digits, at least one letter")
        return value


class ConsentDefaults(_Strict):
    email: ConsentStatus = "unsubscribed"
    sms: ConsentStatus = "unsubscribed"


class Consent(_Strict):
    default: ConsentDefaults = ConsentDefaults()
    double_opt_in: bool = False
    confirmation_template: str = "confirm-subscription"  # the email a double opt-in sends at once


_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class CapLimit(_Strict):
    """Marketing messages per contact on one channel, across all workflows, in rolling windows."""

    per_day: int | None = Field(default=None, ge=1, description="at most this many in any 24 hours")
    per_week: int | None = Field(default=None, ge=1, description="at most this many in any 7 days")


class Caps(_Strict):
    email: CapLimit = CapLimit()
    sms: CapLimit = CapLimit()


class QuietWindow(_Strict):
    """Local times ("HH:MM", the contact's time zone) between which marketing messages wait."""

    start: str
    end: str

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("a time of day as HH:MM (24-hour), e.g. 21:00")
        return value

    def times(self) -> tuple[time, time]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end)


class QuietHours(_Strict):
    email: QuietWindow | None = None
    sms: QuietWindow | None = QuietWindow(start="21:00", end="08:00")


# Recipients a non-production stack may message when settings.yaml names none: domains reserved for
# examples and tests (RFC 2606, RFC 6761), SES's mailbox simulator, and numbers reserved for fiction.
DEFAULT_ALLOWLIST_EMAIL = (
    "*@example.com",
    "*@example.net",
    "*@example.org",
    "*.example",
    "*.test",
    "*.invalid",
    "*@simulator.amazonses.com",
)
DEFAULT_ALLOWLIST_SMS = ("+1???55501??", "+447700900???", "+6149157015?")


class Allowlist(_Strict):
    """Who a stack whose Stage is not prod may message: shell-style patterns, case-insensitive."""

    email: tuple[str, ...] = DEFAULT_ALLOWLIST_EMAIL
    sms: tuple[str, ...] = DEFAULT_ALLOWLIST_SMS


class TokenKeys(_Strict):
    """Keys of the signed links in messages (unsubscribe, confirmation). `current` signs new links;
    `retired` key ids still verify until their date (the grace period of links already sent)."""

    current: str = Field(default="k1", pattern=r"^k[1-9][0-9]{0,5}$")
    retired: dict[str, date] = {}

    @field_validator("retired")
    @classmethod
    def _ids(cls, value: dict[str, date]) -> dict[str, date]:
        for kid in value:
            if not re.match(r"^k[1-9][0-9]{0,5}$", kid):
                raise ValueError(f"key id {kid!r}: key ids are k1, k2, ...")
        return value


class Form(_Strict):
    """A form whose fields progressive profiling asks for a few at a time (`GET .../next-fields`)."""

    fields: list[str] = Field(min_length=1)
    ask: int = Field(default=2, ge=1, le=50, description="at most this many fields per visit")


class KeyRate(_Strict):
    rate: float = Field(gt=0, description="requests per second, per key and function instance")
    burst: int = Field(ge=1)


class RateLimits(_Strict):
    write: KeyRate = KeyRate(rate=20, burst=40)
    secret: KeyRate = KeyRate(rate=200, burst=400)


class Api(_Strict):
    require_user_id_hash: bool = Field(
        default=False, description="write keys must prove a userId with userIdHash (HMAC of the user id)"
    )
    rate_limits: RateLimits = RateLimits()


class Settings(_Strict):
    version: Literal[1] = 1
    timezone: str = "UTC"
    sender: Sender = Sender()
    postal_address: str = Field(default="", description="printed in every marketing email")
    consent: Consent = Consent()
    paused: bool = False
    forms: dict[str, Form] = Field(default_factory=dict)
    api: Api = Api()
    caps: Caps = Caps()
    quiet_hours: QuietHours = QuietHours()
    allowlist: Allowlist = Allowlist()
    link_keys: TokenKeys = TokenKeys()
    attributes: tuple[str, ...] = Field(
        default=(), description="contact attributes templates may use without a default (besides traits)"
    )

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone '{value}'") from exc
        return value
