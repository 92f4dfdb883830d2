"""The workflow language: typed model and a validator that reports every problem with file, line, step."""

from __future__ import annotations

from textwrap import dedent

from cairn.domain.workflows import Catalog, validate, walk
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
