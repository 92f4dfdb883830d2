"""Unsubscribe links: HMAC-signed tokens (`{"c": cid, "m": messageId}`, purpose "unsubscribe") that the
send side puts in every marketing email. A valid token unsubscribes the contact from email and records
Cairn's reserved `unsubscribed` event once per message; a bad token changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from cairn.adapters import clock
from cairn.adapters.contacts import ProfileChanged, ProfileUpdate
from cairn.adapters.events import NewEvent
from cairn.bootstrap import Runtime
from cairn.domain import tokens
from cairn.domain.errors import Forbidden, MalformedRequest

logger = Logger(child=True)
PURPOSE = "unsubscribe"


@dataclass(frozen=True)
class Link:
    cid: str
    message_id: str | None


class Unsubscriber:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def keyring(self) -> tokens.Keyring:
        keys: Any = getattr(self.rt.settings, "link_keys", None)
        if keys is None:
            return tokens.Keyring(self.rt.secret)
        return tokens.Keyring(self.rt.secret, current=keys.current, retired=keys.retired)

    def verify(self, token: str | None) -> Link:
        """The link a token stands for; 400 if it is not a token, 403 if forged, tampered or expired."""
        if not token:
            raise MalformedRequest("the link has no token")
        try:
            payload = self.keyring().verify(token, now=clock.now(), purpose=PURPOSE)
        except tokens.BadToken as exc:
            if exc.reason == "malformed":
                raise MalformedRequest("the unsubscribe link is not valid") from None
            raise Forbidden("the unsubscribe link is not valid or has expired") from None
        cid = payload.get("c")
        if not isinstance(cid, str) or not cid:
            raise MalformedRequest("the unsubscribe link is not valid")
        message_id = payload.get("m")
        return Link(cid=cid, message_id=str(message_id) if message_id else None)

    def unsubscribe(self, token: str | None, *, source: str) -> Link:
        """Unsubscribe the link's contact from email (idempotent); nothing for an erased contact."""
        link = self.verify(token)
        now = clock.now()
        changed = False  # this link took the contact off email (not one already unsubscribed)
        for _ in range(8):
            basis = self.rt.contacts.get(link.cid)
            if basis is None:
                return link  # erased, or never stored: its tombstone keeps it unmailed
            if basis.consent_status("email") == "unsubscribed":
                break
            entry = {"status": "unsubscribed", "source": source, "updatedAt": now.isoformat()}
            try:
                self.rt.contacts.update(
                    link.cid, ProfileUpdate(consent={"email": entry}), now=now, basis=basis
                )
                changed = True
                break
            except ProfileChanged:
                continue
        self.rt.events.put_once(
            NewEvent(
                cid=link.cid,
                message_id=f"unsubscribed-{link.message_id or 'link'}",
                name="unsubscribed",
                timestamp=now,
                received_at=now,
                properties={
                    "channel": "email",
                    "messageId": link.message_id or "",
                    "source": source,
                    "changed": changed,  # what the statistics count: the message that lost the contact
                },
                source="cairn",
            )
        )
        logger.info("unsubscribed", cid=link.cid, channel="email", source=source)
        return link
