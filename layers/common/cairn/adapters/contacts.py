"""The contacts table: profiles, enrollments, runs and messages, with race-free updates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from cairn.adapters.tables import PROFILE, ContactItem, EnrollmentItem, MessageItem, RunItem


def conditional_failed(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


@dataclass
class Profile:
    cid: str
    user_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = frozenset()
    consent: dict[str, dict[str, Any]] = field(default_factory=dict)
    suppression: str | None = None
    email: str | None = None
    phone: str | None = None
    timezone: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def consent_status(self, channel: str) -> str | None:
        entry = self.consent.get(channel)
        return str(entry.get("status")) if entry else None


def _profile(item: ContactItem) -> Profile:
    attrs = item.attributes.as_dict() if item.attributes is not None else {}
    consent = item.consent.as_dict() if item.consent is not None else {}
    return Profile(
        cid=item.cid,
        user_id=item.user_id,
        attributes=attrs,
        tags=frozenset(item.tags or ()),
        consent=consent,
        suppression=item.suppression,
        email=item.email,
        phone=item.phone,
        timezone=item.timezone,
        created_at=item.created_at,
        updated_at=item.updated_at,
    )


def _attributes() -> Any:
    """The raw attributes map (pynamodb's typing does not know raw maps take paths)."""
    return ContactItem.attributes


RESERVED_FIELDS = {"email": ContactItem.email, "phone": ContactItem.phone, "timezone": ContactItem.timezone}


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

    def ensure(self, cid: str, *, now: datetime, user_id: str | None = None) -> None:
        """Make sure a profile exists (an event for a contact never identified)."""
        if self.get(cid) is None:
            self.merge_traits(cid, {}, now=now, user_id=user_id)

    def set_consent(
        self, cid: str, channel: str, status: str, source: str, *, now: datetime, user_id: str | None = None
    ) -> Profile:
        self.ensure(cid, now=now, user_id=user_id)  # a contact created here keeps its userId
        item = ContactItem(cid, PROFILE)
        item.update(
            actions=[
                cast(Any, ContactItem.consent)[channel].set(
                    {"status": status, "source": source, "updatedAt": now.isoformat()}
                ),
                ContactItem.updated_at.set(now),
            ]
        )
        return _profile(item)


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
    )


ACTIVE = ("starting", "active")


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
    ) -> Enrollment | None:
        """Open a run with ONE conditional update: never two open runs of a workflow for a contact.

        A retry for the same trigger finds its own `starting` run and gets it back (so the execution is
        started again under the same name, which Step Functions treats as the same run)."""
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
                    EnrollmentItem.token.remove(),
                    EnrollmentItem.waiting_step.remove(),
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

    def park(self, cid: str, workflow_id: str, run: int, step_id: str, token: str) -> bool:
        """Store a wait's task token on the open run; False if the run is no longer open."""
        item = EnrollmentItem(cid, EnrollmentItem.key(workflow_id))
        try:
            item.update(
                actions=[EnrollmentItem.token.set(token), EnrollmentItem.waiting_step.set(step_id)],
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
                actions=[EnrollmentItem.token.remove(), EnrollmentItem.waiting_step.remove()],
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
                    EnrollmentItem.token.remove(),
                    EnrollmentItem.waiting_step.remove(),
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
        ).save()
        return _enrollment(before)

    def runs(self, cid: str) -> list[RunItem]:
        return list(RunItem.query(cid, RunItem.sk.startswith("run#")))


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

    def recent(self, cid: str, limit: int = 50) -> list[MessageItem]:
        items = list(MessageItem.query(cid, MessageItem.sk.startswith("msg#")))
        items.sort(key=lambda m: m.claimed_at, reverse=True)
        return items[:limit]
