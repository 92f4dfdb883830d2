"""Identity and profiles: identify, import and merges of anonymous contacts, all race-safe.

Every profile write is conditioned on what was read (ContactStore.update): a concurrent writer makes it
fail with nothing written, and it is retried from a fresh read. An email address is claimed for one
contact in the identities table (`email#<sha256>`) in the same transaction that writes it, so two
contacts can never end up with one address (the loser gets 409)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from cairn.adapters import clock
from cairn.adapters.contacts import (
    ContactErased,
    IdentityChange,
    IdentityConflict,
    Profile,
    ProfileChanged,
    ProfileUpdate,
)
from cairn.bootstrap import Runtime
from cairn.domain import erasure
from cairn.domain.errors import Conflict, FieldProblem
from cairn.domain.identity import cid_for_anonymous, cid_for_user, identity_key

logger = Logger(child=True)
ATTEMPTS = 12


@dataclass(frozen=True)
class ConsentChange:
    status: str  # subscribed | unsubscribed | pending
    source: str
    updated_at: datetime | None = None


@dataclass
class ContactChange:
    """A change to one contact as identify or import asks for it (traits already validated)."""

    user_id: str
    traits: dict[str, Any] = field(default_factory=dict)
    consent: dict[str, ConsentChange] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    suppression: str | None = None
    clear_suppression: bool = False
    imported: bool = False


# Decides, from the profile as read, what a write may do (it may adjust the change); raises a CairnError
# to refuse it.
Policy = Callable[[Profile | None, ContactChange], None]


def entry(change: ConsentChange, now: datetime) -> dict[str, Any]:
    return {
        "status": change.status,
        "source": change.source,
        "updatedAt": (change.updated_at or now).isoformat(),
    }


class Identities:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def cid(self, user_id: str) -> str:
        return cid_for_user(self.rt.secret, user_id)

    # -- writing a contact ----------------------------------------------------------------------
    def apply(self, change: ContactChange, *, policy: Policy | None = None) -> Profile:
        """Write `change` to the contact with its identities, retrying from a fresh read on a race.

        A write that would create a contact erased less than erasure.GRACE ago is refused (409): the
        create itself is conditioned on the erase mark (ContactStore.update), so it cannot slip in
        between a check and the write."""
        cid = self.cid(change.user_id)
        for attempt in range(ATTEMPTS):
            basis = self.rt.contacts.get(cid)
            if policy is not None:
                policy(basis, change)
            update, identities = self._plan(basis, change)
            try:
                return self.rt.contacts.update(
                    cid, update, now=clock.now(), basis=basis, identities=identities
                )
            except ProfileChanged:
                _backoff(attempt)
            except ContactErased:
                raise recently_erased() from None
            except IdentityConflict as exc:
                raise Conflict(
                    f"this {exc.kind} belongs to another contact",
                    [FieldProblem(f"traits.{exc.kind}", f"the {exc.kind} belongs to another userId")],
                ) from None
        raise Conflict("the contact changed concurrently too often; retry the request")

    def _plan(self, basis: Profile | None, change: ContactChange) -> tuple[ProfileUpdate, IdentityChange]:
        from cairn.domain.traits import split_traits  # with email and phone validation: not track's

        now = clock.now()
        fields, attrs = split_traits(change.traits)
        # Unchanged fields are not written: no condition on them, no identity to claim.
        fields = {k: v for k, v in fields.items() if basis is None or getattr(basis, k) != v}
        identities = IdentityChange()
        if "email" in fields:
            identities.claim.append((identity_key("email", fields["email"]), "email"))
            if basis is not None and basis.email:
                identities.release.append(identity_key("email", basis.email))
        consent = {ch: entry(c, now) for ch, c in change.consent.items()}
        return (
            ProfileUpdate(
                fields=fields,
                attributes=attrs,
                consent=consent,
                tags=change.tags,
                suppression=change.suppression,
                clear_suppression=change.clear_suppression,
                user_id=change.user_id,
                imported=change.imported,
            ),
            identities,
        )

    # -- anonymous ids --------------------------------------------------------------------------
    def merge(self, anonymous_id: str, user_cid: str) -> bool:
        """Merge the anonymous contact into the user's: its runs end, its attributes, tags and consent
        fill what the user's profile lacks (the user's win), its events move. Idempotent and race-safe:
        the `anon#` identity is claimed with a conditional write first, so of two users identifying with
        one anonymous id only one merges it; a merge cut short is finished by the next identify.
        True if the anonymous id is (now) the user's."""
        now = clock.now()
        link = self.rt.identities.link_anonymous(anonymous_id, user_cid, now=now)
        if link.owner != user_cid:
            return False  # identified as another user before: Segment keeps the first
        if link.state == "merged":
            return True
        anon_cid = cid_for_anonymous(self.rt.secret, anonymous_id)
        self._end_runs(anon_cid, now)
        anon = self.rt.contacts.get(anon_cid)
        fill = dict(anon.attributes) if anon else {}
        for name in ("timezone",):
            value = getattr(anon, name) if anon else None
            if value is not None:
                fill.setdefault(name, value)
        update = ProfileUpdate(
            fill={k: v for k, v in fill.items() if k != "timezone"},
            fill_consent=dict(anon.consent) if anon else {},
            tags=anon.tags if anon else frozenset(),
            anonymous_ids=frozenset({anonymous_id}) | (anon.anonymous_ids if anon else frozenset()),
        )
        for attempt in range(ATTEMPTS):
            basis = self.rt.contacts.get(user_cid)
            if basis is not None and basis.timezone is None and "timezone" in fill:
                update.fields = {"timezone": fill["timezone"]}
            try:
                self.rt.contacts.update(user_cid, update, now=now, basis=basis)
                break
            except ProfileChanged:
                _backoff(attempt)
            except ContactErased:  # the user was erased since the identify wrote: nothing to merge into
                raise recently_erased() from None
        moved = self.rt.events.move(anon_cid, user_cid, source="merge")
        self.rt.contacts.delete_profile(anon_cid)
        forget_memberships(self.rt, anon_cid, now)  # its memberships (and member counts) go with it
        self.rt.identities.mark_merged(anonymous_id, user_cid)
        logger.info("anonymous contact merged", cid=user_cid, anonymous_cid=anon_cid, events=moved)
        return True

    def _end_runs(self, cid: str, now: datetime) -> None:
        """End the contact's open runs in their Exited state (a waiting step is woken to end there)."""
        for enrollment in self.rt.enrollments.active(cid):
            before = self.rt.enrollments.close(
                cid, enrollment.workflow_id, enrollment.run, "exited", "merged", now=now
            )
            if before is not None and before.token:
                self.rt.executions.interrupt(
                    before.token, "ContactExited", "merged into an identified contact"
                )

    def forward_if_merged(self, image: Mapping[str, Any]) -> bool:
        """A new event for an anonymous contact that has been merged (it raced the merge, or the site
        still sends only the anonymousId): move it to the user's contact, where it reacts as a new event.
        One GetItem, and only for events of anonymous contacts."""
        cid = str(image.get("cid") or "")
        anonymous_id = image.get("anonymousId")
        if not cid.startswith("a") or not anonymous_id:
            return False
        owner = self.rt.identities.anonymous_owner(str(anonymous_id))
        if owner is None or owner == cid:
            return False
        self.rt.events.move_one(cid, str(image["mid"]), owner)
        logger.info("event forwarded to the merged contact", cid=owner, anonymous_cid=cid)
        return True


def recently_erased() -> Conflict:
    """409 for a write that would create an erased contact again within erasure.GRACE."""
    minutes = int(erasure.GRACE.total_seconds() // 60)
    return Conflict(
        f"this contact was erased less than {minutes} minutes ago",
        [FieldProblem("userId", f"erased less than {minutes} minutes ago; send it again later")],
    )


def _backoff(attempt: int) -> None:
    """A short, jittered pause before retrying a write that lost a race."""
    time.sleep(random.uniform(0, 0.002 * (2 ** min(attempt, 6))))


def forget_memberships(rt: Runtime, cid: str, now: datetime) -> int:
    """Forget the contact's segment memberships (returns how many items went). The store reads a
    membership again when a concurrent writer won (the stream evaluating the contact, or another identify
    finishing the same merge); still losing after its attempts: 409 (a merge, left `merging`, is finished
    by the next identify; an erase is finished by erasing again)."""
    from cairn.adapters.segments import Conflict as SegmentsChanged  # loaded only when needed

    try:
        return rt.segments.forget(cid, now)
    except SegmentsChanged:
        raise Conflict("the contact changed concurrently too often; retry the request") from None
