"""Segment membership, kept current (DESIGN.md section 4).

- From the stream, per contact and in order (``on_event``, ``on_profile_change``, called by the react
  function before enrollment): only the segments that depend on what changed are evaluated, reading no
  more event history than they need; entries and exits are written with their member count and their
  ``segment_entered``/``segment_exited`` event in one transaction, under ids that are the same on every
  retry (the n-th entry of a contact and segment).
- By the passing of time (``tick``, hourly): each evaluation indexes the contact under the hour of its
  next time-driven change; the tick reads only the hours that fell due, never the whole table.
- By builds (``plan_build``, ``build_page``, ``finish_build``): a new or changed segment is evaluated
  over every contact by the workers of a Distributed Map over the segments of a parallel scan.
- Static lists (``add_to_list``, ``remove_from_list``), reads for the API, previews of unsaved rules,
  and the live resolver that lets ``{segment: id}`` in workflows evaluate live.

Segment events are never an input: rules cannot read them, and an event Cairn recorded itself changes no
membership, so the events these writes produce (which come back through the events stream, to start
workflows) cannot loop.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger

from cairn.adapters import clock
from cairn.adapters import segments as segment_store
from cairn.adapters.contacts import Profile
from cairn.adapters.segments import (
    Conflict,
    Due,
    DueWrite,
    Membership,
    Plan,
    SegmentStore,
    Transition,
)
from cairn.domain import rules
from cairn.domain.errors import Conflict as ConflictError
from cairn.domain.errors import FieldProblem, NotFound, ValidationFailed
from cairn.domain.rules import ContactView, EventRecord, History, Rule, SegmentUnavailable
from cairn.domain.segments import (
    RESERVED_EVENTS,
    Change,
    Segment,
    SegmentCatalog,
    bucket_time,
    due_bucket,
)
from cairn.services.views import attributes_of, consent_of

if TYPE_CHECKING:
    from cairn.bootstrap import Runtime

logger = Logger(child=True)

ATTEMPTS: Final = 4  # evaluations of one contact before a conflict is left to the stream's retry
BUILD_RETRY_HOURS: Final = 6  # a tick every this many hours starts builds that failed or never started
SCAN_SEGMENT_CONTACTS: Final = 10_000  # contacts per segment of a build's parallel scan
MAX_SCAN_SEGMENTS: Final = 1_000
BUILD_PAGE: Final = 100  # profiles read, evaluated and written together by a build worker
HISTORY_READERS: Final = 16  # a build worker's concurrent history queries
PREVIEW_SEGMENTS: Final = 16
PREVIEW_BUDGET: Final = 5_000  # contacts a preview reads at most (then it estimates)
SAMPLE: Final = 10
PROFILE_FIELDS: Final = {"email": "email", "phone": "phone", "timezone": "timezone", "userId": "userId"}


@dataclass
class Outcome:
    """What one evaluation of one contact did."""

    evaluated: int = 0
    entered: list[str] = field(default_factory=list)
    exited: list[str] = field(default_factory=list)
    attempts: int = 0


def build_state_machine_arn(state_machine_prefix: str) -> str:
    """The stack's segment-build state machine: named ``<stack>-segment-build`` beside the workflows'
    ``<stack>-wf-<id>`` (template.yaml), so its ARN follows from the workflows' prefix."""
    return state_machine_prefix.removesuffix("wf-") + "segment-build"


class Segments:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @cached_property
    def catalog(self) -> SegmentCatalog:
        return SegmentCatalog.from_data(self.rt.site.segments)

    @cached_property
    def store(self) -> SegmentStore:
        return SegmentStore(event_ttl=self.rt.events.ttl)

    def _consent_defaults(self) -> dict[str, str]:
        d = self.rt.site.settings.consent.default
        return {"email": d.email, "sms": d.sms}

    # -- from the stream ------------------------------------------------------------------------
    def on_event(
        self, profile: Profile, name: str, timestamp: datetime, now: datetime | None = None
    ) -> Outcome:
        """A new event of the contact: the segments that read events of that name."""
        if name in RESERVED_EVENTS:
            return Outcome()  # Cairn's own segment events change no membership (and cannot loop)
        now = now or clock.now()
        segments = self.catalog.affected(Change.event(name))
        if not segments:
            return Outcome()
        return self.reconcile(profile.cid, segments, now=now, profile=profile, at=min(timestamp, now))

    def on_moved_event(self, cid: str, name: str, now: datetime | None = None) -> Outcome:
        """An event moved to this contact (an anonymous contact merged into it): its history grew."""
        if name in RESERVED_EVENTS or not self.catalog.affected(Change.event(name)):
            return Outcome()
        profile = self.rt.contacts.get(cid)
        if profile is None:
            return Outcome()
        now = now or clock.now()
        return self.reconcile(cid, self.catalog.affected(Change.event(name)), now=now, profile=profile)

    def on_profile_change(
        self,
        profile: Profile,
        old: Mapping[str, Any] | None = None,
        new: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Outcome:
        """A change to the contact's profile (the stream's old and new images): the segments that read
        what changed. A new contact (no old image), or no images at all: every segment.

        A change written by an import (`POST /v1/contacts/import` fires no triggers) sets membership
        quietly: no `segment_entered`/`segment_exited` event, so no segment-triggered workflow starts;
        the contact's next live change emits as usual."""
        change = profile_change(old, new)
        segments = self.catalog.affected(change)
        if not segments:
            return Outcome()
        return self.reconcile(
            profile.cid, segments, now=now or clock.now(), profile=profile, emit=not imported(old, new)
        )

    # -- evaluation -----------------------------------------------------------------------------
    def reconcile(
        self,
        cid: str,
        segments: Sequence[Segment],
        *,
        now: datetime,
        profile: Profile | None = None,
        at: datetime | None = None,
        emit: bool = True,
        full_due: bool = False,
    ) -> Outcome:
        """Make the contact's membership of ``segments`` what their rules say now; index its next
        time-driven change. ``at`` is when the change happened (an event's time; default ``now``).
        ``full_due``: ``segments`` are all the time-driven ones and the index is rewritten exactly."""
        outcome = Outcome()
        for attempt in range(ATTEMPTS):
            outcome.attempts = attempt + 1
            if profile is None:
                profile = self.rt.contacts.get(cid)
                if profile is None:
                    return outcome  # erased meanwhile
            plan, outcome.evaluated = self._plan(
                profile, segments, now=now, at=at or now, emit=emit, full_due=full_due
            )
            try:
                self.store.commit(plan)
            except Conflict:
                profile = None  # read everything again and decide again
                time.sleep(random.uniform(0, 0.01 * (attempt + 1)))  # another evaluation raced us
                continue
            outcome.entered = [t.segment for t in plan.transitions if t.enter]
            outcome.exited = [t.segment for t in plan.transitions if not t.enter]
            if outcome.entered or outcome.exited:
                logger.info("segments changed", cid=cid, entered=outcome.entered, exited=outcome.exited)
            return outcome
        raise Conflict([cid])

    def _plan(
        self,
        profile: Profile,
        segments: Sequence[Segment],
        *,
        now: datetime,
        at: datetime,
        emit: bool,
        full_due: bool,
        memberships: Mapping[str, Membership] | None = None,
        due: Due | None = None,
        events: Sequence[EventRecord] | None = None,
    ) -> tuple[Plan, int]:
        if memberships is None:
            memberships = self.store.memberships(profile.cid, [s.id for s in segments])
        timed = [s for s in segments if s.time_driven]
        if due is None:
            due = self.store.due(profile.cid) if timed else Due()
        view = self._view(profile, _history(segments), now=now, events=events)
        transitions: list[Transition] = []
        for segment in segments:
            if segment.static:
                holds = segment.id in profile.lists
            else:
                assert segment.check is not None
                holds = segment.check(view)
            before = memberships.get(segment.id, Membership(segment.id))
            if holds != before.member:
                transitions.append(Transition(segment.id, holds, before))
        plan = Plan(profile.cid, at, transitions, None, emit)
        plan.due = _due_write(timed, view, due, full=full_due)
        return plan, len(segments)

    def _view(
        self,
        profile: Profile,
        need: History,
        *,
        now: datetime,
        events: Sequence[EventRecord] | None = None,
    ) -> ContactView:
        """The contact as rules see it: `events` if already read, else the history `need` asks for."""
        if events is None:
            events = self.store.history(profile.cid, need.since(now), need.events) if need.events else []
        return ContactView(
            attributes=attributes_of(profile),
            tags=profile.tags,
            consent=consent_of(profile, self._consent_defaults()),
            events=events,
            now=now,
            segment=self._lists_of(profile),
        )

    def _lists_of(self, profile: Profile) -> Callable[[str], bool]:
        """What ``{segment: id}`` left in an expanded rule means: membership of a static list."""

        def member(segment_id: str) -> bool:
            segment = self.catalog.get(segment_id)
            if segment is None or not segment.static:
                raise SegmentUnavailable(segment_id)
            return segment_id in profile.lists

        return member

    # -- the hourly tick ------------------------------------------------------------------------
    def tick(self, now: datetime | None = None, *, deadline: float | None = None) -> dict[str, Any]:
        """Process what the time-due index holds for the hours that fell due: today's up to this hour
        and yesterday's leftovers (a tick that failed or ran out of time), never a scan. Each contact
        found is evaluated for every time-driven segment and indexed again (or leaves the index)."""
        now = now or clock.now()
        report: dict[str, Any] = {"contacts": 0, "entered": 0, "exited": 0, "builds": []}
        if self.catalog.time_driven:
            segments = list(self.catalog.time_driven)
            current = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
            yesterday = (current - timedelta(days=1)).strftime("%Y-%m-%d")
            entries = [
                *self.store.due_contacts(yesterday),
                *self.store.due_contacts(current.strftime("%Y-%m-%d"), current.strftime("%H")),
            ]
            for bucket, cid in entries:
                if deadline is not None and time.monotonic() > deadline:
                    break  # the next tick goes on: what is left stays in the index
                outcome = self._due_contact(cid, bucket, segments, now)
                if outcome is not None:
                    report["contacts"] += 1
                    report["entered"] += len(outcome.entered)
                    report["exited"] += len(outcome.exited)
        if now.astimezone(UTC).hour % BUILD_RETRY_HOURS == 0:
            report["builds"] = self.retry_builds(now)
        return report

    def _due_contact(self, cid: str, bucket: str, segments: list[Segment], now: datetime) -> Outcome | None:
        due = self.store.due(cid)
        if due.bucket is None or due.bucket > bucket:
            self.store.drop_due_entry(bucket, cid)  # re-indexed meanwhile (or erased): a stale entry
            return None
        at = min(bucket_time(bucket), now)
        return self.reconcile(cid, segments, now=now, at=at, full_due=True)

    # -- builds ---------------------------------------------------------------------------------
    def changed_segments(self) -> list[str]:
        """Segments with no build of their current definition done or under way (new, changed, or a
        build that failed or never started)."""
        builds = self.store.builds(s.id for s in self.catalog.all)
        return [
            s.id
            for s in self.catalog.all
            if s.id not in builds
            or builds[s.id].version != s.version
            or builds[s.id].status in ("requested", "failed")
        ]

    def request_builds(
        self, segment_ids: Sequence[str] | None = None, now: datetime | None = None
    ) -> str | None:
        """Start one build of ``segment_ids`` (default: every new or changed segment); the execution's
        name follows from the definitions, so asking twice starts it once. Returns its ARN."""
        now = now or clock.now()
        ids = sorted(segment_ids if segment_ids is not None else self.changed_segments())
        ids = [sid for sid in ids if sid in self.catalog]
        if not ids:
            return None
        versions = {sid: self.catalog.segments[sid].version for sid in ids}
        name = "build-" + _digest(versions)
        for sid in ids:
            self.store.update_build(  # an update: a retried build keeps its count of attempts
                sid, version=versions[sid], status="requested", execution=name, requested_at=now
            )
        arn = self.rt.executions.start(
            build_state_machine_arn(self.rt.config.state_machine_prefix), name, {"segments": ids}
        )
        logger.info("segment build requested", segments=ids, execution=name)
        return arn

    def retry_builds(self, now: datetime) -> list[str]:
        """Builds a deploy requested that never started, or that failed: start them again (hourly)."""
        builds = self.store.builds(s.id for s in self.catalog.all)
        stuck = [
            sid
            for sid, item in builds.items()
            if (segment := self.catalog.get(sid)) is not None
            and item.version == segment.version
            and (
                (
                    item.status == "requested"
                    and item.requested_at is not None
                    and now - item.requested_at > timedelta(hours=1)
                )
                or (item.status == "failed" and int(item.attempts or 0) < 3)
            )
        ]
        if stuck:
            self.request_builds(stuck, now)
        return stuck

    def plan_build(self, segment_ids: Sequence[str], build: str, total: int | None = None) -> dict[str, Any]:
        """The first state of a build: the segments of the parallel scan the workers share."""
        now = clock.now()
        ids = [sid for sid in segment_ids if sid in self.catalog]
        if total is None:
            total = min(
                MAX_SCAN_SEGMENTS, max(1, -(-segment_store.contacts_estimate() // SCAN_SEGMENT_CONTACTS))
            )
        for sid in ids:
            self.store.update_build(
                sid,
                status="building",
                started_at=now,
                execution=build,
                version=self.catalog.segments[sid].version,
            )
        return {
            "segments": ids,
            "versions": {sid: self.catalog.segments[sid].version for sid in ids},
            "scan": [{"segment": n, "total": total} for n in range(total)],
        }

    def build_page(
        self,
        segment_ids: Sequence[str],
        *,
        versions: Mapping[str, str],
        scan_segment: int,
        total: int,
        cursor: dict[str, Any] | None,
        deadline: float,
    ) -> dict[str, Any]:
        """One worker's share of a build: profiles of one scan segment, page by page, until done or the
        deadline. Returns where to go on from (``cursor`` None: the scan segment is done)."""
        segments = [
            s
            for sid in segment_ids
            if (s := self.catalog.get(sid)) is not None and s.version == versions.get(sid)
        ]
        report: dict[str, Any] = {"scanned": 0, "entered": 0, "exited": 0, "cursor": None}
        if not segments:
            return report  # redefined since: a newer build has them
        pages = segment_store.scan_profiles(scan_segment, total, cursor, page=BUILD_PAGE)
        for profiles, next_cursor in pages:
            entered, exited = self._build_profiles(profiles, segments)
            report["scanned"] += len(profiles)
            report["entered"] += entered
            report["exited"] += exited
            report["cursor"] = next_cursor
            if next_cursor is None or time.monotonic() > deadline:
                break
        for segment in segments:
            self.store.update_build(segment.id, scanned=report["scanned"])
        return report

    def _build_profiles(self, profiles: Sequence[Profile], segments: Sequence[Segment]) -> tuple[int, int]:
        now = clock.now()
        cids = [p.cid for p in profiles]
        memberships = self.store.memberships_of_many(cids, [s.id for s in segments])
        timed = [s for s in segments if s.time_driven]
        dues = self.store.due_of_many(cids) if timed else {}
        need = _history(segments)
        histories: dict[str, list[EventRecord]] = {}
        if need.events:  # one Query per contact: read them side by side (the worker waits on DynamoDB)
            since = need.since(now)
            with ThreadPoolExecutor(max_workers=HISTORY_READERS) as pool:
                found = pool.map(lambda cid: self.store.history(cid, since, need.events), cids)
                histories = dict(zip(cids, found, strict=True))
        plans: list[Plan] = []
        for profile in profiles:
            plan, _ = self._plan(
                profile,
                segments,
                now=now,
                at=now,
                emit=False,
                full_due=False,
                memberships=memberships[profile.cid],
                due=dues.get(profile.cid, Due()),
                events=histories.get(profile.cid, []),
            )
            plans.append(plan)
        conflicted = set(self.store.commit_many(plans))
        entered = exited = 0
        for plan in plans:
            if plan.cid in conflicted:
                outcome = self.reconcile(plan.cid, segments, now=now, emit=False)
                entered += len(outcome.entered)
                exited += len(outcome.exited)
            else:
                entered += sum(1 for t in plan.transitions if t.enter)
                exited += sum(1 for t in plan.transitions if not t.enter)
        return entered, exited

    def finish_build(
        self, segment_ids: Sequence[str], versions: Mapping[str, str], *, failed: bool = False
    ) -> dict[str, Any]:
        now = clock.now()
        builds = self.store.builds(segment_ids)
        for sid in segment_ids:
            item = builds.get(sid)
            if item is None or item.version != versions.get(sid):
                continue
            if failed:
                self.store.update_build(
                    sid, status="failed", finished_at=now, attempts=int(item.attempts or 0) + 1
                )
            else:
                self.store.update_build(sid, status="ready", finished_at=now, attempts=0)
        return {"segments": list(segment_ids), "status": "failed" if failed else "ready"}

    # -- static lists ---------------------------------------------------------------------------
    def add_to_list(self, cid: str, list_id: str, now: datetime | None = None) -> bool:
        return self._set_list(cid, list_id, True, now or clock.now())

    def remove_from_list(self, cid: str, list_id: str, now: datetime | None = None) -> bool:
        return self._set_list(cid, list_id, False, now or clock.now())

    def _set_list(self, cid: str, list_id: str, member: bool, now: datetime) -> bool:
        """Add the contact to a static list or take it off: its profile's ``lists`` change (as an
        ``add_to_list`` step changes them), and the list's membership and the segments that use it follow
        at once (the stream's evaluation of the same change then finds nothing left to do)."""
        from cairn.adapters.journeys import StepChange, apply_change

        segment = self.catalog.get(list_id)
        if segment is None:
            raise NotFound(f"no segment '{list_id}'")
        if not segment.static:
            raise ConflictError(
                f"segment '{list_id}' is dynamic: its rule decides who is in it",
                [FieldProblem("id", "only a static list (kind: static) takes members by hand")],
            )
        names = frozenset({list_id})
        change = StepChange(add_lists=names) if member else StepChange(remove_lists=names)
        if not apply_change(cid, change, now=now):
            raise NotFound("no contact with that userId")
        self.reconcile(cid, self.catalog.affected(Change(lists=names)), now=now)
        return member

    # -- reads ----------------------------------------------------------------------------------
    def of_contact(self, cid: str) -> list[dict[str, Any]]:
        """The contact's segments as the contact API shows them: ``[{"id", "enteredAt"}]``."""
        return [
            {"id": m.segment, "enteredAt": _iso(m.entered_at)}
            for m in self.store.segments_of(cid, self.catalog.segments)
        ]

    def forget(self, cid: str, now: datetime | None = None) -> int:
        """Erase the contact's memberships (counts go down; no events), time index and due entry."""
        return self.store.forget(cid, self.catalog.segments, now or clock.now())

    def member_counts(self, segment_ids: Iterable[str]) -> dict[str, int]:
        return self.store.counts(segment_ids)

    def builds(self, segment_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for sid, item in self.store.builds(segment_ids).items():
            current = self.catalog.get(sid)
            out[sid] = {
                "status": item.status
                if current is not None and current.version == item.version
                else "outdated",
                "version": item.version,
                "finishedAt": _iso(item.finished_at),
            }
        return out

    def members(
        self, segment_id: str, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        if segment_id not in self.catalog:
            raise NotFound(f"no segment '{segment_id}'")
        try:
            page, next_cursor = self.store.members(segment_id, limit, cursor)
        except ValueError as exc:
            raise ValidationFailed(str(exc), [FieldProblem("cursor", str(exc))]) from exc
        users = segment_store.user_ids([cid for cid, _ in page])
        return [{"userId": users.get(cid), "enteredAt": _iso(at)} for cid, at in page], next_cursor

    def parse(self, data: Any, field_name: str = "rule") -> Rule:
        """An unsaved rule, checked as a segment's would be (422 naming every problem)."""
        try:
            rule = rules.parse_rule(data, field_name)
        except rules.RuleError as exc:
            raise ValidationFailed(
                "the rule is not valid", [FieldProblem(p.path, p.message) for p in exc.problems]
            ) from exc
        problems = [
            FieldProblem(field_name, f"unknown segment '{sid}'")
            for sid in sorted(rules.referenced_segments(rule))
            if sid not in self.catalog
        ]
        problems += [
            FieldProblem(field_name, f"a rule cannot read {name} events; use {{segment: <id>}}")
            for name in sorted(rules.dependencies(rule).events & RESERVED_EVENTS)
        ]
        if problems:
            raise ValidationFailed("the rule is not valid", problems)
        return rule

    def preview(self, data: Any, *, budget: int = PREVIEW_BUDGET) -> dict[str, Any]:
        """How many contacts an unsaved rule selects, and a few of them. Reads whole segments of a
        parallel scan in random order until ``budget`` contacts: exact if that was every segment, else
        an estimate from the share read."""
        rule = self.catalog.expand(self.parse(data))
        check = rules.compile_rule(rule)
        need = rules.history(rule)
        now = clock.now()
        order = list(range(PREVIEW_SEGMENTS))
        random.shuffle(order)
        matched = scanned = read = 0
        sample: list[str] = []
        for number in order:
            if scanned >= budget:
                break
            for profiles, _ in segment_store.scan_profiles(number, PREVIEW_SEGMENTS, None, page=BUILD_PAGE):
                for profile in profiles:
                    view = self._view(profile, need, now=now)
                    if check(view):
                        matched += 1
                        if profile.user_id is not None and len(sample) < SAMPLE:
                            sample.append(profile.user_id)
                scanned += len(profiles)
            read += 1
        exact = read == PREVIEW_SEGMENTS
        count = matched if exact else round(matched * PREVIEW_SEGMENTS / max(read, 1))
        return {"count": count, "sample": [{"userId": u} for u in sample], "exact": exact, "scanned": scanned}

    # -- live evaluation (audience, branch, goal, exit_when) ----------------------------------------
    def resolver(
        self, profile: Profile, view: ContactView, *, loaded: bool, since: datetime | None
    ) -> Callable[[str], bool]:
        """``{segment: id}`` evaluated live on ``view``: a dynamic segment's rule (with more history read
        if the view holds less than it needs), a static list's membership. ``loaded``/``since``: the
        view holds every event since ``since`` (None: all), or none at all."""
        memo: dict[str, bool] = {}
        history: dict[str, list[EventRecord]] = {}

        def resolve(segment_id: str) -> bool:
            if segment_id in memo:
                return memo[segment_id]
            segment = self.catalog.get(segment_id)
            if segment is None:
                raise SegmentUnavailable(segment_id)
            if segment.static:
                result = segment_id in profile.lists
            else:
                assert segment.check is not None
                inner = view if view.segment is resolve else replace(view, segment=resolve)
                if not _covers(loaded, since, segment.history, view.now):
                    key = f"{segment.history.since(view.now)}:{sorted(segment.history.events)}"
                    if key not in history:
                        history[key] = self.store.history(
                            profile.cid, segment.history.since(view.now), segment.history.events
                        )
                    inner = replace(view, events=history[key], segment=resolve)
                result = segment.check(inner)
            memo[segment_id] = result
            return result

        return resolve

    # -- the function's entry point -----------------------------------------------------------------
    def handle(self, event: Mapping[str, Any], remaining_ms: Callable[[], int]) -> dict[str, Any]:
        """The segments function: a schedule's tick, a build's task, or the deploy hook."""
        deadline = time.monotonic() + max(remaining_ms() / 1000 - 20, 1)
        if "RequestType" in event and "ResponseURL" in event:
            return self.deploy_hook(event)
        action = event.get("action")
        if action == "plan":
            return self.plan_build(list(event["segments"]), str(event["build"]))
        if action == "build":
            scan = event["scan"]
            return self.build_page(
                list(event["segments"]),
                versions=dict(event["versions"]),
                scan_segment=int(scan["segment"]),
                total=int(scan["total"]),
                cursor=event.get("cursor"),
                deadline=deadline,
            )
        if action in ("finish", "failed"):
            ids = list(event["segments"])
            versions = event.get("versions") or {
                sid: s.version for sid in ids if (s := self.catalog.get(sid)) is not None
            }
            return self.finish_build(ids, dict(versions), failed=action == "failed")
        if action == "build-changed":
            return {"execution": self.request_builds()}
        if action == "tick":
            return self.tick(deadline=deadline)
        raise ValueError("not a tick, a build task or a deploy hook")

    def deploy_hook(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """CloudFormation's custom resource: on create and update, build new and changed segments. It
        always answers (a custom resource that never does holds the deploy for an hour)."""
        from cairn.adapters.segments import answer_cloudformation

        status, reason, data = "SUCCESS", "", {}
        try:
            if event["RequestType"] in ("Create", "Update"):
                data = {"Execution": self.request_builds() or ""}
        except Exception as exc:  # answered as a failure, with the reason
            logger.exception("segment build request failed")
            status, reason = "FAILED", f"{type(exc).__name__}: {exc}"
        answer_cloudformation(event, status, reason, data)
        return {"status": status}


# --------------------------------------------------------------------------- helpers


def profile_change(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> Change:
    """What differs between two images of a profile item (the contacts stream's old and new images)."""
    if not old or not new:
        return Change(everything=True)  # a new contact (or no images): every rule may hold or not
    old_attrs = dict(old.get("attributes") or {})
    new_attrs = dict(new.get("attributes") or {})
    attributes = {k for k in old_attrs.keys() | new_attrs.keys() if old_attrs.get(k) != new_attrs.get(k)}
    attributes |= {name for name, key in PROFILE_FIELDS.items() if old.get(key) != new.get(key)}
    tags = set(old.get("tags") or ()) ^ set(new.get("tags") or ())
    lists = set(old.get("lists") or ()) ^ set(new.get("lists") or ())
    old_consent = dict(old.get("consent") or {})
    new_consent = dict(new.get("consent") or {})
    channels = {
        ch
        for ch in old_consent.keys() | new_consent.keys()
        if _status(old_consent.get(ch)) != _status(new_consent.get(ch))
    }
    return Change(
        attributes=frozenset(attributes),
        tags=frozenset(tags),
        channels=frozenset(channels),
        lists=frozenset(lists),
    )


def imported(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    """True if this profile write was an import's: the import stamps `importedAt` with the write's own
    `updatedAt` (ContactStore.update), which no other write touches. A write that leaves `updatedAt` as
    it was (two writes in one instant of a frozen clock) is taken as live: then it emits."""
    if not new or not new.get("importedAt") or new.get("importedAt") != new.get("updatedAt"):
        return False
    return not old or old.get("updatedAt") != new.get("updatedAt")


def _status(entry: Any) -> Any:
    return entry.get("status") if isinstance(entry, Mapping) else entry


def _history(segments: Iterable[Segment]) -> History:
    need = rules.NO_HISTORY
    for segment in segments:
        need = need.union(segment.history)
    return need


def _covers(loaded: bool, since: datetime | None, need: History, now: datetime) -> bool:
    if not need.events:
        return True
    if not loaded:
        return False
    if since is None:
        return True
    start = need.since(now)
    return start is not None and start >= since


def _due_write(timed: Sequence[Segment], view: ContactView, due: Due, *, full: bool) -> DueWrite | None:
    """The contact's next time-driven changes after this evaluation, if the index must move.

    ``full``: ``timed`` is every time-driven segment and the index is rewritten exactly. Otherwise only
    an *earlier* change is written: the stored hour stays at or before the true next change (a tick
    that finds nothing due yet re-indexes exactly), so later changes cost no write on the hot path."""
    fresh: dict[str, datetime] = {}
    for segment in timed:
        assert segment.expanded is not None
        moment = rules.next_time_change(segment.expanded, view)
        if moment is not None:
            fresh[segment.id] = moment
    if full:
        bucket = due_bucket(min(fresh.values())) if fresh else None
        if fresh == due.at and bucket == due.bucket:
            return None
        return DueWrite(fresh, bucket, due)
    merged = {sid: t for sid, t in due.at.items() if sid not in {s.id for s in timed}}
    merged.update(fresh)
    if not fresh:
        return None
    bucket = due_bucket(min(merged.values()))
    if due.bucket is not None and bucket >= due.bucket:
        return None
    return DueWrite(merged, bucket, due)


def _digest(versions: Mapping[str, str]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(sorted(versions.items())).encode()).hexdigest()[:16]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")
