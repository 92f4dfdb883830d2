"""The identities table: which contact an anonymous id or an email address belongs to, and the hashed
tombstones erased contacts leave behind. Every claim is a conditional write, so racing claims resolve."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, DoesNotExist, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from cairn.adapters.contacts import conditional_failed, erased_key
from cairn.adapters.tables import REGION, IdentityItem
from cairn.domain.identity import identity_key

MERGING = "merging"
MERGED = "merged"


class IdentityTaken(Exception):
    """The identity already belongs to another contact."""

    def __init__(self, owner: str | None) -> None:
        super().__init__("identity belongs to another contact")
        self.owner = owner


@dataclass(frozen=True)
class AnonymousLink:
    owner: str  # the cid the anonymous id belongs to now
    state: str | None  # merging | merged
    new: bool  # this call created the link


def claim_condition(cid: str) -> Condition:
    return IdentityItem.key.does_not_exist() | (IdentityItem.cid == cid)


def claim_actions(cid: str, now: datetime) -> list[Action]:
    return [IdentityItem.cid.set(cid), IdentityItem.created_at.set(IdentityItem.created_at | now)]


def release_condition(cid: str) -> Condition:
    return IdentityItem.key.does_not_exist() | (IdentityItem.cid == cid)


class IdentityStore:
    def owner(self, kind: str, value: str) -> str | None:
        try:
            return IdentityItem.get(identity_key(kind, value), consistent_read=True).cid
        except DoesNotExist:
            return None

    def claim(self, kind: str, value: str, cid: str, *, now: datetime) -> None:
        """Make the identity point at `cid`; IdentityTaken if it points at another contact."""
        item = IdentityItem(identity_key(kind, value))
        try:
            item.update(actions=claim_actions(cid, now), condition=claim_condition(cid))
        except UpdateError as exc:
            if conditional_failed(exc):
                raise IdentityTaken(self.owner(kind, value)) from None
            raise

    def release(self, kind: str, value: str, cid: str) -> None:
        """Forget the identity if it is still `cid`'s."""
        try:
            IdentityItem(identity_key(kind, value)).delete(condition=release_condition(cid))
        except DeleteError as exc:
            if not conditional_failed(exc):
                raise

    # -- anonymous ids ------------------------------------------------------------------------------
    def link_anonymous(self, anonymous_id: str, cid: str, *, now: datetime) -> AnonymousLink:
        """Claim `anon#<id>` for `cid` (state `merging`) unless another contact has it: one conditional
        update, so of two identifies racing for one anonymous id exactly one wins."""
        item = IdentityItem(identity_key("anon", anonymous_id))
        try:
            item.update(
                actions=[
                    IdentityItem.cid.set(cid),
                    IdentityItem.created_at.set(now),
                    IdentityItem.state.set(MERGING),
                ],
                condition=IdentityItem.key.does_not_exist(),
            )
            return AnonymousLink(owner=cid, state=MERGING, new=True)
        except UpdateError as exc:
            if not conditional_failed(exc):
                raise
        try:
            existing = IdentityItem.get(identity_key("anon", anonymous_id), consistent_read=True)
        except DoesNotExist:  # erased in between: try once more
            return self.link_anonymous(anonymous_id, cid, now=now)
        return AnonymousLink(owner=str(existing.cid), state=existing.state, new=False)

    def mark_merged(self, anonymous_id: str, cid: str) -> None:
        item = IdentityItem(identity_key("anon", anonymous_id))
        try:
            item.update(actions=[IdentityItem.state.set(MERGED)], condition=IdentityItem.cid == cid)
        except UpdateError as exc:
            if not conditional_failed(exc):
                raise

    def anonymous_owner(self, anonymous_id: str) -> str | None:
        """The contact an anonymous id was merged into (None if never identified)."""
        return self.owner("anon", anonymous_id)

    # -- tombstones -----------------------------------------------------------------------------------
    def tombstone(self, address: str, *, now: datetime) -> None:
        """Remember that an erased contact had this address: only its hash, no contact id."""
        IdentityItem(identity_key("tomb", address), created_at=now).save()

    def is_tombstoned(self, address: str) -> bool:
        """True if an erased contact had this email address or phone number: never message it again.

        The send gate calls this before every send (one GetItem on the identities table)."""
        try:
            IdentityItem.get(identity_key("tomb", address), attributes_to_get=["key"])
            return True
        except DoesNotExist:
            return False

    # -- erased contact ids ---------------------------------------------------------------------------
    @staticmethod
    def mark_erased(cid: str, *, now: datetime) -> None:
        """Remember when the contact id was erased (`erased#<cid>`: an opaque id and a time, nothing
        personal), so that what arrives for it afterwards cannot bring it back (cairn.services.erase)."""
        IdentityItem(erased_key(cid), created_at=now).save()

    @staticmethod
    def erased_at(cid: str) -> datetime | None:
        """When the contact id was last erased, or None (one GetItem)."""
        try:
            return IdentityItem.get(erased_key(cid), consistent_read=True).created_at
        except DoesNotExist:
            return None

    def delete_keys(self, keys: list[str], cid: str) -> None:
        """Delete identities by key, each only if it is still `cid`'s."""
        for key in keys:
            try:
                IdentityItem(key).delete(condition=release_condition(cid))
            except DeleteError as exc:
                if not conditional_failed(exc):
                    raise


def is_tombstoned(address: str) -> bool:
    """Module-level shortcut for the send gate: `identities.is_tombstoned(profile.email)`."""
    return IdentityStore().is_tombstoned(address)


def connection() -> Connection:
    return Connection(region=REGION)


def reasons(exc: Any) -> list[str | None]:
    """The cancellation reason codes of a failed transaction, one per item, in order."""
    return [r.code if r is not None else None for r in getattr(exc, "cancellation_reasons", []) or []]
