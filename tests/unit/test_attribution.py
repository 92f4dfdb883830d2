"""Cross-channel attribution (cairn.domain.attribution): the touches of a conversion, and credit by first
touch, last touch and linear models to channels, workflows and templates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.domain.attribution import (
    DIMENSIONS,
    MODELS,
    Attributed,
    Conversion,
    Touch,
    attribute,
    credit,
    touches_before,
)

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
WEEK = timedelta(days=7)


def touch(
    mid: str, hours: float, channel: str = "email", workflow: str = "cart", template: str = "t"
) -> Touch:
    return Touch(mid, channel, workflow, template, T0 + timedelta(hours=hours))


def test_touches_are_the_received_messages_in_the_window_before_the_conversion_oldest_first() -> None:
    conversion = Conversion("c1", "cart", T0 + timedelta(days=3), WEEK)
    messages = [
        touch("late", 80),  # after the conversion
        touch("sms", 48, channel="sms", template="cart-discount"),
        touch("old", -24 * 5),  # more than a week before the conversion
        touch("first", 0, template="cart-reminder"),
        Touch("bounced", "email", "cart", "x", T0 + timedelta(hours=1), status="bounced"),
        Touch("skipped", "email", "cart", "x", T0 + timedelta(hours=2), status="skipped"),
        touch("edge", 72),  # exactly at the conversion: the converting event's own message, not a cause
        touch("just-before", 71.99),
    ]
    assert [t.message_id for t in touches_before(conversion, messages)] == ["first", "sms", "just-before"]


def test_the_window_start_is_inclusive() -> None:
    conversion = Conversion("c1", "cart", T0 + WEEK, WEEK)
    assert [t.message_id for t in touches_before(conversion, [touch("start", 0)])] == ["start"]


def test_first_last_and_linear_credit_on_a_known_path() -> None:
    path = (
        touch("m1", 0, "email", "cart", "cart-reminder"),
        touch("m2", 24, "sms", "cart", "cart-discount"),
        touch("m3", 30, "email", "newsletter", "weekly"),
    )
    result = attribute([Attributed(Conversion("c1", "cart", T0 + timedelta(days=2), WEEK), path)])
    models = result["models"]
    assert models["firstTouch"]["channel"] == {"email": 1.0}
    assert models["firstTouch"]["template"] == {"email:cart-reminder": 1.0}
    assert models["lastTouch"]["workflow"] == {"newsletter": 1.0}
    assert models["linear"]["channel"] == {"email": 0.666667, "sms": 0.333333}
    assert models["linear"]["workflow"] == {"cart": 0.666667, "newsletter": 0.333333}
    assert result["touches"] == 3 and result["touchesPerConversion"] == 3.0
    assert result["touchCounts"]["channel"] == {"email": 2, "sms": 1}


def test_conversions_without_touches_are_unattributed() -> None:
    result = attribute(
        [
            Attributed(Conversion("c1", "cart", T0, WEEK), ()),
            Attributed(Conversion("c2", "cart", T0, WEEK), (touch("m", -1),)),
        ]
    )
    assert (result["conversions"], result["attributed"], result["unattributed"]) == (2, 1, 1)
    assert result["models"]["linear"]["channel"] == {"email": 1.0}
    assert attribute([])["touchesPerConversion"] is None


def test_an_unknown_model_is_refused() -> None:
    with pytest.raises(ValueError):
        credit([touch("m", 0)], "u-shaped")


TOUCHES = st.lists(
    st.builds(
        Touch,
        message_id=st.text("abcdef", min_size=1, max_size=4),
        channel=st.sampled_from(["email", "sms"]),
        workflow_id=st.sampled_from(["cart", "welcome", "nurture"]),
        template=st.sampled_from(["a", "b", "c"]),
        sent_at=st.integers(min_value=-10 * 24, max_value=2 * 24).map(lambda h: T0 + timedelta(hours=h)),
        status=st.sampled_from(["sent", "delivered", "opened", "clicked", "bounced"]),
    ),
    max_size=8,
)


@given(st.lists(TOUCHES, max_size=12))
def test_every_model_and_dimension_credits_exactly_the_attributed_conversions(
    paths: list[list[Touch]],
) -> None:
    items = []
    for messages in paths:
        conversion = Conversion("c", "cart", T0, WEEK)
        items.append(Attributed(conversion, tuple(touches_before(conversion, messages))))
    result = attribute(items)
    attributed = sum(1 for i in items if i.touches)
    assert result["attributed"] == attributed
    for model in MODELS:
        for dim in DIMENSIONS:
            assert sum(result["models"][model][dim].values()) == pytest.approx(attributed, abs=1e-5)
    for item in items:  # first and last touch credit the earliest and the latest touch
        if item.touches:
            assert credit(item.touches, "firstTouch")[0][0].sent_at == min(t.sent_at for t in item.touches)
            assert credit(item.touches, "lastTouch")[0][0].sent_at == max(t.sent_at for t in item.touches)
            assert sum(share for _, share in credit(item.touches, "linear")) == 1
