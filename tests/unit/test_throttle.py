"""Token buckets: the per-key rate limit of each trigger instance (time is passed in, never read)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.domain.throttle import Buckets, TokenBucket, retry_after_header

FAST = settings(max_examples=300, deadline=None)

rates = st.floats(min_value=0.01, max_value=10_000, allow_nan=False, allow_infinity=False)
bursts = st.integers(min_value=1, max_value=1_000)
# Gaps between requests in seconds; a few negative ones stand for instants read out of order by
# concurrent requests (each reads the monotonic clock before taking the bucket's lock).
gaps = st.lists(
    st.one_of(
        st.floats(min_value=0, max_value=5, allow_nan=False),
        st.floats(min_value=-0.05, max_value=0, allow_nan=False),
    ),
    min_size=1,
    max_size=200,
)


def test_a_new_bucket_allows_its_burst_at_once_then_asks_to_wait() -> None:
    bucket = TokenBucket(rate=2, burst=3, updated=100.0)

    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(100.0) == pytest.approx(0.5)  # one token comes back every 1/rate seconds


def test_tokens_come_back_at_the_rate_and_never_beyond_the_burst() -> None:
    bucket = TokenBucket(rate=10, burst=5, updated=0.0)
    for _ in range(5):
        bucket.take(0.0)

    assert bucket.take(0.25) == 0.0  # 2.5 tokens back after 250 ms
    assert bucket.take(0.25) == 0.0
    assert bucket.take(0.25) > 0  # 0.5 left: refused

    assert bucket.take(3600.0) == 0.0  # a quiet hour refills to the burst, not to 36,000
    assert sum(1 for _ in range(10) if bucket.take(3600.0) == 0.0) == 4


def test_a_request_that_waits_the_answer_is_admitted() -> None:
    bucket = TokenBucket(rate=3, burst=1, updated=0.0)
    assert bucket.take(0.0) == 0.0
    wait = bucket.take(0.1)

    assert wait == pytest.approx(1 / 3 - 0.1)
    assert bucket.take(0.1 + wait + 1e-9) == 0.0


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0), (1, 0.5)])
def test_a_bucket_needs_a_positive_rate_and_a_burst_of_at_least_one(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket(rate=rate, burst=burst)


@pytest.mark.parametrize(
    ("wait", "header"), [(0.0001, 1), (0.5, 1), (1.0, 1), (1.0001, 2), (59.2, 60), (0.0, 1)]
)
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(wait: float, header: int) -> None:
    assert retry_after_header(wait) == header


@FAST
@given(rate=rates, burst=bursts, gaps=gaps)
def test_no_sequence_of_requests_gets_more_than_the_burst_plus_the_refill(
    rate: float, burst: int, gaps: list[float]
) -> None:
    """Whatever the arrival pattern (clock skew between concurrent requests included), the admitted
    requests never exceed burst + rate x elapsed time, and the bucket never holds more than its burst
    nor goes below empty."""
    start = 1_000.0
    bucket = TokenBucket(rate=rate, burst=burst, updated=start)
    now = latest = start
    admitted = 0
    for gap in gaps:
        now = max(start, now + gap)
        latest = max(latest, now)
        wait = bucket.take(now)
        if wait == 0.0:
            admitted += 1
        else:
            assert wait > 0 and math.isfinite(wait)
        assert -1e-9 <= bucket.tokens <= burst
        assert admitted <= burst + rate * (latest - start) + 1e-6


@FAST
@given(rate=rates, burst=bursts, drained=st.integers(min_value=1, max_value=1_000))
def test_the_answered_wait_is_exactly_when_a_token_is_back(rate: float, burst: int, drained: int) -> None:
    """Retry-After tells the truth: a request a little before the answered wait is refused again, one at
    the answered wait is admitted."""
    bucket = TokenBucket(rate=rate, burst=burst, updated=0.0)
    for _ in range(min(drained, burst)):
        assert bucket.take(0.0) == 0.0
    if drained < burst:
        return
    wait = bucket.take(0.0)
    assert wait == pytest.approx(1 / rate)

    early = TokenBucket(rate=rate, burst=burst, tokens=bucket.tokens, updated=0.0)
    assert early.take(wait * 0.99) > 0
    assert bucket.take(wait * (1 + 1e-9)) == 0.0


@FAST
@given(rate=rates, burst=bursts, earlier=st.floats(min_value=0.001, max_value=1e6))
def test_an_instant_earlier_than_the_last_one_refills_nothing(
    rate: float, burst: int, earlier: float
) -> None:
    bucket = TokenBucket(rate=rate, burst=burst, updated=0.0)
    for _ in range(burst):
        bucket.take(1e6)
    assert bucket.take(1e6 - earlier) > 0
    assert bucket.updated == 1e6


def test_each_key_has_its_own_bucket() -> None:
    buckets = Buckets()
    assert buckets.take("a", rate=1, burst=1, now=0.0) == 0.0
    assert buckets.take("a", rate=1, burst=1, now=0.0) > 0
    assert buckets.take("b", rate=1, burst=1, now=0.0) == 0.0


def test_a_changed_limit_starts_a_fresh_bucket() -> None:
    buckets = Buckets()
    buckets.take("a", rate=1, burst=1, now=0.0)
    assert buckets.take("a", rate=1, burst=1, now=0.0) > 0
    assert buckets.take("a", rate=5, burst=2, now=0.0) == 0.0  # settings changed: the new limit applies


def test_memory_stays_bounded_forgetting_the_least_recently_used_key() -> None:
    buckets = Buckets(capacity=3)
    for key in ("a", "b", "c"):
        buckets.take(key, rate=1, burst=1, now=0.0)
    buckets.take("a", rate=1, burst=1, now=0.0)  # "a" used again: "b" is now the oldest
    buckets.take("d", rate=1, burst=1, now=0.0)

    assert buckets.take("b", rate=1, burst=1, now=0.0) == 0.0  # forgotten: a full bucket again
    assert buckets.take("a", rate=1, burst=1, now=0.0) > 0  # remembered: still empty
    assert len(buckets._buckets) == 3
