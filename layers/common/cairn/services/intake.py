"""Intake: track, identify and subscriptions. Track is one conditional write; the rest is the stream's."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from cairn.adapters import clock
from cairn.adapters.contacts import Profile
from cairn.adapters.events import NewEvent
from cairn.api.models import ConsentOut, ContactOut, IdentifyIn, SubscriptionIn, TrackIn, TrackOut
from cairn.bootstrap import Runtime
from cairn.domain.errors import FieldProblem, Forbidden, ValidationFailed
from cairn.domain.identity import cid_for_anonymous, cid_for_user
from cairn.domain.keys import ApiKey

MAX_FUTURE_SKEW = timedelta(hours=1)


def normalise_timestamp(
    timestamp: datetime | None, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Segment's clock-skew correction: timestamp + (receivedAt - sentAt); missing -> receivedAt."""
    if timestamp is None:
        return received_at
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=received_at.tzinfo)
    if sent_at is not None:
        if sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=received_at.tzinfo)
        timestamp = timestamp + (received_at - sent_at)
    return min(timestamp, received_at + MAX_FUTURE_SKEW)


def clean_traits(traits: dict[str, Any]) -> dict[str, Any]:
    """Drop nulls (a missing or null trait never erases a known one); validate reserved traits."""
    out: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    for name, value in traits.items():
        if value is None:
            continue
        if name == "email":
            try:
                out[name] = validate_email(str(value), check_deliverability=False).normalized
            except EmailNotValidError:
                problems.append(FieldProblem("traits.email", "not a valid email address"))
        elif name == "phone":
            try:
                number = phonenumbers.parse(str(value), None)
                if not phonenumbers.is_valid_number(number):
                    raise ValueError
                out[name] = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            except (phonenumbers.NumberParseException, ValueError):
                problems.append(FieldProblem("traits.phone", "not a valid phone number in E.164 form"))
        elif name == "timezone":
            try:
                ZoneInfo(str(value))
                out[name] = str(value)
            except (ZoneInfoNotFoundError, ValueError):
                problems.append(FieldProblem("traits.timezone", "not an IANA time zone"))
        else:
            out[name] = value
    if problems:
        raise ValidationFailed("some traits are not valid", problems)
    return out


def contact_out(profile: Profile) -> ContactOut:
    attrs = dict(profile.attributes)
    for name in ("email", "phone", "timezone"):
        if getattr(profile, name) is not None:
            attrs[name] = getattr(profile, name)
    return ContactOut(
        userId=profile.user_id,
        attributes=attrs,
        tags=sorted(profile.tags),
        consent={
            ch: ConsentOut(status=str(v.get("status")), source=v.get("source"), updatedAt=v.get("updatedAt"))
            for ch, v in profile.consent.items()
            if isinstance(v, dict)
        },
        suppression=profile.suppression,
    )


class Intake:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def cid(self, user_id: str | None, anonymous_id: str | None) -> str:
        if user_id:
            return cid_for_user(self.rt.secret, user_id)
        assert anonymous_id
        return cid_for_anonymous(self.rt.secret, anonymous_id)

    def track(self, key: ApiKey, body: TrackIn) -> TrackOut:
        if not body.user_id and not body.anonymous_id:
            raise ValidationFailed(
                "userId or anonymousId is required",
                [FieldProblem("userId", "userId or anonymousId is required")],
            )
        received = clock.now()
        message_id = body.message_id or str(uuid.uuid4())
        event = NewEvent(
            cid=self.cid(body.user_id, body.anonymous_id),
            message_id=message_id,
            name=body.event,
            timestamp=normalise_timestamp(body.timestamp, body.sent_at, received),
            received_at=received,
            properties=body.properties,
            user_id=body.user_id,
            anonymous_id=body.anonymous_id,
        )
        stored = self.rt.events.put_once(event)
        return TrackOut(messageId=message_id, duplicate=not stored)

    def identify(self, key: ApiKey, body: IdentifyIn) -> ContactOut:
        traits = clean_traits(body.traits)
        cid = self.cid(body.user_id, None)
        if not key.is_secret and {"email", "phone"} & traits.keys():
            existing = self.rt.contacts.get(cid)
            for name in ("email", "phone"):
                current = getattr(existing, name) if existing else None
                if name in traits and current is not None and current != traits[name]:
                    raise Forbidden(
                        "a write key cannot change the email or phone of an existing contact",
                        [FieldProblem(f"traits.{name}", "needs a secret key to change")],
                    )
        profile = self.rt.contacts.merge_traits(cid, traits, now=clock.now(), user_id=body.user_id)
        return contact_out(profile)

    def set_subscription(self, key: ApiKey, user_id: str, channel: str, body: SubscriptionIn) -> ContactOut:
        cid = self.cid(user_id, None)
        profile = self.rt.contacts.set_consent(
            cid, channel, body.status, body.source, now=clock.now(), user_id=user_id
        )
        return contact_out(profile)

    def get_contact(self, user_id: str) -> Profile | None:
        return self.rt.contacts.get(self.cid(user_id, None))
