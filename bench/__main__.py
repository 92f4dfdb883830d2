"""`make bench`: every figure as a ratio or a count measured in this one run."""

from __future__ import annotations

import warnings

from rich.console import Console
from rich.table import Table

from bench.calls import calls_per_track
from bench.coldstart import cold_import
from bench.handler_cpu import rows as trigger_rows
from bench.render import rows as sending_rows
from bench.rules import rows as rule_rows
from bench.segments import rows as segment_rows
from bench.transitions import rows as transition_rows


def main() -> None:
    warnings.filterwarnings("ignore")
    console = Console(width=110)
    table = Table(title="Cairn benchmarks (one run; ratios, not seconds, are the figures)")
    table.add_column("benchmark")
    table.add_column("figure", justify="right")
    table.add_column("goal", justify="right")
    table.add_column("detail")

    calls = calls_per_track()
    detail = ", ".join(f"{k[6:-1]} {v:g}" for k, v in calls.items() if k.startswith("calls["))
    table.add_row(
        "AWS API calls per track (key cache warm)",
        f"{calls['per_track']:.2f}",
        "1",
        f"{calls['requests']} requests: {detail}",
    )
    cold = cold_import()
    table.add_row(
        "trigger cold import / `import boto3`",
        f"{cold['ratio']:.2f}x",
        "",
        f"median of {cold['rounds']} fresh processes each: trigger {cold['trigger_s'] * 1000:.0f} ms, "
        f"boto3 {cold['boto3_s'] * 1000:.0f} ms",
    )
    for row in trigger_rows():  # calls per 500-item batch; trigger CPU per track (bench/handler_cpu.py)
        table.add_row(*row)
    for row in sending_rows():  # render cost vs bare Jinja2; AWS calls per message sent (bench/render.py)
        table.add_row(*row)
    for row in rule_rows():  # compiled rules vs the tree walk (bench/rules.py)
        table.add_row(*row)
    for row in segment_rows():  # work per change, builds, the 1M-contact model (bench/segments.py)
        table.add_row(*row)
    for row in transition_rows():  # Step Functions transitions per message and journey (bench/transitions.py)
        table.add_row(*row)
    console.print(table)


if __name__ == "__main__":
    main()
