"""Intake: track (ONE conditional write per event), identify, batch, subscriptions and contact reads.

Services take plain commands and return plain results; the HTTP layer (cairn.api) validates and shapes.
Logs carry the opaque contact id (`cid`) only: never an email address, phone number or user id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from cairn.adapters import clock
from cairn.adapters.contacts import Enrollment, Profile
from cairn.adapters.events import NewEvent
from cairn.bootstrap import Runtime
from cairn.domain import segment_spec
from cairn.domain.errors import (
    CairnError,
    FieldProblem,
    Forbidden,
    NotFound,
    Unavailable,
    ValidationFailed,
)
from cairn.domain.identity import cid_for_anonymous, cid_for_user, user_id_hash_ok
from cairn.domain.keys import ApiKey
from cairn.domain.profiling import next_fields
from cairn.services.identity import ConsentChange, ContactChange, Identities

logger = Logger(child=True)


@dataclass(frozen=True)
class Track:
    event: str
    user_id: str | None = None
    anonymous_id: str | None = None
    properties: Mapping[str, Any] = field(default_factory=dict)
    timestamp: datetime | None = None
    sent_at: datetime | None = None
    message_id: str | None = None
    context: Mapping[str, Any] | None = None
    user_id_hash: str | None = None


@dataclass(frozen=True)
class Identify:
    user_id: str
    traits: Mapping[str, Any] = field(default_factory=dict)
    anonymous_id: str | None = None
    message_id: str | None = None
    consent: Mapping[str, ConsentChange] = field(default_factory=dict)
    user_id_hash: str | None = None


@dataclass(frozen=True)
class ImportContact:
    user_id: str
    traits: Mapping[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    consent: Mapping[str, ConsentChange] = field(default_factory=dict)
    suppression: str | None = None  # "none" lifts one


@dataclass(frozen=True)
class Tracked:
    message_id: str
    duplicate: bool


@dataclass(frozen=True)
class ContactDetail:
    profile: Profile
    enrollments: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    segments: list[dict[str, Any]]


class Intake:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.identities = Identities(rt)

    def cid(self, user_id: str | None, anonymous_id: str | None) -> str:
        if user_id:
            return cid_for_user(self.rt.secret, user_id)
        assert anonymous_id
        return cid_for_anonymous(self.rt.secret, anonymous_id)

    # -- who may say what ---------------------------------------------------------------------
    def check_user_id_hash(self, key: ApiKey, user_id: str | None, claimed: str | None) -> None:
        """A write key's claim to be `user_id`: verified when given, required when the stack says so."""
        if key.is_secret or not user_id:
            return
        if claimed is None:
            if self.rt.settings.api.require_user_id_hash:
                raise Forbidden(
                    "this stack requires userIdHash with a write key",
                    [FieldProblem("userIdHash", "required: HMAC-SHA256 of the userId (hex)")],
                )
            return
        if not user_id_hash_ok(self.rt.secret, user_id, claimed):
            raise Forbidden(
                "userIdHash does not match userId", [FieldProblem("userIdHash", "does not match")]
            )

    # -- track ----------------------------------------------------------------------------------
    def event_of(self, key: ApiKey, cmd: Track, received: datetime) -> NewEvent:
        """The event to store, or the typed error that refuses it (nothing read or written)."""
        if not cmd.user_id and not cmd.anonymous_id:
            raise ValidationFailed(
                "userId or anonymousId is required",
                [FieldProblem("userId", "userId or anonymousId is required")],
            )
        if not key.is_secret and segment_spec.is_reserved(cmd.event):
            raise Forbidden(
                "a write key cannot send Cairn's reserved events",
                [FieldProblem("event", f"'{cmd.event}' is reserved (recorded by Cairn itself)")],
            )
        self.check_user_id_hash(key, cmd.user_id, cmd.user_id_hash)
        return NewEvent(
            cid=self.cid(cmd.user_id, cmd.anonymous_id),
            message_id=cmd.message_id or segment_spec.new_message_id(),
            name=cmd.event,
            timestamp=segment_spec.corrected_timestamp(cmd.timestamp, cmd.sent_at, received),
            received_at=received,
            properties=cmd.properties,
            user_id=cmd.user_id,
            anonymous_id=cmd.anonymous_id,
            context=cmd.context,
            sent_at=cmd.sent_at,
        )

    def track(self, key: ApiKey, cmd: Track) -> Tracked:
        """ONE conditional PutItem: a messageId already stored for the contact is a duplicate."""
        event = self.event_of(key, cmd, clock.now())
        stored = self.rt.events.put_once(event)
        return Tracked(message_id=event.message_id, duplicate=not stored)

    def track_many(self, key: ApiKey, cmds: Sequence[Track]) -> list[Tracked | CairnError]:
        """Several tracks (a batch): each refused alone or written with its own conditional PutItem."""
        received = clock.now()
        results: list[Tracked | CairnError | None] = []
        events: list[NewEvent] = []
        slots: list[int] = []
        seen: set[tuple[str, str]] = set()
        for cmd in cmds:
            try:
                event = self.event_of(key, cmd, received)
            except CairnError as exc:
                results.append(exc)
                continue
            if (event.cid, event.message_id) in seen:  # the same messageId twice in one batch
                results.append(Tracked(event.message_id, duplicate=True))
                continue
            seen.add((event.cid, event.message_id))
            slots.append(len(results))
            results.append(None)
            events.append(event)
        for slot, event, outcome in zip(slots, events, self.rt.events.put_many(events), strict=True):
            if isinstance(outcome, Exception):
                logger.warning("batch item not stored", cid=event.cid, error=type(outcome).__name__)
                results[slot] = Unavailable("the event could not be stored; send it again")
            else:
                results[slot] = Tracked(event.message_id, duplicate=not outcome)
        return [r for r in results if r is not None]

    # -- identify -------------------------------------------------------------------------------
    def identify(self, key: ApiKey, cmd: Identify) -> Profile:
        from cairn.domain.traits import clean_traits  # email and phone validation: not on track's path

        traits = clean_traits(cmd.traits)
        self.check_user_id_hash(key, cmd.user_id, cmd.user_id_hash)
        confirm: list[str] = []
        consent = self._consent_for(key, cmd.consent)
        change = ContactChange(user_id=cmd.user_id, traits=traits, consent=consent)

        def policy(basis: Profile | None, change: ContactChange) -> None:
            if not key.is_secret and basis is not None:
                for name in ("email", "phone"):
                    current = getattr(basis, name)
                    if name in change.traits and current is not None and current != change.traits[name]:
                        raise Forbidden(
                            "a write key cannot change the email or phone of an existing contact",
                            [FieldProblem(f"traits.{name}", "needs a secret key to change")],
                        )
            confirm.clear()
            change.consent = self._pending(basis, consent, confirm)

        profile = self.identities.apply(change, policy=policy)
        if cmd.anonymous_id and self.identities.merge(cmd.anonymous_id, profile.cid):
            profile = self.rt.contacts.get(profile.cid) or profile
        for channel in confirm:
            self.request_confirmation(profile.cid, channel, consent[channel].source)
        return profile

    def _consent_for(self, key: ApiKey, asked: Mapping[str, ConsentChange]) -> dict[str, ConsentChange]:
        """What consent a caller may set: a write key may unsubscribe, may ask for email (always double
        opt-in: it becomes `pending`), and may not subscribe anyone to SMS."""
        from cairn.domain.traits import CHANNELS

        out: dict[str, ConsentChange] = {}
        for channel, change in asked.items():
            if channel not in CHANNELS:
                raise ValidationFailed(
                    "unknown channel", [FieldProblem(f"consent.{channel}", "email or sms")]
                )
            if change.status == "subscribed" and not key.is_secret:
                if channel == "sms":
                    raise Forbidden(
                        "a write key cannot subscribe anyone to SMS",
                        [FieldProblem("consent.sms", "needs a secret key")],
                    )
                out[channel] = ConsentChange("pending", change.source)  # email: double opt-in
                continue
            out[channel] = change
        return out

    def _pending(
        self, basis: Profile | None, consent: Mapping[str, ConsentChange], confirm: list[str]
    ) -> dict[str, ConsentChange]:
        """Double opt-in: `subscribed` for email becomes `pending` when the stack requires confirmation
        (a write key's always does); a contact already subscribed stays subscribed."""
        out: dict[str, ConsentChange] = {}
        for channel, change in consent.items():
            wanted = change.status
            if channel == "email" and wanted == "subscribed" and self.rt.settings.consent.double_opt_in:
                wanted = "pending"
            if wanted == "pending":
                if basis is not None and basis.consent_status(channel) == "subscribed":
                    continue  # already confirmed: nothing to ask
                confirm.append(channel)
            out[channel] = ConsentChange(wanted, change.source, change.updated_at)
        return out

    def request_confirmation(self, cid: str, channel: str, source: str) -> None:
        """Send the double opt-in confirmation for `channel` (the contact's consent is `pending`).

        Hook for the sending side (`GET /v1/confirm` and the confirmation email are theirs): it is called
        once per write that set `pending`, after the write."""
        from cairn.services.send import Confirmations  # rendering and SES: loaded only when one is due

        Confirmations(self.rt).request(cid, channel, source)

    # -- import ---------------------------------------------------------------------------------
    def import_contacts(self, items: Sequence[ImportContact], workers: int = 8) -> list[Profile | CairnError]:
        """Write contacts as given (consent as stated by the importer, suppression, tags) straight to their
        profiles: no events, so no trigger fires; each profile is stamped `importedAt`."""
        from cairn.domain.traits import clean_traits

        def one(item: ImportContact) -> Profile | CairnError:
            try:
                change = ContactChange(
                    user_id=item.user_id,
                    traits=clean_traits(item.traits),
                    consent=dict(item.consent),
                    tags=item.tags,
                    suppression=None if item.suppression in (None, "none") else item.suppression,
                    clear_suppression=item.suppression == "none",
                    imported=True,
                )
                return self.identities.apply(change)
            except CairnError as exc:
                return exc
            except Exception as exc:  # one failed write fails only its item
                logger.warning("import item not stored", error=type(exc).__name__)
                return Unavailable("the contact could not be stored; send it again")

        if len(items) <= 1:
            return [one(i) for i in items]
        with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
            return list(pool.map(one, items))

    # -- subscriptions --------------------------------------------------------------------------
    def set_subscription(self, key: ApiKey, user_id: str, channel: str, status: str, source: str) -> Profile:
        confirm: list[str] = []
        asked = {channel: ConsentChange(status, source)}
        change = ContactChange(user_id=user_id, consent=dict(asked))

        def policy(basis: Profile | None, change: ContactChange) -> None:
            confirm.clear()
            change.consent = self._pending(basis, asked, confirm)

        profile = self.identities.apply(change, policy=policy)
        for ch in confirm:
            self.request_confirmation(profile.cid, ch, source)
        return profile

    # -- reads ----------------------------------------------------------------------------------
    def get_contact(self, user_id: str) -> Profile | None:
        return self.rt.contacts.get(self.cid(user_id, None))

    def contact_detail(self, user_id: str) -> ContactDetail:
        profile = self.get_contact(user_id)
        if profile is None:
            raise NotFound("no contact with that userId")
        return ContactDetail(
            profile=profile,
            enrollments=self._enrollments(profile.cid),
            messages=self._messages(profile.cid),
            segments=self.rt.segments.of_contact(profile.cid),
        )

    def _enrollments(self, cid: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        runs = {(r.workflow_id, int(r.run)): r for r in self.rt.enrollments.runs(cid)}
        current: dict[tuple[str, int], Enrollment] = {
            (e.workflow_id, e.run): e for e in self.rt.enrollments.all(cid)
        }
        for key in sorted(set(runs) | set(current)):
            run = runs.get(key)
            enrollment = current.get(key)
            status = enrollment.status if enrollment is not None else run.status if run is not None else None
            out.append(
                {
                    "workflowId": key[0],
                    "run": key[1],
                    "version": (run.version if run is not None else None)
                    or (enrollment.version if enrollment is not None else None),
                    "status": status,
                    "variant": getattr(run, "variant", None) or getattr(enrollment, "variant", None),
                    "enteredAt": _iso(
                        (run.entered_at if run is not None else None)
                        or (enrollment.entered_at if enrollment is not None else None)
                    ),
                    "exitedAt": _iso(run.exited_at if run is not None else None),
                    "exitReason": run.exit_reason if run is not None else None,
                }
            )
        out.sort(key=lambda e: e["enteredAt"] or "", reverse=True)
        return out

    def _messages(self, cid: str) -> list[dict[str, Any]]:
        return [
            {
                "id": m.message_id,
                "channel": m.channel,
                "template": m.template,
                "workflowId": m.workflow_id,
                "stepId": m.step_id,
                "status": m.status,
                "sentAt": _iso(m.sent_at),
                "skipReason": m.skip_reason,
            }
            for m in self.rt.messages.recent(cid, 50)
        ]

    def next_fields(self, user_id: str, form_id: str) -> list[str]:
        form = self.rt.settings.forms.get(form_id)
        if form is None:
            raise NotFound(
                "no such form in settings.yaml", [FieldProblem("form", "not declared in settings.yaml")]
            )
        profile = self.get_contact(user_id)
        attributes: dict[str, Any] = {}
        if profile is not None:
            attributes = dict(profile.attributes)
            for name in ("email", "phone", "timezone"):
                if getattr(profile, name) is not None:
                    attributes[name] = getattr(profile, name)
        return next_fields(form, attributes)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
