"""The gate before every send, rule by rule and together: plain values, no mocks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from cairn.domain.gate import (
    PAUSE_RECHECK,
    Hold,
    Recipient,
    Rules,
    Send,
    Skip,
    at_local,
    decide,
    in_quiet_hours,
    on_allowlist,
)
from cairn.domain.settings import Settings

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
ANN_EMAIL = Recipient("ann@example.com", consent="subscribed", timezone="Europe/Berlin")
ANN_SMS = Recipient("+4915112345678", consent="subscribed", timezone="Europe/Berlin")
EMAIL = Rules(channel="email")
SMS_NIGHTS = Rules(channel="sms", quiet=(time(21), time(8)), timezone_fallback="Europe/Berlin")


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


NOON = berlin(2026, 12, 1, 12, 0)


# ---------------------------------------------------------------- each rule alone


def test_a_subscribed_contact_with_an_address_is_sent_to() -> None:
    assert decide(ANN_EMAIL, kind="marketing", rules=EMAIL, now=NOON) == Send()


@pytest.mark.parametrize(
    ("recipient", "rules", "reason"),
    [
        (Recipient(None, consent="subscribed"), EMAIL, "no email address"),
        (Recipient("", consent="subscribed"), Rules(channel="sms"), "no phone number"),
        (Recipient("ann@example.com", consent="subscribed", tombstoned=True), EMAIL, "erased"),
        (
            Recipient("ann@example.com", consent="subscribed", suppression="bounced"),
            EMAIL,
            "suppressed (bounced)",
        ),
        (
            Recipient("ann@example.com", consent="subscribed", suppression="complained"),
            EMAIL,
            "suppressed (complained)",
        ),
        (Recipient("ann@example.com", consent="unsubscribed"), EMAIL, "no email consent (unsubscribed)"),
        (Recipient("ann@example.com", consent="pending"), EMAIL, "no email consent (pending)"),
        (Recipient("ann@example.com"), EMAIL, "no email consent (unsubscribed)"),  # the default
        (
            Recipient("+4915112345678", consent="subscribed", suppression="sms-opted-out"),
            Rules(channel="sms"),
            "suppressed (sms-opted-out)",
        ),
        (
            Recipient("ann@gmail.com", consent="subscribed"),
            Rules(channel="email", allowlist=("*@example.com",)),
            "not on the allowlist of this non-production stack",
        ),
    ],
    ids=[
        "no email",
        "no phone",
        "erased",
        "bounced",
        "complained",
        "unsubscribed",
        "pending",
        "default",
        "sms opt-out",
        "allowlist",
    ],
)
def test_each_refusal_is_a_skip_with_its_reason(recipient: Recipient, rules: Rules, reason: str) -> None:
    assert decide(recipient, kind="marketing", rules=rules, now=NOON) == Skip(reason)


def test_consent_default_per_channel_lets_a_contact_without_consent_through() -> None:
    rules = Rules(channel="email", consent_default="subscribed")

    assert decide(Recipient("ann@example.com"), kind="marketing", rules=rules, now=NOON) == Send()


def test_suppression_is_per_channel() -> None:
    bounced = Recipient("+4915112345678", consent="subscribed", suppression="bounced")
    opted_out = Recipient("ann@example.com", consent="subscribed", suppression="sms-opted-out")

    assert decide(bounced, kind="marketing", rules=Rules(channel="sms"), now=NOON) == Send()
    assert decide(opted_out, kind="marketing", rules=EMAIL, now=NOON) == Send()


def test_transactional_needs_no_consent_but_never_goes_to_a_suppressed_or_erased_address() -> None:
    unsubscribed = Recipient("ann@example.com", consent="unsubscribed")
    bounced = Recipient("ann@example.com", consent="unsubscribed", suppression="bounced")
    erased = Recipient("ann@example.com", tombstoned=True)

    assert decide(unsubscribed, kind="transactional", rules=EMAIL, now=NOON) == Send()
    assert decide(bounced, kind="transactional", rules=EMAIL, now=NOON) == Skip("suppressed (bounced)")
    assert decide(erased, kind="transactional", rules=EMAIL, now=NOON) == Skip("erased")


def test_a_pause_holds_and_looks_again_later() -> None:
    decision = decide(ANN_EMAIL, kind="marketing", rules=EMAIL, now=NOON, paused="workflow")

    assert decision == Hold("paused (workflow)", NOON + PAUSE_RECHECK)


def test_a_pause_holds_transactional_messages_too() -> None:
    decision = decide(ANN_EMAIL, kind="transactional", rules=EMAIL, now=NOON, paused="global")

    assert isinstance(decision, Hold)


def test_an_sms_in_quiet_hours_waits_until_eight_in_the_contacts_zone() -> None:
    decision = decide(ANN_SMS, kind="marketing", rules=SMS_NIGHTS, now=berlin(2026, 12, 1, 22, 30))

    assert decision == Hold("quiet hours", berlin(2026, 12, 2, 8, 0))
    assert isinstance(decision, Hold)
    assert decision.seconds(berlin(2026, 12, 1, 22, 30)) == 9 * 3600 + 30 * 60


def test_after_midnight_the_same_nights_end_applies() -> None:
    decision = decide(ANN_SMS, kind="marketing", rules=SMS_NIGHTS, now=berlin(2026, 12, 2, 3, 15))

    assert decision == Hold("quiet hours", berlin(2026, 12, 2, 8, 0))


def test_quiet_hours_follow_the_contacts_zone_not_the_stacks() -> None:
    ny = Recipient("+4915112345678", consent="subscribed", timezone="America/New_York")
    at = datetime(2026, 12, 2, 2, 30, tzinfo=UTC)  # 03:30 in Berlin, 21:30 the day before in New York

    decision = decide(ny, kind="marketing", rules=SMS_NIGHTS, now=at)

    assert decision == Hold("quiet hours", datetime(2026, 12, 2, 8, 0, tzinfo=NEW_YORK))


def test_a_contact_without_a_zone_gets_the_settings_fallback() -> None:
    nowhere = Recipient("+4915112345678", consent="subscribed")

    decision = decide(nowhere, kind="marketing", rules=SMS_NIGHTS, now=berlin(2026, 12, 1, 23, 0))

    assert decision == Hold("quiet hours", berlin(2026, 12, 2, 8, 0))


def test_quiet_hours_are_exactly_start_inclusive_end_exclusive() -> None:
    window = (time(21), time(8))

    assert in_quiet_hours(berlin(2026, 12, 1, 21, 0), window, BERLIN)
    assert not in_quiet_hours(berlin(2026, 12, 1, 20, 59, 59), window, BERLIN)
    assert in_quiet_hours(berlin(2026, 12, 2, 7, 59, 59), window, BERLIN)
    assert not in_quiet_hours(berlin(2026, 12, 2, 8, 0), window, BERLIN)
    assert in_quiet_hours(berlin(2026, 12, 2, 13, 0), (time(12), time(14)), BERLIN)
    assert not in_quiet_hours(berlin(2026, 12, 2, 13, 0), (time(9), time(9)), BERLIN)


def test_email_has_no_quiet_hours_unless_settings_say_so() -> None:
    assert decide(ANN_EMAIL, kind="marketing", rules=EMAIL, now=berlin(2026, 12, 1, 23, 0)) == Send()


def test_a_daily_cap_holds_until_the_oldest_send_is_24_hours_old() -> None:
    rules = Rules(channel="email", per_day=1)
    sent = berlin(2026, 12, 1, 10, 0)

    decision = decide(ANN_EMAIL, kind="marketing", rules=rules, now=NOON, recent_sends=[sent])

    assert decision == Hold("frequency cap (1 per day)", sent + timedelta(days=1))


def test_a_weekly_cap_counts_a_rolling_seven_days() -> None:
    rules = Rules(channel="email", per_week=3)
    sends = [NOON - timedelta(days=6, hours=1), NOON - timedelta(days=3), NOON - timedelta(hours=5)]

    decision = decide(ANN_EMAIL, kind="marketing", rules=rules, now=NOON, recent_sends=sends)

    assert decision == Hold("frequency cap (3 per week)", sends[0] + timedelta(days=7))
    later = sends[0] + timedelta(days=7)
    assert decide(ANN_EMAIL, kind="marketing", rules=rules, now=later, recent_sends=sends) == Send()


def test_sends_older_than_the_window_do_not_count() -> None:
    rules = Rules(channel="email", per_day=1, per_week=2)
    sends = [NOON - timedelta(days=7), NOON - timedelta(days=1)]  # exactly at the window's open end

    assert decide(ANN_EMAIL, kind="marketing", rules=rules, now=NOON, recent_sends=sends) == Send()


def test_transactional_messages_are_exempt_from_caps_and_quiet_hours() -> None:
    rules = Rules(channel="sms", per_day=1, quiet=(time(21), time(8)))
    night = berlin(2026, 12, 1, 23, 0)

    decision = decide(ANN_SMS, kind="transactional", rules=rules, now=night, recent_sends=[night])

    assert decision == Send()


# ---------------------------------------------------------------- together


def test_a_capped_sms_in_quiet_hours_goes_out_at_eight_the_next_allowed_day() -> None:
    # One SMS a day. The last went out at 20:30 on Saturday 28 March; one week later, 7 x 24 h after it,
    # is 21:30 on Saturday 4 April — after Berlin moved to summer time, so inside quiet hours.
    rules = Rules(channel="sms", per_day=1, per_week=1, quiet=(time(21), time(8)))
    last = berlin(2026, 3, 28, 20, 30)
    now = berlin(2026, 4, 4, 19, 0)

    decision = decide(ANN_SMS, kind="marketing", rules=rules, now=now, recent_sends=[last])

    assert isinstance(decision, Hold)
    assert decision.reason == "frequency cap (1 per week)"
    assert decision.until == berlin(2026, 4, 5, 8, 0)
    assert decision.until.astimezone(UTC) == datetime(2026, 4, 5, 6, 0, tzinfo=UTC)


def test_quiet_hours_then_a_cap_that_frees_later_that_morning() -> None:
    rules = Rules(channel="sms", per_day=1, quiet=(time(21), time(8)))
    last = berlin(2026, 12, 1, 9, 15)

    decision = decide(
        ANN_SMS, kind="marketing", rules=rules, now=berlin(2026, 12, 1, 22, 0), recent_sends=[last]
    )

    assert decision == Hold("quiet hours, frequency cap (1 per day)", berlin(2026, 12, 2, 9, 15))


def test_a_cap_that_frees_in_the_night_waits_for_the_morning() -> None:
    # Sent at 23:30 New York time while the contact lived there; now in Berlin, where that is 05:30.
    rules = Rules(channel="sms", per_day=1, quiet=(time(21), time(8)))
    last = datetime(2026, 11, 30, 23, 30, tzinfo=NEW_YORK)

    decision = decide(
        ANN_SMS, kind="marketing", rules=rules, now=berlin(2026, 12, 1, 19, 0), recent_sends=[last]
    )

    assert decision == Hold("frequency cap (1 per day)", berlin(2026, 12, 2, 8, 0))


def test_refusals_win_over_holds() -> None:
    unsubscribed = Recipient("+4915112345678", consent="unsubscribed", timezone="Europe/Berlin")
    night = berlin(2026, 12, 1, 23, 0)

    decision = decide(unsubscribed, kind="marketing", rules=SMS_NIGHTS, now=night, paused="global")

    assert decision == Skip("no sms consent (unsubscribed)")


# ---------------------------------------------------------------- DST days


@pytest.mark.parametrize(
    ("evening", "morning_utc"),
    [
        (berlin(2026, 3, 28, 22, 0), datetime(2026, 3, 29, 6, 0, tzinfo=UTC)),  # spring forward: 08:00 CEST
        (berlin(2026, 10, 24, 22, 0), datetime(2026, 10, 25, 7, 0, tzinfo=UTC)),  # fall back: 08:00 CET
        (berlin(2026, 7, 1, 22, 0), datetime(2026, 7, 2, 6, 0, tzinfo=UTC)),
        (berlin(2026, 1, 1, 22, 0), datetime(2026, 1, 2, 7, 0, tzinfo=UTC)),
    ],
    ids=["spring forward", "fall back", "summer", "winter"],
)
def test_quiet_hours_end_at_local_eight_on_dst_nights(evening: datetime, morning_utc: datetime) -> None:
    decision = decide(ANN_SMS, kind="marketing", rules=SMS_NIGHTS, now=evening)

    assert isinstance(decision, Hold)
    assert decision.until == morning_utc
    assert decision.until.astimezone(BERLIN).time() == time(8, 0)


def test_a_quiet_end_inside_the_dst_gap_moves_to_the_next_valid_instant() -> None:
    rules = Rules(channel="sms", quiet=(time(1), time(2, 30)))  # 02:30 does not exist on 29 March 2026
    at = berlin(2026, 3, 29, 1, 30)

    decision = decide(ANN_SMS, kind="marketing", rules=rules, now=at)

    assert isinstance(decision, Hold)
    assert decision.until == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)  # 03:00 CEST, the transition
    assert decision.until.astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"


def test_an_ambiguous_local_time_takes_the_first() -> None:
    first = at_local(date(2026, 10, 25), time(2, 30), BERLIN)

    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, not 02:30 CET


def test_new_york_spring_forward() -> None:
    nyc = Recipient("+4915112345678", consent="subscribed", timezone="America/New_York")

    decision = decide(
        nyc, kind="marketing", rules=SMS_NIGHTS, now=datetime(2026, 3, 7, 22, 0, tzinfo=NEW_YORK)
    )

    assert isinstance(decision, Hold)
    assert decision.until == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)  # 08:00 EDT


# ---------------------------------------------------------------- allowlist and settings


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("ann@example.com", True),
        ("Ann@Example.COM", True),
        ("bob@demo.example", True),
        ("eve@example.com.evil.test", True),  # .test is reserved too
        ("eve@gmail.com", False),
        ("example.com@gmail.com", False),
    ],
)
def test_the_default_email_allowlist_is_reserved_domains_only(address: str, allowed: bool) -> None:
    rules = Rules.from_settings(Settings(), "email", production=False)

    assert rules.allowlist is not None
    assert on_allowlist(address, rules.allowlist, "email") is allowed


def test_phone_patterns_ignore_spaces() -> None:
    assert on_allowlist("+1 212 555 0142", ("+1???55501??",), "sms")
    assert not on_allowlist("+12125550242", ("+1???55501??",), "sms")


def test_production_has_no_allowlist_and_settings_feed_the_rules() -> None:
    settings = Settings.model_validate(
        {
            "timezone": "Europe/Berlin",
            "consent": {"default": {"sms": "subscribed"}},
            "caps": {"sms": {"per_day": 1, "per_week": 3}},
            "quiet_hours": {
                "sms": {"start": "22:00", "end": "07:30"},
                "email": {"start": "23:00", "end": "06:00"},
            },
        }
    )

    sms = Rules.from_settings(settings, "sms", production=True)
    email = Rules.from_settings(settings, "email", production=True)

    assert sms == Rules(
        channel="sms",
        consent_default="subscribed",
        per_day=1,
        per_week=3,
        quiet=(time(22), time(7, 30)),
        allowlist=None,
        timezone_fallback="Europe/Berlin",
    )
    assert email.quiet == (time(23), time(6)) and not email.capped


def test_sms_quiet_hours_default_to_nine_to_eight() -> None:
    assert Rules.from_settings(Settings(), "sms", production=True).quiet == (time(21), time(8))
    assert Rules.from_settings(Settings(), "email", production=True).quiet is None


@pytest.mark.parametrize(
    "bad",
    [
        {"quiet_hours": {"sms": {"start": "9pm", "end": "08:00"}}},
        {"quiet_hours": {"sms": {"start": "24:00", "end": "08:00"}}},
        {"caps": {"email": {"per_day": 0}}},
        {"caps": {"email": {"per_hour": 1}}},
        {"link_keys": {"current": "key2"}},
        {"link_keys": {"retired": {"old": "2027-01-01"}}},
        {"sender": {"sms_id": "12345"}},
        {"sender": {"sms_id": "Trailhead Outfitters"}},
    ],
)
def test_settings_refuse_bad_sending_policies(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Settings.model_validate(bad)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError):
        decide(ANN_EMAIL, kind="marketing", rules=EMAIL, now=datetime(2026, 12, 1, 12, 0))
