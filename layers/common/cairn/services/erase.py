"""Erasure (right to be forgotten): every item of the contact in every table goes, its runs are stopped,
and only hashed tombstones of its email address and phone number remain, so an erased address is never
messaged again (the send gate asks `IdentityStore.is_tombstoned`).

What arrives after an erase cannot bring the contact back. The erase first marks each of the contact's
ids erased (`erased#<cid>` with the time: an opaque id, nothing personal), then:
- an event that happened before the erase (a stream record still in flight, a browser's retry queue
  flushed days later) is dropped by the stream consumer, whenever it arrives, and deleted;
- so is an event that arrives within `erasure.GRACE` (15 minutes) after the erase (requests in flight
  while it ran); intake itself stays one write per event and answers 202, the event goes when the stream
  delivers it;
- identify, import and subscriptions that would create the contact again within the grace period are
  refused with 409 (cairn.services.identity). After it the user id may come back as a new contact (a
  person who signs up again); their events from before the erase still never return."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from cairn.adapters import clock
from cairn.adapters.contacts import Profile
from cairn.bootstrap import Runtime
from cairn.domain.erasure import is_stale
from cairn.domain.identity import cid_for_anonymous, cid_for_user, identity_key
from cairn.services.identity import forget_memberships

logger = Logger(child=True)


class Eraser:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def erase(self, user_id: str) -> bool:
        """Erase the contact; False if there was nothing to erase.

        Order matters, for writes racing the erase and for a retry after a crash: the contact's erased
        mark first (from then on no write can create its profile again: every create is conditioned on
        it), then its anonymous ids' marks and the tombstones (whatever arrives next is dropped, the
        address stays suppressed), then identities; then the profile is deleted in one call that returns
        it as it was, and whatever a write changed meanwhile (an identify setting another email) is
        erased the same way; then runs are stopped, then events, contact items and memberships are
        deleted. Every step is idempotent, so erasing again finishes the job."""
        cid = cid_for_user(self.rt.secret, user_id)
        now = clock.now()
        self.rt.identities.mark_erased(cid, now=now)
        profile = self.rt.contacts.get(cid)
        cids = [cid, *self._forget_identities(cid, profile, now)]
        last = self.rt.contacts.delete_profile(cid)  # no write can change it after this
        cids += [c for c in self._forget_identities(cid, last, now) if c not in cids]
        stopped, deleted = self._wipe(cids, now)
        logger.info("contact erased", cid=cid, items=deleted, runs_stopped=stopped)
        return profile is not None or last is not None or deleted > 0

    def _forget_identities(self, cid: str, profile: Profile | None, now: datetime) -> list[str]:
        """Mark the profile's anonymous ids erased, tombstone its email and phone, delete its identities;
        returns the anonymous contacts' ids."""
        if profile is None:
            return []
        anonymous = [cid_for_anonymous(self.rt.secret, a) for a in sorted(profile.anonymous_ids)]
        for each in anonymous:
            self.rt.identities.mark_erased(each, now=now)
        for address in (profile.email, profile.phone):
            if address:
                self.rt.identities.tombstone(address, now=now)
        keys = [identity_key("anon", a) for a in sorted(profile.anonymous_ids)]
        if profile.email:
            keys.append(identity_key("email", profile.email))
        self.rt.identities.delete_keys(keys, cid)
        return anonymous

    def _wipe(self, cids: list[str], now: datetime) -> tuple[int, int]:
        """Stop the contacts' open runs, then delete their events, contact items and memberships:
        (runs stopped, items deleted)."""
        stopped = deleted = 0
        for each in cids:
            for enrollment, execution in self.rt.enrollments.executions(each):
                if self.rt.executions.stop(execution, error="ContactErased", cause="the contact was erased"):
                    stopped += 1
                self.rt.enrollments.close(
                    each, enrollment.workflow_id, enrollment.run, "exited", "erased", now=now
                )
        for each in cids:
            deleted += self.rt.events.delete_all(each)
            deleted += self.rt.contacts.delete_all(each)
            deleted += forget_memberships(self.rt, each, now)
        return stopped, deleted

    # -- for the stream consumer ------------------------------------------------------------------
    def drop_if_erased(self, image: Mapping[str, Any]) -> bool:
        """Before the stream consumer reacts to a new event (an events-table image): True if the event's
        contact was erased and the event belongs to the erased life; the event is then deleted and nothing
        reacts to it. One GetItem."""
        cid = str(image.get("cid") or "")
        if not cid or not self._stale(cid, image):
            return False
        self.rt.events.delete(cid, str(image["mid"]))
        logger.info("event of an erased contact dropped", cid=cid)
        return True

    def sweep_if_erased(self, image: Mapping[str, Any]) -> bool:
        """After the stream consumer reacted to a new event: if the contact was erased while it reacted
        (the erase deleted the contact's items, then the reaction wrote a membership, an enrollment or
        started a run), wipe the contact again. The erase marks before it deletes, so a reaction that wrote
        after the erase's deletions sees the mark here. True if it wiped. One GetItem."""
        cid = str(image.get("cid") or "")
        if not cid or not self._stale(cid, image):
            return False
        stopped, deleted = self._wipe([cid], clock.now())
        logger.info("erased while reacting: wiped again", cid=cid, items=deleted, runs_stopped=stopped)
        return True

    def _stale(self, cid: str, image: Mapping[str, Any]) -> bool:
        erased_at = self.rt.identities.erased_at(cid)
        if erased_at is None:
            return False
        timestamp = datetime.fromisoformat(str(image["ts"]).split("#", 1)[0].replace("Z", "+00:00"))
        received_at = _stored_time(image.get("receivedAt")) or timestamp
        return is_stale(erased_at, timestamp=timestamp, received_at=received_at)


def _stored_time(value: Any) -> datetime | None:
    """A time as pynamodb stores it (`2026-11-24T08:59:59.000000+0000`)."""
    if not value:
        return None
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)
    except ValueError:
        return None
