"""Raw MIME for SES v2: parsed back with the stdlib, both parts and every header are there."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, MIMEPart
from typing import Any

import pytest

from cairn.domain.mime import build_email, parse_unsubscribe_headers
from cairn.domain.rendering import RenderedEmail

TOKEN = (
    "k1." + "eyJwIjp7ImNpZCI6IjAxSjEyMzQ1Njc4OSIsIm0iOiJtc2cxMjMifSwiZSI6MTcwMDAwMDAwMH0" * 2 + ".sig_-AZ09"
)
UNSUB = f"https://mail.example.com/v1/unsubscribe?token={TOKEN}"


def rendered(**kw: Any) -> RenderedEmail:
    values: dict[str, Any] = {
        "subject": "Grüße, Zoë — 20 % off everything in the shop this weekend only, don't miss it",
        "preheader": "Tips & <tricks> inside",
        "html": "<html><head></head><body class='main'><p>Hallo Zoë</p></body></html>",
        "text": "Hallo Zoë\n" + "long line " * 120,
        "kind": "marketing",
    }
    values.update(kw)
    return RenderedEmail(**values)


def build(**kw: Any) -> bytes:
    args: dict[str, Any] = {
        "sender": "Cairn Shöp <news@mail.example.com>",
        "recipient": "zoe@example.org",
        "rendered": rendered(),
        "message_id": "01HX5ZQ7K8V3M2N4P6R8T0W2Y4",
        "unsubscribe_url": UNSUB,
        "domain": "mail.example.com",
    }
    args.update(kw)
    return build_email(**args)


def content(part: MIMEPart) -> str:
    """A text part's content with the wire's CRLF line ends back to LF."""
    text = part.get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n")


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_multipart_alternative_text_then_html() -> None:
    msg = parse(build())

    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert content(parts[0]).rstrip("\n") == rendered().text
    html = content(parts[1])
    assert "<p>Hallo Zoë</p>" in html
    assert msg["MIME-Version"] == "1.0"
    assert all("MIME-Version" not in p for p in parts)


def test_headers() -> None:
    msg = parse(
        build(date=datetime(2024, 5, 1, 9, 30, tzinfo=UTC), extra_headers={"Reply-To": "help@example.com"})
    )

    assert msg["Subject"] == rendered().subject
    assert msg["From"].addresses[0].display_name == "Cairn Shöp"
    assert msg["From"].addresses[0].addr_spec == "news@mail.example.com"
    assert msg["To"] == "zoe@example.org"
    assert msg["Message-ID"] == "<01HX5ZQ7K8V3M2N4P6R8T0W2Y4@mail.example.com>"
    assert msg["X-Cairn-Message-Id"] == "01HX5ZQ7K8V3M2N4P6R8T0W2Y4"
    assert msg["Reply-To"] == "help@example.com"
    assert msg["Date"].datetime == datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def test_wire_format_is_seven_bit_with_crlf_and_short_lines() -> None:
    raw = build()

    raw.decode("ascii")  # non-ASCII travels encoded (RFC 2047 headers, quoted-printable bodies)
    lines = raw.split(b"\r\n")
    assert b"\n" not in b"".join(lines)
    assert max(len(line) for line in lines) <= 998
    assert b"=?utf-8?" in raw  # the subject


def test_list_unsubscribe_headers_for_marketing_mail() -> None:
    raw = build(unsubscribe_mailto="unsubscribe@mail.example.com")

    headers = parse_unsubscribe_headers(raw)

    assert headers["https"] == UNSUB  # a long URL survives folding intact, never as encoded words
    assert headers["mailto"] == "mailto:unsubscribe@mail.example.com"
    assert headers["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    assert headers["one_click"] is True
    assert b"List-Unsubscribe: <https://mail.example.com/v1/unsubscribe?token=" in raw


def test_mailto_may_be_given_as_a_url() -> None:
    headers = parse_unsubscribe_headers(build(unsubscribe_mailto="mailto:u@example.com?subject=stop"))

    assert headers["urls"] == [UNSUB, "mailto:u@example.com?subject=stop"]


def test_transactional_mail_without_unsubscribe_has_no_list_headers() -> None:
    raw = build(rendered=rendered(kind="transactional"), unsubscribe_url=None)

    headers = parse_unsubscribe_headers(raw)

    assert headers == {
        "list_unsubscribe": None,
        "list_unsubscribe_post": None,
        "urls": [],
        "https": None,
        "mailto": None,
        "one_click": False,
    }


def test_marketing_mail_needs_an_unsubscribe_url() -> None:
    with pytest.raises(ValueError, match="unsubscribe_url"):
        build(unsubscribe_url=None)


def test_preheader_is_a_hidden_span_at_the_top_of_the_body_and_escaped() -> None:
    html = content(list(parse(build()).iter_parts())[1])

    body_at = html.index("<body class='main'>") + len("<body class='main'>")
    assert html[body_at:].startswith('<span style="display:none')
    assert "Tips &amp; &lt;tricks&gt; inside" in html
    assert html.index("Tips &amp;") < html.index("<p>Hallo")


def test_preheader_without_body_tag_goes_first_and_none_when_empty() -> None:
    with_pre = content(list(parse(build(rendered=rendered(html="<p>x</p>"))).iter_parts())[1])
    without = content(list(parse(build(rendered=rendered(html="<p>x</p>", preheader=""))).iter_parts())[1])

    assert with_pre.startswith("<span")
    assert without.rstrip("\n") == "<p>x</p>"


@pytest.mark.parametrize(
    "kw",
    [
        {"extra_headers": {"Subject": "override"}},
        {"extra_headers": {"list-unsubscribe": "<https://evil.example>"}},
        {"extra_headers": {"X-Tag": "a\r\nBcc: victim@example.com"}},
        {"extra_headers": {"Bad Name": "x"}},
        {"unsubscribe_url": "http://mail.example.com/u"},
        {"unsubscribe_url": "https://mail.example.com/u>\r\nBcc: x@example.com"},
        {"unsubscribe_url": "javascript:alert(1)"},
        {"message_id": "a b"},
        {"message_id": "x>\r\nBcc: y"},
        {"domain": "example.com>"},
        {"date": datetime(2024, 1, 1)},
        {"unsubscribe_mailto": "not an address"},
        {
            "rendered": rendered(kind="transactional"),
            "unsubscribe_url": None,
            "unsubscribe_mailto": "u@x.com",
        },
    ],
)
def test_refuses_header_injection_and_bad_values(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build(**kw)


def test_plain_http_unsubscribe_only_for_local_mode() -> None:
    headers = parse_unsubscribe_headers(build(unsubscribe_url="http://127.0.0.1:3000/v1/unsubscribe?token=x"))

    assert headers["https"] == "http://127.0.0.1:3000/v1/unsubscribe?token=x"


def test_cairn_message_ids_longer_than_a_folded_line_stay_whole() -> None:
    long_id = "c7i5qmybbwrn5jcqn4ki6ejkuc-49040e7ad36fa22386541d021ee9cde4"
    raw = build(message_id=long_id)

    mail = email.message_from_bytes(raw, policy=policy.default)

    assert mail["X-Cairn-Message-Id"] == long_id
    assert mail["Message-ID"] == f"<{long_id}@mail.example.com>"
    assert f"X-Cairn-Message-Id: {long_id}\r\n".encode() in raw
