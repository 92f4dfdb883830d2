"""Helpers of the sending end-to-end tests: raw MIME of what SES took, and the contact calls a site would make
(their projects: tests/e2e/projects.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cairn.local.runtime import LocalCairn


def contact(
    local: LocalCairn,
    user_id: str,
    *,
    email: str | None = None,
    phone: str | None = None,
    timezone: str | None = None,
    channels: tuple[str, ...] = ("email",),
) -> None:
    traits: dict[str, Any] = {"email": email or f"{user_id}@example.com", "firstName": user_id.title()}
    if phone:
        traits["phone"] = phone
    if timezone:
        traits["timezone"] = timezone
    status, _, body = local.request(
        "POST", "/v1/identify", {"userId": user_id, "traits": traits}, key=local.secret_key
    )
    assert status == 200, body
    for channel in channels:
        status, _, body = local.request(
            "PUT",
            f"/v1/contacts/{user_id}/subscriptions/{channel}",
            {"status": "subscribed"},
            key=local.secret_key,
        )
        assert status == 200, body


def track(local: LocalCairn, user_id: str, event: str, properties: dict[str, Any] | None = None) -> None:
    body = {"userId": user_id, "event": event, "properties": properties or {}}
    status, _, answer = local.request("POST", "/v1/track", body, key=local.secret_key)
    assert status == 202, answer


def get_contact(local: LocalCairn, user_id: str) -> dict[str, Any]:
    status, _, body = local.request("GET", f"/v1/contacts/{user_id}", key=local.secret_key)
    assert status == 200, body
    assert isinstance(body, dict)
    return body


@dataclass
class RawMail:
    provider_id: str
    to: str
    raw: bytes


def raw_mail() -> list[RawMail]:
    """Every message SES accepted, as raw MIME (what a mailbox provider reads)."""
    from moto.ses.models import ses_backends

    from cairn.local.stack import ACCOUNT, REGION

    return [
        RawMail(m.id, m.destinations[0], m.raw_data.encode())
        for m in ses_backends[ACCOUNT][REGION].sent_messages
        if hasattr(m, "raw_data")
    ]


def one_click(local: LocalCairn, url: str) -> tuple[int, Any]:
    """What a mailbox provider does with `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058)."""
    parts = urlsplit(url)
    status, _, body = local.request(
        "POST",
        parts.path,
        "List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
        query=parts.query,
    )
    return status, body


def check_marketing_mail(local: LocalCairn) -> int:
    """Every marketing email SES took carries `List-Unsubscribe` with an HTTPS (local: loopback HTTP) link
    and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`, read from the raw MIME, and the one-click POST
    to that link works. Returns how many were checked. (Run at the end of every test using `local`.)"""
    from cairn.adapters.tables import MessageItem
    from cairn.domain import mime

    kinds = {
        item.provider_id: item.kind
        for item in MessageItem.scan(MessageItem.sk.startswith("msg#"))
        if item.provider_id and item.channel == "email"
    }
    checked = 0
    for mail in raw_mail():
        if kinds.get(mail.provider_id) != "marketing":
            continue
        headers = mime.parse_unsubscribe_headers(mail.raw)
        assert headers["one_click"], f"a marketing email without one-click unsubscribe: {headers}"
        status, body = one_click(local, str(headers["https"]))
        assert status == 200, (status, body)
        checked += 1
    return checked
