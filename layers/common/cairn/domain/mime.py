"""Raw MIME for SES v2 ``Content.Raw``: multipart/alternative (text, then HTML), UTF-8.

Marketing mail carries RFC 2369 ``List-Unsubscribe`` and RFC 8058 ``List-Unsubscribe-Post``.
Built with the standard library's ``email`` package (``EmailMessage``, policy SMTP: CRLF).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit

from markupsafe import escape

from cairn.domain.rendering import RenderedEmail

__all__ = ["ONE_CLICK", "build_email", "parse_unsubscribe_headers"]

ONE_CLICK = "List-Unsubscribe=One-Click"

# Headers Cairn sets itself; extra_headers may not replace them.
_RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "X-Cairn-Message-Id",
    )
)
_HEADER_NAME_RE = re.compile(r"^[!-9;-~]+$")  # printable ASCII except ':' (RFC 5322 ftext)
_ID_PART_RE = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")  # dot-atom text, for Message-ID
_URL_RE = re.compile(r"^[!-~]+$")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})

# Headers written verbatim (already folded between list items) so that long URLs stay intact:
# the policy's folder would otherwise turn an over-long URL into RFC 2047 encoded words.
_POLICY = policy.SMTP.clone(refold_source="none")

_PREHEADER_STYLE = (
    "display:none !important;visibility:hidden;mso-hide:all;font-size:1px;line-height:1px;"
    "max-height:0;max-width:0;opacity:0;overflow:hidden;color:transparent;"
)
# Pads the preview text so that the body's first words do not follow the preheader in inboxes.
_PREHEADER_PADDING = "&#847;&zwnj;&nbsp;" * 40
_BODY_OPEN_RE = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def build_email(
    *,
    sender: str,
    recipient: str,
    rendered: RenderedEmail,
    message_id: str,
    unsubscribe_url: str | None,
    unsubscribe_mailto: str | None = None,
    extra_headers: Mapping[str, str] = {},  # read only
    domain: str,
    date: datetime | None = None,
) -> bytes:
    """The raw message, CRLF line ends, ready for ``SendEmail(Content={"Raw": {"Data": ...}})``.

    ``message_id`` is Cairn's id: ``Message-ID: <message_id@domain>`` and
    ``X-Cairn-Message-Id: message_id``. ``unsubscribe_url`` (HTTPS; plain HTTP only for
    localhost) adds ``List-Unsubscribe`` and one-click ``List-Unsubscribe-Post``, and is
    required for marketing mail. ``unsubscribe_mailto`` is an address (``unsub@example.com``)
    or a ``mailto:`` URL. ``date`` (aware) sets ``Date``; without it SES adds one.
    Raises ValueError on bad input (header injection, a reserved extra header, a bad URL).
    """
    if not _ID_PART_RE.match(message_id) or not _ID_PART_RE.match(domain) or "@" in domain:
        raise ValueError("message_id and domain must be plain dot-atom text")
    if rendered.kind == "marketing" and not unsubscribe_url:
        raise ValueError("a marketing email needs an unsubscribe_url")
    if unsubscribe_mailto and not unsubscribe_url:
        raise ValueError("unsubscribe_mailto goes with unsubscribe_url (one-click needs the HTTPS link)")

    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = " ".join(rendered.subject.split())
    if date is not None:
        if date.tzinfo is None:
            raise ValueError("date must be timezone-aware")
        msg["Date"] = format_datetime(date)
    msg.set_raw("Message-ID", f"<{message_id}@{domain}>")
    msg.set_raw("X-Cairn-Message-Id", message_id)  # never folded: ids are longer than a folded line allows
    if unsubscribe_url:
        targets = [f"<{_check_url(unsubscribe_url)}>"]
        if unsubscribe_mailto:
            targets.append(f"<{_mailto(unsubscribe_mailto)}>")
        msg.set_raw("List-Unsubscribe", ",\n ".join(targets))
        msg["List-Unsubscribe-Post"] = ONE_CLICK
    for name, value in extra_headers.items():
        if not _HEADER_NAME_RE.match(name) or name.lower() in _RESERVED_HEADERS:
            raise ValueError(f"extra header {name!r} is not allowed")
        msg[name] = value  # the policy refuses CR and LF in values

    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(
        _with_preheader(rendered.html, rendered.preheader),
        subtype="html",
        charset="utf-8",
        cte="quoted-printable",
    )
    for part in msg.iter_parts():
        del part["MIME-Version"]  # only the top level carries it
    return msg.as_bytes()


def _check_url(url: str) -> str:
    if not _URL_RE.match(url) or any(c in url for c in "<>,"):
        raise ValueError("unsubscribe_url must be a URL of printable ASCII without '<', '>' or ','")
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and host in _LOOPBACK_HOSTS:
        return url  # local mode
    raise ValueError("unsubscribe_url must be an https URL (RFC 8058)")


def _mailto(value: str) -> str:
    url = value if value.lower().startswith("mailto:") else f"mailto:{value}"
    if not _URL_RE.match(url) or any(c in url for c in "<>,") or "@" not in url:
        raise ValueError("unsubscribe_mailto must be an address or a mailto: URL")
    return url


def _with_preheader(html: str, preheader: str) -> str:
    if not preheader:
        return html
    span = f'<span style="{_PREHEADER_STYLE}">{escape(preheader)}{_PREHEADER_PADDING}</span>'
    body = _BODY_OPEN_RE.search(html)
    if body is None:
        return span + html
    return html[: body.end()] + span + html[body.end() :]


def parse_unsubscribe_headers(raw: bytes) -> dict[str, Any]:
    """Read the unsubscribe headers back from a raw message (for tests and local mode).

    Returns ``{"list_unsubscribe": str | None, "list_unsubscribe_post": str | None,
    "urls": [str], "https": str | None, "mailto": str | None, "one_click": bool}``.
    """
    msg = message_from_bytes(raw, policy=policy.default)
    header = msg.get("List-Unsubscribe")
    post = msg.get("List-Unsubscribe-Post")
    value = " ".join(str(header).split()) if header is not None else None
    urls = re.findall(r"<([^<>]*)>", value or "")
    https = next((u for u in urls if u.lower().startswith(("https:", "http:"))), None)
    mailto = next((u for u in urls if u.lower().startswith("mailto:")), None)
    post_value = str(post).strip() if post is not None else None
    return {
        "list_unsubscribe": value,
        "list_unsubscribe_post": post_value,
        "urls": urls,
        "https": https,
        "mailto": mailto,
        "one_click": post_value == ONE_CLICK and https is not None,
    }
