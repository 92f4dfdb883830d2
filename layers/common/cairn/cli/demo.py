"""`make demo`: the welcome series played on synthetic contacts in local mode, with a readable timeline."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DAY = 86400


@dataclass
class Person:
    user_id: str
    first_name: str
    email: str
    phone: str | None = None
    sms: bool = False
    story: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)


PEOPLE = [
    Person("demo-ann", "Ann", "ann@demo.example", story="subscribes and stays"),
    Person("demo-bob", "Bob", "bob@demo.example", story="unsubscribes the day after the first email"),
    Person(
        "demo-chloe",
        "Chloe",
        "chloe@demo.example",
        phone="+4915112345678",
        sms=True,
        story="also opted in to SMS",
    ),
]


def run(root: Path) -> int:
    from cairn.local.runtime import LocalCairn, ProjectInvalid

    warnings.filterwarnings("ignore", message="No application metrics to publish")
    console = Console(width=max(110, Console().width))
    console.print(
        "[bold]Cairn demo[/bold]: the welcome series in local mode (moto, the real handlers, the "
        "real state machine, a virtual clock)\n"
    )
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), LocalCairn(root, start_time=START) as local:
            timeline = _play(local)
            outbox = local.outbox()
            runs = local.executions()
            errors = list(local.host.errors)
    except ProjectInvalid as exc:
        for problem in exc.problems:
            console.print(f"[red]{problem}[/red]")
        return 1
    _report(console, timeline, outbox, runs)
    if errors:
        console.print(f"[red]{len(errors)} function error(s):[/red] {errors[0]['errorMessage'][:300]}")
        return 1
    # Ann: all three emails. Bob: only the first (he unsubscribed). Chloe: two emails and the SMS.
    expected = {"Ann": 3, "Bob": 1, "Chloe": 3}
    names = {p.email: p.first_name for p in PEOPLE} | {p.phone: p.first_name for p in PEOPLE if p.phone}
    got = Counter(names.get(m["to"], m["to"]) for m in outbox)
    ok = dict(got) == expected
    console.print(
        "\n[green]demo finished: every contact got what the journey promised[/green]"
        if ok
        else f"\n[red]unexpected deliveries: {dict(got)}[/red]"
    )
    return 0 if ok else 1


def _play(local: Any) -> list[tuple[str, str]]:
    timeline: list[tuple[str, str]] = []
    secret, write = local.secret_key, local.write_key

    def note(text: str) -> None:
        timeline.append((local.clock.now().strftime("%a %d %b %H:%M"), text))

    for p in PEOPLE:
        traits: dict[str, Any] = {"email": p.email, "firstName": p.first_name}
        if p.phone:
            traits["phone"] = p.phone
        _ok(local.request("POST", "/v1/identify", {"userId": p.user_id, "traits": traits}, key=write))
        _ok(
            local.request(
                "PUT",
                f"/v1/contacts/{p.user_id}/subscriptions/email",
                {"status": "subscribed", "source": "signup-form"},
                key=secret,
            )
        )
        if p.sms:
            _ok(
                local.request(
                    "PUT",
                    f"/v1/contacts/{p.user_id}/subscriptions/sms",
                    {"status": "subscribed", "source": "signup-form"},
                    key=secret,
                )
            )
        _ok(
            local.request(
                "POST", "/v1/track", {"userId": p.user_id, "event": "newsletter_subscribed"}, key=write
            )
        )
        note(f"{p.first_name} subscribes to the newsletter ({p.story})")
    local.settle()
    local.advance(seconds=1 * DAY)
    _ok(
        local.request(
            "PUT",
            "/v1/contacts/demo-bob/subscriptions/email",
            {"status": "unsubscribed", "source": "preference-center"},
            key=secret,
        )
    )
    note("Bob unsubscribes from email")
    local.advance(seconds=1 * DAY)
    local.advance(seconds=3 * DAY)
    local.advance(seconds=1 * DAY)
    return timeline


def _ok(result: tuple[int, dict[str, str], Any]) -> None:
    status, _, body = result
    if status >= 300:
        raise RuntimeError(f"the API answered {status}: {body}")


def _report(
    console: Console,
    timeline: list[tuple[str, str]],
    outbox: list[dict[str, Any]],
    runs: list[dict[str, Any]],
) -> None:
    names = {p.email: p.first_name for p in PEOPLE} | {p.phone: p.first_name for p in PEOPLE if p.phone}
    rows: list[tuple[str, str, str]] = [(t, "", text) for t, text in timeline]
    for m in outbox:
        when = datetime.fromisoformat(m["sentAt"].replace("Z", "+00:00")).strftime("%a %d %b %H:%M")
        what = f"email “{m['subject']}”" if m["channel"] == "email" else f"SMS “{m['body'][:60]}…”"
        rows.append((when, names.get(m["to"], m["to"]), f"{what}  [{m['workflowId']} / {m['stepId']}]"))
    rows.sort(key=lambda r: datetime.strptime(r[0] + " 2026", "%a %d %b %H:%M %Y"))
    table = Table(title="Timeline (virtual time)", show_lines=False)
    table.add_column("when")
    table.add_column("who")
    table.add_column("what")
    for when, who, what in rows:
        table.add_row(when, who or "[dim]event[/dim]", what)
    console.print(table)

    per_state: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for run in runs:
        statuses[run["status"]] += 1
        per_state.update(set(run["path"]))
    funnel = Table(
        title=f"welcome-series funnel ({len(runs)} runs: "
        + ", ".join(f"{n} {s.lower()}" for s, n in statuses.items())
        + ")"
    )
    funnel.add_column("state")
    funnel.add_column("runs entering", justify="right")
    order: list[str] = []
    for run in runs:
        for state in run["path"]:
            if state not in order:
                order.append(state)
    for state in order:
        funnel.add_row(state, str(per_state[state]))
    console.print(funnel)
