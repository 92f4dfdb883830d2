"""Every marketing email local mode sends carries List-Unsubscribe and one-click headers, and the link in
them works, read from the raw MIME as a mailbox provider reads it; a tampered link changes nothing."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from tests.e2e.sending import check_marketing_mail, contact, get_contact, one_click, raw_mail, track

from cairn.domain import mime
from cairn.local.runtime import LocalCairn

pytestmark = pytest.mark.e2e
DAY = 86400


def journeys(local: LocalCairn) -> None:
    """Three contacts through the welcome series (three marketing emails each over five days)."""
    for user in ("ann", "bob", "chloe"):
        contact(local, user)
        track(local, user, "newsletter_subscribed")
    local.settle()
    local.advance(seconds=5 * DAY)


def test_every_marketing_email_carries_the_headers_and_a_working_one_click_unsubscribe(
    local: LocalCairn,
) -> None:
    journeys(local)
    mails = raw_mail()
    marketing = {m["id"] for m in local.outbox() if m["channel"] == "email" and m["stepId"]}
    assert len(mails) == 9 and len(marketing) == 9

    for mail in mails:
        headers = mime.parse_unsubscribe_headers(mail.raw)
        assert headers["list_unsubscribe_post"] == "List-Unsubscribe=One-Click", mail.to
        assert headers["one_click"] is True
        assert headers["https"] is not None and headers["https"].startswith("http://127.0.0.1:")
        body = mail.raw.decode("ascii", "replace")
        assert "Trailhead Outfitters GmbH" in body  # the postal address, in both parts

    # Ann's mailbox provider takes up the one-click offer of her last email.
    anns = [m for m in mails if m.to == "ann@example.com"]
    url = mime.parse_unsubscribe_headers(anns[-1].raw)["https"]
    status, _ = one_click(local, url)
    assert status == 200
    assert get_contact(local, "ann")["consent"]["email"]["status"] == "unsubscribed"
    assert get_contact(local, "bob")["consent"]["email"]["status"] == "subscribed"
    local.settle()
    unsubscribed = [e for e in local.outbox() if e["to"] == "ann@example.com"]
    assert len(unsubscribed) == 3  # nothing new
    # The statistics count it once, at the step of the email whose link she used; her other links, used
    # after she was off the list, change nothing and count nothing.
    last_step = [m for m in local.outbox() if m["to"] == "ann@example.com"][-1]["stepId"]
    assert unsubscribes(local) == {last_step: 1}
    for mail in anns[:-1]:
        assert one_click(local, mime.parse_unsubscribe_headers(mail.raw)["https"])[0] == 200
    local.settle()
    assert unsubscribes(local) == {last_step: 1}
    # What every test using local mode checks at its end: all nine, each link posted once more.
    assert check_marketing_mail(local) == 9
    assert {get_contact(local, u)["consent"]["email"]["status"] for u in ("ann", "bob", "chloe")} == {
        "unsubscribed"
    }


def unsubscribes(local: LocalCairn) -> dict[str, int]:
    """`unsubscribed` per step of the welcome series, as GET /v1/workflows/{id}/stats shows it."""
    status, _, body = local.request("GET", "/v1/workflows/welcome-series/stats", key=local.secret_key)
    assert status == 200, body
    return {
        step["stepId"]: step["messages"]["unsubscribed"]
        for version in body["versions"]
        for step in version["steps"]
        if (step["messages"] or {}).get("unsubscribed")
    }


def test_a_tampered_unsubscribe_link_is_refused_and_nothing_changes(local: LocalCairn) -> None:
    contact(local, "ann")
    track(local, "ann", "newsletter_subscribed")
    local.settle()
    [mail] = raw_mail()
    url = mime.parse_unsubscribe_headers(mail.raw)["https"]
    parts = urlsplit(url)
    [token] = parse_qs(parts.query)["token"]
    key_id, body, signature = token.split(".")
    forged: list[str] = [
        f"{key_id}.{body}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}",  # a changed signature
        f"{key_id}.{body[:-4]}{'AAAA' if body[-4:] != 'AAAA' else 'BBBB'}.{signature}",  # a changed body
        f"k9.{body}.{signature}",  # an unknown key
        "not-a-token",
    ]

    statuses: list[Any] = []
    for token in forged:
        statuses.append(one_click(local, f"{parts.scheme}://{parts.netloc}{parts.path}?token={token}")[0])

    assert all(status in (400, 403) for status in statuses), statuses
    assert get_contact(local, "ann")["consent"]["email"]["status"] == "subscribed"
    local.advance(seconds=2 * DAY)
    assert len([m for m in local.outbox() if m["to"] == "ann@example.com"]) == 2  # the journey went on
