"""The feedback loop: what SES and SNS report about sent messages.

- SES events arrive through EventBridge (the configuration set's event destination): ``Delivery``,
  ``Open``, ``Click``, ``Bounce``, ``Complaint`` (and ``Send``, ``Reject``, ``DeliveryDelay``,
  ``RenderingFailure``, recorded in the message's history only). Each names Cairn's message id in the
  email tags, and Cairn's message ids begin with the contact's ``cid``.
- SMS delivery status comes from SNS's delivery status logs in CloudWatch Logs (a subscription
  filter); each record names SNS's message id, which the send function remembered.

Each report updates the message's status and history (a status never moves backwards: a late
``Delivery`` after a ``Click`` leaves the message ``clicked``), the contact's suppression (a hard bounce
or a complaint: no further email; an SMS that failed because the number opted out: no further SMS),
and is recorded as a reserved event (``email_delivered``, ``email_opened``, ``email_clicked``,
``email_bounced``, ``email_complained``, ``sms_delivered``, ``sms_failed``; source ``cairn``) with an id
derived from the report, so a redelivered report is stored once. Through the events stream those start
workflows and resume the runs waiting for them (``wait_for``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from cairn.adapters import clock, messaging
from cairn.adapters.contacts import Profile
from cairn.adapters.events import NewEvent
from cairn.adapters.tables import MessageItem
from cairn.bootstrap import Runtime
from cairn.services import stats
from cairn.services.runs import variant_of_run
from cairn.services.send import cid_of_message, message_properties

logger = Logger(child=True)


@dataclass(frozen=True)
class Report:
    """One provider report about one message, as Cairn records it."""

    entry: str  # the history entry: the message's new status, or a report that keeps the status
    event: str | None  # the reserved event to record, None: none
    at: datetime
    detail: str  # for the history; never an address
    properties: dict[str, Any]  # extra properties of the reserved event
    suppression: str | None = None  # set on the contact
    unique: str = ""  # distinguishes repeated reports of one kind (two clicks)
    moves: bool = True  # the entry is a status (else history only)


# A status moves only forward: the statuses each may replace. A report about a message whose send was
# interrupted (`unknown`) proves the provider took it.
FORWARD: dict[str, tuple[str, ...]] = {
    "delivered": ("sent", "unknown"),
    "opened": ("sent", "unknown", "delivered"),
    "clicked": ("sent", "unknown", "delivered", "opened"),
    "bounced": ("sent", "unknown", "delivered"),
    "complained": ("sent", "unknown", "delivered", "opened", "clicked", "bounced"),
    "failed": ("sent", "unknown"),
}


def _stamp(value: Any, fallback: datetime) -> datetime:
    if isinstance(value, str) and value:
        text = value.replace("Z", "+00:00")
        if " " in text and "T" not in text:  # SNS logs: "2026-12-01 09:00:01.234"
            text = text.replace(" ", "T") + ("+00:00" if "+" not in text else "")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return fallback
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=fallback.tzinfo)
    return fallback


#: Reports the workflow statistics count (opens and clicks once per contact and step, by the stats store).
COUNTED = frozenset({"delivered", "opened", "clicked", "bounced", "complained", "failed"})


def ses_report(detail: dict[str, Any], received: datetime) -> Report | None:
    """What an SES event (EventBridge ``detail``) means for Cairn; None for kinds it ignores."""
    kind = str(detail.get("eventType") or "")
    body: dict[str, Any] = detail.get(kind[:1].lower() + kind[1:], {}) if kind else {}
    at = _stamp(body.get("timestamp") or detail.get("mail", {}).get("timestamp"), received)
    if kind == "Delivery":
        return Report("delivered", "email_delivered", at, "delivered", {})
    if kind == "Open":
        return Report("opened", "email_opened", at, "opened", {}, unique=str(body.get("timestamp", "")))
    if kind == "Click":
        link = str(body.get("link", ""))
        props: dict[str, Any] = {"link": link}
        if body.get("linkTags"):
            props["linkTags"] = body["linkTags"]
        return Report(
            "clicked", "email_clicked", at, "clicked", props, unique=f"{body.get('timestamp')}|{link}"
        )
    if kind == "Bounce":
        bounce_type = str(body.get("bounceType", ""))
        sub_type = str(body.get("bounceSubType", ""))
        props = {"bounceType": bounce_type, "bounceSubType": sub_type}
        if bounce_type == "Permanent":
            return Report(
                "bounced", "email_bounced", at, f"bounced ({sub_type})", props, suppression="bounced"
            )
        soft = f"soft bounce ({bounce_type}/{sub_type})"
        return Report("soft_bounced", "email_bounced", at, soft, props, moves=False)
    if kind == "Complaint":
        props = {"feedbackType": str(body.get("complaintFeedbackType", ""))}
        return Report("complained", "email_complained", at, "complained", props, suppression="complained")
    if kind in ("Reject", "RenderingFailure"):
        return Report("failed", None, at, kind.lower(), {})
    if kind == "Send":
        return Report("accepted", None, at, "accepted by SES", {}, moves=False)
    if kind == "DeliveryDelay":
        return Report("delayed", None, at, f"delivery delayed ({body.get('delayType', '')})", {}, moves=False)
    return None


def decode_log_events(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of a CloudWatch Logs subscription event (``awslogs.data``: base64 of gzip JSON)."""
    data = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    out = []
    for entry in data.get("logEvents", []):
        try:
            record = json.loads(entry["message"])
        except (KeyError, ValueError):
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


OPTED_OUT_RESPONSES = ("opted out",)


class Feedback:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        if "awslogs" in event:
            return self.on_sms_logs(event)
        if event.get("source") == "aws.ses":
            return self.on_ses_event(event)
        logger.warning("not a feedback event", source=event.get("source"))
        return {"recorded": 0}

    # -- email -----------------------------------------------------------------------------------
    def on_ses_event(self, event: dict[str, Any]) -> dict[str, Any]:
        detail = event.get("detail") or {}
        tags = (detail.get("mail") or {}).get("tags") or {}
        message_id = next(iter(tags.get(messaging.MESSAGE_ID_TAG) or []), None)
        cid = cid_of_message(str(message_id)) if message_id else None
        report = ses_report(detail, clock.now())
        if cid is None or report is None:
            return {"recorded": 0}  # not one of Cairn's messages, or a kind Cairn does not follow
        return {"recorded": int(self.apply(cid, str(message_id), report))}

    # -- SMS -------------------------------------------------------------------------------------
    def on_sms_logs(self, event: dict[str, Any]) -> dict[str, Any]:
        recorded = 0
        for record in decode_log_events(event):
            provider_id = str((record.get("notification") or {}).get("messageId") or "")
            found = messaging.SmsReceipts().find(provider_id) if provider_id else None
            if found is None:
                continue  # not sent by Cairn (or older than the receipts keep)
            cid, message_id = found
            delivery = record.get("delivery") or {}
            at = _stamp((record.get("notification") or {}).get("timestamp"), clock.now())
            response = str(delivery.get("providerResponse", ""))
            if record.get("status") == "SUCCESS":
                report = Report("delivered", "sms_delivered", at, "delivered", {})
            else:
                suppression = None
                phone = str(delivery.get("destination") or "")
                opted_out = any(s in response.lower() for s in OPTED_OUT_RESPONSES)
                if opted_out or (phone and messaging.sms_opted_out(phone)):
                    suppression = "sms-opted-out"
                report = Report(
                    "failed",
                    "sms_failed",
                    at,
                    f"failed: {response}",
                    {"reason": response},
                    suppression=suppression,
                )
            recorded += int(self.apply(cid, message_id, report))
        return {"recorded": recorded}

    # -- both ------------------------------------------------------------------------------------
    def apply(self, cid: str, message_id: str, report: Report) -> bool:
        """Record one report: message status and history, suppression, reserved event. False if the
        message is unknown (erased) or the report was already recorded."""
        message = self.rt.messages.get(cid, message_id)
        profile = self.rt.contacts.get(cid)
        if message is None or profile is None:
            return False
        if any(h.status == report.entry and h.at == report.at for h in message.history or []):
            return False  # a redelivered report
        self.rt.messages.record(
            message,
            report.entry,
            at=report.at,
            reason=report.detail,
            only_from=FORWARD.get(report.entry, ()) if report.moves else (),
        )
        if report.entry in COUNTED and message.workflow_id != "cairn":  # not the double opt-in email
            stats.record_message(
                message.workflow_id,
                message.version,
                message.step_id,
                self._variant_of(message),
                report.entry,
                cid=cid,
                at=report.at,
                once=message.message_id,  # a report delivered twice at once passes the history check twice
            )
        if report.suppression:
            self._suppress(profile, message, report.suppression, report.at)
        if report.event:
            self._record_event(profile, message, report)
        return True

    def _variant_of(self, message: MessageItem) -> str | None:
        """The variant of the run that sent the message: a split's opens and clicks count per variant."""
        return variant_of_run(self.rt, message.cid, message.workflow_id, int(message.run))

    def _suppress(self, profile: Profile, message: MessageItem, suppression: str, at: datetime) -> None:
        if suppression == "sms-opted-out":
            self.rt.contacts.set_consent(profile.cid, "sms", "unsubscribed", "sms-opt-out", now=at)
        elif profile.suppression != "complained":  # a complaint is never downgraded to a bounce
            self.rt.contacts.set_suppression(profile.cid, suppression, now=at)
        logger.info("contact suppressed", message_id=message.message_id, suppression=suppression)

    def _record_event(self, profile: Profile, message: MessageItem, report: Report) -> None:
        assert report.event
        suffix = report.event
        if report.unique:
            suffix += "." + hashlib.sha256(report.unique.encode()).hexdigest()[:12]
        self.rt.events.put_once(
            NewEvent(
                cid=profile.cid,
                message_id=f"{message.message_id}.{suffix}",
                name=report.event,
                timestamp=report.at,
                received_at=clock.now(),
                properties={**message_properties(message), **report.properties},
                user_id=profile.user_id,
                source="cairn",
            )
        )
