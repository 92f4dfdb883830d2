"""Traits, pure: validation of the reserved traits and the rules of progressive profiling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from cairn.domain.errors import FieldProblem, ValidationFailed

# Stored as top-level fields of the profile (email and phone also as hashed identities).
PROFILE_FIELDS = ("email", "phone", "timezone")
RESERVED_TRAITS = frozenset({"email", "phone", "timezone", "firstName", "lastName", "locale"})
CHANNELS = ("email", "sms")
SUPPRESSIONS = frozenset({"bounced", "complained", "unsubscribed", "sms_opt_out", "manual"})
MAX_TRAITS = 200
MAX_TRAIT_NAME = 128


def normal_email(value: Any) -> str:
    """The normalised address (domain lower-cased); ValueError if it is not one."""
    if not isinstance(value, str):
        raise ValueError("not a string")
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from None


def normal_phone(value: Any) -> str:
    """E.164; ValueError if it is not a valid number in international form."""
    if not isinstance(value, str):
        raise ValueError("not a string")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(str(exc)) from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normal_timezone(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ValueError("not a time zone name")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("not an IANA time zone") from None
    return value


def clean_traits(traits: Mapping[str, Any], prefix: str = "traits") -> dict[str, Any]:
    """Drop nulls (a missing or null trait never erases a known one) and validate the reserved traits.

    Every problem is reported at once, each naming its field (`traits.email`)."""
    out: dict[str, Any] = {}
    problems: list[FieldProblem] = []
    if len(traits) > MAX_TRAITS:
        raise ValidationFailed("too many traits", [FieldProblem(prefix, f"at most {MAX_TRAITS} traits")])
    for name, value in traits.items():
        if value is None:
            continue
        field = f"{prefix}.{name}"
        if not name or len(name) > MAX_TRAIT_NAME or name.startswith("$"):
            problems.append(FieldProblem(field, f"a trait name is 1 to {MAX_TRAIT_NAME} characters"))
            continue
        try:
            if name == "email":
                out[name] = normal_email(value)
            elif name == "phone":
                out[name] = normal_phone(value)
            elif name == "timezone":
                out[name] = normal_timezone(value)
            elif name in RESERVED_TRAITS and not isinstance(value, str):
                raise ValueError("must be a string")
            else:
                out[name] = value
        except ValueError as exc:
            problems.append(FieldProblem(field, _problem(name, exc)))
    if problems:
        raise ValidationFailed("some traits are not valid", problems)
    return out


def _problem(name: str, exc: ValueError) -> str:
    if name == "email":
        return "not a valid email address"
    if name == "phone":
        return "not a valid phone number in international (E.164) form"
    if name == "timezone":
        return "not an IANA time zone"
    return str(exc)


def split_traits(traits: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(profile fields, free attributes)."""
    fields = {k: v for k, v in traits.items() if k in PROFILE_FIELDS}
    attrs = {k: v for k, v in traits.items() if k not in PROFILE_FIELDS}
    return fields, attrs
