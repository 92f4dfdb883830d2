"""Segment work, measured in moto with the project's own segments:

- per change (an event, a profile change): AWS reads and writes the segments service makes, and how many
  segments it evaluates, against how many there are;
- a build: contacts per second through one worker locally, and the CPU a worker spends per contact, which
  feeds the documented model of a 1,000,000-contact build on AWS (Distributed Map concurrency).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.client import BaseClient

from bench.calls import ENV

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
READS = ("GetItem", "BatchGetItem", "Query")
WRITES = ("TransactWriteItems", "UpdateItem", "PutItem", "DeleteItem", "BatchWriteItem")


@contextmanager
def counted() -> Iterator[Counter[str]]:
    """AWS API calls by operation (every botocore client), and the items written in transactions."""
    calls: Counter[str] = Counter()
    original = BaseClient._make_api_call

    def count(self: Any, operation: str, params: Any) -> Any:
        calls[operation] += 1
        if operation == "TransactWriteItems":
            calls["items written"] += len(params.get("TransactItems", []))
        elif operation in WRITES:
            calls["items written"] += 1
        return original(self, operation, params)

    BaseClient._make_api_call = count  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        BaseClient._make_api_call = original  # type: ignore[method-assign]


@contextmanager
def stack() -> Iterator[Any]:
    """moto with Cairn's tables and the project's site bundle; yields the runtime."""
    from moto import mock_aws

    from cairn.project import load_project

    project = load_project(ROOT)
    assert project.ok, project.problems
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site.json"
        site.write_text(json.dumps(project.site.to_data()), encoding="utf-8")
        os.environ.update({**ENV, "SEGMENTS_TABLE": "bench-segments", "STATS_TABLE": "bench-stats"})
        os.environ["CAIRN_SITE_PATH"] = str(site)
        with mock_aws():
            from cairn.adapters import aws, clock, tables

            aws.reset()
            tables.bind_tables(os.environ)
            for model in tables.ALL_MODELS:
                model._connection = None
                if not model.exists():
                    model.create_table(billing_mode="PAY_PER_REQUEST", wait=True)
            for model in tables.bound_models():
                model._connection = None

            class Fixed:
                def now(self) -> datetime:
                    return NOW

            clock.install(Fixed())
            try:
                from cairn.bootstrap import runtime

                yield runtime()
            finally:
                clock.reset()


EVENT_MIX = [  # name, weight, properties
    ("page_viewed", 40, lambda r: {"category": r.choice(["hiking", "camping", "sustainability", "sale"])}),
    ("product_viewed", 15, lambda r: {"category": r.choice(["hiking", "camping"])}),
    (
        "order_completed",
        10,
        lambda r: {"category": r.choice(["hiking", "camping"]), "total": r.randrange(20, 400)},
    ),
    ("email_opened", 10, lambda r: {"campaign": r.choice(["newsletter-12", "promo"]), "topic": "trails"}),
    ("newsletter_subscribed", 15, lambda r: {}),
    ("cart_updated", 10, lambda r: {}),
]


def _profile_image(p: Any) -> dict[str, Any]:
    return {
        "attributes": dict(p.attributes),
        "tags": set(p.tags),
        "consent": dict(p.consent),
        "lists": set(p.lists),
        "email": p.email,
        "timezone": p.timezone,
        "userId": p.user_id,
    }


def work_per_change(contacts: int = 100, changes: int = 600, seed: int = 11) -> dict[str, float]:
    """Replays a realistic mix of events and profile changes through the segments service."""
    from cairn.adapters.events import NewEvent
    from cairn.adapters.tables import ContactItem
    from cairn.domain.identity import cid_for_user

    rng = random.Random(seed)
    with stack() as rt:
        segments = rt.segments
        cids = []
        for n in range(contacts):
            cid = cid_for_user(b"bench", f"u-{n}")
            rt.contacts.merge_traits(
                cid,
                {"country": rng.choice(["DE", "AT", "FR"]), "age": rng.randrange(20, 60), "firstName": "B"},
                now=NOW,
                user_id=f"u-{n}",
            )
            segments.on_profile_change(rt.contacts.get(cid), {}, {"new": True})
            cids.append(cid)
        names = [name for name, weight, _ in EVENT_MIX for _ in range(weight)]
        makers = {name: make for name, _, make in EVENT_MIX}
        total: Counter[str] = Counter()
        evaluated = events = profile_changes = 0
        for index in range(changes):
            cid = rng.choice(cids)
            if rng.random() < 0.8:
                name = rng.choice(names)
                stamp = NOW - timedelta(minutes=rng.randrange(0, 60 * 24 * 20))
                rt.events.put_once(
                    NewEvent(cid, f"m-{index}", name, stamp, NOW, makers[name](rng))  # what intake stored
                )
                profile = rt.contacts.get(cid)
                with counted() as calls:
                    evaluated += segments.on_event(profile, name, stamp).evaluated
                events += 1
            else:
                before = rt.contacts.get(cid)
                kind = rng.choice(["tag", "plan", "firstName", "consent"])
                item = ContactItem(cid, "profile")
                if kind == "tag":
                    item.update(actions=[ContactItem.tags.add({rng.choice(["vip", "eco", "hiker"])})])
                elif kind == "consent":
                    rt.contacts.set_consent(
                        cid, "email", rng.choice(["subscribed", "unsubscribed"]), "bench", now=NOW
                    )
                else:
                    value = rng.choice(["pro", "free"]) if kind == "plan" else rng.choice(["Ann", "Bo"])
                    rt.contacts.merge_traits(cid, {kind: value}, now=NOW)
                after = rt.contacts.get(cid)
                with counted() as calls:
                    evaluated += segments.on_profile_change(
                        after, _profile_image(before), _profile_image(after)
                    ).evaluated
                profile_changes += 1
            total.update(calls)
        return {
            "changes": changes,
            "events": events,
            "profile_changes": profile_changes,
            "segments": len(segments.catalog.segments),
            "reads": sum(total[op] for op in READS) / changes,
            "write_calls": sum(total[op] for op in WRITES) / changes,
            "items_written": total["items written"] / changes,
            "evaluated": evaluated / changes,
        }


@contextmanager
def one_backup_per_table() -> Iterator[None]:
    """moto backs a table up before a transaction with a deep copy for every item of the transaction (25
    copies of the same table for 25 items); once per table is what it means. Without this the build
    figure measures moto copying tables."""
    from moto.dynamodb import models

    real_copy: Any = vars(models)["copy"]
    original = models.DynamoDBBackend.transact_write_items

    def transact(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups: dict[int, Any] = {}

        class Once:
            @staticmethod
            def deepcopy(value: Any) -> Any:
                if id(value) not in backups:
                    backups[id(value)] = real_copy.deepcopy(value)
                return backups[id(value)]

        setattr(models, "copy", Once)  # noqa: B010 - moto's module-level `copy`, swapped for this call
        try:
            original(self, transact_items)
        finally:
            setattr(models, "copy", real_copy)  # noqa: B010

    models.DynamoDBBackend.transact_write_items = transact  # type: ignore[method-assign]
    try:
        yield
    finally:
        models.DynamoDBBackend.transact_write_items = original  # type: ignore[method-assign]


def build_rate(contacts: int = 300, events_each: int = 5, seed: int = 5) -> dict[str, float]:
    """One worker building every segment over ``contacts`` (moto), and its CPU per contact without I/O."""
    from cairn.adapters.events import NewEvent
    from cairn.adapters.segments import Due, MembershipItem
    from cairn.adapters.tables import ContactItem
    from cairn.domain.identity import cid_for_user

    rng = random.Random(seed)
    with stack() as rt:
        segments = rt.segments
        for n in range(contacts):
            cid = cid_for_user(b"bench", f"u-{n}")
            rt.contacts.merge_traits(
                cid,
                {"country": rng.choice(["DE", "AT", "FR"]), "age": rng.randrange(20, 60)},
                now=NOW,
                user_id=f"u-{n}",
            )
            if n % 3 == 0:
                ContactItem(cid, "profile").update(actions=[ContactItem.tags.add({"vip", "eco"})])
            for e in range(events_each):
                name = rng.choice([m[0] for m in EVENT_MIX])
                stamp = NOW - timedelta(minutes=rng.randrange(0, 60 * 24 * 200))
                rt.events.put_once(NewEvent(cid, f"m-{n}-{e}", name, stamp, NOW, EVENT_MIX[0][2](rng)))
        ids = list(segments.catalog.segments)
        plan = segments.plan_build(ids, "bench", total=1)
        start = time.perf_counter()
        with one_backup_per_table():
            report = segments.build_page(
                plan["segments"],
                versions=plan["versions"],
                scan_segment=0,
                total=1,
                cursor=None,
                deadline=float("inf"),
            )
        elapsed = time.perf_counter() - start
        assert report["cursor"] is None and report["scanned"] == contacts
        members = sum(1 for m in MembershipItem.scan() if m.pk.startswith("m#") and m.entered_at is not None)
        # CPU alone: the same plans from data already read.
        profiles = [rt.contacts.get(cid_for_user(b"bench", f"u-{n}")) for n in range(contacts)]
        histories = {p.cid: segments.store.history(p.cid, None, segments.catalog.events) for p in profiles}
        catalog = list(segments.catalog.segments.values())
        cpu_start = time.perf_counter()
        for p in profiles:
            segments._plan(
                p,
                catalog,
                now=NOW,
                at=NOW,
                emit=False,
                full_due=False,
                memberships={},
                due=Due(),
                events=histories[p.cid],
            )
        cpu = (time.perf_counter() - cpu_start) / contacts
        return {
            "contacts": contacts,
            "segments": len(plan["segments"]),
            "members": members,
            "rate": contacts / elapsed,
            "cpu_ms": cpu * 1000,
        }


# ---- the model of a 1,000,000-contact build on AWS (figures are assumptions, stated; CPU is measured)

MODEL = {
    "contacts": 1_000_000,
    "contacts_per_scan_segment": 10_000,  # cairn.services.segments.SCAN_SEGMENT_CONTACTS
    "max_concurrency": 100,  # the Distributed Map's MaxConcurrency (statemachines/segment-build.asl.json)
    "page": 100,  # BUILD_PAGE
    "scan_page_ms": 15,  # a Scan page of 100 profiles
    "batch_get_ms": 12,  # BatchGetItem of 100 keys (memberships; the time index)
    "query_ms": 8,  # one contact's history (one Query), 16 at a time per worker
    "history_readers": 16,
    "transaction_ms": 25,  # TransactWriteItems of up to 25 items
    "map_run_start_s": 15,  # the map run starting its child executions, and the plan/finish tasks
    "wcu_per_s": 4_000,  # what a new on-demand table serves at once (it doubles its peak within 30 min)
    "rcu_per_s": 12_000,
    "profile_kb": 2,  # the contacts table's items a scan reads per contact (profile, runs, messages)
    "history_kb": 8,  # one contact's events within the longest window (rounded up to 4 KB units)
}


def model(cpu_ms: float, member_share: float, segments: int = 1) -> dict[str, float]:
    """Minutes for a build of ``segments`` new segment(s) over 1,000,000 contacts, ``member_share`` of them
    entering each: the slowest of the workers, the table's write and its read throughput."""
    m = MODEL
    page = m["page"]
    transactions = (page * member_share * segments * 1.05) / 24  # membership items + a count per transaction
    page_ms = (
        m["scan_page_ms"]
        + 2 * m["batch_get_ms"]
        + (page / m["history_readers"]) * m["query_ms"]
        + page * cpu_ms
        + transactions * m["transaction_ms"]
    )
    per_worker = page / page_ms * 1000  # contacts/s
    workers = min(m["max_concurrency"], m["contacts"] / m["contacts_per_scan_segment"])
    worker_s = m["contacts"] / (per_worker * workers) + m["map_run_start_s"]
    wcu = m["contacts"] * member_share * segments * 2 * 1.05  # transactional writes cost 2 WCU per item
    rcu = m["contacts"] * (m["profile_kb"] / 4 / 2 + m["history_kb"] / 4 / 2 + 2 * 0.5 / 2)
    write_s = wcu / m["wcu_per_s"]
    read_s = rcu / m["rcu_per_s"]
    return {
        "per_worker": per_worker,
        "workers": workers,
        "worker_min": worker_s / 60,
        "write_min": write_s / 60,
        "read_min": read_s / 60,
        "minutes": max(worker_s, write_s, read_s) / 60,
    }


def rows() -> list[tuple[str, str, str, str]]:
    work = work_per_change()
    build = build_rate()
    worst, typical = model(build["cpu_ms"], 1.0), model(build["cpu_ms"], 0.2)
    return [
        (
            "segment work per change: segments evaluated",
            f"{work['evaluated']:.2f}",
            f"< {work['segments']}",
            f"of {work['segments']} segments; {work['events']} events and {work['profile_changes']} profile "
            "changes (moto)",
        ),
        (
            "segment work per change: AWS reads / writes",
            f"{work['reads']:.2f} / {work['write_calls']:.2f}",
            "",
            f"{work['items_written']:.2f} items written per change (memberships, counts, events, time index)",
        ),
        (
            "segment build: contacts/s per worker (moto)",
            f"{build['rate']:,.0f}",
            "",
            f"{build['contacts']} contacts x {build['segments']} segments, {build['members']} memberships; "
            f"CPU {build['cpu_ms']:.2f} ms/contact without I/O",
        ),
        (
            "model: 1,000,000-contact build on AWS (min)",
            f"{worst['minutes']:.1f}",
            "< 10",
            f"every contact enters: {worst['per_worker']:,.0f} contacts/s x {worst['workers']:.0f} workers "
            f"{worst['worker_min']:.1f} min, writes {worst['write_min']:.1f} min (4,000 WCU/s); "
            f"20% enter: {typical['minutes']:.1f} min",
        ),
    ]
