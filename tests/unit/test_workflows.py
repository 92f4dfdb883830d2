"""The workflow language: typed model and a validator that reports every problem with file, line, step."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from textwrap import dedent

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cairn.domain.workflows import (
    STEP_KINDS,
    Catalog,
    Workflow,
    awaited_matches,
    longest_run,
    validate,
    variant_for,
    walk,
)
from cairn.domain.yamlsource import load

CATALOG = Catalog(
    email_templates=frozenset({"welcome", "reminder"}),
    sms_templates=frozenset({"nudge"}),
    segments=frozenset({"vips"}),
)


def check(text: str, file: str = "workflows/demo.yaml") -> tuple[object, list[str]]:
    wf, problems = validate(load(dedent(text)), file, CATALOG)
    return wf, [str(p) for p in problems]


GOOD = """\
id: demo
name: Demo
trigger: {event: signed_up}
steps:
  - send_email: {template: welcome}
  - wait: 2d
  - branch:
      - if: {segment: vips}
        then:
          - send_sms: {template: nudge}
      - else:
          - send_email: {template: reminder}
"""


def test_a_valid_workflow_parses_with_default_step_ids() -> None:
    wf, problems = check(GOOD)
    assert problems == []
    assert wf is not None
    ids = [p.step_id for p in walk(wf.steps)]  # type: ignore[attr-defined]
    assert ids == ["send_email-welcome", "wait-2", "branch-3", "send_sms-nudge", "send_email-reminder"]


def test_every_problem_is_reported_with_file_line_and_step() -> None:
    text = """\
    id: demo
    name: Demo
    trigger: {event: signed_up}
    steps:
      - send_email: {template: missing}
      - wait: 2 days
      - send_sms: {template: nope}
      - branch:
          - if: {segment: unknown-seg}
            then: [{wait: 400d}]
    """
    wf, problems = check(text)
    assert wf is None
    assert "workflows/demo.yaml:5 [step send_email-missing]: unknown email template 'missing'" in problems
    assert any(p.startswith("workflows/demo.yaml:6 [step wait-2]") and "2 days" in p for p in problems)
    assert "workflows/demo.yaml:7 [step send_sms-nope]: unknown SMS template 'nope'" in problems
    assert any(":9 [step branch-4]" in p and "unknown segment 'unknown-seg'" in p for p in problems)
    assert any(":10 [step wait-5]" in p and "400d" in p for p in problems)


def test_structural_errors_name_the_step_and_line() -> None:
    text = """\
    id: demo
    name: Demo
    trigger: {event: signed_up}
    steps:
      - send_email: {template: welcome}
      - {send_email: {template: welcome}, wait: 1d}
      - send_email: {template: welcome, colour: red}
    """
    _, problems = check(text)
    assert any(p.startswith("workflows/demo.yaml:6") and "exactly one of" in p for p in problems), problems
    assert any(p.startswith("workflows/demo.yaml:7") and "colour" in p for p in problems), problems


def test_duplicate_ids_unreachable_steps_and_id_mismatch() -> None:
    text = """\
    id: other
    name: Demo
    trigger: {event: signed_up}
    steps:
      - send_email: {template: welcome}
      - exit: {}
      - send_email: {template: welcome}
    """
    _, problems = check(text)
    assert any("id 'other' must match the file name 'demo'" in p for p in problems)
    assert any("duplicate step id 'send_email-welcome'" in p for p in problems)
    assert any(":7" in p and "unreachable" in p for p in problems)


def test_waits_of_a_run_cannot_add_up_to_more_than_a_year() -> None:
    text = """\
    id: demo
    name: Demo
    trigger: {event: signed_up}
    steps:
      - wait: 30w
      - wait: 30w
    """
    _, problems = check(text)
    assert any("add up to more than one year" in p for p in problems)


def test_rules_are_checked_with_their_path() -> None:
    text = """\
    id: demo
    name: Demo
    trigger: {event: signed_up, where: {property: plan, gtee: 3}}
    audience: {attribute: country, in: DE}
    steps:
      - send_email: {template: welcome}
    """
    _, problems = check(text)
    assert any(p.startswith("workflows/demo.yaml:3") and "gtee" in p for p in problems), problems
    assert any(p.startswith("workflows/demo.yaml:4") and "in" in p for p in problems), problems


def test_content_hash_changes_with_the_definition() -> None:
    a, _ = check(GOOD)
    b, _ = check(GOOD.replace("2d", "3d"))
    assert a is not None and b is not None
    assert a.content_hash() != b.content_hash()  # type: ignore[attr-defined]
    again, _ = check(GOOD)
    assert again.content_hash() == a.content_hash()  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the whole language

EVERY_KIND = """\
id: demo
name: Every step kind
trigger: {event: signed_up, where: {property: plan, eq: pro}, max_age: 2h}
audience: {consent: email}
reentry: {after: 30d}
goal: {event: order_completed, within: 14d}
exit_when: {tag: do-not-contact}
steps:
  - send_email: {template: welcome}
  - send_sms: {template: nudge, on_hold: skip}
  - wait: 1d
  - wait: {until: {attribute: trial_ends_at, at: "09:00", offset: -1d}}
  - wait: {until: {time: "10:30", days: [mon, tue]}}
  - wait_for: {event: email_clicked, timeout: 2d}
    on_event: [{update: {add_tags: [clicked]}}]
    on_timeout: [{send_email: {template: reminder}}]
  - branch:
      - if: {segment: vips}
        then: [{assign_task: {to: sales, title: Call them, due: 1d}}]
      - else: [{webhook: {url: "https://crm.example.com/hook", secret: crm-hook}}]
  - split: {A: 45, B: 45, holdout: 10}
    A: [{add_to_list: newsletter}]
    B: [{remove_from_list: {list: newsletter}}]
  - update: {set: {plan: gold}, unset: [trial], remove_tags: [trial], stage: customer}
  - enroll: other
  - exit: {reason: done here}
"""
FULL_CATALOG = Catalog(
    email_templates=frozenset({"welcome", "reminder"}),
    sms_templates=frozenset({"nudge"}),
    segments=frozenset({"vips"}),
    workflows=frozenset({"demo", "other"}),
)


def check_full(text: str) -> tuple[Workflow | None, list[str]]:
    wf, problems = validate(load(dedent(text)), "workflows/demo.yaml", FULL_CATALOG)
    return wf, [str(p) for p in problems]


def test_every_step_kind_parses_with_stable_default_ids() -> None:
    wf, problems = check_full(EVERY_KIND)
    assert problems == []
    assert wf is not None
    placed = [(p.step_id, p.kind) for p in walk(wf.steps)]
    assert placed == [
        ("send_email-welcome", "send_email"),
        ("send_sms-nudge", "send_sms"),
        ("wait-3", "wait"),
        ("wait-4", "wait"),
        ("wait-5", "wait"),
        ("wait_for-6", "wait_for"),
        ("update-7", "update"),
        ("send_email-reminder", "send_email"),
        ("branch-9", "branch"),
        ("assign_task-10", "assign_task"),
        ("webhook-11", "webhook"),
        ("split-12", "split"),
        ("add_to_list-13", "add_to_list"),
        ("remove_from_list-14", "remove_from_list"),
        ("update-15", "update"),
        ("enroll-16", "enroll"),
        ("exit-17", "exit"),
    ]
    assert set(STEP_KINDS) == {kind for _, kind in placed}
    # The site bundle round trip keeps the workflow and its version.
    again = Workflow.model_validate(wf.model_dump(mode="json", by_alias=True))
    assert again == wf
    assert again.content_hash() == wf.content_hash()


def test_each_trigger_kind() -> None:
    for trigger, kind, event in [
        ("{event: signed_up}", "event", "signed_up"),
        ("{segment_entered: vips}", "segment", "segment_entered"),
        ('{date_attribute: {attribute: birthday, at: "09:00"}}', "date", None),
        ("api", "api", None),
    ]:
        text = EVERY_KIND.replace(
            "{event: signed_up, where: {property: plan, eq: pro}, max_age: 2h}", trigger
        )
        wf, problems = check_full(text)
        assert problems == [], trigger
        assert wf is not None
        assert (wf.trigger_kind, wf.trigger_event) == (kind, event)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            (
                "trigger: {event: signed_up, where: {property: plan, eq: pro}, max_age: 2h}",
                "trigger: {segment_entered: nobody}",
            ),
            ":3: unknown segment 'nobody'",
        ),
        (
            (
                "trigger: {event: signed_up, where: {property: plan, eq: pro}, max_age: 2h}",
                "trigger: {event: a, segment_entered: b}",
            ),
            ":3: trigger: a trigger is one of",
        ),
        (("reentry: {after: 30d}", "reentry: never\ntrigger2: x"), "trigger2"),
        (
            ("split: {A: 45, B: 45, holdout: 10}", "split: {A: 45, B: 45}"),
            "[step split-12]: the weights add up to 90, not 100",
        ),
        (("split: {A: 45, B: 45, holdout: 10}", "split: {A: 45, B: 45, C: 10}"), "variant 'C' has no steps"),
        (
            (
                "    B: [{remove_from_list: {list: newsletter}}]",
                "    B: [{remove_from_list: {list: newsletter}}]\n    holdout: [{exit: {}}]",
            ),
            "the holdout receives nothing",
        ),
        (
            ('wait: {until: {time: "10:30", days: [mon, tue]}}', 'wait: {until: {time: "25:00"}}'),
            "invalid time of day '25:00'",
        ),
        (("offset: -1d", "offset: 1 day"), "invalid offset '1 day'"),
        (("timeout: 2d", "timeout: 400d"), "[step wait_for-6]: 400d is longer than one year"),
        (("enroll: other", "enroll: nowhere"), "[step enroll-16]: unknown workflow 'nowhere'"),
        (("enroll: other", "enroll: demo"), "cannot enroll a contact into itself"),
        (('url: "https://crm.example.com/hook"', 'url: "http://crm.example.com/hook"'), "webhooks are HTTPS"),
        (("set: {plan: gold}", "set: {email: x@y.z}"), "'email' is changed through identify"),
        (("due: 1d", "due: tomorrow"), "[step assign_task-10]: invalid duration 'tomorrow'"),
        (
            ("send_sms: {template: nudge, on_hold: skip}", "send_sms: {template: nudge, on_hold: drop}"),
            "on_hold",
        ),
        (("exit: {reason: done here}", "exit: {reason: done here}\n  - wait: 1d"), "unreachable"),
    ],
)
def test_problems_of_the_new_step_kinds_name_file_line_and_step(
    change: tuple[str, str], expected: str
) -> None:
    old, new = change
    assert old in EVERY_KIND
    wf, problems = check_full(EVERY_KIND.replace(old, new))
    assert wf is None
    assert any(expected in p for p in problems), problems
    assert all(p.startswith("workflows/demo.yaml") for p in problems)


def test_a_date_trigger_needs_a_reentry_that_lets_the_contact_back_next_year() -> None:
    text = EVERY_KIND.replace(
        "trigger: {event: signed_up, where: {property: plan, eq: pro}, max_age: 2h}",
        'trigger: {date_attribute: {attribute: birthday, at: "09:00", offset: -2h}}',
    ).replace("reentry: {after: 30d}", "reentry: never")
    _, problems = check_full(text)
    assert any("fires every year" in p for p in problems)
    assert any("offset -2h must be whole days" in p for p in problems)


def test_only_the_longest_path_counts_towards_the_year() -> None:
    text = """\
    id: demo
    name: Demo
    trigger: api
    steps:
      - branch:
          - if: {tag: a}
            then: [{wait: 30w}]
          - else: [{wait: 30w}]
      - wait_for: {event: x, timeout: 20w}
        on_event: [{wait: 1w}]
        on_timeout: [{wait: 2w}]
    """
    wf, problems = check_full(text)
    assert problems == []
    assert wf is not None
    assert longest_run(wf.steps) == timedelta(weeks=52)
    _, problems = check_full(text.replace("on_timeout: [{wait: 2w}]", "on_timeout: [{wait: 3w}]"))
    assert any("add up to more than one year" in p for p in problems)


def test_the_canonical_workflows_are_valid_and_each_uses_what_it_should() -> None:
    from tests.conftest import ROOT

    from cairn.project import load_project

    project = load_project(ROOT)
    assert project.ok, project.problems
    kinds = {wid: {p.kind for p in walk(wf.steps)} for wid, wf in project.site.workflows.items()}
    assert {
        "abandoned-cart",
        "post-purchase",
        "browse-abandonment",
        "email-engagement",
        "first-purchase",
        "social-follow",
        "lead-nurture",
        "welcome-series",
    } <= set(kinds)
    assert {"split", "wait_for", "send_sms"} <= kinds["abandoned-cart"]
    assert "wait_for" in kinds["email-engagement"]
    assert project.site.workflows["email-engagement"].trigger_kind == "api"
    assert {"assign_task", "exit", "update"} <= kinds["lead-nurture"]
    assert "add_to_list" in kinds["social-follow"]


# ---------------------------------------------------------------- splits


@given(
    cids=st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", min_size=26, max_size=26),
        min_size=1,
        max_size=20,
    ),
    weights=st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=4).filter(
        lambda ws: sum(ws) <= 100
    ),
)
def test_a_split_is_sticky_and_picks_a_variant_with_weight(cids: list[str], weights: list[int]) -> None:
    named = {f"V{i}": w for i, w in enumerate(weights)}
    named["holdout"] = 100 - sum(weights)
    for cid in cids:
        first = variant_for(cid, "wf", named)
        assert first == variant_for(cid, "wf", named)  # sticky
        assert named[first] > 0


def test_a_split_spreads_contacts_by_its_weights() -> None:
    weights = {"A": 45, "B": 45, "holdout": 10}
    counts = Counter(variant_for(f"c{i:025d}", "abandoned-cart", weights) for i in range(20_000))
    for name, weight in weights.items():
        assert abs(counts[name] / 20_000 - weight / 100) < 0.015, counts
    # Another workflow draws independently: the same contacts do not fall in the same variants.
    other = Counter(
        (variant_for(f"c{i:025d}", "abandoned-cart", weights), variant_for(f"c{i:025d}", "x", weights))
        for i in range(20_000)
    )
    assert abs(other[("A", "A")] / 20_000 - 0.45 * 0.45) < 0.015


# ---------------------------------------------------------------- wait_for matching


def test_an_awaited_event_matches_by_name_time_message_and_where() -> None:
    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    awaited = {"event": "order_completed", "since": t0.isoformat(), "where": {"property": "total", "gte": 50}}
    assert awaited_matches(awaited, "order_completed", t0, {"total": 60})
    assert not awaited_matches(awaited, "order_completed", t0, {"total": 10})
    assert not awaited_matches(awaited, "order_completed", t0 - timedelta(seconds=1), {"total": 60})
    assert not awaited_matches(awaited, "cart_updated", t0, {"total": 60})
    by_message = {"event": "email_opened", "since": t0.isoformat(), "messageId": "m-1"}
    # The run's own email, even opened before the wait began; never another email.
    assert awaited_matches(by_message, "email_opened", t0 - timedelta(hours=1), {"messageId": "m-1"})
    assert not awaited_matches(by_message, "email_opened", t0, {"messageId": "m-2"})
