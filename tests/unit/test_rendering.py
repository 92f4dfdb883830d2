"""Rendering in Jinja2's sandbox: fallbacks, strictness, escaping, layouts, filters, footers, SMS rules."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import escape

from cairn.domain.rendering import (
    SMS_MAX_LENGTH,
    SMS_STOP_SUFFIX,
    Renderer,
    TemplateRenderError,
    UnknownTemplate,
    format_money,
    known_attributes,
    sms_segments,
)
from cairn.domain.templates import (
    EmailTemplate,
    SmsTemplate,
    TemplateSet,
    builtin_confirmation,
    load_templates,
)

UNSUB = "https://mail.example.com/v1/unsubscribe?token=k1.abc&x=1"
ADDRESS = "Cairn GmbH\nMusterstrasse 1\n10115 Berlin"
NOW = datetime(2024, 3, 31, 1, 30, tzinfo=UTC)  # 03:30 summer time in Berlin (DST began at 01:00 UTC)


def email(
    name: str = "t", *, subject: str = "Hello", html: str = "<p>x</p>", text: str = "x", **kw: Any
) -> EmailTemplate:
    return EmailTemplate(name=name, subject=subject, html=html, text=text, **kw)


def renderer(
    *emails: EmailTemplate,
    sms: tuple[SmsTemplate, ...] = (),
    partials: Mapping[str, str] | None = None,
    tz: str = "UTC",
) -> Renderer:
    return Renderer(
        TemplateSet(
            email={e.name: e for e in emails}, sms={s.name: s for s in sms}, partials=dict(partials or {})
        ),
        timezone_fallback=tz,
    )


def context(**contact: Any) -> dict[str, Any]:
    return {
        "contact": {"email": "ann@example.com", **contact},
        "event": {"total": 42},
        "workflow": {"id": "welcome", "stepId": "hello"},
        "unsubscribe_url": UNSUB,
        "postal_address": ADDRESS,
        "now": NOW,
    }


# -- variables: fallbacks and strictness ----------------------------------------------------------


def test_default_fills_a_missing_attribute() -> None:
    r = renderer(email(subject="Hi {{ firstName | default('there') }}", kind="transactional"))

    assert r.render_email("t", context()).subject == "Hi there"
    assert r.render_email("t", context(firstName="Ann")).subject == "Hi Ann"


def test_default_works_through_the_contact_mapping_too() -> None:
    r = renderer(email(text="Hi {{ contact.firstName | default('there') }}", kind="transactional"))

    assert r.render_email("t", context()).text == "Hi there"


def test_default_covers_a_missing_step_anywhere_in_a_path() -> None:
    r = renderer(email(text="{{ event.cart.total | default(0) | money }}", kind="transactional"))

    assert r.render_email("t", context()).text == "€0.00"


def test_missing_step_in_a_path_names_the_first_missing_step() -> None:
    r = renderer(email(text="{{ event.cart.total }}", kind="transactional"))

    with pytest.raises(TemplateRenderError, match="no attribute 'cart'"):
        r.render_email("t", context())


def test_missing_variable_is_an_error_naming_the_variable_never_values() -> None:
    r = renderer(email(html="<p>Hi {{ firstName }}, you live in {{ city }}</p>"))

    with pytest.raises(TemplateRenderError) as caught:
        r.render_email("t", context(firstName="Ann-Secret", email="ann.secret@example.com"))

    message = str(caught.value)
    assert "'city' is undefined" in message
    assert "'t'" in message and "html" in message
    assert "Ann-Secret" not in message and "ann.secret@example.com" not in message
    assert caught.value.template == "t" and caught.value.part == "html"


def test_missing_attribute_of_a_mapping_names_the_attribute() -> None:
    r = renderer(email(text="Order {{ event.order_id }}", kind="transactional"))

    with pytest.raises(TemplateRenderError, match="order_id"):
        r.render_email("t", context())


@pytest.mark.parametrize(
    "template",
    [
        "{{ {contact.email: 1}[contact.email ~ 'x'] }}",
        "{{ contact | attr(contact.email) }}",
        "{% include contact.email %}",
        "{{ namespace(contact.email) }}",
        "{{ contact.email.__class__ }}",
    ],
)
def test_errors_never_quote_values(template: str) -> None:
    r = renderer(email(text=template))

    with pytest.raises(TemplateRenderError) as caught:
        r.render_email("t", context())

    assert "ann@example.com" not in str(caught.value).lower()
    assert "'t' (text" in str(caught.value)


def test_context_keys_win_over_contact_attributes_of_the_same_name() -> None:
    r = renderer(email(text="{{ event.total }} {{ firstName }}", kind="transactional"))

    assert r.render_email("t", context(event="shadow", firstName="Ann")).text == "42 Ann"


def test_null_is_missing_so_defaults_apply_and_bare_use_fails() -> None:
    r = renderer(
        email(subject="Hi {{ firstName | default('there') }}", text="{{ event.city }}", kind="transactional")
    )
    ctx = context(firstName=None)
    ctx["event"] = {"city": None}

    with pytest.raises(TemplateRenderError, match="city"):
        r.render_email("t", ctx)
    ctx["event"] = {"city": "Graz"}
    assert r.render_email("t", ctx).subject == "Hi there"


def test_templates_cannot_change_the_callers_data() -> None:
    r = renderer(email(text="{{ contact.clear() }}{{ event.pop('total') }}", kind="transactional"))
    ctx = context(firstName="Ann")

    with pytest.raises(TemplateRenderError, match="unsafe"):
        r.render_email("t", ctx)
    assert ctx["contact"]["firstName"] == "Ann" and ctx["event"] == {"total": 42}


def test_sandbox_refuses_unsafe_attributes() -> None:
    r = renderer(email(text="{{ firstName.__class__.__mro__ }}", kind="transactional"))

    with pytest.raises(TemplateRenderError, match="unsafe"):
        r.render_email("t", context(firstName="Ann"))


def test_unknown_template() -> None:
    with pytest.raises(UnknownTemplate):
        renderer().render_email("nope", context())
    with pytest.raises(UnknownTemplate):
        renderer().render_sms("nope", context())


# -- escaping ---------------------------------------------------------------------------------


def test_html_is_autoescaped_but_subject_preheader_and_text_are_not() -> None:
    r = renderer(
        email(
            subject="{{ firstName }} & co",
            preheader="For {{ firstName }}",
            html="<p>{{ firstName }}</p>",
            text="{{ firstName }}",
            kind="transactional",
        )
    )

    out = r.render_email("t", context(firstName='<b>"Tom" & Jerry</b>'))

    assert out.html == "<p>&lt;b&gt;&#34;Tom&#34; &amp; Jerry&lt;/b&gt;</p>"
    assert out.subject == '<b>"Tom" & Jerry</b> & co'
    assert out.preheader == 'For <b>"Tom" & Jerry</b>'
    assert out.text == '<b>"Tom" & Jerry</b>'


def test_subject_is_one_line() -> None:
    r = renderer(email(subject="Hi\n{{ firstName }}\r\n  there", kind="transactional"))

    assert r.render_email("t", context(firstName="Ann")).subject == "Hi Ann there"


def test_empty_subject_is_an_error() -> None:
    r = renderer(email(subject="{{ firstName | default('') }}", kind="transactional"))

    with pytest.raises(TemplateRenderError, match="subject renders empty"):
        r.render_email("t", context())


# -- partials and layouts -------------------------------------------------------------------------


LAYOUT = """<html><body>
<h1>{% block title %}Cairn{% endblock %}</h1>
{% block body %}{% endblock %}
{% include "footer.html" %}
</body></html>"""


def test_layouts_and_partials() -> None:
    r = renderer(
        email(
            html='{% extends "layout.html" %}{% block body %}<p>Hi {{ firstName }}</p>{% endblock %}',
            text='Hi {{ firstName }}\n{% include "signature.txt" %}',
            kind="transactional",
        ),
        partials={
            "layout.html": LAYOUT,
            "footer.html": "<footer>{{ firstName }}</footer>",
            "signature.txt": "-- {{ firstName }} & the team",
        },
    )

    out = r.render_email("t", context(firstName="<Ann>"))

    assert "<h1>Cairn</h1>" in out.html
    assert "<p>Hi &lt;Ann&gt;</p>" in out.html
    assert "<footer>&lt;Ann&gt;</footer>" in out.html
    assert out.text == "Hi <Ann>\n-- <Ann> & the team"


def test_partials_may_be_named_with_their_folder() -> None:
    r = renderer(
        email(html='{% include "partials/footer.html" %}', kind="transactional"),
        partials={"footer.html": "<footer/>"},
    )

    assert r.render_email("t", context()).html == "<footer/>"


def test_error_inside_a_partial_names_the_partial_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    (root / "partials").mkdir(parents=True)
    (root / "welcome.email.yaml").write_text(
        "subject: Hi\nhtml: |\n  <p>one</p>\n  {% include 'footer.html' %}\ntext: hi\n", encoding="utf-8"
    )
    (root / "partials" / "footer.html").write_text("<p>a</p>\n\n<p>{{ shoe_size }}</p>\n", encoding="utf-8")
    templates, problems = load_templates(root)
    assert problems == []

    with pytest.raises(TemplateRenderError) as caught:
        Renderer(templates).render_email("welcome", context())

    assert caught.value.file == "templates/partials/footer.html"
    assert caught.value.line == 3
    assert "'shoe_size' is undefined" in str(caught.value)


def test_error_line_maps_to_the_yaml_file(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    root.mkdir()
    (root / "welcome.email.yaml").write_text(
        "subject: Hi\nhtml: |\n  <p>one</p>\n  <p>{{ shoe_size }}</p>\ntext: hi\n", encoding="utf-8"
    )
    templates, _ = load_templates(root)

    with pytest.raises(TemplateRenderError) as caught:
        Renderer(templates).render_email("welcome", context())

    assert (caught.value.file, caught.value.line) == ("templates/welcome.email.yaml", 4)


# -- filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "contact", "fallback", "expected"),
    [
        ("{{ now | date }}", {}, "UTC", "31 Mar 2024"),
        (
            "{{ now | date('%Y-%m-%d %H:%M %Z') }}",
            {"timezone": "Europe/Berlin"},
            "UTC",
            "2024-03-31 03:30 CEST",
        ),
        (
            "{{ now | date('%Y-%m-%d %H:%M %Z') }}",
            {"timezone": "America/New_York"},
            "UTC",
            "2024-03-30 21:30 EDT",
        ),
        ("{{ now | date('%Y-%m-%d %H:%M') }}", {}, "Asia/Tokyo", "2024-03-31 10:30"),
        ("{{ now | date('%H:%M', tz='Asia/Kolkata') }}", {"timezone": "Europe/Berlin"}, "UTC", "07:00"),
        ("{{ now | date('%H:%M') }}", {"timezone": "Not/AZone"}, "Europe/Berlin", "03:30"),
        ("{{ event.at | date('%d %b %H:%M') }}", {"timezone": "Europe/Berlin"}, "UTC", "05 Jan 10:00"),
        ("{{ event.naive | date('%H:%M') }}", {"timezone": "Europe/Berlin"}, "UTC", "13:00"),
        (
            "{{ birthday | date('%d %B') }}",
            {"birthday": "1990-07-14", "timezone": "Pacific/Honolulu"},
            "UTC",
            "14 July",
        ),
        ("{{ day | date }}", {"day": date(2024, 2, 29)}, "UTC", "29 Feb 2024"),
    ],
)
def test_date_filter_in_the_contacts_time_zone(
    template: str, contact: dict[str, Any], fallback: str, expected: str
) -> None:
    r = renderer(email(text=template, kind="transactional"), tz=fallback)
    ctx = context(**contact)
    ctx["event"] = {"at": "2024-01-05T09:00:00Z", "naive": datetime(2024, 1, 5, 12, 0)}

    assert r.render_email("t", ctx).text == expected


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'yesterday' | date }}",
        "{{ 42 | date }}",
        "{{ now | date(tz='Mars/Olympus') }}",
        "{{ missing | date }}",
    ],
)
def test_date_filter_errors(template: str) -> None:
    r = renderer(email(text=template, kind="transactional"))

    with pytest.raises(TemplateRenderError):
        r.render_email("t", context())


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (12.5, "EUR", "€12.50"),
        (12, "EUR", "€12.00"),
        ("0.125", "EUR", "€0.13"),
        (Decimal("1234567.891"), "usd", "$1,234,567.89"),
        (-3.5, "GBP", "-£3.50"),
        (1500, "JPY", "¥1,500"),
        (12.5, "CHF", "12.50 CHF"),
        (0.1 + 0.2, "EUR", "€0.30"),
    ],
)
def test_money(amount: Any, currency: str, expected: str) -> None:
    assert format_money(amount, currency) == expected


def test_money_filter_in_a_template() -> None:
    r = renderer(
        email(text="{{ event.total | money }} / {{ event.total | money('USD') }}", kind="transactional")
    )

    assert r.render_email("t", context()).text == "€42.00 / $42.00"


@pytest.mark.parametrize(
    "template", ["{{ 'lots' | money }}", "{{ true | money }}", "{{ 1 | money('EURO') }}"]
)
def test_money_errors(template: str) -> None:
    r = renderer(email(text=template, kind="transactional"))

    with pytest.raises(TemplateRenderError, match="money"):
        r.render_email("t", context())


# -- marketing footer ---------------------------------------------------------------------------


def test_marketing_email_gets_unsubscribe_link_and_postal_address() -> None:
    r = renderer(email(html="<html><body><p>Hi</p></body></html>", text="Hi"))

    out = r.render_email("t", context())

    footer_at = out.html.index('class="cairn-footer"')
    assert footer_at < out.html.index("</body>")
    assert f'<a ses:no-track href="{escape(UNSUB)}"' in out.html
    assert "Cairn GmbH<br>Musterstrasse 1<br>10115 Berlin" in out.html
    assert out.text == f"Hi\n\n--\n{ADDRESS}\nUnsubscribe: {UNSUB}\n"
    assert out.kind == "marketing"


def test_footer_not_added_when_the_template_already_links_and_shows_the_address() -> None:
    r = renderer(
        email(
            html='<p>Hi</p><p>{{ postal_address }}</p><a href="{{ unsubscribe_url }}">Leave</a>',
            text="Hi\n{{ postal_address }}\nLeave: {{ unsubscribe_url }}",
        )
    )

    out = r.render_email("t", context())

    assert "cairn-footer" not in out.html
    assert f'<a ses:no-track href="{escape(UNSUB)}">Leave</a>' in out.html  # kept out of click tracking
    assert out.text == f"Hi\n{ADDRESS}\nLeave: {UNSUB}"


def test_footer_adds_only_what_is_missing() -> None:
    r = renderer(email(html='<a href="{{ unsubscribe_url }}">Leave</a>', text="x"))

    out = r.render_email("t", context())

    assert "Musterstrasse 1" in out.html
    assert out.html.count(str(escape(UNSUB))) == 1


def test_transactional_email_gets_no_footer() -> None:
    r = renderer(email(kind="transactional"))

    out = r.render_email("t", {"now": NOW})

    assert (out.html, out.text) == ("<p>x</p>", "x")


@pytest.mark.parametrize("key", ["unsubscribe_url", "postal_address"])
def test_marketing_email_without_unsubscribe_url_or_address_is_refused(key: str) -> None:
    ctx = context()
    del ctx[key]

    with pytest.raises(TemplateRenderError, match=key):
        renderer(email()).render_email("t", ctx)


# -- SMS --------------------------------------------------------------------------------------


def test_marketing_sms_gets_the_stop_notice_once() -> None:
    r = renderer(
        sms=(
            SmsTemplate(name="promo", body="Hi {{ firstName | default('there') }}, 20% off today."),
            SmsTemplate(name="promo-stop", body="20% off. Text STOP to quit."),
            SmsTemplate(name="code", body="Code {{ event.total }}", kind="transactional"),
        )
    )

    assert r.render_sms("promo", context()).body == "Hi there, 20% off today." + SMS_STOP_SUFFIX
    assert r.render_sms("promo-stop", context()).body == "20% off. Text STOP to quit."
    code = r.render_sms("code", context())
    assert (code.body, code.kind) == ("Code 42", "transactional")


def test_sms_is_not_escaped() -> None:
    r = renderer(sms=(SmsTemplate(name="s", body="{{ firstName }}", kind="transactional"),))

    assert r.render_sms("s", context(firstName="A & <B>")).body == "A & <B>"


def test_sms_length_limit_counts_the_stop_notice() -> None:
    room = SMS_MAX_LENGTH - len(SMS_STOP_SUFFIX)
    r = renderer(sms=(SmsTemplate(name="s", body="{{ text }}"),))

    assert len(r.render_sms("s", {"text": "x" * room}).body) == SMS_MAX_LENGTH
    with pytest.raises(TemplateRenderError, match="over the limit"):
        r.render_sms("s", {"text": "x" * (room + 1)})


def test_missing_variable_in_sms() -> None:
    r = renderer(sms=(SmsTemplate(name="s", body="Hi {{ firstName }}"),))

    with pytest.raises(TemplateRenderError, match="'firstName' is undefined"):
        r.render_sms("s", context())


# -- static checks ----------------------------------------------------------------------------


def test_check_reports_syntax_errors_unknown_filters_and_missing_partials(tmp_path: Path) -> None:
    root = tmp_path / "templates"
    (root / "partials").mkdir(parents=True)
    (root / "broken.email.yaml").write_text(
        "subject: Hi {{ firstName \nhtml: |\n  <p>ok</p>\n  {% include 'nowhere.html' %}\n"
        "text: |\n  a\n  {% if x %}{{ x | shout }}{% endif %}\n",
        encoding="utf-8",
    )
    (root / "fine.email.yaml").write_text("subject: Hi\nhtml: <p/>\ntext: t\n", encoding="utf-8")
    (root / "s.sms.txt").write_text("---\nkind: transactional\n---\nHi {% for %}\n", encoding="utf-8")
    (root / "partials" / "layout.html").write_text("<p>\n{% block x %}\n</p>\n", encoding="utf-8")
    templates, problems = load_templates(root)
    assert problems == []

    checked = Renderer(templates).check()
    found = {(p.file, p.line, p.message.split(":")[0]) for p in checked}

    assert found == {
        ("templates/broken.email.yaml", 1, "subject"),
        ("templates/broken.email.yaml", 4, "html"),
        ("templates/broken.email.yaml", 7, "text"),
        ("templates/s.sms.txt", 4, "syntax error"),
        ("templates/partials/layout.html", 2, "syntax error"),
    }
    messages = " | ".join(p.message for p in checked)
    assert "include of 'nowhere.html', which does not exist" in messages
    assert "no filter named 'shout'" in messages


def test_check_is_clean_for_good_templates() -> None:
    r = renderer(
        email(html='{% extends "partials/layout.html" %}{% block body %}{{ x | money }}{% endblock %}'),
        partials={"layout.html": LAYOUT, "footer.html": "<footer/>"},
    )

    assert r.check() == []


def test_variables_follow_partials_and_required_variables_skip_defaults() -> None:
    r = renderer(
        email(
            subject="Hi {{ firstName | default('there') }}",
            html='{% extends "layout.html" %}{% block body %}{{ event.total | money }}{% endblock %}',
            text="{% if city is defined %}{{ city }}{% endif %}{% for i in items %}{{ i }}{% endfor %}",
        ),
        sms=(SmsTemplate(name="t", body="{{ code }}"),),
        partials={"layout.html": LAYOUT, "footer.html": "{{ unsubscribe_url }} {{ range(3) | list }}"},
    )

    assert r.variables("t", "email") == {"firstName", "event", "city", "items", "unsubscribe_url"}
    assert r.required_variables("t", "email") == {"event", "items", "unsubscribe_url"}
    assert r.variables("t", "sms") == {"code"}
    assert r.variables("t") == {"firstName", "event", "city", "items", "unsubscribe_url", "code"}
    with pytest.raises(UnknownTemplate):
        r.variables("nope")


def test_bad_fallback_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        renderer(tz="Nowhere/Atlantis")


# -- properties -------------------------------------------------------------------------------


HTML_ESCAPER = renderer(
    email(name="h", html="<p>{{ x }}</p>", text="{{ x }}", subject="s", kind="transactional")
)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_is_escaped_in_html_and_kept_verbatim_in_text(value: str) -> None:
    out = HTML_ESCAPER.render_email("h", {"x": value})

    assert out.html == f"<p>{escape(value)}</p>"
    inner = out.html[3:-4]
    assert "<" not in inner and ">" not in inner and '"' not in inner
    assert out.text == value


# -- compile-time checks of variables that can be known ------------------------------------------


def test_a_variable_no_contact_could_have_is_reported_with_its_line() -> None:
    r = renderer(
        email("t", subject="Hi {{ fristName }}", html="<p>{{ firstName }}</p>\n<p>{{ plan }}</p>", text="x"),
        sms=(SmsTemplate(name="s", body="Code {{ code | default('none') }} for {{ tier }}"),),
    )

    problems = r.check_variables(known_attributes={"plan"})

    messages = [(p.file, p.line, p.message) for p in problems]
    assert [m[0] for m in messages] == ["templates/s.sms.txt", "templates/t.email.yaml"]
    assert "{{ tier }} has no default" in messages[0][2]
    assert messages[1][1] == 1 and messages[1][2].startswith("subject: {{ fristName }} has no default")
    assert "settings.yaml" in messages[1][2]


def test_context_keys_traits_defaults_and_template_variables_are_fine() -> None:
    html = (
        "{% set greeting = 'Hi' %}{{ greeting }} {{ firstName }} {{ locale }} {{ contact.anything }}"
        "{% for item in event.properties.items %}{{ item.name }}{% endfor %}"
        "{{ shoeSize | default(42) }}{% if vip is defined %}{{ vip }}{% endif %}"
        "{{ workflow.id }} {{ event.event }} {{ unsubscribe_url }} {{ public_url }} {{ now | date }}"
    )
    r = renderer(email("t", html=html, text="{{ postal_address }}"))

    assert r.check_variables(known_attributes=set()) == []


def test_a_variable_used_by_a_partial_is_checked_where_the_partial_is() -> None:
    r = renderer(
        email("t", html='{% include "footer.html" %}', text="x"),
        partials={"footer.html": "<p>{{ referralCode }}</p>"},
    )

    [problem] = r.check_variables(known_attributes=set())

    assert problem.file == "templates/partials/footer.html"
    assert "referralCode" in problem.message


def test_a_key_the_workflow_or_event_never_has_is_a_typo() -> None:
    r = renderer(email("t", html="{{ workflow.nmae }} {{ event['propertys'] | default('') }}", text="x"))

    problems = [p.message for p in r.check_variables(known_attributes=set())]

    assert any("workflow has no 'nmae'" in m for m in problems)
    assert any("event has no 'propertys'" in m for m in problems)


def test_known_attributes_come_from_rules_and_updates_anywhere_in_a_project() -> None:
    workflow = {
        "audience": {
            "all": [{"attribute": "country", "in": ["DE"]}, {"not": {"attribute": "plan", "eq": "x"}}]
        },
        "steps": [
            {"update": {"set": {"stage": "decision"}}},
            {"branch": [{"if": {"attribute": "ltv", "gt": 1}}]},
        ],
    }
    segments = {"s": {"rule": {"any": [{"attribute": "age", "between": [1, 2]}, {"tag": "eco"}]}}}

    assert known_attributes([workflow], segments) == {"country", "plan", "stage", "ltv", "age"}


def test_the_repo_templates_pass_the_variable_check() -> None:
    root = Path(__file__).resolve().parents[2]
    templates, problems = load_templates(root / "templates")
    assert problems == []

    assert Renderer(templates).check_variables(known_attributes=set()) == []


# -- SMS parts --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("x" * 160, 1),
        ("x" * 161, 2),
        ("x" * 306, 2),
        ("x" * 307, 3),
        ("{" * 80, 1),  # extension characters count twice
        ("{" * 81, 2),
        ("Grüße " + "x" * 64, 1),  # ü is GSM-7, ß too
        ("Zoë ☀" + "x" * 65, 1),  # ☀ is not: UCS-2, 70 per part
        ("Zoë ☀" + "x" * 66, 2),
    ],
)
def test_sms_segments(body: str, segments: int) -> None:
    assert sms_segments(body) == segments


def test_a_rendered_sms_knows_its_parts() -> None:
    r = renderer(sms=(SmsTemplate(name="s", body="x" * 200, kind="transactional"),))

    assert r.render_sms("s", context()).segments == 2


# -- the built-in confirmation email ----------------------------------------------------------------


def test_the_builtin_confirmation_links_the_confirm_url_and_needs_no_unsubscribe_link() -> None:
    r = renderer(builtin_confirmation("confirm-subscription"))
    ctx = {**context(firstName="Ann"), "confirm_url": "https://go.example.com/v1/confirm?token=k1.a.b"}
    del ctx["unsubscribe_url"]

    mail = r.render_email("confirm-subscription", ctx)

    assert mail.kind == "transactional"
    assert 'href="https://go.example.com/v1/confirm?token=k1.a.b"' in mail.html
    assert "https://go.example.com/v1/confirm?token=k1.a.b" in mail.text
    assert "Hi Ann" in mail.text and "unsubscribe" not in mail.html.lower()
    assert r.check_variables(known_attributes=set()) == []
