"""Loading templates/: files, YAML, fields, front matter; every problem with file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cairn.domain.templates import (
    EmailTemplate,
    SmsTemplate,
    SourceRef,
    TemplateProblem,
    TemplateSet,
    load_templates,
)

WELCOME = """\
subject: "Welcome, {{ firstName | default('there') }}"
preheader: Your first steps
html: |
  <p>Hi {{ firstName | default("there") }}</p>
text: |
  Hi {{ firstName | default("there") }}
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def tdir(tmp_path: Path) -> Path:
    root = tmp_path / "templates"
    root.mkdir()
    return root


def test_loads_email_sms_and_partials(tdir: Path) -> None:
    # Given
    write(tdir, "welcome.email.yaml", WELCOME)
    write(tdir, "receipt.email.yaml", WELCOME + "kind: transactional\n")
    write(tdir, "cart-discount.sms.txt", "Your cart misses you, {{ firstName }}!\n")
    write(tdir, "code.sms.txt", "---\nkind: transactional\n---\nYour code is {{ code }}\n")
    write(tdir, "partials/layout.html", "<html>{% block body %}{% endblock %}</html>")
    write(tdir, "partials/emails/footer.txt", "-- the team")
    write(tdir, "README.md", "notes")
    write(tdir, ".hidden.yaml", "whatever")

    # When
    templates, problems = load_templates(tdir)

    # Then
    assert problems == []
    assert set(templates.email) == {"welcome", "receipt"}
    welcome = templates.email["welcome"]
    assert welcome == EmailTemplate(
        name="welcome",
        subject="Welcome, {{ firstName | default('there') }}",
        preheader="Your first steps",
        html='<p>Hi {{ firstName | default("there") }}</p>\n',
        text='Hi {{ firstName | default("there") }}\n',
    )
    assert welcome.kind == "marketing"
    assert templates.email["receipt"].kind == "transactional"
    assert templates.sms["cart-discount"] == SmsTemplate(
        name="cart-discount", body="Your cart misses you, {{ firstName }}!", kind="marketing"
    )
    assert templates.sms["code"].kind == "transactional"
    assert templates.sms["code"].body == "Your code is {{ code }}"
    assert set(templates.partials) == {"layout.html", "emails/footer.txt"}


def test_sources_point_at_the_first_line_of_each_text(tdir: Path) -> None:
    write(tdir, "welcome.email.yaml", WELCOME)
    write(tdir, "code.sms.txt", "---\nkind: transactional\n---\n\nYour code is {{ code }}\n")

    templates, _ = load_templates(tdir)

    assert templates.sources["email/welcome/subject"] == SourceRef("templates/welcome.email.yaml", 1)
    assert templates.sources["email/welcome/html"] == SourceRef("templates/welcome.email.yaml", 4)
    assert templates.sources["email/welcome/text"] == SourceRef("templates/welcome.email.yaml", 6)
    assert templates.sources["sms/code"] == SourceRef("templates/code.sms.txt", 5)


def test_missing_directory_is_an_empty_set(tmp_path: Path) -> None:
    templates, problems = load_templates(tmp_path / "templates")
    assert (templates.email, templates.sms, templates.partials, problems) == ({}, {}, {}, [])


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("subject: x\nhtml: <p/>\ntext: t\ncolour: red\n", 4, "unknown key 'colour'"),
        ("subject: x\nhtml: <p/>\n", 1, "missing required key 'text'"),
        ("subject: x\nhtml: <p/>\ntext: t\nkind: promo\n", 4, "kind:"),
        ("subject: ''\nhtml: <p/>\ntext: t\n", 1, "subject: must not be empty"),
        ("subject: x\nhtml: <p/>\ntext: t\nsubject: y\n", 4, "duplicate key 'subject'"),
        ("subject: x\nhtml: a: b\ntext: t\n", 2, "invalid YAML: mapping values are not allowed"),
        ("subject: {{ firstName }}, hi\nhtml: <p/>\ntext: t\n", 1, "quote values that start with '{{'"),
        ("subject: {{ firstName }}\nhtml: <p/>\ntext: t\n", 1, "quote values"),
        ("- a list\n", 1, "is a mapping"),
        ("name: other\nsubject: x\nhtml: <p/>\ntext: t\n", 1, "differs from the file name"),
    ],
)
def test_email_problems_name_file_and_line(tdir: Path, text: str, line: int, fragment: str) -> None:
    write(tdir, "welcome.email.yaml", text)

    templates, problems = load_templates(tdir)

    assert "welcome" not in templates.email
    assert any(
        p.file == "templates/welcome.email.yaml" and p.line == line and fragment in p.message
        for p in problems
    ), problems


def test_every_problem_is_reported_not_just_the_first(tdir: Path) -> None:
    write(tdir, "a.email.yaml", "subject: x\nhtml: <p/>\ntext: t\nfoo: 1\nbar: 2\n")
    write(tdir, "b.email.yaml", "subject: [\n")
    write(tdir, "bad name.sms.txt", "hi")
    write(tdir, "welcome.emial.yaml", WELCOME)
    write(tdir, "partials/logo.png", "x")

    _, problems = load_templates(tdir)

    files = [p.file for p in problems]
    assert files.count("templates/a.email.yaml") == 2
    assert "templates/b.email.yaml" in files
    assert "templates/bad name.sms.txt" in files
    assert "templates/welcome.emial.yaml" in files
    assert "templates/partials/logo.png" in files
    assert all(isinstance(p, TemplateProblem) for p in problems)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("---\nkind: transactional\nYour code\n", 1, "never closed"),
        ("---\nkind: loud\n---\nhi\n", 2, "kind:"),
        ("---\ncolour: red\n---\nhi\n", 2, "unknown front matter"),
        ("---\nkind: transactional\n---\n\n", None, "body: must not be empty"),
    ],
)
def test_sms_problems(tdir: Path, text: str, line: int | None, fragment: str) -> None:
    write(tdir, "code.sms.txt", text)

    templates, problems = load_templates(tdir)

    assert templates.sms == {}
    assert [(p.file, p.line) for p in problems] == [("templates/code.sms.txt", line)]
    assert fragment in problems[0].message


def test_problem_reads_as_file_line_message() -> None:
    assert str(TemplateProblem("templates/a.email.yaml", 3, "oops")) == "templates/a.email.yaml:3: oops"
    assert str(TemplateProblem("templates/a.sms.txt", None, "oops")) == "templates/a.sms.txt: oops"


def test_template_set_round_trips_through_json(tdir: Path) -> None:
    write(tdir, "welcome.email.yaml", WELCOME)
    write(tdir, "code.sms.txt", "---\nkind: transactional\n---\nYour code is {{ code }}\n")
    write(tdir, "partials/layout.html", "<html>{% block body %}{% endblock %}</html>")
    templates, _ = load_templates(tdir)

    data = json.loads(json.dumps(templates.to_data()))

    assert TemplateSet.from_data(data) == templates


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"version": 99},
        {"version": 1, "email": {"a": {"name": "b", "subject": "s", "html": "h", "text": "t"}}},
        {"version": 1, "email": {"a": {"name": "a", "subject": "s", "html": "h", "text": "t", "x": 1}}},
        {"version": 1, "partials": {"a.html": 3}},
        {"version": 1, "sources": {"sms/a": "nowhere"}},
    ],
)
def test_from_data_refuses_what_to_data_never_writes(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TemplateSet.from_data(data)


def test_the_repo_ships_a_layout_a_button_and_the_double_opt_in_email() -> None:
    root = Path(__file__).resolve().parents[2]

    templates, problems = load_templates(root / "templates")

    assert problems == []
    assert {"layout.html", "button.html"} <= set(templates.partials)
    confirm = templates.email["confirm-subscription"]
    assert confirm.kind == "transactional"
    assert '{% extends "layout.html" %}' in confirm.html and "confirm_url" in confirm.text


def test_the_builtin_confirmation_is_a_valid_transactional_template() -> None:
    from cairn.domain.templates import builtin_confirmation

    template = builtin_confirmation("opt-in")

    assert (template.name, template.kind) == ("opt-in", "transactional")
    assert EmailTemplate.model_validate(template.model_dump()) == template
