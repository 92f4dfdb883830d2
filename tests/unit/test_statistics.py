"""Workflow statistics (cairn.domain.statistics): the tests match scipy on fixed and generated inputs; the
funnel, splits, holdout, drop-off and time filters are checked on counters with known outcomes."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sp

from cairn.domain import statistics as s
from cairn.domain.statistics import Bucket, StepInfo

# (control conversions, control n, treatment conversions, treatment n)
FIXED = [
    (100, 1000, 150, 1000),
    (48, 520, 61, 505),
    (3, 40, 11, 38),
    (200, 10_000, 260, 12_000),
    (1, 7, 6, 9),
    (530, 4000, 505, 4100),
]


# ------------------------------------------------------------------------------------------ normal law
@given(st.floats(min_value=1e-12, max_value=1 - 1e-12))
def test_the_normal_quantile_matches_scipy(p: float) -> None:
    assert s.norm_ppf(p) == pytest.approx(sp.norm.ppf(p), rel=1e-12, abs=1e-12)


@given(st.floats(min_value=-30, max_value=30))
def test_the_normal_cdf_and_tail_match_scipy(x: float) -> None:
    assert s.norm_cdf(x) == pytest.approx(sp.norm.cdf(x), rel=1e-12, abs=1e-300)
    assert s.norm_sf(x) == pytest.approx(sp.norm.sf(x), rel=1e-12, abs=1e-300)


def test_the_quantile_refuses_probabilities_outside_the_open_interval() -> None:
    for p in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError):
            s.norm_ppf(p)


# ------------------------------------------------------------------------------------------ the test
@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), FIXED)
def test_p_value_is_the_chi_square_test_without_continuity_correction(
    x1: int, n1: int, x2: int, n2: int
) -> None:
    test = s.two_proportion_test(x1, n1, x2, n2)
    assert test is not None
    chi2, p, _, _ = sp.chi2_contingency([[x2, n2 - x2], [x1, n1 - x1]], correction=False)
    assert test.p_value == pytest.approx(p, rel=1e-9)
    assert test.z is not None
    assert test.z**2 == pytest.approx(chi2, rel=1e-9)
    assert test.p_value == pytest.approx(2 * sp.norm.sf(abs(test.z)), rel=1e-12)
    assert test.significant == bool(p < 0.05)


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), FIXED)
def test_confidence_intervals_of_the_lift_match_scipy(x1: int, n1: int, x2: int, n2: int) -> None:
    test = s.two_proportion_test(x1, n1, x2, n2)
    assert test is not None
    p1, p2 = x1 / n1, x2 / n2
    half = sp.norm.ppf(0.975) * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    assert test.difference == pytest.approx(p2 - p1, abs=1e-15)
    assert test.difference_ci == pytest.approx((p2 - p1 - half, p2 - p1 + half), rel=1e-12)
    # The relative lift is the relative risk minus one; scipy's interval is Katz's log interval.
    rr = sp.contingency.relative_risk(x2, n2, x1, n1)
    ci = rr.confidence_interval(confidence_level=0.95)
    assert test.relative == pytest.approx(rr.relative_risk - 1, rel=1e-12)
    assert test.relative_ci == pytest.approx((ci.low - 1, ci.high - 1), rel=1e-9)


@settings(max_examples=200)
@given(
    st.integers(min_value=1, max_value=5000),
    st.integers(min_value=1, max_value=5000),
    st.data(),
)
def test_p_value_matches_scipy_on_generated_counts(n1: int, n2: int, data: st.DataObject) -> None:
    x1 = data.draw(st.integers(min_value=0, max_value=n1))
    x2 = data.draw(st.integers(min_value=0, max_value=n2))
    test = s.two_proportion_test(x1, n1, x2, n2)
    assert test is not None
    if x1 + x2 in (0, n1 + n2):
        assert test.z is None and test.p_value == 1.0 and not test.significant  # nothing to tell apart
        return
    _, p, _, _ = sp.chi2_contingency([[x2, n2 - x2], [x1, n1 - x1]], correction=False)
    assert test.p_value == pytest.approx(p, rel=1e-7, abs=1e-300)
    low, high = test.difference_ci
    assert low <= test.difference <= high


def test_an_empty_group_has_no_test_and_bad_counts_are_refused() -> None:
    assert s.two_proportion_test(0, 0, 3, 10) is None
    assert s.two_proportion_test(3, 10, 0, 0) is None
    with pytest.raises(ValueError):
        s.two_proportion_test(11, 10, 1, 10)
    with pytest.raises(ValueError):
        s.two_proportion_test(1, 10, -1, 10)


def test_no_relative_lift_without_control_conversions_and_no_interval_without_treatment_ones() -> None:
    none_in_control = s.two_proportion_test(0, 100, 5, 100)
    assert none_in_control is not None
    assert none_in_control.relative is None and none_in_control.relative_ci is None
    none_in_treatment = s.two_proportion_test(5, 100, 0, 100)
    assert none_in_treatment is not None
    assert none_in_treatment.relative == -1.0 and none_in_treatment.relative_ci is None


@pytest.mark.parametrize(("x", "n"), [(30, 100), (0, 20), (20, 20), (1, 3), (405, 4000)])
def test_the_rate_interval_is_scipys_wilson_interval(x: int, n: int) -> None:
    ci = sp.binomtest(x, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert s.wilson_interval(x, n) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-12)
    assert s.wilson_interval(0, 0) is None


# ------------------------------------------------------------------------------------------ sample size
def test_sample_size_for_ten_versus_twelve_percent_is_the_textbook_3841() -> None:
    assert s.sample_size_per_group(0.10, 0.12) == 3841


@pytest.mark.parametrize(("p1", "p2"), [(0.10, 0.12), (0.05, 0.06), (0.3, 0.2), (0.5, 0.55), (0.01, 0.03)])
def test_sample_size_is_the_smallest_n_with_power_080_computed_by_scipy(p1: float, p2: float) -> None:
    def power(n: int) -> float:  # the same normal approximation, evaluated with scipy's distribution
        mean = (p1 + p2) / 2
        z = sp.norm.ppf(0.975)
        spread = math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
        return float(
            sp.norm.cdf((abs(p1 - p2) * math.sqrt(n) - z * math.sqrt(2 * mean * (1 - mean))) / spread)
        )

    n = s.sample_size_per_group(p1, p2)
    assert n is not None
    assert power(n) >= 0.8 > power(n - 1)
    assert s.power_at(n, p1, p2) == pytest.approx(power(n), rel=1e-12)


def test_no_sample_size_detects_a_difference_of_zero() -> None:
    assert s.sample_size_per_group(0.2, 0.2) is None
    with pytest.raises(ValueError):
        s.sample_size_per_group(1.2, 0.2)


# ------------------------------------------------------------------------------------------ time to convert
@given(st.lists(st.floats(min_value=0, max_value=366 * 86400), min_size=1, max_size=200))
def test_the_histogram_median_lies_in_the_buckets_of_the_middle_conversions(samples: list[float]) -> None:
    histogram: dict[int, int] = {}
    for value in samples:
        histogram[s.ttc_bucket(value)] = histogram.get(s.ttc_bucket(value), 0) + 1
    estimate = s.median_from_histogram(histogram)
    ordered = sorted(samples)
    k = len(ordered)
    low_mid, high_mid = ordered[(k - 1) // 2], ordered[k // 2]
    assert estimate is not None
    assert s.ttc_bounds(s.ttc_bucket(low_mid))[0] <= estimate <= s.ttc_bounds(s.ttc_bucket(high_mid))[1]
    if low_mid >= 1:  # a bucket is 10% wide: within 10% of the middle conversion (the lower one if even)
        assert abs(estimate - low_mid) <= 0.1 * max(low_mid, estimate) + 1e-9


def test_buckets_are_contiguous_and_every_value_falls_in_its_own() -> None:
    for bucket in range(0, 200):
        low, high = s.ttc_bounds(bucket)
        assert low < high
        if bucket:
            assert s.ttc_bounds(bucket - 1)[1] == pytest.approx(low)
    for value in (0, 0.5, 1, 59, 60, 3600, 86400, 7 * 86400):
        low, high = s.ttc_bounds(s.ttc_bucket(value))
        assert low <= value < high * (1 + 1e-12)


def test_no_conversion_no_median() -> None:
    assert s.median_from_histogram({}) is None
    assert s.median([]) is None
    assert s.median([3, 1, 2]) == 2
    assert s.median([4, 1, 2, 3]) == 2.5


# ------------------------------------------------------------------------------------------ funnels
DAY1 = date(2026, 12, 1)
V1, V0 = "v1aaaaaaaaaa", "v0aaaaaaaaaa"
LAYOUT = [
    StepInfo("welcome", "send_email"),
    StepInfo("wait-2", "wait"),
    StepInfo("offer", "split", ("A", "B", "holdout")),
    StepInfo("offer-a", "send_email"),
    StepInfo("offer-b", "send_email"),
]


def run(day: date, variant: str | None, **counts: int) -> Bucket:
    return Bucket(day, V1, None, variant, counts)


def step(step_id: str, day: date, variant: str | None = None, **counts: int) -> Bucket:
    return Bucket(day, V1, step_id, variant, counts)


def known_outcomes() -> list[Bucket]:
    """1000 runs entered on day 1 and 100 on day 2; 900 reached the split: A 405, B 405, holdout 90.
    A converted 40, B 81, the holdout 3. 12 runs are still waiting at wait-2."""
    return [
        run(DAY1, None, entered=1000),
        run(DAY1 + timedelta(days=1), None, entered=100),
        step("welcome", DAY1, entered=1100, completed=1100, sent=1050, delivered=1040, opened=500),
        step("welcome", DAY1, **{"skipped:no email consent (unsubscribed)": 50}),
        step("wait-2", DAY1, entered=1100, completed=900, exited=188, waiting=200),
        step("wait-2", DAY1 + timedelta(days=2), waiting=-188),
        step("offer", DAY1, entered=900, completed=900),
        run(DAY1 + timedelta(days=2), "A", assigned=405, converted=40, completed=365, **{"ttc:100": 40}),
        run(DAY1 + timedelta(days=2), "B", assigned=405, converted=81, completed=324, **{"ttc:110": 81}),
        run(DAY1 + timedelta(days=2), "holdout", assigned=90, converted=3, completed=87, **{"ttc:120": 3}),
        run(DAY1 + timedelta(days=2), None, exited=188),
        step("offer-a", DAY1 + timedelta(days=2), "A", entered=405, completed=405, sent=405, clicked=60),
        step("offer-b", DAY1 + timedelta(days=2), "B", entered=405, completed=400, failed=5, sent=400),
    ]


def summary(buckets: list[Bucket], **kwargs: object) -> dict[str, object]:
    return s.summarize(buckets, LAYOUT, workflow_id="cart", current_version=V1, **kwargs)  # type: ignore[arg-type]


def test_the_funnel_is_in_step_order_with_every_figure() -> None:
    out = summary(known_outcomes())
    (version,) = out["versions"]  # type: ignore[misc]
    assert version["version"] == V1 and version["current"] is True
    assert version["entered"] == 1100
    assert version["conversions"] == 124
    assert version["conversionRate"] == pytest.approx(124 / 1100, abs=1e-6)
    assert version["completed"] == 365 + 324 + 87
    assert version["exited"] == 188 and version["failed"] == 0
    assert version["waiting"] == 1100 - (365 + 324 + 87) - 188 - 124
    steps = version["steps"]
    assert [x["stepId"] for x in steps] == ["welcome", "wait-2", "offer", "offer-a", "offer-b"]
    welcome = steps[0]
    assert welcome["messages"]["sent"] == 1050
    assert welcome["messages"]["opened"] == 500
    assert welcome["messages"]["skipped"] == {"no email consent (unsubscribed)": 50}
    assert steps[1]["waiting"] == 12 and steps[1]["messages"] is None
    assert steps[3]["variants"]["A"]["messages"]["clicked"] == 60
    assert version["biggestDropOff"] == {"stepId": "wait-2", "lost": 188, "entered": 1100, "rate": 0.170909}
    assert version["daily"] == [
        {"date": "2026-12-01", "entered": 1000, "conversions": 0},
        {"date": "2026-12-02", "entered": 100, "conversions": 0},
        {"date": "2026-12-03", "entered": 0, "conversions": 124},
    ]


def test_the_split_names_its_winner_with_the_test_scipy_computes() -> None:
    (version,) = summary(known_outcomes())["versions"]  # type: ignore[misc]
    (split,) = version["splits"]
    assert split["stepId"] == "offer" and split["control"] == "A" and split["winner"] == "B"
    (b_vs_a,) = split["comparisons"]
    _, p, _, _ = sp.chi2_contingency([[81, 405 - 81], [40, 405 - 40]], correction=False)
    assert b_vs_a["variant"] == "B" and b_vs_a["against"] == "A"
    assert b_vs_a["pValue"] == pytest.approx(p, rel=1e-6)
    assert b_vs_a["significant"] is True
    assert b_vs_a["sampleSizePerVariant"] is None and b_vs_a["additionalSampleNeeded"] is None
    assert b_vs_a["lift"]["absolute"] == pytest.approx(41 / 405, abs=1e-6)
    variants = {v["variant"]: v for v in version["variants"]}
    assert variants["B"]["entered"] == 405 and variants["B"]["conversions"] == 81
    assert variants["holdout"]["holdout"] is True
    assert variants["A"]["messages"]["sent"] == 405
    low, high = s.ttc_bounds(110)
    assert low - 1 <= variants["B"]["medianTimeToConvertSeconds"] <= high + 1


def test_the_holdout_lift_pools_every_treated_variant() -> None:
    (version,) = summary(known_outcomes())["versions"]  # type: ignore[misc]
    holdout = version["holdout"]
    assert holdout["entered"] == 90 and holdout["conversions"] == 3
    assert holdout["treatedEntered"] == 810 and holdout["treatedConversions"] == 121
    _, p, _, _ = sp.chi2_contingency([[121, 810 - 121], [3, 90 - 3]], correction=False)
    assert holdout["pValue"] == pytest.approx(p, rel=1e-6)
    assert holdout["lift"]["absolute"] == pytest.approx(121 / 810 - 3 / 90, abs=1e-6)


def test_a_split_not_yet_significant_says_how_many_contacts_it_still_needs() -> None:
    buckets = [
        run(DAY1, None, entered=200),
        run(DAY1, "A", assigned=100, converted=10),
        run(DAY1, "B", assigned=100, converted=12),
    ]
    (version,) = summary(buckets)["versions"]  # type: ignore[misc]
    (split,) = version["splits"]
    (cmp,) = split["comparisons"]
    assert cmp["significant"] is False and split["winner"] is None
    assert cmp["sampleSizePerVariant"] == 3841
    assert cmp["additionalSampleNeeded"] == {"A": 3741, "B": 3741, "total": 7482}


def test_time_filters_count_flows_in_range_and_gauges_as_of_the_end() -> None:
    buckets = known_outcomes()
    (first_day,) = summary(buckets, since=DAY1, until=DAY1)["versions"]  # type: ignore[misc]
    assert first_day["entered"] == 1000 and first_day["conversions"] == 0
    assert first_day["steps"][1]["waiting"] == 200  # the 188 leave on day 3
    (later,) = summary(buckets, since=DAY1 + timedelta(days=2))["versions"]  # type: ignore[misc]
    assert later["entered"] == 0 and later["conversions"] == 124
    assert later["steps"][1]["waiting"] == 12


def test_versions_come_current_first_and_a_version_filter_keeps_one() -> None:
    old = [Bucket(DAY1 - timedelta(days=30), V0, None, None, {"entered": 7})]
    out = summary([*old, *known_outcomes()])
    assert [v["version"] for v in out["versions"]] == [V1, V0]  # type: ignore[index]
    only_old = summary([*old, *known_outcomes()], version=V0)
    assert [(v["version"], v["entered"]) for v in only_old["versions"]] == [(V0, 7)]  # type: ignore[index]
    nothing = summary([], version="v-unknown")
    assert nothing["versions"][0]["entered"] == 0  # type: ignore[index]


def test_steps_no_longer_in_the_definition_follow_the_current_ones() -> None:
    buckets = [run(DAY1, None, entered=3), step("old-step", DAY1, entered=3, exited=3)]
    (version,) = summary(buckets)["versions"]  # type: ignore[misc]
    assert [x["stepId"] for x in version["steps"]][-1] == "old-step"
    assert version["steps"][-1]["kind"] == "unknown"
    assert version["biggestDropOff"]["stepId"] == "old-step"


def test_biggest_drop_off_prefers_the_most_lost_then_the_higher_rate_then_the_earlier_step() -> None:
    rows = [
        {"stepId": "a", "entered": 100, "exited": 10, "failed": 0},
        {"stepId": "b", "entered": 50, "exited": 5, "failed": 5},
        {"stepId": "c", "entered": 10, "exited": 0, "failed": 0},
    ]
    assert s.biggest_drop_off(rows)["stepId"] == "b"  # type: ignore[index]
    rows[1]["entered"] = 100
    assert s.biggest_drop_off(rows)["stepId"] == "a"  # type: ignore[index]
    assert s.biggest_drop_off([{"stepId": "x", "entered": 5, "exited": 0, "failed": 0}]) is None


def test_a_winner_must_beat_every_other_variant_significantly() -> None:
    assert s.winner_of({"A": (10, 100), "B": (30, 100)}) == "B"
    assert s.winner_of({"A": (10, 100), "B": (12, 100)}) is None
    assert s.winner_of({"A": (10, 100), "B": (30, 100), "C": (28, 100)}) is None  # B vs C: no
    assert s.winner_of({"A": (10, 100), "B": (0, 0)}) is None


def test_variants_only_the_counters_know_form_a_split_of_their_own() -> None:
    buckets = [run(DAY1, None, entered=20), run(DAY1, "X", entered=0, assigned=10, converted=1)]
    (version,) = s.summarize(buckets, [], workflow_id="w", current_version=None)["versions"]
    (split,) = version["splits"]
    assert split["stepId"] is None and split["variants"] == ["X"] and split["control"] == "X"
    assert split["comparisons"] == []


def test_statistics_and_attribution_stay_pure() -> None:
    import ast
    from pathlib import Path

    from cairn.domain import attribution

    banned = {"boto3", "botocore", "pynamodb", "aws_lambda_powertools", "scipy", "numpy"}
    for module in (s, attribution):
        tree = ast.parse(Path(str(module.__file__)).read_text(encoding="utf-8"))
        imported = {
            (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in node.names
        }
        assert not {name.split(".")[0] for name in imported} & banned, module.__name__
