"""`cairn report <workflow>`: a workflow's funnel, splits, holdout and attribution as terminal tables, and
with `--html` as a self-contained page with charts.

It reads the HTTP API (`GET /v1/workflows/{id}/stats` and `/attribution`) of local mode (default
`http://127.0.0.1:3000` with `CAIRN_LOCAL_SECRET_KEY`) or of a deployed stack (`--api URL` or `--stack NAME`,
and `--key` or `CAIRN_API_KEY`); in-process callers (tests, the demo) pass a running `LocalCairn`.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from cairn.local.runtime import LocalCairn

DEFAULT_API = "http://127.0.0.1:3000"
TIMEOUT = 30

# (path, query) -> (status, parsed body)
Fetch = Callable[[str, Mapping[str, str]], tuple[int, Any]]


class ReportError(Exception):
    """A one-line reason there is no report."""


@dataclass(frozen=True)
class Report:
    stats: dict[str, Any]
    attribution: dict[str, Any] | None
    source: str


def http_fetch(base_url: str, key: str) -> Fetch:
    """Read the API over HTTP(S) with a secret key."""
    base = base_url.rstrip("/")

    def fetch(path: str, query: Mapping[str, str]) -> tuple[int, Any]:
        url = base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        request = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {key}", "Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return int(response.status), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read() or b"null")
            except ValueError:
                body = None
            return int(exc.code), body
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ReportError(f"cannot reach {base} ({reason}); is `cairn local` running?") from None

    return fetch


def local_fetch(local: LocalCairn) -> Fetch:
    """Read the API of an in-process local mode through its real trigger handler."""

    def fetch(path: str, query: Mapping[str, str]) -> tuple[int, Any]:
        status, _, body = local.request(
            "GET", path, key=local.secret_key, query=urllib.parse.urlencode(query) if query else ""
        )
        return status, body

    return fetch


def _explain(status: int, body: Any, what: str) -> ReportError:
    message = ""
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        details = "; ".join(f"{d.get('field')}: {d.get('problem')}" for d in error.get("details") or [])
        message = str(error.get("message", "")) + (f" ({details})" if details else "")
    hint = {401: "the API refused the key", 403: "a secret key is needed", 404: "no such workflow"}.get(
        status
    )
    return ReportError(
        f"{what}: {hint or 'the API answered ' + str(status)}" + (f": {message}" if message else "")
    )


def load_report(
    fetch: Fetch,
    workflow_id: str,
    *,
    version: str | None = None,
    since: date | None = None,
    until: date | None = None,
    source: str = "",
) -> Report:
    query: dict[str, str] = {}
    if since is not None:
        query["from"] = since.isoformat()
    if until is not None:
        query["to"] = until.isoformat()
    path = f"/v1/workflows/{urllib.parse.quote(workflow_id, safe='')}"
    status, stats = fetch(path + "/stats", {**query, **({"version": version} if version else {})})
    if status != 200 or not isinstance(stats, dict):
        raise _explain(status, stats, f"statistics of {workflow_id}")
    status, attribution = fetch(path + "/attribution", query)
    if status != 200 or not isinstance(attribution, dict):
        attribution = None  # an older stack without the route: the report goes on without it
    return Report(stats, attribution, source)


# ---------------------------------------------------------------------------------------------- terminal
def _n(value: Any) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def print_report(report: Report, console: Console) -> None:
    from rich.table import Table

    from cairn.cli.report_html import NONE, duration

    stats = report.stats
    versions = stats.get("versions") or []
    window = f"{stats.get('from') or 'the beginning'} to {stats.get('to') or 'now'}"
    if not versions:
        console.print(f"[bold]{stats['workflowId']}[/bold]: no statistics yet ({window})")
        return
    v = versions[0]
    current = " (current)" if v.get("current") else ""
    console.print(f"[bold]{stats['workflowId']}[/bold] · version {v['version']}{current} · {window}")
    rate = _pct(v.get("conversionRate"))
    console.print(
        f"entered {_n(v['entered'])} · conversions {_n(v['conversions'])} ({rate}) · "
        f"median time to convert {duration(v.get('medianTimeToConvertSeconds'))} · "
        f"still in the journey {_n(v.get('waiting'))}"
    )
    drop = v.get("biggestDropOff")
    funnel = Table(title="Funnel (step order)")
    for name in (
        "step",
        "entered",
        "completed",
        "exited",
        "failed",
        "waiting",
        "sent",
        "delivered",
        "opened",
    ):
        if name == "step":  # step ids in full: a narrow terminal folds them rather than cutting them
            funnel.add_column(name, justify="left", overflow="fold")
        else:
            funnel.add_column(name, justify="right")
    for name in ("clicked", "bounced", "skipped", "held"):
        funnel.add_column(name, justify="right")
    for s in v["steps"]:
        m = s.get("messages") or {}
        skipped = sum((m.get("skipped") or {}).values()) if m else None
        name = (
            f"[red]{s['stepId']} ◀ biggest drop-off[/red]"
            if drop and drop["stepId"] == s["stepId"]
            else s["stepId"]
        )
        funnel.add_row(
            name,
            *(_n(s.get(k)) for k in ("entered", "completed", "exited", "failed", "waiting")),
            *(_n(m.get(k)) if m else "" for k in ("sent", "delivered", "opened", "clicked", "bounced")),
            _n(skipped) if m else "",
            _n(m.get("held")) if m else "",
        )
    console.print(funnel)
    if v.get("variants"):
        table = Table(title="Variants")
        for name in ("variant", "entered", "conversions", "rate", "95% interval", "median time to convert"):
            table.add_column(name, justify="left" if name == "variant" else "right")
        for row in v["variants"]:
            ci = row.get("conversionRateCi")
            table.add_row(
                row["variant"] + (" (holdout)" if row.get("holdout") else ""),
                _n(row["entered"]),
                _n(row["conversions"]),
                _pct(row.get("conversionRate")),
                f"{_pct(ci[0])} to {_pct(ci[1])}" if ci else NONE,
                duration(row.get("medianTimeToConvertSeconds")),
            )
        console.print(table)
        for line in verdicts(v):
            console.print(line)
    attribution = report.attribution
    if attribution and attribution.get("attributed"):
        table = Table(
            title=f"Attribution ({attribution['attributed']} of {attribution['conversions']} conversions)"
        )
        for name in ("credited to", "first touch", "last touch", "linear"):
            table.add_column(name, justify="left" if name == "credited to" else "right")
        for dim in ("channel", "workflow", "template"):
            keys = sorted({k for m in attribution["models"].values() for k in m[dim]})
            for key in keys:
                table.add_row(
                    f"{dim}: {key}",
                    *(
                        f"{attribution['models'][m][dim].get(key, 0.0):.2f}"
                        for m in ("firstTouch", "lastTouch", "linear")
                    ),
                )
        console.print(table)


def verdicts(version: Mapping[str, Any]) -> list[str]:
    """One line per comparison of each split, and one for the holdout."""
    lines: list[str] = []
    for split in version.get("splits") or []:
        if split.get("winner"):
            lines.append(
                f"[green]split {split.get('stepId')}: {split['winner']} wins (significant at 95%)[/green]"
            )
        for c in split.get("comparisons") or []:
            lift = c.get("lift")
            if lift is None:
                lines.append(f"{c['variant']} vs {c['against']}: no contacts yet")
                continue
            ci = lift["absoluteCi"]
            text = (
                f"{c['variant']} vs {c['against']}: {lift['absolute'] * 100:+.1f} points "
                f"(95% CI {ci[0] * 100:+.1f} to {ci[1] * 100:+.1f}), p = {c['pValue']:.3g}"
            )
            if c["significant"]:
                lines.append(text + ": significant")
            else:
                more = c.get("additionalSampleNeeded")
                need = f"about {more['total']:,} more contacts needed" if more else "no difference observed"
                lines.append(f"{text}: not significant yet, {need}")
    holdout = version.get("holdout")
    if holdout and holdout.get("lift"):
        treated, held = _pct(holdout["treatedConversionRate"]), _pct(holdout["conversionRate"])
        lines.append(
            f"holdout: treated {treated} vs held out {held}"
            f" ({holdout['lift']['absolute'] * 100:+.1f} points, p = {holdout['pValue']:.3g})"
        )
    return lines


# ---------------------------------------------------------------------------------------------- command
def _day(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ReportError(f"{flag} must be a date (YYYY-MM-DD)") from None


def _stack_api(stack: str) -> str:
    from cairn.adapters.aws import client

    try:
        outputs = client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    except Exception as exc:
        raise ReportError(f"cannot read stack {stack}: {exc}") from None
    by_key = {o["OutputKey"]: o["OutputValue"] for o in outputs}
    if "ApiUrl" not in by_key:
        raise ReportError(f"stack {stack} has no ApiUrl output")
    return str(by_key["ApiUrl"])


def register(app: typer.Typer) -> None:
    @app.command(name="report")
    def report_command(
        workflow: Annotated[str, typer.Argument(help="the workflow id")],
        *,
        html: Annotated[Path | None, typer.Option(help="also write a self-contained HTML page here")] = None,
        api: Annotated[
            str | None, typer.Option(help=f"the API's base URL (default: local mode, {DEFAULT_API})")
        ] = None,
        stack: Annotated[str | None, typer.Option(help="a deployed stack: its ApiUrl output")] = None,
        key: Annotated[
            str | None,
            typer.Option(help="a secret key (default: $CAIRN_API_KEY, then $CAIRN_LOCAL_SECRET_KEY)"),
        ] = None,
        version: Annotated[str | None, typer.Option(help="only this version")] = None,
        from_: Annotated[str | None, typer.Option("--from", help="first day (YYYY-MM-DD), inclusive")] = None,
        to: Annotated[str | None, typer.Option(help="last day (YYYY-MM-DD), inclusive")] = None,
    ) -> None:
        """A workflow's funnel, splits, holdout and attribution: tables here, charts with --html."""
        from rich.console import Console

        from cairn.cli.report_html import render_html

        try:
            if api and stack:
                raise ReportError("give --api or --stack, not both")
            base = api or (_stack_api(stack) if stack else DEFAULT_API)
            secret = key or os.environ.get("CAIRN_API_KEY") or os.environ.get("CAIRN_LOCAL_SECRET_KEY")
            if not secret:
                raise ReportError("a secret key is needed: --key, or CAIRN_API_KEY in the environment")
            report = load_report(
                http_fetch(base, secret),
                workflow,
                version=version,
                since=_day(from_, "--from"),
                until=_day(to, "--to"),
                source=base,
            )
        except ReportError as exc:
            typer.echo(f"cairn: {exc}", err=True)
            raise typer.Exit(1) from None
        print_report(report, Console())
        if html is not None:
            try:
                html.write_text(render_html(report.stats, report.attribution, source=report.source), "utf-8")
            except OSError as exc:
                typer.echo(f"cairn: cannot write {html}: {exc.strerror}", err=True)
                raise typer.Exit(1) from None
            typer.echo(f"wrote {html}")
