"""The send function: gate, claim, render, deliver — at most once per run and step."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

from aws_lambda_powertools import Logger

from cairn.adapters import clock, messaging
from cairn.adapters.contacts import Profile
from cairn.bootstrap import Runtime
from cairn.domain import mime, tokens
from cairn.domain.errors import ContactExited, TransientError
from cairn.domain.identity import message_key
from cairn.services.runs import RunRef, check_policy, consent_defaults, live_view, open_enrollment
from cairn.services.views import attributes_of

logger = Logger(child=True)
UNSUBSCRIBE_TTL = timedelta(days=365)


def gate(profile: Profile, channel: str, kind: str, defaults: dict[str, str]) -> str | None:
    """Why this message must not go out, or None. Transactional messages skip consent (not suppression)."""
    address = profile.email if channel == "email" else profile.phone
    if not address:
        return f"no {'email address' if channel == 'email' else 'phone number'}"
    if profile.suppression and channel == "email":
        return f"suppressed ({profile.suppression})"
    if kind != "transactional":
        status = profile.consent_status(channel) or defaults.get(channel, "unsubscribed")
        if status != "subscribed":
            return f"no {channel} consent ({status})"
    return None


class Sender:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def send(self, payload: dict[str, Any]) -> dict[str, Any]:
        ref = RunRef.from_payload(payload)
        step = payload["step"]
        channel, template = step["channel"], step["template"]
        open_enrollment(self.rt, ref)
        profile = self.rt.contacts.get(ref.cid)
        if profile is None:
            raise ContactExited("the contact no longer exists")
        now = clock.now()
        check_policy(live_view(self.rt, profile, ref, now, payload["policy"]), ref, payload["policy"])

        templates = self.rt.site.templates
        kind = (templates.email[template] if channel == "email" else templates.sms[template]).kind
        message_id = message_key(ref.cid, ref.workflow_id, str(ref.run), step["id"])
        claim = self.rt.messages.claim(
            ref.cid,
            message_id,
            channel=channel,
            template=template,
            workflow_id=ref.workflow_id,
            version=ref.version,
            run=ref.run,
            step_id=step["id"],
            now=now,
        )
        if claim is None:
            return self._already_claimed(ref.cid, message_id)
        reason = gate(profile, channel, kind, consent_defaults(self.rt))
        if reason is not None:
            self.rt.messages.mark(claim, "skipped", reason=reason)
            return {"status": "skipped", "messageId": message_id, "reason": reason}

        context = self._context(profile, ref, step["id"], message_id, payload)
        try:
            if channel == "email":
                provider_id = self._email(profile, template, context, message_id)
            else:
                provider_id = self._sms(profile, template, context)
        except messaging.ProviderThrottled as exc:
            self.rt.messages.mark(claim, "throttled")
            raise TransientError(str(exc)) from exc
        except messaging.ProviderRejected as exc:
            self.rt.messages.mark(claim, "failed", reason=str(exc))
            return {"status": "failed", "messageId": message_id, "reason": str(exc)}
        self.rt.messages.mark(claim, "sent", provider_id=provider_id, sent_at=clock.now())
        return {"status": "sent", "messageId": message_id}

    def _already_claimed(self, cid: str, message_id: str) -> dict[str, Any]:
        """A retry: never send again. A claim without a provider id is an unknown outcome."""
        existing = self.rt.messages.get(cid, message_id)
        if existing is not None and existing.status == "claimed" and not existing.provider_id:
            self.rt.messages.mark(existing, "unknown", reason="retried after an interrupted send")
        status = existing.status if existing is not None else "unknown"
        return {
            "status": "unknown" if status == "claimed" else status,
            "messageId": message_id,
            "duplicate": True,
        }

    def _context(
        self, profile: Profile, ref: RunRef, step_id: str, message_id: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        attrs = attributes_of(profile)
        settings = self.rt.site.settings
        token = tokens.sign(
            {"c": profile.cid, "m": message_id},
            self.rt.secret,
            now=clock.now(),
            ttl=UNSUBSCRIBE_TTL,
            purpose="unsubscribe",
        )
        base = self.rt.config.public_base_url.rstrip("/")
        return {
            **attrs,
            "contact": attrs,
            "event": payload["run"].get("trigger", {}),
            "workflow": {"id": ref.workflow_id, "stepId": step_id},
            "unsubscribe_url": f"{base}/v1/unsubscribe?token={quote(token)}",
            "postal_address": self.rt.config.postal_address or settings.postal_address,
            "timezone": profile.timezone or settings.timezone,
            "now": clock.now(),
        }

    def _email(self, profile: Profile, template: str, context: dict[str, Any], message_id: str) -> str:
        assert profile.email
        rendered = self.rt.renderer.render_email(template, context)
        settings = self.rt.site.settings
        address = self.rt.config.sender_email or settings.sender.email or ""
        sender = f"{settings.sender.name} <{address}>"
        domain = address.rsplit("@", 1)[-1] or "localhost"
        raw = mime.build_email(
            sender=sender,
            recipient=profile.email,
            rendered=rendered,
            message_id=message_id,
            unsubscribe_url=context["unsubscribe_url"] if rendered.kind == "marketing" else None,
            domain=domain,
        )
        return messaging.send_email(
            raw,
            sender=address,
            recipient=profile.email,
            configuration_set=self.rt.config.ses_configuration_set,
            message_id=message_id,
        )

    def _sms(self, profile: Profile, template: str, context: dict[str, Any]) -> str:
        assert profile.phone
        rendered = self.rt.renderer.render_sms(template, context)
        return messaging.send_sms(
            rendered.body, phone=profile.phone, transactional=rendered.kind == "transactional"
        )
