"""`cairn report --html`: one self-contained page (inline CSS and SVG, no script, no link to anything) that
reads offline, prints, and can be mailed as is. Every drawn mark carries the number it stands for in
`data-*` attributes (`data-value`, `data-step`, `data-variant`, `data-date`, ...), so the charts can be
checked by reading the DOM."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html import escape
from typing import Any

from cairn.domain.statistics import MESSAGE_COUNTERS

WIDTH = 760
BAR = 26
GAP = 10
LABEL = 210
COLOURS = ["#2f6f9f", "#d9822b", "#4a9c5d", "#a45ca8", "#c2473f", "#6b7f8c"]
HOLDOUT_COLOUR = "#9aa5ad"
DROP_COLOUR = "#c2473f"
CONVERTED_COLOUR = "#4a9c5d"
NONE = "-"
MODELS = {"firstTouch": "first touch", "lastTouch": "last touch", "linear": "linear"}

CSS = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2731;
       margin: 0; background: #f5f7f9; }
main { max-width: 820px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 24px; margin: 0 0 2px; } h2 { font-size: 18px; margin: 24px 0 8px; }
.sub { color: #5b6772; margin: 0 0 18px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { background: #fff; border: 1px solid #dde3e8; border-radius: 8px; padding: 10px 14px;
        min-width: 120px; }
.card b { display: block; font-size: 22px; } .card span { color: #5b6772; font-size: 13px; }
section { background: #fff; border: 1px solid #dde3e8; border-radius: 8px; padding: 4px 16px 16px;
          margin-top: 16px; }
svg { display: block; max-width: 100%; height: auto; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2731; } svg .muted { fill: #5b6772; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin-top: 8px; }
th, td { text-align: right; padding: 4px 6px; border-bottom: 1px solid #eef1f4; }
th:first-child, td:first-child { text-align: left; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
.verdict { padding: 8px 12px; border-radius: 6px; margin: 8px 0; }
.win { background: #e6f4ea; } .wait { background: #fff6e0; } .none { background: #eef1f4; }
.drop { color: #c2473f; font-weight: 600; }
footer { color: #5b6772; font-size: 12px; margin-top: 28px; }
@media print { body { background: #fff; } section, .card { break-inside: avoid; } }
"""


# ---------------------------------------------------------------------------------------------- markup
def _name(attribute: str) -> str:
    return attribute.rstrip("_").replace("_", "-")


def _attrs(values: Mapping[str, Any]) -> str:
    return "".join(
        f' {_name(k)}="{escape(_text(v), quote=True)}"' for k, v in values.items() if v is not None
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) >= 1 else repr(value)
    return str(value)


def el(tag: str, inner: str | None = None, /, **attrs: Any) -> str:
    """An element; `class_` -> class, `data_value` -> data-value, `text_anchor` -> text-anchor. `inner`
    must already be markup (escape text with `esc`); None makes an empty element."""
    if inner is None:
        return f"<{tag}{_attrs(attrs)}>" if tag == "meta" else f"<{tag}{_attrs(attrs)}/>"
    return f"<{tag}{_attrs(attrs)}>{inner}</{tag}>"


def esc(value: Any) -> str:
    return escape(str(value))


def _n(value: Any) -> str:
    return NONE if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def _pct(value: float | None, digits: int = 1) -> str:
    return NONE if value is None else f"{value * 100:.{digits}f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _svg(chart: str, height: float, title: str, body: Iterable[str]) -> str:
    return el(
        "svg",
        el("title", esc(title)) + "".join(body),
        id=f"{chart}-chart",
        class_="chart",
        data_chart=chart,
        role="img",
        aria_label=title,
        viewBox=f"0 0 {WIDTH} {height:.0f}",
        width=WIDTH,
        height=f"{height:.0f}",
    )


def _empty(chart: str, text: str) -> str:
    return el("p", esc(text), class_="sub", id=f"{chart}-chart", data_chart=chart, data_empty=True)


def _label(y: float, text: str) -> str:
    return el("text", esc(text), x=LABEL - 8, y=f"{y + BAR * 0.68:.1f}", text_anchor="end")


# A bar chart: a row per bar (a label left, the bar from LABEL, its value right of it).
def _row_y(index: int) -> int:
    return 10 + index * (BAR + GAP)


def _bars_svg(chart: str, rows: int, title: str, body: Iterable[str]) -> str:
    return _svg(chart, 20 + rows * (BAR + GAP), title, body)


def _bar(y: float, width: float, fill: str, **data: Any) -> str:
    """A bar starting at LABEL; `data` its data-* attributes (`data_step=` -> data-step)."""
    return el("rect", class_="bar", **data, x=LABEL, y=y, width=f"{width:.2f}", height=BAR, rx=3, fill=fill)


def _value(x: float | str, y: float, text: str) -> str:
    return el("text", text, x=x, y=f"{y + BAR * 0.68:.1f}", class_="muted")


# ---------------------------------------------------------------------------------------------- charts
def funnel_chart(version: Mapping[str, Any]) -> str:
    """One bar per step (runs that entered it), between the entries and the conversions; the step with
    the biggest drop-off in red."""
    rows: list[tuple[str, str | None, int, str]] = [
        ("entered the workflow", None, version["entered"], "entered")
    ]
    rows += [(s["stepId"], s.get("kind"), int(s.get("entered", 0)), "step") for s in version["steps"]]
    rows.append(("converted (goal)", None, int(version["conversions"]), "conversions"))
    top = max([r[2] for r in rows] + [1])
    drop = (version.get("biggestDropOff") or {}).get("stepId")
    span = WIDTH - LABEL - 80
    out: list[str] = []
    for index, (name, kind, value, metric) in enumerate(rows):
        y = _row_y(index)
        width = span * value / top
        colour = COLOURS[0]
        if metric == "conversions":
            colour = CONVERTED_COLOUR
        elif metric == "step" and name == drop:
            colour = DROP_COLOUR
        out.append(_label(y, name[:32]))
        out.append(
            _bar(
                y,
                width,
                colour,
                data_step=name if metric == "step" else None,
                data_kind=kind,
                data_metric=metric,
                data_value=value,
                data_drop_off=True if metric == "step" and name == drop else None,
            )
        )
        out.append(_value(f"{LABEL + width + 6:.2f}", y, _n(value)))
    return _bars_svg("funnel", len(rows), "Funnel: runs entering each step, then conversions", out)


def variants_chart(version: Mapping[str, Any]) -> str:
    """Each variant's conversion rate with its 95% interval (Wilson)."""
    variants = list(version.get("variants") or [])
    if not variants:
        return _empty("variants", "No split in this version.")
    top = max([float((v.get("conversionRateCi") or [0, 0])[1] or 0) for v in variants] + [0.01])
    span = WIDTH - LABEL - 110
    out: list[str] = []
    for index, v in enumerate(variants):
        y = _row_y(index)
        rate = float(v.get("conversionRate") or 0.0)
        out.append(_label(y, f"{v['variant']} ({_n(v['entered'])})"))
        out.append(
            _bar(
                y,
                span * rate / top,
                HOLDOUT_COLOUR if v.get("holdout") else COLOURS[index % len(COLOURS)],
                data_variant=v["variant"],
                data_holdout=bool(v.get("holdout")),
                data_value=v.get("conversionRate"),
                data_entered=v["entered"],
                data_conversions=v["conversions"],
            )
        )
        ci = v.get("conversionRateCi")
        if ci:
            out.append(
                el(
                    "line",
                    class_="ci",
                    data_variant=v["variant"],
                    data_low=ci[0],
                    data_high=ci[1],
                    x1=f"{LABEL + span * ci[0] / top:.2f}",
                    x2=f"{LABEL + span * ci[1] / top:.2f}",
                    y1=y + BAR / 2,
                    y2=y + BAR / 2,
                    stroke="#1d2731",
                    stroke_width=1.5,
                )
            )
        text = f"{_pct(v.get('conversionRate'))} ({_n(v['conversions'])})"
        out.append(_value(LABEL + span + 12, y, text))
    return _bars_svg("variants", len(variants), "Conversion rate per variant, 95% intervals", out)


def conversions_chart(version: Mapping[str, Any]) -> str:
    """Conversions per day (bars) and entries per day (dots on a line)."""
    days = list(version.get("daily") or [])
    if not days:
        return _empty("conversions", "Nothing happened in this range.")
    height, left, bottom, pad = 220, 46, 30, 14
    plot_w, plot_h = WIDTH - left - 16, height - bottom - pad
    top = max([max(int(d["conversions"]), int(d["entered"])) for d in days] + [1])
    step = plot_w / len(days)
    bar_w = max(2.0, min(28.0, step * 0.6))
    base = pad + plot_h
    out = [
        el("line", x1=left, y1=base, x2=WIDTH - 16, y2=base, stroke="#c7d0d8"),
        el("text", _n(top), x=left - 6, y=pad + 4, text_anchor="end", class_="muted"),
        el("text", "0", x=left - 6, y=base, text_anchor="end", class_="muted"),
    ]
    points: list[str] = []
    marks: list[str] = []
    for index, d in enumerate(days):
        cx = left + step * index + step / 2
        tall = plot_h * int(d["conversions"]) / top
        marks.append(
            el(
                "rect",
                class_="bar",
                data_date=d["date"],
                data_metric="conversions",
                data_value=d["conversions"],
                x=f"{cx - bar_w / 2:.2f}",
                y=f"{base - tall:.2f}",
                width=f"{bar_w:.2f}",
                height=f"{tall:.2f}",
                fill=CONVERTED_COLOUR,
            )
        )
        ey = base - plot_h * int(d["entered"]) / top
        points.append(f"{cx:.2f},{ey:.2f}")
        marks.append(
            el(
                "circle",
                class_="dot",
                data_date=d["date"],
                data_metric="entered",
                data_value=d["entered"],
                cx=f"{cx:.2f}",
                cy=f"{ey:.2f}",
                r=3,
                fill=COLOURS[0],
            )
        )
        if len(days) <= 14 or index in (0, len(days) - 1):
            marks.append(el("text", esc(d["date"][5:]), x=f"{cx:.2f}", y=height - 10, text_anchor="middle"))
    out.append(el("polyline", points=" ".join(points), fill="none", stroke=COLOURS[0], stroke_width=1.5))
    return _svg("conversions", height, "Per day: conversions (bars) and entries (line)", out + marks)


def attribution_chart(attribution: Mapping[str, Any] | None) -> str:
    """Credit per channel under each model, as stacked bars."""
    if not attribution or not attribution.get("attributed"):
        return _empty("attribution", "No attributed conversion in this range.")
    models = attribution["models"]
    channels = sorted({c for m in models.values() for c in m["channel"]})
    total = max(float(attribution["attributed"]), 1.0)
    span = WIDTH - LABEL - 40
    out: list[str] = []
    for index, (model, label) in enumerate(MODELS.items()):
        y = _row_y(index)
        out.append(_label(y, label))
        x = float(LABEL)
        for c_index, channel in enumerate(channels):
            value = float(models[model]["channel"].get(channel, 0.0))
            width = span * value / total
            out.append(
                el(
                    "rect",
                    class_="bar",
                    data_model=model,
                    data_channel=channel,
                    data_value=value,
                    x=f"{x:.2f}",
                    y=y,
                    width=f"{width:.2f}",
                    height=BAR,
                    fill=COLOURS[c_index % len(COLOURS)],
                )
            )
            x += width
    legend_y = _row_y(len(MODELS)) + 4
    for c_index, channel in enumerate(channels):
        lx = LABEL + c_index * 120
        out.append(el("rect", x=lx, y=legend_y, width=12, height=12, fill=COLOURS[c_index % len(COLOURS)]))
        out.append(el("text", esc(channel), x=lx + 18, y=legend_y + 11))
    return _svg("attribution", legend_y + 24, "Conversions credited per channel by model", out)


# ---------------------------------------------------------------------------------------------- text
def _comparison(c: Mapping[str, Any]) -> tuple[str, str]:
    lift = c["lift"]
    ci = lift["absoluteCi"]
    text = (
        f"{esc(c['variant'])} vs {esc(c['against'])}: {lift['absolute'] * 100:+.1f} points "
        f"(95% CI {ci[0] * 100:+.1f} to {ci[1] * 100:+.1f})"
    )
    if lift.get("relative") is not None:
        text += f", {lift['relative'] * 100:+.0f}% relative"
    text += f", p = {c['pValue']:.3g}"
    if c["significant"]:
        return "win", text + ": significant."
    more = c.get("additionalSampleNeeded")
    need = (
        f"about {more['total']:,} more contacts needed at these rates" if more else "no difference observed"
    )
    return "wait", f"{text}: not significant yet, {need}."


def verdicts_html(version: Mapping[str, Any]) -> str:
    parts: list[str] = []
    for split in version.get("splits") or []:
        where = f"split {el('b', esc(split.get('stepId') or 'variants'))}"
        if split.get("winner"):
            winner = f"{where}: {el('b', esc(split['winner']))} wins (significant at 95%)."
            parts.append(el("p", winner, class_="verdict win", data_winner=split["winner"]))
        for c in split.get("comparisons") or []:
            if c.get("lift") is None:
                parts.append(
                    el("p", f"{where}: {esc(c['variant'])} has no contacts yet.", class_="verdict none")
                )
                continue
            kind, text = _comparison(c)
            parts.append(el("p", text, class_=f"verdict {kind}", data_variant=c["variant"]))
    holdout = version.get("holdout")
    if holdout and holdout.get("lift"):
        treated, held = _pct(holdout["treatedConversionRate"]), _pct(holdout["conversionRate"])
        text = (
            f"Holdout: treated contacts convert at {treated}, held-out ones at {held} "
            f"({holdout['lift']['absolute'] * 100:+.1f} points, p = {holdout['pValue']:.3g})."
        )
        parts.append(el("p", text, class_="verdict " + ("win" if holdout["significant"] else "wait")))
    return "".join(parts) or el("p", "No split in this version.", class_="sub")


STEP_COLUMNS = ("entered", "completed", "exited", "failed", "waiting")
MESSAGE_COLUMNS = MESSAGE_COUNTERS


def _step_table(version: Mapping[str, Any]) -> str:
    drop = (version.get("biggestDropOff") or {}).get("stepId")
    head = el("tr", "".join(el("th", c) for c in ("step", *STEP_COLUMNS)))
    rows = []
    for s in version["steps"]:
        row = el("td", esc(s["stepId"])) + "".join(el("td", _n(s.get(k))) for k in STEP_COLUMNS)
        rows.append(el("tr", row, class_="drop" if s["stepId"] == drop else None, data_step=s["stepId"]))
    return el("div", el("table", head + "".join(rows)), class_="scroll")


def _message_table(version: Mapping[str, Any]) -> str:
    senders = [s for s in version["steps"] if s.get("messages")]
    if not senders:
        return ""
    head = el("tr", "".join(el("th", c) for c in ("message step", *MESSAGE_COLUMNS, "skipped")))
    rows = []
    for s in senders:
        m = s["messages"]
        skipped = m.get("skipped") or {}
        reasons = "; ".join(f"{reason}: {n}" for reason, n in skipped.items())
        cells = [el("td", _n(m.get(k))) for k in MESSAGE_COLUMNS]
        cells.append(el("td", _n(sum(skipped.values())), title=reasons or None))
        rows.append(el("tr", el("td", esc(s["stepId"])) + "".join(cells), data_step=s["stepId"]))
    return el("h2", "Messages") + el("div", el("table", head + "".join(rows)), class_="scroll")


def _attribution_table(attribution: Mapping[str, Any] | None) -> str:
    if not attribution or not attribution.get("attributed"):
        return ""
    rows = [el("tr", "".join(el("th", c) for c in ("credited to", *MODELS.values())))]
    for dim in ("channel", "workflow", "template"):
        for key in sorted({k for m in attribution["models"].values() for k in m[dim]}):
            cells = [attribution["models"][m][dim].get(key, 0.0) for m in MODELS]
            rows.append(
                el("tr", el("td", esc(f"{dim}: {key}")) + "".join(el("td", f"{c:.2f}") for c in cells))
            )
    return el("table", "".join(rows))


def _version_page(v: Mapping[str, Any], attribution: Mapping[str, Any] | None) -> str:
    drop = v.get("biggestDropOff")
    cards = [
        ("entered", _n(v["entered"])),
        ("conversions", _n(v["conversions"])),
        ("conversion rate", _pct(v.get("conversionRate"))),
        ("median time to convert", duration(v.get("medianTimeToConvertSeconds"))),
        ("still in the journey", _n(v.get("waiting"))),
        ("biggest drop-off", drop["stepId"] if drop else NONE),
    ]
    card_html = "".join(
        el("div", el("b", esc(value)) + el("span", esc(name)), class_="card", data_card=name)
        for name, value in cards
    )
    return (
        el("div", card_html, class_="cards")
        + el("section", el("h2", "Funnel") + funnel_chart(v) + _step_table(v) + _message_table(v))
        + el("section", el("h2", "Variants") + variants_chart(v) + verdicts_html(v))
        + el("section", el("h2", "Conversions over time") + conversions_chart(v))
        + el(
            "section",
            el("h2", "Attribution") + attribution_chart(attribution) + _attribution_table(attribution),
        )
    )


def _other_versions(versions: list[Mapping[str, Any]]) -> str:
    if not versions:
        return ""
    head = el("tr", "".join(el("th", c) for c in ("version", "entered", "conversions", "rate")))
    rows = [
        el(
            "tr",
            el("td", esc(o["version"]))
            + el("td", _n(o["entered"]))
            + el("td", _n(o["conversions"]))
            + el("td", _pct(o.get("conversionRate"))),
        )
        for o in versions
    ]
    return el("section", el("h2", "Other versions") + el("table", head + "".join(rows)))


def render_html(
    stats: Mapping[str, Any],
    attribution: Mapping[str, Any] | None = None,
    *,
    source: str = "",
    generated_at: datetime | None = None,
) -> str:
    """The page for the first version in `stats` (the current one unless a version was asked for)."""
    workflow = str(stats["workflowId"])
    versions = list(stats.get("versions") or [])
    when = (generated_at or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    window = f"{stats.get('from') or 'the beginning'} to {stats.get('to') or 'now'}"
    subtitle = window
    if versions:
        current = " (current)" if versions[0].get("current") else ""
        subtitle = f"version {versions[0]['version']}{current} · {window}"
        body = _version_page(versions[0], attribution) + _other_versions(versions[1:])
    else:
        body = el("p", "No statistics yet.", class_="sub")
    origin = f" from {esc(source)}" if source else ""
    footer = (
        f"Cairn report generated {esc(when)}{origin}. Significance: two-sided two-proportion z-test at 95%; "
        "intervals: Wilson (rates), Wald (difference), Katz (relative lift)."
    )
    head = (
        '<meta charset="utf-8">'
        + el("meta", name="viewport", content="width=device-width, initial-scale=1")
        + el("title", esc(f"{workflow} - Cairn report"))
        + el("style", CSS)
    )
    main = el("h1", esc(workflow)) + el("p", esc(subtitle), class_="sub") + body + el("footer", footer)
    return (
        "<!doctype html>"
        + el("html", el("head", head) + el("body", el("main", main, data_workflow=workflow)), lang="en")
        + "\n"
    )
