"""Traits: the reserved traits validated and normalised, every problem named, and progressive profiling's
rule that a missing or null trait never erases a known one."""

from __future__ import annotations

from typing import Any

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.domain.errors import ValidationFailed
from cairn.domain.traits import (
    MAX_TRAIT_NAME,
    MAX_TRAITS,
    RESERVED_TRAITS,
    clean_traits,
    normal_email,
    normal_phone,
    normal_timezone,
    split_traits,
)

FAST = settings(max_examples=200, deadline=None)

# Regions whose example number phonenumbers itself considers valid (a few territories have none).
REGIONS = sorted(
    r
    for r in phonenumbers.SUPPORTED_REGIONS
    if (n := phonenumbers.example_number(r)) is not None and phonenumbers.is_valid_number(n)
)

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_local = st.from_regex(r"[A-Za-z0-9_+-]{1,12}(\.[A-Za-z0-9_+-]{1,8}){0,2}", fullmatch=True)
emails = st.builds(
    lambda local, labels, tld: f"{local}@{'.'.join(labels)}.{tld}",
    _local,
    st.lists(_label, min_size=1, max_size=3),
    st.from_regex(r"[a-z]{2,6}", fullmatch=True),
)
free_names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="$"), min_size=1, max_size=40
).filter(lambda n: n not in RESERVED_TRAITS)
json_scalars = st.one_of(
    st.booleans(), st.integers(-(10**12), 10**12), st.text(max_size=30), st.floats(allow_nan=False)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


# ---------------------------------------------------------------- email


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("ann@example.com", "ann@example.com"),
        ("Ann.Lee@EXAMPLE.COM", "Ann.Lee@example.com"),  # the domain is case-insensitive, the local part not
        ("ann+news@mail.example.org", "ann+news@mail.example.org"),
    ],
)
def test_an_email_is_stored_with_its_domain_lower_cased(raw: str, stored: str) -> None:
    assert normal_email(raw) == stored


@pytest.mark.parametrize(
    "raw",
    ["", "ann", "ann@", "@example.com", "ann@@example.com", "ann example@x.com", "ann@example", 42, None],
)
def test_what_is_not_an_email_address_is_refused(raw: Any) -> None:
    with pytest.raises(ValueError):
        normal_email(raw)


@FAST
@given(emails)
def test_a_stored_email_is_stored_again_unchanged(raw: str) -> None:
    once = normal_email(raw)
    assert normal_email(once) == once
    assert once.lower() == raw.lower()  # normalising never changes which address it is


# ---------------------------------------------------------------- phone


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("+49 30 901820", "+4930901820"),
        ("+49-30-901820", "+4930901820"),
        ("+1 (202) 555-0143", "+12025550143"),
        ("+44 20 7946 0958", "+442079460958"),
    ],
)
def test_a_phone_number_is_stored_in_e164(raw: str, stored: str) -> None:
    assert normal_phone(raw) == stored


@pytest.mark.parametrize("raw", ["030 901820", "+49 1", "+999 1234567", "phone", "", 4930901820, None])
def test_what_is_not_an_international_phone_number_is_refused(raw: Any) -> None:
    with pytest.raises(ValueError):
        normal_phone(raw)


@FAST
@given(st.sampled_from(REGIONS))
def test_every_regions_number_written_any_usual_way_is_stored_as_one_e164_number(region: str) -> None:
    number = phonenumbers.example_number(region)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    written = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)

    assert normal_phone(written) == e164
    assert normal_phone(e164) == e164


# ---------------------------------------------------------------- time zone


@pytest.mark.parametrize("name", ["Europe/Berlin", "America/New_York", "UTC", "Asia/Kolkata"])
def test_an_iana_time_zone_is_kept_as_named(name: str) -> None:
    assert normal_timezone(name) == name


@pytest.mark.parametrize(
    "name", ["", "Mars/Olympus", "CEST", "+02:00", "../../etc/passwd", "x" * 65, 1, None]
)
def test_what_is_not_an_iana_time_zone_is_refused(name: Any) -> None:
    with pytest.raises(ValueError):
        normal_timezone(name)


# ---------------------------------------------------------------- clean_traits


def test_null_traits_are_dropped_so_they_never_erase_a_known_value() -> None:
    assert clean_traits({"firstName": None, "plan": "pro", "email": None}) == {"plan": "pro"}


def test_reserved_traits_are_normalised_and_free_ones_kept_as_sent() -> None:
    cleaned = clean_traits(
        {
            "email": "Ann@Example.COM",
            "phone": "+49 30 901820",
            "timezone": "Europe/Berlin",
            "firstName": "Ann",
            "cart": {"items": [1, 2], "total": 12.5},
        }
    )
    assert cleaned == {
        "email": "Ann@example.com",
        "phone": "+4930901820",
        "timezone": "Europe/Berlin",
        "firstName": "Ann",
        "cart": {"items": [1, 2], "total": 12.5},
    }


def test_every_bad_trait_is_reported_at_once_each_naming_its_field() -> None:
    with pytest.raises(ValidationFailed) as caught:
        clean_traits(
            {
                "email": "not-an-address",
                "phone": "12",
                "timezone": "Nowhere/Land",
                "firstName": 7,
                "$internal": 1,
                "": "empty name",
                "x" * (MAX_TRAIT_NAME + 1): 1,
                "fine": "kept",
            }
        )
    problems = {p.field: p.problem for p in caught.value.details}
    assert set(problems) == {
        "traits.email",
        "traits.phone",
        "traits.timezone",
        "traits.firstName",
        "traits.$internal",
        "traits.",
        f"traits.{'x' * (MAX_TRAIT_NAME + 1)}",
    }
    assert problems["traits.email"] == "not a valid email address"
    assert "E.164" in problems["traits.phone"]
    assert problems["traits.firstName"] == "must be a string"


def test_the_prefix_names_where_the_traits_came_from() -> None:
    with pytest.raises(ValidationFailed) as caught:
        clean_traits({"email": "x"}, prefix="batch.3.traits")
    assert [p.field for p in caught.value.details] == ["batch.3.traits.email"]


def test_more_traits_than_allowed_are_refused_as_a_whole() -> None:
    with pytest.raises(ValidationFailed) as caught:
        clean_traits({f"t{i}": i for i in range(MAX_TRAITS + 1)})
    assert [p.field for p in caught.value.details] == ["traits"]
    assert clean_traits({f"t{i}": i for i in range(MAX_TRAITS)})  # the limit itself is fine


@FAST
@given(st.dictionaries(free_names, st.one_of(st.none(), json_values), max_size=30))
def test_free_traits_pass_as_sent_minus_their_nulls(traits: dict[str, Any]) -> None:
    assert clean_traits(traits) == {k: v for k, v in traits.items() if v is not None}


@FAST
@given(
    email=emails,
    region=st.sampled_from(REGIONS),
    free=st.dictionaries(free_names, json_values, max_size=10),
)
def test_cleaning_twice_changes_nothing(email: str, region: str, free: dict[str, Any]) -> None:
    number = phonenumbers.example_number(region)
    phone = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    once = clean_traits({**free, "email": email, "phone": phone})
    assert clean_traits(once) == once


def test_split_traits_puts_email_phone_and_timezone_on_the_profile() -> None:
    fields, attributes = split_traits(
        {
            "email": "a@example.com",
            "phone": "+4930901820",
            "timezone": "UTC",
            "firstName": "Ann",
            "plan": "pro",
        }
    )
    assert fields == {"email": "a@example.com", "phone": "+4930901820", "timezone": "UTC"}
    assert attributes == {"firstName": "Ann", "plan": "pro"}
