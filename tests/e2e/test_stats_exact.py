"""Statistics are exact after an end-to-end run in local mode with known outcomes: a split with a known
winner (B converts, A barely does), a holdout, known conversion times, and the attribution of every
conversion to the email that preceded it.

The figures come from the functions' own recording (docs/stats-wiring.md), so the test waits for that
wiring: it is skipped while `cairn.services.stats.WIRED` is False.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from scipy import stats as sp
from tests.e2e.conftest import START
from tests.e2e.projects import project, running
from tests.e2e.workflow_helpers import ok

from cairn.domain import statistics
from cairn.local.runtime import LocalCairn
from cairn.services import stats

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not stats.WIRED,
        reason="waits for the recording calls in react, steps, send and feedback (docs/stats-wiring.md)",
    ),
]

WF = "ab-offer"
WORKFLOW = """\
id: ab-offer
name: A/B offer (statistics test)
trigger:
  event: offer_requested
goal: {event: order_completed, within: 7d}
steps:
  - id: offer
    split: {A: 45, B: 45, holdout: 10}
    A:
      - id: offer-a
        send_email: {template: welcome-discount}
    B:
      - id: offer-b
        send_email: {template: welcome-our-story}
  - id: linger
    wait: 1d
"""
CONTACTS = 32
HOUR = 3600


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalCairn]:
    """The repo's project with one workflow of our own: a split whose outcome the test decides."""
    root = project(tmp_path, workflows={WF: WORKFLOW})
    with running(root) as runtime:
        yield runtime
    shutil.rmtree(root, ignore_errors=True)


def test_a_split_with_a_known_winner_is_measured_exactly(local: LocalCairn) -> None:
    users = [f"shopper-{i:02d}" for i in range(CONTACTS)]
    for user in users:
        traits = {"email": f"{user}@example.com"}
        ok(local.request("POST", "/v1/identify", {"userId": user, "traits": traits}, key=local.write_key))
        ok(
            local.request(
                "PUT",
                f"/v1/contacts/{user}/subscriptions/email",
                {"status": "subscribed"},
                key=local.secret_key,
            )
        )
        ok(
            local.request(
                "POST", "/v1/track", {"userId": user, "event": "offer_requested"}, key=local.write_key
            )
        )
    local.settle()

    # Who got which variant, as the outbox tells it (assignment is a hash: the test reads it, not guesses).
    by_step: dict[str, list[str]] = {"offer-a": [], "offer-b": []}
    for message in local.outbox():
        by_step[message["stepId"]].append(message["to"].split("@")[0])
    group_a, group_b = sorted(by_step["offer-a"]), sorted(by_step["offer-b"])
    holdout = sorted(set(users) - set(group_a) - set(group_b))
    assert group_a and group_b and len(group_a) + len(group_b) + len(holdout) == CONTACTS

    # Every B contact converts an hour in; two of A and one of the holdout two hours in.
    converting = {u: HOUR for u in group_b} | {u: 2 * HOUR for u in group_a[:2]}
    converting |= {u: 2 * HOUR for u in holdout[:1]}
    for delay in sorted(set(converting.values())):
        local.advance(to=START + timedelta(seconds=delay))
        for user in sorted(u for u, d in converting.items() if d == delay):
            order = {"userId": user, "event": "order_completed", "properties": {"total": 50}}
            ok(local.request("POST", "/v1/track", order, key=local.write_key))
        local.settle()
    local.advance(to=START + timedelta(days=8))  # every wait, the holdout's included, is over

    status, _, body = local.request("GET", f"/v1/workflows/{WF}/stats", key=local.secret_key)
    assert status == 200, body
    (version,) = body["versions"]
    n_a, n_b, n_h = len(group_a), len(group_b), len(holdout)
    x_a, x_b, x_h = 2, n_b, min(1, n_h)
    conversions = x_a + x_b + x_h
    assert version["entered"] == CONTACTS
    assert version["conversions"] == conversions
    assert version["conversionRate"] == pytest.approx(conversions / CONTACTS, abs=1e-6)
    assert version["completed"] == CONTACTS - conversions
    assert (version["exited"], version["failed"], version["waiting"]) == (0, 0, 0)

    steps = {s["stepId"]: s for s in version["steps"]}
    assert steps["offer"]["entered"] == CONTACTS
    assert steps["offer-a"]["messages"]["sent"] == n_a
    assert steps["offer-b"]["messages"]["sent"] == n_b
    assert steps["linger"]["entered"] == CONTACTS - n_h  # the holdout waits in the split, not here

    variants = {v["variant"]: v for v in version["variants"]}
    assert {k: (v["entered"], v["conversions"]) for k, v in variants.items()} == {
        "A": (n_a, x_a),
        "B": (n_b, x_b),
        "holdout": (n_h, x_h),
    }
    low, high = statistics.ttc_bounds(statistics.ttc_bucket(HOUR))
    assert low <= variants["B"]["medianTimeToConvertSeconds"] <= high

    (split,) = version["splits"]
    assert split["stepId"] == "offer" and split["control"] == "A" and split["winner"] == "B"
    (b_vs_a,) = split["comparisons"]
    _, p, _, _ = sp.chi2_contingency([[x_b, n_b - x_b], [x_a, n_a - x_a]], correction=False)
    assert b_vs_a["pValue"] == pytest.approx(p, rel=1e-6) and b_vs_a["significant"] is True
    if n_h:
        assert version["holdout"]["entered"] == n_h and version["holdout"]["conversions"] == x_h

    status, _, attribution = local.request("GET", f"/v1/workflows/{WF}/attribution", key=local.secret_key)
    assert status == 200, attribution
    assert attribution["conversions"] == conversions
    assert attribution["attributed"] == x_a + x_b  # the holdout received nothing
    assert attribution["models"]["lastTouch"]["template"] == {
        "email:welcome-discount": float(x_a),
        "email:welcome-our-story": float(x_b),
    }
