"""Workflow statistics (DESIGN.md section 8), computed from counters: funnels per version, step, variant and
holdout; two-proportion tests of splits with the confidence interval of the lift; the sample still needed for
significance; the holdout's lift; the median time to convert; the step with the biggest drop-off.

Pure: plain numbers in, plain data out (the API's JSON shape). The counters come from `cairn.adapters.stats`,
which keeps them per day so that time filters work on the time things happened.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

ALPHA = 0.05  # two-sided significance level of every test
POWER = 0.8  # power the "sample still needed" is computed for
HOLDOUT = "holdout"  # the variant name of a split's holdout (DESIGN.md section 3)

# Counter names. A run's bucket (step None) counts entries, assignments to a split's variant, ends and
# conversions; a step's bucket counts runs passing through it and the messages it sent.
RUN_COUNTERS = ("entered", "assigned", "completed", "exited", "failed", "converted")
STEP_OUTCOMES = ("entered", "completed", "exited", "failed")
MESSAGE_COUNTERS = (
    "sent",
    "delivered",
    "opened",
    "clicked",
    "bounced",
    "complained",
    "unsubscribed",
    "failed",
    "held",
)
SKIPPED_PREFIX = "skipped:"
TTC_PREFIX = "ttc:"  # time-to-convert histogram: "ttc:<bucket>" -> conversions in that bucket
WAITING = "waiting"  # a gauge kept as +1/-1 deltas


# ------------------------------------------------------------------------------------------ the normal law
def norm_cdf(x: float) -> float:
    """P(Z <= x) for a standard normal Z."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def norm_sf(x: float) -> float:
    """P(Z > x), accurate far into the tail (no 1 - cdf cancellation)."""
    return 0.5 * math.erfc(x / math.sqrt(2.0))


_A = (
    -39.69683028665376,
    220.9460984245205,
    -275.9285104469687,
    138.3577518672690,
    -30.66479806614716,
    2.506628277459239,
)
_B = (-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572)
_C = (
    -0.007784894002430293,
    -0.3223964580411365,
    -2.400758277161838,
    -2.549732539343734,
    4.374664141464968,
    2.938163982698783,
)
_D = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)


def norm_ppf(p: float) -> float:
    """The quantile z with P(Z <= z) = p: Acklam's rational approximation refined by one Halley step on
    erfc, which brings it to full double precision."""
    if not 0.0 < p < 1.0:
        raise ValueError("p must be strictly between 0 and 1")
    low = 0.02425
    if p < low:
        q = math.sqrt(-2.0 * math.log(p))
        x = (((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
            (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
        )
    elif p <= 1.0 - low:
        q = p - 0.5
        r = q * q
        x = (
            (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5])
            * q
            / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)
        )
    else:
        q = math.sqrt(-2.0 * math.log1p(-p))
        x = -(((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
            (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
        )
    # Halley refinement against the exact cdf (in the upper tail through the survival function).
    e = norm_cdf(x) - p if p < 0.5 else (1.0 - p) - norm_sf(x)
    u = e * math.sqrt(2.0 * math.pi) * math.exp(x * x / 2.0)
    return x - u / (1.0 + x * u / 2.0)


# ------------------------------------------------------------------------------------------ tests
@dataclass(frozen=True)
class ProportionTest:
    """A two-sided two-proportion z-test of `treatment` against `control`, with the lift's confidence
    intervals: the difference of rates (Wald, unpooled) and the relative lift (log relative risk, Katz)."""

    control_rate: float
    treatment_rate: float
    z: float | None  # None when the pooled variance is zero (both rates 0 or both 1: no evidence)
    p_value: float
    difference: float  # treatment_rate - control_rate
    difference_ci: tuple[float, float]
    relative: float | None  # treatment_rate / control_rate - 1; None when the control rate is 0
    relative_ci: tuple[float, float] | None  # None unless both groups have a conversion
    significant: bool


def _check(conversions: int, n: int, name: str) -> None:
    if n < 0 or conversions < 0 or conversions > n:
        raise ValueError(f"{name}: need 0 <= conversions <= n (got {conversions} of {n})")


def two_proportion_test(
    control_conversions: int,
    control_n: int,
    treatment_conversions: int,
    treatment_n: int,
    alpha: float = ALPHA,
) -> ProportionTest | None:
    """The test, or None while either group is empty."""
    _check(control_conversions, control_n, "control")
    _check(treatment_conversions, treatment_n, "treatment")
    if control_n == 0 or treatment_n == 0:
        return None
    p1 = control_conversions / control_n
    p2 = treatment_conversions / treatment_n
    pooled = (control_conversions + treatment_conversions) / (control_n + treatment_n)
    se_pooled = math.sqrt(pooled * (1.0 - pooled) * (1.0 / control_n + 1.0 / treatment_n))
    z: float | None
    if se_pooled == 0.0:
        z, p_value = None, 1.0
    else:
        z = (p2 - p1) / se_pooled
        p_value = min(1.0, 2.0 * norm_sf(abs(z)))
    crit = norm_ppf(1.0 - alpha / 2.0)
    se = math.sqrt(p1 * (1.0 - p1) / control_n + p2 * (1.0 - p2) / treatment_n)
    diff = p2 - p1
    relative: float | None = None
    relative_ci: tuple[float, float] | None = None
    if p1 > 0.0:
        relative = p2 / p1 - 1.0
        if treatment_conversions > 0:
            log_rr = math.log(p2 / p1)
            se_log = math.sqrt(
                1.0 / treatment_conversions - 1.0 / treatment_n + 1.0 / control_conversions - 1.0 / control_n
            )
            relative_ci = (math.exp(log_rr - crit * se_log) - 1.0, math.exp(log_rr + crit * se_log) - 1.0)
    return ProportionTest(
        control_rate=p1,
        treatment_rate=p2,
        z=z,
        p_value=p_value,
        difference=diff,
        difference_ci=(diff - crit * se, diff + crit * se),
        relative=relative,
        relative_ci=relative_ci,
        significant=p_value < alpha,
    )


def wilson_interval(conversions: int, n: int, alpha: float = ALPHA) -> tuple[float, float] | None:
    """The Wilson score interval of one conversion rate (sound near 0 and 1, unlike Wald's); None for n=0."""
    _check(conversions, n, "rate")
    if n == 0:
        return None
    z = norm_ppf(1.0 - alpha / 2.0)
    p = conversions / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def sample_size_per_group(p1: float, p2: float, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Contacts needed in EACH group for a two-sided two-proportion test at level `alpha` to detect the
    difference between rates p1 and p2 with probability `power` (normal approximation, no continuity
    correction). None when the rates are equal: no sample size detects a difference of zero."""
    for p in (p1, p2):
        if not 0.0 <= p <= 1.0:
            raise ValueError("rates must lie in [0, 1]")
    if p1 == p2:
        return None
    z_alpha = norm_ppf(1.0 - alpha / 2.0)
    z_beta = norm_ppf(power)
    mean = (p1 + p2) / 2.0
    root = z_alpha * math.sqrt(2.0 * mean * (1.0 - mean)) + z_beta * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    n = root * root / ((p1 - p2) ** 2)
    return max(1, math.ceil(n - 1e-9))


def power_at(n: int, p1: float, p2: float, alpha: float = ALPHA) -> float:
    """The power of the same test with n contacts per group (the inverse of `sample_size_per_group`)."""
    if p1 == p2:
        return alpha
    mean = (p1 + p2) / 2.0
    z_alpha = norm_ppf(1.0 - alpha / 2.0)
    spread = math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    if spread == 0.0:
        return 1.0
    return norm_cdf((abs(p1 - p2) * math.sqrt(n) - z_alpha * math.sqrt(2.0 * mean * (1.0 - mean))) / spread)


# ------------------------------------------------------------------------------------------ time to convert
TTC_RATIO = 1.1  # geometric histogram: every bucket is 10% wider than the one before


def ttc_bucket(seconds: float) -> int:
    """The histogram bucket of a time to convert: 0 for under a second, else 1 + floor(log_1.1(seconds))."""
    if seconds < 1.0:
        return 0
    return math.floor(math.log(seconds) / math.log(TTC_RATIO)) + 1


def ttc_bounds(bucket: int) -> tuple[float, float]:
    """[low, high) of a bucket, in seconds."""
    if bucket <= 0:
        return (0.0, 1.0)
    return (TTC_RATIO ** (bucket - 1), TTC_RATIO**bucket)


def median_from_histogram(histogram: Mapping[int, int]) -> float | None:
    """The median, interpolated linearly inside the bucket where the cumulative count reaches half: within
    one bucket (10%) of the middle conversion (the lower of the two middle ones for an even count). None
    without any conversion."""
    total = sum(n for n in histogram.values() if n > 0)
    if total == 0:
        return None
    target = total / 2.0
    seen = 0
    for bucket in sorted(histogram):
        count = histogram[bucket]
        if count <= 0:
            continue
        if seen + count >= target:
            low, high = ttc_bounds(bucket)
            return low + (high - low) * (target - seen) / count
        seen += count
    raise AssertionError("unreachable")  # pragma: no cover


def median(samples: Iterable[float]) -> float | None:
    """The exact median of samples (mean of the two middle ones for an even count)."""
    values = sorted(samples)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2.0


# ------------------------------------------------------------------------------------------ funnels
@dataclass(frozen=True)
class StepInfo:
    """A workflow step as the statistics need it: its id and kind in step order; a split names its
    variants in declared order (the first is the control; a variant named `holdout` is the holdout)."""

    step_id: str
    kind: str
    variants: tuple[str, ...] = ()


@dataclass(frozen=True)
class Bucket:
    """One counter item: what was counted on `day` for a version, a step (None: the run as a whole) and a
    variant (None: before or without a split)."""

    day: date
    version: str | None
    step_id: str | None
    variant: str | None
    counts: Mapping[str, int]


@dataclass
class _Tally:
    flow: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # within [since, until]
    gauge: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # everything up to `until`

    def add(self, counts: Mapping[str, int], in_range: bool) -> None:
        for name, value in counts.items():
            if name == WAITING or name in RUN_COUNTERS:
                self.gauge[name] += int(value)
            if in_range:
                self.flow[name] += int(value)

    def n(self, name: str) -> int:
        return int(self.flow.get(name, 0))

    def histogram(self) -> dict[int, int]:
        return {int(k[len(TTC_PREFIX) :]): v for k, v in self.flow.items() if k.startswith(TTC_PREFIX)}


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _seconds(value: float | None) -> int | None:
    return None if value is None else round(value)


def _messages(tally: _Tally) -> dict[str, Any]:
    out: dict[str, Any] = {name: tally.n(name) for name in MESSAGE_COUNTERS}
    out["skipped"] = {
        k[len(SKIPPED_PREFIX) :]: v
        for k, v in sorted(tally.flow.items())
        if k.startswith(SKIPPED_PREFIX) and v
    }
    return out


def _has_messages(tally: _Tally) -> bool:
    return any(tally.n(n) for n in MESSAGE_COUNTERS) or any(
        k.startswith(SKIPPED_PREFIX) and v for k, v in tally.flow.items()
    )


def _ci(pair: tuple[float, float] | None) -> list[float] | None:
    return None if pair is None else [round(pair[0], 6), round(pair[1], 6)]


def _test_out(test: ProportionTest) -> dict[str, Any]:
    return {
        "pValue": test.p_value,
        "z": test.z,
        "significant": test.significant,
        "lift": {
            "absolute": round(test.difference, 6),
            "absoluteCi": _ci(test.difference_ci),
            "relative": None if test.relative is None else round(test.relative, 6),
            "relativeCi": _ci(test.relative_ci),
        },
    }


class Arm(NamedTuple):
    """A split's variant as the tests see it: its name, conversions and contacts."""

    name: str
    conversions: int
    n: int


def compare(control: Arm, treatment: Arm, *, alpha: float = ALPHA) -> dict[str, Any]:
    """One comparison of a split: the test, and while it is not significant the sample still needed at the
    observed rates."""
    control_x, control_n = control.conversions, control.n
    variant, x, n = treatment.name, treatment.conversions, treatment.n
    out: dict[str, Any] = {"variant": variant, "against": control.name}
    test = two_proportion_test(control_x, control_n, x, n, alpha)
    if test is None:
        out.update(pValue=None, z=None, significant=False, lift=None, sampleSizePerVariant=None)
        out["additionalSampleNeeded"] = None
        return out
    out.update(_test_out(test))
    needed = (
        None if test.significant else sample_size_per_group(test.control_rate, test.treatment_rate, alpha)
    )
    out["sampleSizePerVariant"] = needed
    out["additionalSampleNeeded"] = (
        None
        if needed is None
        else {
            control.name: max(0, needed - control_n),
            variant: max(0, needed - n),
            "total": max(0, needed - control_n) + max(0, needed - n),
        }
    )
    return out


def winner_of(entries: Mapping[str, tuple[int, int]], alpha: float = ALPHA) -> str | None:
    """The variant whose conversion rate is highest AND significantly higher than every other variant's
    (pairwise tests); None until there is one."""
    rated = [(x / n, name) for name, (x, n) in entries.items() if n > 0]
    if len(rated) < 2 or len(rated) != len(entries):
        return None
    _, best = max(rated)
    bx, bn = entries[best]
    for name, (x, n) in entries.items():
        if name == best:
            continue
        test = two_proportion_test(x, n, bx, bn, alpha)
        if test is None or not test.significant or test.treatment_rate <= test.control_rate:
            return None
    return best


def biggest_drop_off(steps: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The step that lost the most runs (exited or failed there, so neither converted nor went on); ties go
    to the higher loss rate, then to the earlier step. None when no step lost anyone."""
    best: tuple[int, float, int] | None = None
    found: dict[str, Any] | None = None
    for index, step in enumerate(steps):
        lost = int(step.get("exited", 0)) + int(step.get("failed", 0))
        if lost <= 0:
            continue
        entered = int(step.get("entered", 0))
        rate = lost / entered if entered else 1.0
        key = (lost, rate, -index)
        if best is None or key > best:
            best = key
            found = {"stepId": step["stepId"], "lost": lost, "entered": entered, "rate": round(rate, 6)}
    return found


def _versions_in(buckets: Iterable[Bucket]) -> dict[str | None, date]:
    first: dict[str | None, date] = {}
    for b in buckets:
        if b.version not in first or b.day < first[b.version]:
            first[b.version] = b.day
    return first


def summarize(
    buckets: Iterable[Bucket],
    layout: Sequence[StepInfo],
    *,
    workflow_id: str,
    current_version: str | None,
    since: date | None = None,
    until: date | None = None,
    version: str | None = None,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """The statistics of one workflow (the body of `GET /v1/workflows/{id}/stats`).

    Flows (entries, sends, conversions, ...) count what happened on days within [since, until]; gauges
    (`waiting`, and a version's runs still open) are as of the end of `until`. Buckets after `until` are
    ignored. `version` keeps only that version; versions come current first, then newest first."""
    kept = [b for b in buckets if until is None or b.day <= until]
    if version is not None:
        kept = [b for b in kept if b.version == version]
    firsts = _versions_in(kept)
    if version is not None and version not in firsts:
        firsts[version] = until or since or date.min
    if current_version is not None and version in (None, current_version) and current_version not in firsts:
        firsts[current_version] = until or since or date.min  # a defined workflow always shows its version
    order = sorted(firsts, key=lambda v: (v != current_version, -firsts[v].toordinal(), str(v)))
    return {
        "workflowId": workflow_id,
        "currentVersion": current_version,
        "from": since.isoformat() if since else None,
        "to": until.isoformat() if until else None,
        "alpha": alpha,
        "versions": [
            _version_stats(
                [b for b in kept if b.version == v],
                layout,
                v,
                current=v == current_version,
                since=since,
                alpha=alpha,
            )
            for v in order
        ],
    }


def _version_stats(
    buckets: list[Bucket],
    layout: Sequence[StepInfo],
    version: str | None,
    *,
    current: bool,
    since: date | None,
    alpha: float,
) -> dict[str, Any]:
    run: dict[str | None, _Tally] = defaultdict(_Tally)  # variant -> the runs' counters
    steps: dict[str, dict[str | None, _Tally]] = defaultdict(lambda: defaultdict(_Tally))
    daily: dict[date, dict[str, int]] = defaultdict(lambda: {"entered": 0, "conversions": 0})
    for b in buckets:
        in_range = since is None or b.day >= since
        if b.step_id is None:
            run[b.variant].add(b.counts, in_range)
            if in_range:
                daily[b.day]["entered"] += int(b.counts.get("entered", 0))
                daily[b.day]["conversions"] += int(b.counts.get("converted", 0))
        else:
            steps[b.step_id][b.variant].add(b.counts, in_range)

    total = _Tally()
    for tally in run.values():
        for name, value in tally.flow.items():
            total.flow[name] += value
        for name, value in tally.gauge.items():
            total.gauge[name] += value
    entered = total.n("entered")
    conversions = total.n("converted")
    ended = sum(total.gauge.get(k, 0) for k in ("completed", "exited", "failed", "converted"))

    known = [s.step_id for s in layout]
    kinds = {s.step_id: s.kind for s in layout}
    extra = sorted(set(steps) - set(known))
    step_rows: list[dict[str, Any]] = []
    for step_id in [*known, *extra]:
        by_variant = steps.get(step_id, {})
        merged = _Tally()
        for tally in by_variant.values():
            for name, value in tally.flow.items():
                merged.flow[name] += value
            for name, value in tally.gauge.items():
                merged.gauge[name] += value
        row: dict[str, Any] = {"stepId": step_id, "kind": kinds.get(step_id, "unknown")}
        row.update({name: merged.n(name) for name in STEP_OUTCOMES})
        row["waiting"] = max(0, merged.gauge.get(WAITING, 0))
        row["lost"] = row["exited"] + row["failed"]
        is_send = kinds.get(step_id, "").startswith("send_")
        row["messages"] = _messages(merged) if is_send or _has_messages(merged) else None
        named = {v: t for v, t in by_variant.items() if v is not None}
        if named:
            row["variants"] = {
                v: {
                    **{name: t.n(name) for name in STEP_OUTCOMES},
                    "waiting": max(0, t.gauge.get(WAITING, 0)),
                    **({"messages": _messages(t)} if row["messages"] is not None else {}),
                }
                for v, t in sorted(named.items())
            }
        step_rows.append(row)

    # Variants: declared by the layout's splits, plus any the counters name.
    declared: list[tuple[str | None, tuple[str, ...]]] = [
        (s.step_id, s.variants) for s in layout if s.variants
    ]
    named_variants = sorted(v for v in run if v is not None)
    for steps_map in steps.values():
        named_variants.extend(v for v in steps_map if v is not None)
    undeclared = sorted(set(named_variants) - {v for _, vs in declared for v in vs})
    if undeclared:
        declared.append((None, tuple(undeclared)))

    def variant_row(name: str) -> dict[str, Any]:
        t = run.get(name, _Tally())
        v_entered = t.n("entered") + t.n("assigned")
        v_conv = t.n("converted")
        messages = _Tally()
        for steps_map in steps.values():
            if name in steps_map:
                for key, value in steps_map[name].flow.items():
                    messages.flow[key] += value
        return {
            "variant": name,
            "holdout": name == HOLDOUT,
            "entered": v_entered,
            "completed": t.n("completed"),
            "exited": t.n("exited"),
            "failed": t.n("failed"),
            "conversions": v_conv,
            "conversionRate": _rate(v_conv, v_entered),
            "conversionRateCi": _ci(wilson_interval(v_conv, v_entered, alpha)),
            "medianTimeToConvertSeconds": _seconds(median_from_histogram(t.histogram())),
            "messages": _messages(messages),
        }

    variant_rows: list[dict[str, Any]] = []
    splits: list[dict[str, Any]] = []
    holdout: dict[str, Any] | None = None
    for split_id, names in declared:
        rows = [variant_row(n) for n in names]
        variant_rows.extend(rows)
        arms = [r for r in rows if not r["holdout"]]
        split: dict[str, Any] = {"stepId": split_id, "variants": list(names), "control": None}
        split["comparisons"] = []
        split["winner"] = None
        if arms:
            control = arms[0]
            split["control"] = control["variant"]
            split["comparisons"] = [
                compare(
                    Arm(control["variant"], control["conversions"], control["entered"]),
                    Arm(r["variant"], r["conversions"], r["entered"]),
                    alpha=alpha,
                )
                for r in arms[1:]
            ]
            split["winner"] = winner_of({r["variant"]: (r["conversions"], r["entered"]) for r in arms}, alpha)
        splits.append(split)
        held = next((r for r in rows if r["holdout"]), None)
        if held is not None and holdout is None:
            treated_x = sum(r["conversions"] for r in arms)
            treated_n = sum(r["entered"] for r in arms)
            holdout = {
                "stepId": split_id,
                "entered": held["entered"],
                "conversions": held["conversions"],
                "conversionRate": held["conversionRate"],
                "treatedEntered": treated_n,
                "treatedConversions": treated_x,
                "treatedConversionRate": _rate(treated_x, treated_n),
            }
            test = two_proportion_test(held["conversions"], held["entered"], treated_x, treated_n, alpha)
            if test is None:
                holdout.update(pValue=None, z=None, significant=False, lift=None)
            else:
                holdout.update(_test_out(test))

    return {
        "version": version,
        "current": current,
        "entered": entered,
        "completed": total.n("completed"),
        "exited": total.n("exited"),
        "failed": total.n("failed"),
        "waiting": max(0, total.gauge.get("entered", 0) - ended),
        "conversions": conversions,
        "conversionRate": _rate(conversions, entered),
        "medianTimeToConvertSeconds": _seconds(median_from_histogram(total.histogram())),
        "steps": step_rows,
        "variants": variant_rows,
        "splits": splits,
        "holdout": holdout,
        "biggestDropOff": biggest_drop_off(step_rows),
        "daily": [{"date": d.isoformat(), **daily[d]} for d in sorted(daily)],
    }
