"""What may follow an erasure: events of the erased life are dropped, whenever they arrive; after the
grace period the user id may come back as a new contact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.domain.erasure import GRACE, is_stale, recently_erased

ERASED = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
S = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("happened", "received", "stale"),
    [
        (ERASED - timedelta(days=1), ERASED - S, True),  # in flight when the erase ran
        (ERASED - timedelta(days=1), ERASED + timedelta(days=30), True),  # a retry queue flushed late
        (ERASED, ERASED, True),
        (ERASED + S, ERASED + S, True),  # the browser still sending, within the grace period
        (ERASED + GRACE, ERASED + GRACE, True),
        (ERASED + GRACE + S, ERASED + GRACE + S, False),  # a person who came back: a new life
        (ERASED + timedelta(days=2), ERASED + timedelta(days=2), False),
    ],
)
def test_which_events_belong_to_the_erased_life(happened: datetime, received: datetime, stale: bool) -> None:
    assert is_stale(ERASED, timestamp=happened, received_at=received) is stale


@settings(max_examples=300, deadline=None)
@given(
    happened=st.timedeltas(min_value=-timedelta(days=400), max_value=timedelta(days=400)),
    delay=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
)
def test_an_event_never_erased_is_never_dropped_and_one_from_before_always_is(
    happened: timedelta, delay: timedelta
) -> None:
    at, received = ERASED + happened, ERASED + happened + delay
    assert not is_stale(None, timestamp=at, received_at=received)
    if at <= ERASED:
        assert is_stale(ERASED, timestamp=at, received_at=received)
    if received > ERASED + GRACE and at > ERASED:
        assert not is_stale(ERASED, timestamp=at, received_at=received)


def test_a_contact_may_be_created_again_only_after_the_grace_period() -> None:
    assert recently_erased(ERASED, ERASED)
    assert recently_erased(ERASED, ERASED + GRACE)
    assert not recently_erased(ERASED, ERASED + GRACE + S)
    assert not recently_erased(None, ERASED)
