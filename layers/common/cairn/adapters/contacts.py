"""The contacts table: profiles, enrollments, runs and messages, with race-free updates."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from cairn.adapters.tables import (
    PROFILE,
    REGION,
    ContactItem,
    EnrollmentItem,
    IdentityItem,
    MessageItem,
    RunItem,
    StatusEntry,
)
from cairn.domain.erasure import GRACE


def conditional_failed(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


def erased_key(cid: str) -> str:
    """The identities item that marks a contact id erased, with the time (cairn.services.erase)."""
    return f"erased#{cid}"


def not_recently_erased(now: datetime) -> Condition:
    """On a contact's `erased#` item: no erase within erasure.GRACE before `now`, i.e. not
    `erasure.recently_erased` (the condition every write that creates a profile carries, so none brings
    back a contact erased meanwhile)."""
    return IdentityItem.key.does_not_exist() | (IdentityItem.created_at < now - GRACE)


@dataclass
class Profile:
    cid: str
    user_id: str | None = None
    anonymous_ids: frozenset[str] = frozenset()
    attributes: dict[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    consent: dict[str, dict[str, Any]] = field(default_factory=dict)
    suppression: str | None = None
    email: str | None = None
    phone: str | None = None
    timezone: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    lists: frozenset[str] = frozenset()  # static lists (add_to_list / remove_from_list, the segments API)

    def consent_status(self, channel: str) -> str | None:
        entry = self.consent.get(channel)
        return str(entry.get("status")) if entry else None


def _profile(item: ContactItem) -> Profile:
    attrs = item.attributes.as_dict() if item.attributes is not None else {}
    consent = item.consent.as_dict() if item.consent is not None else {}
    return Profile(
        cid=item.cid,
        user_id=item.user_id,
        anonymous_ids=frozenset(item.anonymous_ids or ()),
        attributes=attrs,
        tags=frozenset(item.tags or ()),
        consent=consent,
        suppression=item.suppression,
        email=item.email,
        phone=item.phone,
        timezone=item.timezone,
        created_at=item.created_at,
        updated_at=item.updated_at,
        lists=frozenset(item.lists or ()),
    )


def _attributes() -> Any:
    """The raw attributes map (pynamodb's typing does not know raw maps take paths)."""
    return ContactItem.attributes


def _consent() -> Any:
    return ContactItem.consent


RESERVED_FIELDS = {"email": ContactItem.email, "phone": ContactItem.phone, "timezone": ContactItem.timezone}


class ProfileChanged(Exception):
    """The profile is not as the caller read it (a concurrent writer, or it appeared or vanished):
    read it again and retry. Nothing was written."""


class ContactErased(Exception):
    """The write would create the profile of a contact erased less than erasure.GRACE ago (it raced the
    erase, or comes from a browser still sending for a user who asked to be forgotten). Nothing was
    written."""


class IdentityConflict(Exception):
    """An identity the update claims (`email#...`) belongs to another contact. Nothing was written."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"{kind} belongs to another contact")
        self.kind = kind


@dataclass
class ProfileUpdate:
    """What one write changes on a profile; every part is optional and merges (nothing is erased)."""

    fields: dict[str, Any] = field(default_factory=dict)  # email, phone, timezone: set
    attributes: dict[str, Any] = field(default_factory=dict)  # set (these win)
    fill: dict[str, Any] = field(default_factory=dict)  # set only where the contact has none (merges)
    consent: dict[str, dict[str, Any]] = field(default_factory=dict)  # channel -> entry, set
    fill_consent: dict[str, dict[str, Any]] = field(default_factory=dict)  # only where none
    tags: frozenset[str] = frozenset()  # added
    anonymous_ids: frozenset[str] = frozenset()  # added
    suppression: str | None = None  # set when given
    clear_suppression: bool = False
    user_id: str | None = None
    imported: bool = False


@dataclass
class IdentityChange:
    """Identities (`email#<sha256>`) to claim for the contact and to release, in the same transaction."""

    claim: list[tuple[str, str]] = field(default_factory=list)  # (key, kind)
    release: list[str] = field(default_factory=list)  # keys


class ContactStore:
    def get(self, cid: str) -> Profile | None:
        try:
            return _profile(ContactItem.get(cid, PROFILE, consistent_read=True))
        except DoesNotExist:
            return None

    def merge_traits(
        self, cid: str, traits: Mapping[str, Any], *, now: datetime, user_id: str | None = None
    ) -> Profile:
        """Merge traits into the profile atomically: only the named traits change (progressive profiling).

        One UpdateItem for an existing contact; a new contact takes a second, conditional one."""
        fields = {k: v for k, v in traits.items() if k in RESERVED_FIELDS}
        attrs = {k: v for k, v in traits.items() if k not in RESERVED_FIELDS}
        common = [
            ContactItem.updated_at.set(now),
            ContactItem.created_at.set(ContactItem.created_at | now),
            *(RESERVED_FIELDS[k].set(v) for k, v in fields.items()),
        ]
        if user_id is not None:
            common.append(ContactItem.user_id.set(user_id))
        item = ContactItem(cid, PROFILE)
        for _ in range(3):
            try:
                item.update(
                    actions=[*common, *(_attributes()[k].set(v) for k, v in attrs.items())],
                    condition=ContactItem.attributes.exists(),
                )
                return _profile(item)
            except UpdateError as exc:
                if not conditional_failed(exc):
                    raise
            try:
                item.update(
                    actions=[*common, ContactItem.attributes.set(attrs), ContactItem.consent.set({})],
                    condition=ContactItem.attributes.does_not_exist(),
                )
                return _profile(item)
            except UpdateError as exc:  # created by a concurrent writer: merge into theirs
                if not conditional_failed(exc):
                    raise
        raise RuntimeError("profile update did not converge")  # pragma: no cover

    def update(
        self,
        cid: str,
        change: ProfileUpdate,
        *,
        now: datetime,
        basis: Profile | None,
        identities: IdentityChange | None = None,
    ) -> Profile:
        """Apply `change` to the profile as the caller read it (`basis`, None: no profile yet).

        One UpdateItem, conditioned on the profile still existing (or not) and on the email and phone
        being what the caller saw when the change sets them. A write that creates the profile, or claims
        or releases identities, is one TransactWriteItems: with the conditional identity writes, and for
        a new profile a check that the contact was not erased within erasure.GRACE (its `erased#` item),
        so a write racing an erase cannot bring the contact back. Raises ProfileChanged (retry with a
        fresh read), ContactErased or IdentityConflict; in each case nothing is written."""
        actions = self._actions(change, now=now, new=basis is None)
        condition = self._condition(change, basis)
        item = ContactItem(cid, PROFILE)
        identities = identities or IdentityChange()
        if basis is not None and not (identities.claim or identities.release):
            try:
                item.update(actions=actions, condition=condition)
            except UpdateError as exc:
                if conditional_failed(exc):
                    raise ProfileChanged() from None
                raise
            return _profile(item)
        # pynamodb sends condition checks, then deletes, then updates: the cancellation reasons (one per
        # item) come in that order.
        checks = 1 if basis is None else 0
        try:
            with TransactWrite(connection=Connection(region=REGION)) as tx:
                if basis is None:
                    tx.condition_check(IdentityItem, erased_key(cid), condition=not_recently_erased(now))
                for key in identities.release:
                    tx.delete(
                        IdentityItem(key),
                        condition=IdentityItem.key.does_not_exist() | (IdentityItem.cid == cid),
                    )
                for key, _kind in identities.claim:
                    tx.update(
                        IdentityItem(key),
                        actions=[
                            IdentityItem.cid.set(cid),
                            IdentityItem.created_at.set(IdentityItem.created_at | now),
                        ],
                        condition=IdentityItem.key.does_not_exist() | (IdentityItem.cid == cid),
                    )
                tx.update(item, actions=actions, condition=condition)
        except TransactWriteError as exc:
            codes = [r.code if r is not None else None for r in exc.cancellation_reasons or []]
            if checks and codes[:1] == ["ConditionalCheckFailed"]:
                raise ContactErased() from None
            claims = codes[checks + len(identities.release) :]
            for index, (_key, kind) in enumerate(identities.claim):
                if index < len(claims) and claims[index] == "ConditionalCheckFailed":
                    raise IdentityConflict(kind) from None
            if "ConditionalCheckFailed" in codes or "TransactionConflict" in codes:
                raise ProfileChanged() from None
            raise
        fresh = self.get(cid)
        if fresh is None:  # erased in between
            raise ProfileChanged()
        return fresh

    @staticmethod
    def _actions(change: ProfileUpdate, *, now: datetime, new: bool) -> list[Action]:
        actions: list[Action] = [ContactItem.updated_at.set(now)]
        actions.append(
            ContactItem.created_at.set(now)
            if new
            else ContactItem.created_at.set(ContactItem.created_at | now)
        )
        actions.extend(RESERVED_FIELDS[k].set(v) for k, v in change.fields.items())
        if change.user_id is not None:
            actions.append(ContactItem.user_id.set(change.user_id))
        if change.tags:
            actions.append(ContactItem.tags.add(set(change.tags)))
        if change.anonymous_ids:
            actions.append(ContactItem.anonymous_ids.add(set(change.anonymous_ids)))
        if change.suppression is not None:
            actions.append(ContactItem.suppression.set(change.suppression))
        elif change.clear_suppression:
            actions.append(ContactItem.suppression.remove())
        if change.imported:
            actions.append(ContactItem.imported_at.set(now))
        if new:
            attrs = {**change.fill, **change.attributes}
            consent = {**change.fill_consent, **change.consent}
            actions.append(ContactItem.attributes.set(attrs))
            actions.append(ContactItem.consent.set(consent))
            return actions
        for k, v in change.attributes.items():
            actions.append(_attributes()[k].set(v))
        for k, v in change.fill.items():
            if k not in change.attributes:
                actions.append(_attributes()[k].set(_attributes()[k] | v))
        for ch, entry in change.consent.items():
            actions.append(_consent()[ch].set(entry))
        for ch, entry in change.fill_consent.items():
            if ch not in change.consent:
                actions.append(_consent()[ch].set(_consent()[ch] | entry))
        return actions

    @staticmethod
    def _condition(change: ProfileUpdate, basis: Profile | None) -> Condition:
        if basis is None:
            return ContactItem.attributes.does_not_exist()
        condition: Condition = ContactItem.attributes.exists()
        for name in ("email", "phone"):
            if name in change.fields:
                seen = getattr(basis, name)
                attr = RESERVED_FIELDS[name]
                condition &= (attr == seen) if seen is not None else attr.does_not_exist()
        return condition

    def delete_profile(self, cid: str) -> Profile | None:
        """Delete the profile; returns it as it was at that moment (None: there was none). One DeleteItem
        that returns the old item, so no write can slip in between the read and the delete."""
        answer = ContactItem._get_connection().delete_item(cid, range_key=PROFILE, return_values="ALL_OLD")
        old = answer.get("Attributes")
        return _profile(ContactItem.from_raw_data(old)) if old else None

    def delete_all(self, cid: str) -> int:
        """Delete every item of the contact (profile, enrollments, runs, messages); returns how many."""
        items = list(ContactItem.query(cid, attributes_to_get=["cid", "sk"], consistent_read=True))
        with ContactItem.batch_write() as batch:
            for item in items:
                batch.delete(item)
        return len(items)

    def ensure(self, cid: str, *, now: datetime, user_id: str | None = None) -> bool:
        """Make sure a profile exists (an event for a contact never identified): True if it does now.
        False if the contact was erased within erasure.GRACE: then nothing is created (the create is
        conditioned on its `erased#` item, so it cannot race the erase)."""
        if self.get(cid) is not None:
            return True
        try:
            self.update(cid, ProfileUpdate(user_id=user_id), now=now, basis=None)
        except ContactErased:
            return False
        except ProfileChanged:  # created by a concurrent writer (or erased and gone again)
            return self.get(cid) is not None
        return True

    def set_consent(
        self, cid: str, channel: str, status: str, source: str, *, now: datetime
    ) -> Profile | None:
        """Set the contact's consent for one channel; None if there is no such contact (erased meanwhile):
        nothing is written then, and never a profile created."""
        item = ContactItem(cid, PROFILE)
        try:
            item.update(
                actions=[
                    cast(Any, ContactItem.consent)[channel].set(
                        {"status": status, "source": source, "updatedAt": now.isoformat()}
                    ),
                    ContactItem.updated_at.set(now),
                ],
                condition=ContactItem.attributes.exists(),
            )
        except UpdateError as exc:
            if conditional_failed(exc):
                return None
            raise
        return _profile(item)

    def set_suppression(self, cid: str, suppression: str | None, *, now: datetime) -> None:
        """Set (or with None clear) the profile's suppression: bounced, complained, sms-opted-out."""
        item = ContactItem(cid, PROFILE)
        action = ContactItem.suppression.set(suppression) if suppression else ContactItem.suppression.remove()
        try:
            item.update(actions=[action, ContactItem.updated_at.set(now)], condition=ContactItem.sk.exists())
        except UpdateError as exc:
            if not conditional_failed(exc):  # the contact was erased meanwhile: nothing to suppress
                raise


@dataclass(frozen=True)
class Enrollment:
    cid: str
    workflow_id: str
    run: int
    status: str
    version: str | None
    entered_at: datetime | None
    token: str | None = None
    waiting_step: str | None = None
    trigger_id: str | None = None
    wait_for: dict[str, Any] | None = None  # a wait_for step's awaited event, while it waits
    waiting_until: datetime | None = None  # when the current wait times out
    variant: str | None = None
    execution: str | None = None
    exited_at: datetime | None = None
    exit_reason: str | None = None
    # `{"goal", "exitWhen"}` of the version the run entered with (None: a run begun before runs carried it)
    policy: dict[str, Any] | None = None


def _enrollment(item: EnrollmentItem) -> Enrollment:
    return Enrollment(
        cid=item.cid,
        workflow_id=item.workflow_id,
        run=int(item.run),
        status=item.status,
        version=item.version,
        entered_at=item.entered_at,
        token=item.token,
        waiting_step=item.waiting_step,
        trigger_id=item.trigger_id,
        wait_for=item.wait_for.as_dict() if item.wait_for is not None else None,
        waiting_until=item.waiting_until,
        variant=item.variant,
        execution=item.execution,
        exited_at=item.exited_at,
        exit_reason=item.exit_reason,
        policy=json.loads(item.policy) if item.policy else None,
    )


ACTIVE = ("starting", "active")


def _wait_cleared() -> list[Action]:
    """The removals that end a run's wait: its task token and what it was waiting for, until when."""
    return [
        EnrollmentItem.token.remove(),
        EnrollmentItem.waiting_step.remove(),
        EnrollmentItem.wait_for.remove(),
        EnrollmentItem.waiting_until.remove(),
    ]


class EnrollmentStore:
    def get(self, cid: str, workflow_id: str) -> Enrollment | None:
        try:
            return _enrollment(EnrollmentItem.get(cid, EnrollmentItem.key(workflow_id), consistent_read=True))
        except DoesNotExist:
            return None

    def active(self, cid: str) -> list[Enrollment]:
        items = EnrollmentItem.query(cid, EnrollmentItem.sk.startswith("enr#"), consistent_read=True)
        return [_enrollment(i) for i in items if i.status in ACTIVE]

    def begin(
        self,
        cid: str,
        workflow_id: str,
        version: str,
        *,
        trigger_id: str,
        now: datetime,
        reentry: str,
        reentry_after_cutoff: datetime | None,
        distinct_trigger: bool = False,
        policy: Mapping[str, Any] | None = None,
    ) -> Enrollment | None:
        """Open a run with ONE conditional update: never two open runs of a workflow for a contact.

        A retry for the same trigger finds its own `starting` run and gets it back (so the execution is
        started again under the same name, which Step Functions treats as the same run).
        `distinct_trigger`: never admit a second run for the same trigger id (a yearly date's day).
        `policy`: the entered version's goal and exit rule, kept with the run for the checks react makes."""
        item = EnrollmentItem(cid, EnrollmentItem.key(workflow_id))
        closed = EnrollmentItem.status.is_in("completed", "converted", "exited", "failed")
        admit: Condition
        if reentry == "never":
            admit = EnrollmentItem.run.does_not_exist()
        elif reentry == "always":
            admit = EnrollmentItem.run.does_not_exist() | closed
        else:
            assert reentry_after_cutoff is not None
            admit = EnrollmentItem.run.does_not_exist() | (
                closed & (EnrollmentItem.entered_at <= reentry_after_cutoff)
            )
        if distinct_trigger:
            admit &= EnrollmentItem.trigger_id.does_not_exist() | (EnrollmentItem.trigger_id != trigger_id)
        try:
            item.update(
                actions=[
                    EnrollmentItem.workflow_id.set(workflow_id),
                    EnrollmentItem.run.add(1),
                    EnrollmentItem.status.set("starting"),
                    EnrollmentItem.version.set(version),
                    EnrollmentItem.trigger_id.set(trigger_id),
                    EnrollmentItem.entered_at.set(now),
                    EnrollmentItem.exited_at.remove(),
                    EnrollmentItem.exit_reason.remove(),
                    *_wait_cleared(),
                    EnrollmentItem.variant.remove(),
                    EnrollmentItem.variants.remove(),
                    EnrollmentItem.policy.set(json.dumps(dict(policy), sort_keys=True))
                    if policy is not None
                    else EnrollmentItem.policy.remove(),
                ],
                condition=admit,
            )
            return _enrollment(item)
        except UpdateError as exc:
            if not conditional_failed(exc):
                raise
        current = self.get(cid, workflow_id)
        if current is not None and current.status == "starting" and current.trigger_id == trigger_id:
            return current
        return None

    def started(self, cid: str, workflow_id: str, run: int, execution: str) -> None:
        item = EnrollmentItem(cid, EnrollmentItem.key(workflow_id))
        try:
            item.update(
                actions=[EnrollmentItem.status.set("active"), EnrollmentItem.execution.set(execution)],
                condition=(EnrollmentItem.run == run) & (EnrollmentItem.status == "starting"),
            )
        except UpdateError as exc:
            if not conditional_failed(exc):  # already active, or ended early: both fine
                raise
        RunItem(
            cid,
            RunItem.key(workflow_id, run),
            workflow_id=workflow_id,
            run=run,
            status="active",
            version=item.version,
            entered_at=item.entered_at,
        ).save()

    def park(
        self,
        cid: str,
        workflow_id: str,
        run: int,
        step_id: str,
        token: str,
        *,
        wait_for: dict[str, Any] | None = None,
        until: datetime | None = None,
    ) -> bool:
        """Store a wait's task token on the open run (with a wait_for step's awaited event); False if the
        run is no longer open."""
        item = EnrollmentItem(cid, EnrollmentItem.key(workflow_id))
        awaited = EnrollmentItem.wait_for.set(wait_for) if wait_for else EnrollmentItem.wait_for.remove()
        timeout = EnrollmentItem.waiting_until.set(until) if until else EnrollmentItem.waiting_until.remove()
        try:
            item.update(
                actions=[
                    EnrollmentItem.token.set(token),
                    EnrollmentItem.waiting_step.set(step_id),
                    awaited,
                    timeout,
                ],
                condition=(EnrollmentItem.run == run) & EnrollmentItem.status.is_in(*ACTIVE),
            )
            return True
        except UpdateError as exc:
            if conditional_failed(exc):
                return False
            raise

    def unpark(self, cid: str, workflow_id: str, run: int, token: str) -> None:
        item = EnrollmentItem(cid, EnrollmentItem.key(workflow_id))
        try:
            item.update(
                actions=_wait_cleared(),
                condition=(EnrollmentItem.run == run) & (EnrollmentItem.token == token),
            )
        except UpdateError as exc:
            if not conditional_failed(exc):
                raise

    def close(
        self, cid: str, workflow_id: str, run: int, status: str, reason: str, *, now: datetime
    ) -> Enrollment | None:
        """End the run if it is still open; returns the run as it was (with its token) or None."""
        item = EnrollmentItem(cid, EnrollmentItem.key(workflow_id))
        try:
            before = EnrollmentItem.get(cid, EnrollmentItem.key(workflow_id), consistent_read=True)
            item.update(
                actions=[
                    EnrollmentItem.status.set(status),
                    EnrollmentItem.exit_reason.set(reason),
                    EnrollmentItem.exited_at.set(now),
                    *_wait_cleared(),
                ],
                condition=(EnrollmentItem.run == run) & EnrollmentItem.status.is_in(*ACTIVE),
            )
        except DoesNotExist:
            return None
        except UpdateError as exc:
            if conditional_failed(exc):
                return None
            raise
        RunItem(
            cid,
            RunItem.key(workflow_id, run),
            workflow_id=workflow_id,
            run=run,
            status=status,
            version=before.version,
            entered_at=before.entered_at,
            exited_at=now,
            exit_reason=reason,
            variant=before.variant,
        ).save()
        return _enrollment(before)

    def set_variant(self, cid: str, workflow_id: str, run: int, step_id: str, variant: str) -> bool:
        """Record a split's variant on the open run (`variant`, and `variants[step]`); False if closed."""
        item = EnrollmentItem(cid, EnrollmentItem.key(workflow_id))
        open_run = (EnrollmentItem.run == run) & EnrollmentItem.status.is_in(*ACTIVE)
        for by_step in (
            cast(Any, EnrollmentItem.variants)[step_id].set(variant),
            EnrollmentItem.variants.set({step_id: variant}),  # the run's first split
        ):
            try:
                item.update(actions=[EnrollmentItem.variant.set(variant), by_step], condition=open_run)
                return True
            except UpdateError as exc:
                if conditional_failed(exc):
                    return False
                if getattr(exc, "cause_response_code", None) != "ValidationException":
                    raise
        return False

    def runs(self, cid: str) -> list[RunItem]:
        return list(RunItem.query(cid, RunItem.sk.startswith("run#")))

    def all(self, cid: str) -> list[Enrollment]:
        """Every current enrollment of the contact (one per workflow), open or ended."""
        items = EnrollmentItem.query(cid, EnrollmentItem.sk.startswith("enr#"), consistent_read=True)
        return [_enrollment(i) for i in items]

    def executions(self, cid: str) -> list[tuple[Enrollment, str]]:
        """The open runs with an execution, as (enrollment, execution ARN)."""
        items = EnrollmentItem.query(cid, EnrollmentItem.sk.startswith("enr#"), consistent_read=True)
        return [(_enrollment(i), i.execution) for i in items if i.status in ACTIVE and i.execution]


class MessageStore:
    def claim(
        self,
        cid: str,
        message_id: str,
        *,
        channel: str,
        template: str,
        workflow_id: str,
        version: str | None,
        run: int,
        step_id: str,
        now: datetime,
    ) -> MessageItem | None:
        """Claim the send with one conditional put; None if already claimed (returns nothing to send)."""
        item = MessageItem(
            cid,
            MessageItem.key(message_id),
            message_id=message_id,
            channel=channel,
            template=template,
            workflow_id=workflow_id,
            version=version,
            run=run,
            step_id=step_id,
            status="claimed",
            claimed_at=now,
        )
        try:
            item.save(condition=MessageItem.sk.does_not_exist())
            return item
        except PutError as exc:
            if conditional_failed(exc):
                return None
            raise

    def get(self, cid: str, message_id: str) -> MessageItem | None:
        try:
            return MessageItem.get(cid, MessageItem.key(message_id), consistent_read=True)
        except DoesNotExist:
            return None

    def mark(
        self,
        item: MessageItem,
        status: str,
        *,
        provider_id: str | None = None,
        sent_at: datetime | None = None,
        reason: str | None = None,
    ) -> None:
        actions: list[Action] = [MessageItem.status.set(status)]
        if provider_id is not None:
            actions.append(MessageItem.provider_id.set(provider_id))
        if sent_at is not None:
            actions.append(MessageItem.sent_at.set(sent_at))
        if reason is not None:
            actions.append(MessageItem.skip_reason.set(reason))
        item.update(actions=actions)

    # -- status history (the send and feedback functions) -------------------------------------------
    def reclaim(self, item: MessageItem, *, now: datetime) -> bool:
        """Claim again a message that waited (held) or whose provider call was throttled; False if
        another invocation got it first or it has moved on."""
        try:
            item.update(
                actions=[MessageItem.status.set("claimed"), MessageItem.claimed_at.set(now)],
                condition=MessageItem.status.is_in("held", "throttled"),
            )
            return True
        except UpdateError as exc:
            if conditional_failed(exc):
                return False
            raise

    def record(
        self,
        item: MessageItem,
        status: str,
        *,
        at: datetime,
        reason: str | None = None,
        until: datetime | None = None,
        provider_id: str | None = None,
        sent_at: datetime | None = None,
        kind: str | None = None,
        only_from: tuple[str, ...] | None = None,
    ) -> bool:
        """Set the status and append it to the history in ONE update. A skip or hold keeps its reason
        (`skipReason`); any other status clears it. `only_from`: change the status only from these
        (the history is appended regardless; `()`: history only). Returns whether the status changed."""
        entry = StatusEntry(status=status, at=at, reason=reason, until=until)
        history = MessageItem.history.set((MessageItem.history | []).append([entry]))
        if only_from == ():
            item.update(actions=[history])
            return False
        actions: list[Action] = [MessageItem.status.set(status), history]
        if status in ("skipped", "held", "failed", "unknown"):
            if reason is not None:
                actions.append(MessageItem.skip_reason.set(reason))
        else:
            actions.append(MessageItem.skip_reason.remove())
        if provider_id is not None:
            actions.append(MessageItem.provider_id.set(provider_id))
        if sent_at is not None:
            actions.append(MessageItem.sent_at.set(sent_at))
        if kind is not None:
            actions.append(MessageItem.kind.set(kind))
        if only_from is None:
            item.update(actions=actions)
            return True
        try:
            item.update(actions=actions, condition=MessageItem.status.is_in(*only_from))
            return True
        except UpdateError as exc:
            if not conditional_failed(exc):
                raise
        item.update(actions=[history])
        return False

    def recent(self, cid: str, limit: int = 50) -> list[MessageItem]:
        """The contact's last `limit` messages, newest claim first: one query of the `byClaimedAt` index
        that reads only those (items carry the fields the contact API shows, not the status history)."""
        return list(MessageItem.by_time.query(cid, scan_index_forward=False, limit=limit))
