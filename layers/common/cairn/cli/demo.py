"""`make demo`: every canonical journey played on synthetic contacts in local mode (moto, the real handlers,
the real state machines, a virtual clock), with a readable timeline, each workflow's funnel, and a check that
every contact received exactly what its journey promises (exit 1 otherwise)."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Berlin (the project's zone)
# Contact ids are HMACs under the stack's secret: a fixed one makes the split's sticky variants (and so the
# demo) the same on every run. Never a production secret.
DEMO_SECRET = "cairn-demo-secret-not-for-production"
DAY, HOUR, MINUTE = 86400, 3600, 60
CART = {"A": 45, "B": 45, "holdout": 10}
# The workflow whose measurement the demo ends with (`cairn report`): the cart's A/B split and holdout.
REPORTED = "abandoned-cart"
REPORT_FILE = Path("artifacts") / f"demo-report-{REPORTED}.html"  # under the project folder


@dataclass
class Person:
    user_id: str
    name: str
    story: str
    phone: str | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    email_consent: bool = True

    @property
    def email(self) -> str:
        return f"{self.name.lower()}@demo.example"


PEOPLE = [
    Person("demo-ann", "Ann", "subscribes to the newsletter and stays"),
    Person("demo-bob", "Bob", "subscribes, unsubscribes the next day"),
    Person("demo-chloe", "Chloe", "subscribes, also to SMS", phone="+4915112345678"),
    Person("demo-dana", "Dana", "leaves a €80 cart and never clicks", phone="+12025550101"),
    Person("demo-eli", "Eli", "leaves a cart, clicks the reminder"),
    Person("demo-fay", "Fay", "leaves a cart, orders 20 minutes later"),
    Person(
        "demo-gus",
        "Gus",
        "orders a tent (New York, SMS)",
        phone="+12025550102",
        traits={"timezone": "America/New_York"},
    ),
    Person("demo-pia", "Pia", "orders, and again five days later"),
    Person("demo-ida", "Ida", "looks at the Ridge 40 backpack"),
    Person("demo-jon", "Jon", "looks at boots, is back in the shop within the hour"),
    Person("demo-kim", "Kim", "gets the launch email and opens it"),
    Person("demo-lou", "Lou", "gets the launch email and never opens it"),
    Person("demo-quinn", "Quinn", "follows on Instagram (SMS)", phone="+12025550103"),
    Person("demo-rae", "Rae", "follows on Instagram"),
    Person(
        "demo-sam",
        "Sam",
        "a lead scoring 85 from a 600-person company",
        traits={"lead_score": 85, "company": "Alpine Rescue", "company_size": 600},
    ),
    Person("demo-tia", "Tia", "a lead scoring 20", traits={"lead_score": 20}),
    Person(
        "demo-vera",
        "Vera",
        "has her birthday tomorrow (New York)",
        traits={"timezone": "America/New_York", "birthday": "1990-12-02"},
    ),
    Person("demo-hugo", "Hugo", "buys hiking gear twice, then browses tents"),
]
BY_ID = {p.user_id: p for p in PEOPLE}


def expected(variant_of: Callable[[str], str | None]) -> dict[tuple[str, str], int]:
    """Messages each contact receives per workflow, as the journeys promise (the cart depends on the
    contact's sticky split: the holdout receives nothing)."""

    def cart(name: str, count: int) -> int:
        return 0 if variant_of(name) == "holdout" else count

    return {
        ("Ann", "welcome-series"): 3,
        ("Bob", "welcome-series"): 1,
        ("Chloe", "welcome-series"): 3,  # two emails and the SMS invitation
        ("Dana", "abandoned-cart"): cart("demo-dana", 2),  # the reminder, then the SMS discount
        ("Eli", "abandoned-cart"): cart("demo-eli", 1),  # clicked: no discount
        ("Fay", "abandoned-cart"): 0,  # ordered while waiting: converted
        ("Fay", "post-purchase"): 2,
        ("Fay", "first-purchase"): 3,
        ("Gus", "post-purchase"): 2,  # thank-you, then the feedback SMS at 10:00 New York time
        ("Gus", "first-purchase"): 3,
        ("Pia", "first-purchase"): 2,  # her second order converts: no offer
        ("Pia", "post-purchase"): 4,  # two orders, two thank-yous and two feedback requests
        ("Ida", "browse-abandonment"): 1,
        ("Jon", "browse-abandonment"): 0,
        ("Kim", "email-engagement"): 2,  # launch, then the webinar invitation on opening it
        ("Lou", "email-engagement"): 1,
        ("Quinn", "social-follow"): 2,
        ("Rae", "social-follow"): 2,
        ("Sam", "lead-nurture"): 2,  # then a task for sales instead of more email
        ("Tia", "lead-nurture"): 3,
        ("Vera", "birthday"): 1,
        ("Hugo", "first-purchase"): 1,
        ("Hugo", "post-purchase"): 2,  # his second order comes while the first run is open: one at a time
        ("Hugo", "camping-cross-sell"): 2,
        ("Hugo", "browse-abandonment"): 1,
    }


def run(root: Path) -> int:
    from cairn.local.runtime import LocalCairn, ProjectInvalid

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    console = Console(width=max(120, Console().width))
    console.print(
        "[bold]Cairn demo[/bold]: the canonical journeys in local mode (moto, the real handlers, the real "
        "state machines, a virtual clock): eleven days in about a minute\n"
    )
    captured = io.StringIO()
    os.environ.setdefault("CAIRN_SECRET", DEMO_SECRET)
    try:
        with contextlib.redirect_stdout(captured), LocalCairn(root, start_time=START) as local:
            timeline = _play(local)
            outbox = local.outbox()
            runs = local.executions()
            assert local.project is not None
            order = {wid: list(asl["States"]) for wid, asl in local.project.asl.items()}
            variants = {p.user_id: _variant(local, p.user_id) for p in PEOPLE}
            tasks = _ok(local.request("GET", "/v1/tasks", key=local.secret_key))["tasks"]
            report = _report(local)
            errors = list(local.host.errors)
    except ProjectInvalid as exc:
        for problem in exc.problems:
            console.print(f"[red]{problem}[/red]")
        return 1
    _timeline(console, timeline, outbox, tasks)
    _funnels(console, runs, order)
    verdict = _verdict(console, outbox, variants, errors)
    written = measurement(console, report, root / REPORT_FILE)
    return verdict or (0 if written else 1)


# ---------------------------------------------------------------- the story


def _play(local: Any) -> list[tuple[datetime, str]]:
    timeline: list[tuple[datetime, str]] = []
    secret = local.secret_key

    def note(text: str) -> None:
        timeline.append((local.clock.now(), text))

    def track(user_id: str, event: str, **properties: Any) -> None:
        body = {"userId": user_id, "event": event, "properties": properties}
        _ok(local.request("POST", "/v1/track", body, key=local.write_key))

    def opens(user_id: str, workflow_id: str, kind: str) -> None:
        for message in local.outbox():
            if message["to"] == BY_ID[user_id].email and message["workflowId"] == workflow_id:
                local.feedback(message["id"], kind)

    for p in PEOPLE:
        traits: dict[str, Any] = {"email": p.email, "firstName": p.name, **p.traits}
        if p.phone:
            traits["phone"] = p.phone
        _ok(local.request("POST", "/v1/identify", {"userId": p.user_id, "traits": traits}, key=secret))
        for channel in ("email", "sms") if p.phone else ("email",):
            body = {"status": "subscribed", "source": "signup-form"}
            _ok(local.request("PUT", f"/v1/contacts/{p.user_id}/subscriptions/{channel}", body, key=secret))

    def each(*calls: Callable[[], None]) -> Callable[[], None]:
        def all_of() -> None:
            for call in calls:
                call()

        return all_of

    def order(user_id: str, order_id: str, total: int, product: str, related: str) -> Callable[[], None]:
        return lambda: track(
            user_id,
            "order_completed",
            order_id=order_id,
            total=total,
            products=[{"name": product}],
            related=[{"name": related}],
        )

    def enroll(user_id: str) -> Callable[[], None]:
        return lambda: _ok(
            local.request("POST", "/v1/workflows/email-engagement/enroll", {"userId": user_id}, key=secret)
        )

    actions: list[tuple[int, str, Callable[[], None]]] = [
        (
            0,
            "Ann, Bob and Chloe subscribe to the newsletter",
            each(
                *(
                    lambda u=u: track(u, "newsletter_subscribed")
                    for u in ("demo-ann", "demo-bob", "demo-chloe")
                )
            ),
        ),
        (
            0,
            "Dana, Eli and Fay leave carts",
            each(
                *(
                    lambda u=u, v=v: track(
                        u,
                        "cart_abandoned",
                        cart_value=v,
                        item_count=2,
                        cart_url="https://trailhead.example/cart",
                    )
                    for u, v in (("demo-dana", 80), ("demo-eli", 45), ("demo-fay", 120))
                )
            ),
        ),
        (
            0,
            "Gus and Pia order (their first orders)",
            each(
                order("demo-gus", "T-1001", 189, "Summit 2 tent", "Footprint"),
                order("demo-pia", "T-1002", 59, "Trail socks", "Merino liners"),
            ),
        ),
        (
            0,
            "Ida looks at the Ridge 40 backpack; Jon at boots",
            each(
                lambda: track(
                    "demo-ida",
                    "product_viewed",
                    name="Ridge 40 backpack",
                    price=149,
                    url="https://trailhead.example/ridge-40",
                ),
                lambda: track("demo-jon", "product_viewed", name="Approach boots", price=129),
            ),
        ),
        (
            0,
            "Marketing enrolls Kim and Lou in the launch (POST /v1/workflows/email-engagement/enroll)",
            each(enroll("demo-kim"), enroll("demo-lou")),
        ),
        (
            0,
            "Quinn and Rae follow Trailhead on Instagram",
            each(
                *(
                    lambda u=u: track(u, "social_followed", network="Instagram")
                    for u in ("demo-quinn", "demo-rae")
                )
            ),
        ),
        (
            0,
            "Sam and Tia download the buyer's guide (leads)",
            each(*(lambda u=u: track(u, "lead_created", source="guide") for u in ("demo-sam", "demo-tia"))),
        ),
        (
            0,
            "Hugo orders hiking boots",
            lambda: track("demo-hugo", "order_completed", category="hiking", total=90),
        ),
        (20 * MINUTE, "Fay completes her order", lambda: track("demo-fay", "order_completed", total=120)),
        (HOUR, "Jon adds the boots to his cart", lambda: track("demo-jon", "cart_updated", items=1)),
        (2 * HOUR, "Eli clicks the cart reminder", lambda: opens("demo-eli", "abandoned-cart", "click")),
        (3 * HOUR, "Kim opens the launch email", lambda: opens("demo-kim", "email-engagement", "open")),
        (
            DAY,
            "Bob unsubscribes from email",
            lambda: _ok(
                local.request(
                    "PUT",
                    "/v1/contacts/demo-bob/subscriptions/email",
                    {"status": "unsubscribed", "source": "preference-center"},
                    key=secret,
                )
            ),
        ),
        (DAY + HOUR, "Sam clicks the buyer's guide", lambda: opens("demo-sam", "lead-nurture", "click")),
        (
            DAY + 2 * HOUR,
            "Hugo orders a hiking jacket",
            lambda: track("demo-hugo", "order_completed", category="hiking", total=160),
        ),
        (
            2 * DAY + 3 * HOUR,
            "Hugo browses tents",
            lambda: track("demo-hugo", "product_viewed", category="camping", name="Summit 2 tent", price=389),
        ),
        (5 * DAY, "Pia orders again", order("demo-pia", "T-1003", 35, "Headlamp", "Batteries")),
    ]
    for offset, text, action in actions:
        local.advance(to=START + timedelta(seconds=offset))
        action()
        note(text)
        local.settle()
    local.advance(to=START + timedelta(days=11))
    return timeline


def _variant(local: Any, user_id: str) -> str | None:
    body = _ok(local.request("GET", f"/v1/contacts/{user_id}", key=local.secret_key))
    for entry in body.get("enrollments", []):
        if entry["workflowId"] == "abandoned-cart":
            return entry.get("variant")
    return None


def _ok(result: tuple[int, dict[str, str], Any]) -> Any:
    status, _, body = result
    if status >= 300:
        raise RuntimeError(f"the API answered {status}: {body}")
    return body


# ---------------------------------------------------------------- the report


def _report(local: Any) -> Any:
    """`cairn report abandoned-cart` against the demo's local mode (its statistics and attribution)."""
    from cairn.cli.report import ReportError, load_report, local_fetch

    try:
        return load_report(local_fetch(local), REPORTED, source="local mode (make demo)")
    except ReportError as exc:
        return exc


def measurement(console: Console, report: Any, path: Path) -> bool:
    """The demo's last word: one workflow's statistics as `cairn report` prints them, and its HTML page
    written to `path` (named on the console). False when the report could not be read or written."""
    from cairn.cli.report import Report, print_report
    from cairn.cli.report_html import render_html

    console.print(
        f"\n[bold]Measurement[/bold]: [bold]cairn report {REPORTED}[/bold] (GET /v1/workflows/"
        f"{REPORTED}/stats and /attribution)"
    )
    if not isinstance(report, Report):
        console.print(f"[red]the report could not be read: {report}[/red]")
        return False
    print_report(report, console)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_html(report.stats, report.attribution, source=report.source), "utf-8")
    except OSError as exc:
        console.print(f"[red]cannot write {path}: {exc.strerror}[/red]")
        return False
    console.print(f"the HTML report (charts, readable offline): [bold]{path}[/bold]")
    return True


def _who(to: str) -> str:
    for p in PEOPLE:
        if to in (p.email, p.phone):
            return p.name
    return to


def _timeline(
    console: Console,
    timeline: list[tuple[datetime, str]],
    outbox: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
) -> None:
    rows: list[tuple[datetime, str, str]] = [(when, "", text) for when, text in timeline]
    for m in outbox:
        when = datetime.fromisoformat(m["sentAt"].replace("Z", "+00:00"))
        what = f"email “{m['subject']}”" if m["channel"] == "email" else f"SMS “{m['body'][:58]}…”"
        rows.append((when, _who(m["to"]), f"{what}  [dim]{m['workflowId']} / {m['stepId']}[/dim]"))
    for t in tasks:
        when = datetime.fromisoformat(t["createdAt"].replace("Z", "+00:00"))
        who = next((p.name for p in PEOPLE if p.user_id == t["userId"]), t["userId"])
        rows.append(
            (
                when,
                who,
                f"task for {t['assignee']}: “{t['title']}”  [dim]{t['workflowId']} / {t['stepId']}[/dim]",
            )
        )
    rows.sort(key=lambda r: (r[0], r[1] != ""))
    table = Table(title="Timeline (virtual time, UTC)", show_lines=False)
    table.add_column("when", no_wrap=True)
    table.add_column("who")
    table.add_column("what")
    for when, who, what in rows:
        table.add_row(when.strftime("%a %d %b %H:%M"), who or "[bold]▸[/bold]", what)
    console.print(table)


def _funnels(console: Console, runs: list[dict[str, Any]], order: dict[str, list[str]]) -> None:
    """Each workflow's funnel: how many runs entered each of its steps (in journey order) and how they
    ended."""
    by_workflow: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_workflow.setdefault(r["workflowId"], []).append(r)
    hidden = (": held?", ": which path", ": which variant", ": until")
    for workflow_id, group in sorted(by_workflow.items()):
        outcomes = Counter(
            r["path"][-1] if r["status"] == "SUCCEEDED" else r["status"].lower() for r in group
        )
        entering: Counter[str] = Counter()
        for r in group:
            entering.update(set(r["path"]))
        summary = ", ".join(f"{n} {o.lower()}" for o, n in sorted(outcomes.items()))
        console.print(f"\n[bold]{workflow_id}[/bold]: {len(group)} run(s) — {summary}")
        table = Table(show_header=True, box=None, padding=(0, 2))
        table.add_column("step")
        table.add_column("runs", justify="right")
        table.add_column("")
        for state in order.get(workflow_id, []):
            if state.endswith(hidden) or state.startswith("Record ") or state in ("Complete", "Failed"):
                continue
            if not entering[state]:
                continue
            bar = "█" * entering[state]
            table.add_row(state, str(entering[state]), f"[green]{bar}[/green]")
        console.print(table)


def _verdict(
    console: Console,
    outbox: list[dict[str, Any]],
    variants: dict[str, str | None],
    errors: list[dict[str, Any]],
) -> int:
    got = Counter((_who(m["to"]), m["workflowId"]) for m in outbox)
    want = expected(variants.get)
    wrong = {k: (got.get(k, 0), v) for k, v in want.items() if got.get(k, 0) != v}
    wrong |= {k: (n, 0) for k, n in got.items() if k not in want}
    if errors:
        console.print(f"[red]{len(errors)} function error(s):[/red] {errors[0]['errorMessage'][:300]}")
    if wrong:
        for (who, workflow_id), (n, expected_n) in sorted(wrong.items()):
            console.print(f"[red]{who} got {n} message(s) from {workflow_id}, expected {expected_n}[/red]")
        return 1
    if errors:
        return 1
    console.print(
        f"\n[green]demo finished: all {len(PEOPLE)} contacts got exactly what their journeys promised "
        f"({sum(got.values())} messages)[/green]"
    )
    return 0
