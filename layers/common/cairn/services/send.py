"""The send function: gate, claim, render, deliver — at most once per run and step.

One call per message (one Task of a workflow's state machine):

1. the run is still open and its goal and exit conditions do not hold (else the run ends);
2. the message is claimed (``enrollment#step``, one conditional write): a retry that finds the claim
   sends nothing — unless the message was held or its provider call throttled, which re-claims it;
3. the gate (:mod:`cairn.domain.gate`) decides: send, skip (recorded with its reason), or hold until
   the next allowed moment (recorded; the state machine waits interruptibly and calls again — or with
   ``"onHold": "skip"`` the message is skipped);
4. a marketing message takes its place under the frequency caps (one conditional write), is rendered
   and handed to SES (raw MIME) or SNS; the message's status history records each step.

The result is ``{"status": "sent"|"skipped"|"held"|"failed"|"unknown", "messageId", "reason"?,
"seconds"?}``. Message ids begin with the contact's opaque ``cid`` (``<cid>-<hash>``), so SES events,
which name only Cairn's message id, find their contact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from cairn.adapters import clock, messaging
from cairn.adapters.caps import CapLedger, CapState
from cairn.adapters.contacts import Profile
from cairn.adapters.events import NewEvent
from cairn.adapters.tables import MessageItem
from cairn.bootstrap import Runtime
from cairn.domain import gate, mime, tokens
from cairn.domain.errors import Conflict, ContactExited, Forbidden, MalformedRequest, NotFound, TransientError
from cairn.domain.identity import message_key
from cairn.domain.rendering import RenderedEmail, Renderer, TemplateRenderError
from cairn.domain.templates import TemplateSet, builtin_confirmation
from cairn.services import stats
from cairn.services.runs import RunRef, check_policy, live_view, open_enrollment
from cairn.services.views import attributes_of

if TYPE_CHECKING:
    from cairn.services.workflows import Workflows

logger = Logger(child=True)
metrics = Metrics()

UNSUBSCRIBE_TTL = timedelta(days=400)
#: How long a message waits when SES's daily quota is used up or sending is paused.
QUOTA_HOLD = timedelta(hours=1)
#: Reserved events live as long as any other event.
RESERVED_SENT = {"email": "email_sent", "sms": "sms_sent"}
_CID_RE = re.compile(r"^[ac][a-z2-7]{25}$")


# ---------------------------------------------------------------------------------------------
# message ids


def message_id_for(cid: str, *parts: str) -> str:
    """Cairn's id of a message: the contact's cid, then a hash of what makes the message unique."""
    return f"{cid}-{message_key(cid, *parts)}"


def cid_of_message(message_id: str) -> str | None:
    """The cid a message id begins with, or None for an id Cairn did not make."""
    cid, _, rest = message_id.partition("-")
    return cid if _CID_RE.match(cid) and rest else None


# ---------------------------------------------------------------------------------------------
# what templates see


def keyring(rt: Runtime) -> tokens.Keyring:
    """The stack's link keys (unsubscribe and confirmation links), as settings.yaml rotates them."""
    keys = rt.site.settings.link_keys
    return tokens.Keyring(rt.secret, current=keys.current, retired=keys.retired)


def unsubscribe_url(rt: Runtime, base_url: str, cid: str, message_id: str, now: datetime) -> str:
    token = keyring(rt).sign({"c": cid, "m": message_id}, now=now, ttl=UNSUBSCRIBE_TTL, purpose="unsubscribe")
    return f"{base_url.rstrip('/')}/v1/unsubscribe?token={quote(token)}"


def event_context(event: NewEvent | None, fallback: dict[str, Any]) -> dict[str, Any]:
    """The trigger event as templates see it, in the shape of a track call."""
    if event is None:
        return {"event": fallback.get("event"), "messageId": fallback.get("messageId"), "properties": {}}
    return {
        "event": event.name,
        "messageId": event.message_id,
        "timestamp": event.timestamp,
        "properties": dict(event.properties),
    }


def message_context(
    rt: Runtime,
    profile: Profile,
    *,
    message_id: str,
    base_url: str,
    now: datetime,
    event: dict[str, Any] | None = None,
    workflow: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The context a template renders with (see :mod:`cairn.domain.rendering`)."""
    attrs = attributes_of(profile)
    settings = rt.site.settings
    return {
        **attrs,
        "contact": attrs,
        "event": event or {"properties": {}},
        "workflow": workflow or {},
        "unsubscribe_url": unsubscribe_url(rt, base_url, profile.cid, message_id, now),
        "postal_address": rt.config.postal_address or settings.postal_address,
        "public_url": base_url.rstrip("/"),
        "timezone": profile.timezone or settings.timezone,
        "now": now,
    }


@dataclass(frozen=True)
class Outgoing:
    """One message the gate let through, ready to render and deliver."""

    claim: MessageItem
    profile: Profile
    channel: str
    template: str
    kind: str
    context: dict[str, Any]
    counted: bool  # took a place under the frequency caps
    tags: dict[str, str]
    variant: str | None = None  # the run's split variant (statistics)
    step: bool = True  # a workflow step (statistics); False for the double opt-in email


class Sender:
    def __init__(self, rt: Runtime, renderer: Renderer | None = None) -> None:
        self.rt = rt
        self.caps = CapLedger()
        self._renderer = renderer

    @property
    def renderer(self) -> Renderer:
        return self._renderer or self.rt.renderer

    # -- the Task --------------------------------------------------------------------------------
    def send(self, payload: dict[str, Any]) -> dict[str, Any]:
        ref = RunRef.from_payload(payload)
        step = payload["step"]
        channel, template = step["channel"], step["template"]
        enrollment = open_enrollment(self.rt, ref)
        self.workflows.end_if_retired(ref.cid, ref.workflow_id, ref.run)
        variant = enrollment.variant
        try:
            profile = self.rt.contacts.get(ref.cid)
            if profile is None:
                raise ContactExited("the contact no longer exists")
            now = clock.now()
            check_policy(live_view(self.rt, profile, ref, now, payload["policy"]), ref, payload["policy"])
        except ContactExited:  # the run leaves at this send step: its funnel shows it (once per run)
            stats.record_exit(ref.workflow_id, ref.version, step["id"], variant, cid=ref.cid, run=ref.run)
            raise

        kind = self.kind_of(channel, template)
        message_id = message_id_for(ref.cid, ref.workflow_id, str(ref.run), step["id"])
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
            claim = self._reclaim(ref.cid, message_id, now)
            if claim is None:
                return self._already_claimed(ref.cid, message_id)

        paused = self._paused(ref.workflow_id)
        decision, caps = self._decide(profile, channel, kind, message_id=message_id, now=now, paused=paused)
        if isinstance(decision, gate.Skip):
            return self.skip(claim, decision.reason, now, kind, variant=variant)
        if isinstance(decision, gate.Hold):
            if step.get("onHold") == "skip":
                return self.skip(claim, f"{decision.reason} (onHold: skip)", now, kind, variant=variant)
            return self.hold(claim, decision, now, kind, variant=variant)

        trigger = payload["run"].get("trigger") or {}
        context = message_context(
            self.rt,
            profile,
            message_id=message_id,
            base_url=self.rt.config.public_base_url,
            now=now,
            event=self._event(ref.cid, channel, template, trigger),
            workflow={
                "id": ref.workflow_id,
                "stepId": step["id"],
                "version": ref.version,
                "run": ref.run,
            },
        )
        outgoing = Outgoing(
            claim=claim,
            profile=profile,
            channel=channel,
            template=template,
            kind=kind,
            context=context,
            counted=caps,
            tags={messaging.WORKFLOW_TAG: ref.workflow_id},
            variant=variant,
        )
        return self.deliver(outgoing, now)

    def _paused(self, workflow_id: str) -> str | None:
        """Which pause holds this workflow's messages: the global one (settings.yaml) or its own."""
        if self.rt.site.settings.paused:
            return "global"
        return "workflow" if self.workflows.paused(workflow_id) else None

    @cached_property
    def workflows(self) -> Workflows:
        from cairn.services.workflows import Workflows

        return Workflows(self.rt)

    def kind_of(self, channel: str, template: str) -> str:
        templates = self.rt.site.templates
        return (templates.email[template] if channel == "email" else templates.sms[template]).kind

    # -- the gate --------------------------------------------------------------------------------
    def _decide(
        self, profile: Profile, channel: str, kind: str, *, message_id: str, now: datetime, paused: str | None
    ) -> tuple[gate.Decision, bool]:
        """The gate's decision; a Send of a capped marketing message has taken its place (True)."""
        settings = self.rt.site.settings
        chan: gate.Channel = "email" if channel == "email" else "sms"
        rules = gate.Rules.from_settings(settings, chan, production=self.rt.config.stage == "prod")
        address = profile.email if channel == "email" else profile.phone
        recipient = gate.Recipient(
            address=address,
            consent=profile.consent_status(channel),
            suppression=profile.suppression,
            tombstoned=bool(address) and self.rt.identities.is_tombstoned(str(address)),
            timezone=profile.timezone,
        )
        counted = kind == "marketing" and rules.capped
        for _ in range(5):
            state = self.caps.read(profile.cid, channel) if counted else CapState()
            decision = gate.decide(
                recipient,
                kind="transactional" if kind == "transactional" else "marketing",
                rules=rules,
                now=now,
                recent_sends=state.times(excluding=message_id),
                paused=paused,
            )
            if not isinstance(decision, gate.Send) or not counted:
                return decision, False
            if self.caps.reserve(profile.cid, channel, message_id, now, state):
                return decision, True
        raise TransientError("the frequency cap ledger kept changing under this send")

    # -- outcomes --------------------------------------------------------------------------------
    def _reclaim(self, cid: str, message_id: str, now: datetime) -> MessageItem | None:
        """A held or throttled message, tried again: claim it again (one invocation wins)."""
        existing = self.rt.messages.get(cid, message_id)
        if (
            existing is not None
            and existing.status in ("held", "throttled")
            and self.rt.messages.reclaim(existing, now=now)
        ):
            return existing
        return None

    def _already_claimed(self, cid: str, message_id: str) -> dict[str, Any]:
        """A retry: never send again. A claim without a provider id is an unknown outcome."""
        existing = self.rt.messages.get(cid, message_id)
        if existing is not None and existing.status == "claimed" and not existing.provider_id:
            self.rt.messages.record(
                existing,
                "unknown",
                at=clock.now(),
                reason="retried after an interrupted send",
                only_from=("claimed",),
            )
            logger.warning("send retried after an interrupted attempt: not sent again", message_id=message_id)
        status = existing.status if existing is not None else "unknown"
        result: dict[str, Any] = {
            "status": _result_status(status),
            "messageId": message_id,
            "duplicate": True,
        }
        if existing is not None and existing.skip_reason and result["status"] != "sent":
            result["reason"] = existing.skip_reason
        if result["status"] == "held":  # another invocation holds it right now: wait as long as it does
            assert existing is not None
            until = next((h.until for h in reversed(existing.history or []) if h.until), None)
            now = clock.now()
            result["seconds"] = gate.Hold("", until).seconds(now) if until is not None else 60
        return result

    def skip(
        self,
        claim: MessageItem,
        reason: str,
        now: datetime,
        kind: str,
        *,
        variant: str | None,
        step: bool = True,
    ) -> dict[str, Any]:
        self.rt.messages.record(claim, "skipped", at=now, reason=reason, kind=kind)
        if step:
            stats.record_message(
                claim.workflow_id, claim.version, claim.step_id, variant, "skipped", reason, at=now
            )
        logger.info("message skipped", message_id=claim.message_id, reason=reason)
        return {"status": "skipped", "messageId": claim.message_id, "reason": reason}

    def hold(
        self, claim: MessageItem, hold: gate.Hold, now: datetime, kind: str, *, variant: str | None
    ) -> dict[str, Any]:
        self.rt.messages.record(claim, "held", at=now, reason=hold.reason, until=hold.until, kind=kind)
        stats.record_message(
            claim.workflow_id, claim.version, claim.step_id, variant, "held", hold.reason, at=now
        )
        seconds = hold.seconds(now)
        logger.info("message held", message_id=claim.message_id, reason=hold.reason, seconds=seconds)
        return {"status": "held", "messageId": claim.message_id, "reason": hold.reason, "seconds": seconds}

    # -- delivery --------------------------------------------------------------------------------
    def deliver(self, out: Outgoing, now: datetime) -> dict[str, Any]:
        """Render and hand the message to the provider; record what happened."""
        claim, profile = out.claim, out.profile
        mid = claim.message_id
        try:
            if out.channel == "sms":
                assert profile.phone
                if messaging.sms_opted_out(profile.phone):
                    self._release(out)
                    self.rt.contacts.set_consent(profile.cid, "sms", "unsubscribed", "sms-opt-out", now=now)
                    reason = "opted out of SMS (replied STOP)"
                    return self.skip(claim, reason, now, out.kind, variant=out.variant, step=out.step)
                sms = self.renderer.render_sms(out.template, out.context)
                provider_id = messaging.send_sms(
                    sms.body,
                    phone=profile.phone,
                    transactional=sms.kind == "transactional",
                    sender_id=self.rt.site.settings.sender.sms_id,
                )
                messaging.SmsReceipts().remember(provider_id, profile.cid, mid, now=now)
            else:
                assert profile.email
                rendered = self.renderer.render_email(out.template, out.context)
                provider_id = self._email(profile.email, rendered, mid, out)
        except TemplateRenderError as exc:
            # A template that cannot render this contact never will: fail the message, not the run.
            self._release(out)
            self.rt.messages.record(claim, "failed", at=now, reason=str(exc), kind=out.kind)
            self._count(out, "failed", "the template did not render", now)
            logger.error("message failed to render", message_id=mid, template=out.template)
            return {"status": "failed", "messageId": mid, "reason": "the template did not render"}
        except messaging.ProviderThrottled as exc:
            self._release(out)
            metrics.add_metric(name="SendsThrottled", unit=MetricUnit.Count, value=1)
            self.rt.messages.record(claim, "throttled", at=now, reason=str(exc), kind=out.kind)
            raise TransientError(f"{out.channel} provider throttled: {exc}") from exc
        except messaging.ProviderQuotaExhausted as exc:
            self._release(out)
            metrics.add_metric(name="SendsHeldByProvider", unit=MetricUnit.Count, value=1)
            hold = gate.Hold(f"provider quota ({exc})", now + QUOTA_HOLD)
            return self.hold(claim, hold, now, out.kind, variant=out.variant)
        except messaging.ProviderRejected as exc:
            self._release(out)
            self.rt.messages.record(claim, "failed", at=now, reason=f"rejected ({exc})", kind=out.kind)
            self._count(out, "failed", f"rejected ({exc})", now)
            return {"status": "failed", "messageId": mid, "reason": f"rejected ({exc})"}
        sent_at = clock.now()
        self.rt.messages.record(
            claim, "sent", at=sent_at, provider_id=provider_id, sent_at=sent_at, kind=out.kind
        )
        self._count(out, "sent", None, sent_at)
        self._record_sent(claim, profile, sent_at)
        return {"status": "sent", "messageId": mid}

    @staticmethod
    def _count(out: Outgoing, status: str, reason: str | None, at: datetime) -> None:
        """The message's outcome in the workflow's statistics (one call per outcome; not for opt-in mail)."""
        if out.step:
            claim = out.claim
            stats.record_message(
                claim.workflow_id, claim.version, claim.step_id, out.variant, status, reason, at=at
            )

    def _email(self, recipient: str, rendered: RenderedEmail, message_id: str, out: Outgoing) -> str:
        settings = self.rt.site.settings
        address = self.rt.config.sender_email or settings.sender.email or ""
        domain = address.rsplit("@", 1)[-1] or "localhost"
        raw = mime.build_email(
            sender=f"{settings.sender.name} <{address}>",
            recipient=recipient,
            rendered=rendered,
            message_id=message_id,
            unsubscribe_url=out.context["unsubscribe_url"] if rendered.kind == "marketing" else None,
            domain=domain,
            date=clock.now(),
        )
        return messaging.send_email(
            raw,
            sender=address,
            recipient=recipient,
            configuration_set=self.rt.config.ses_configuration_set,
            message_id=message_id,
            tags=out.tags,
        )

    def _release(self, out: Outgoing) -> None:
        if out.counted:
            self.caps.release(out.profile.cid, out.channel, out.claim.message_id)

    def _event(self, cid: str, channel: str, template: str, trigger: dict[str, Any]) -> dict[str, Any]:
        """The trigger event for templates that use `event` (one read, only for those)."""
        uses = self.renderer.variables(template, "email" if channel == "email" else "sms")
        stored = None
        if "event" in uses and trigger.get("messageId"):
            stored = self.rt.events.get(cid, str(trigger["messageId"]))
        return event_context(stored, trigger)

    def _record_sent(self, claim: MessageItem, profile: Profile, at: datetime) -> None:
        """The reserved `email_sent` / `sms_sent` event (deterministic id: a retry stores it once)."""
        self.rt.events.put_once(
            NewEvent(
                cid=profile.cid,
                message_id=f"{claim.message_id}.sent",
                name=RESERVED_SENT[claim.channel],
                timestamp=at,
                received_at=at,
                properties=message_properties(claim),
                user_id=profile.user_id,
                source="cairn",
            )
        )


def message_properties(claim: MessageItem) -> dict[str, Any]:
    """What a reserved message event carries: enough to match it to its run and step."""
    properties = {
        "messageId": claim.message_id,
        "channel": claim.channel,
        "template": claim.template,
        "workflowId": claim.workflow_id,
        "version": claim.version,
        "run": int(claim.run),
        "stepId": claim.step_id,
    }
    return {k: v for k, v in properties.items() if v is not None}


_DELIVERED = frozenset({"sent", "delivered", "opened", "clicked", "bounced", "complained"})


def _result_status(status: str) -> str:
    """A stored message status as the send step's result (after a send, feedback moves it on)."""
    if status in _DELIVERED:
        return "sent"
    return status if status in ("skipped", "failed", "held") else "unknown"


# ---------------------------------------------------------------------------------------------
# double opt-in

CONFIRM_TTL = timedelta(days=7)
CONFIRM_PURPOSE = "confirm"


class Confirmations:
    """Double opt-in: a `pending` email subscription gets a confirmation email at once (a transactional
    message, at most one per contact and hour); its signed link (`GET /v1/confirm`) makes it
    `subscribed`. Re-confirming also lifts a bounce or complaint suppression and takes the address off
    SES's account-level suppression list (where a new hard bounce would put it back)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def base_url(self) -> str:
        # The trigger function has no PUBLIC_BASE_URL without a custom domain (the API's own URL would be a
        # template cycle): the API tells the request's address instead.
        return self.rt.config.public_base_url or tokens.LINK_BASE_URL.get() or "http://127.0.0.1:3000"

    def request(self, cid: str, channel: str, source: str) -> dict[str, Any]:
        """Send the confirmation for `channel` (only email has one; SMS opt-in is a keyword reply)."""
        now = clock.now()
        profile = self.rt.contacts.get(cid)
        if channel != "email" or profile is None:
            return {"status": "skipped", "reason": "no confirmation for this channel"}
        settings = self.rt.site.settings
        template = settings.consent.confirmation_template
        hour = now.strftime("%Y-%m-%dT%H")
        message_id = message_id_for(cid, "confirm", channel, hour)
        claim = self.rt.messages.claim(
            cid,
            message_id,
            channel="email",
            template=template,
            workflow_id="cairn",
            version=None,
            run=0,
            step_id="confirm-subscription",
            now=now,
        )
        if claim is None:
            return {"status": "skipped", "messageId": message_id, "reason": "already sent this hour"}
        rules = gate.Rules.from_settings(settings, "email", production=self.rt.config.stage == "prod")
        address = profile.email
        recipient = gate.Recipient(
            address=address,
            tombstoned=bool(address) and self.rt.identities.is_tombstoned(str(address)),
            timezone=profile.timezone,
        )  # no suppression: the person asks again, now (a new hard bounce suppresses again)
        decision = gate.decide(recipient, kind="transactional", rules=rules, now=now)
        sender = Sender(self.rt, renderer=self._renderer(template))
        if isinstance(decision, gate.Skip | gate.Hold):
            return sender.skip(claim, decision.reason, now, "transactional", variant=None, step=False)
        if profile.suppression and address:
            messaging.remove_from_account_suppression(address)
        base = self.base_url()
        token = keyring(self.rt).sign(
            {"c": cid, "ch": channel}, now=now, ttl=CONFIRM_TTL, purpose=CONFIRM_PURPOSE
        )
        context = message_context(self.rt, profile, message_id=message_id, base_url=base, now=now)
        context["confirm_url"] = f"{base.rstrip('/')}/v1/confirm?token={quote(token)}"
        context["workflow"] = {"id": "cairn", "stepId": "confirm-subscription"}
        out = Outgoing(
            claim=claim,
            profile=profile,
            channel="email",
            template=template,
            kind="transactional",
            context=context,
            counted=False,
            tags={messaging.WORKFLOW_TAG: "cairn-confirm"},
            step=False,
        )
        logger.info("confirmation requested", cid=cid, channel=channel)
        try:
            return sender.deliver(out, now)
        except TransientError:  # throttled: the claim was released, the next request sends it
            logger.warning("confirmation throttled", cid=cid)
            return {"status": "throttled", "messageId": message_id}

    def _renderer(self, template: str) -> Renderer:
        """The project's renderer, or one with the built-in confirmation when the project has none."""
        site = self.rt.site.templates
        if template in site.email:
            return self.rt.renderer
        builtin = TemplateSet(
            email={template: builtin_confirmation(template)}, sms={}, partials=site.partials
        )
        return Renderer(builtin, timezone_fallback=self.rt.site.settings.timezone)

    def confirm(self, token: str) -> Profile:
        """Complete a double opt-in: `pending` becomes `subscribed` (a link clicked twice is fine).
        400 for something that is not a token, 403 for a forged, tampered or expired one, 409 when
        the subscription is no longer pending (unsubscribed since): nothing changes then."""
        now = clock.now()
        try:
            payload = keyring(self.rt).verify(token, now=now, purpose=CONFIRM_PURPOSE)
        except tokens.BadToken as exc:
            if exc.reason == "malformed":
                raise MalformedRequest("the confirmation link is not valid") from None
            raise Forbidden("the confirmation link is not valid or has expired") from None
        cid, channel = payload.get("c"), payload.get("ch", "email")
        if not isinstance(cid, str) or channel != "email":
            raise MalformedRequest("the confirmation link is not valid")
        profile = self.rt.contacts.get(cid)
        if profile is None:
            raise NotFound("this subscription no longer exists")
        status = profile.consent_status(channel)
        if status == "subscribed":
            return profile
        if status != "pending":
            raise Conflict("this subscription is no longer waiting for confirmation")
        profile = self.rt.contacts.set_consent(cid, channel, "subscribed", "double-opt-in", now=now)
        if profile is None:  # erased meanwhile: set_consent creates no profile
            raise NotFound("this subscription no longer exists")
        if profile.suppression in ("bounced", "complained"):
            self.rt.contacts.set_suppression(cid, None, now=now)
        if profile.email:
            messaging.remove_from_account_suppression(profile.email)
        logger.info("subscription confirmed", cid=cid, channel=channel)
        return profile
