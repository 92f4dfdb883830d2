"""`cairn report --stack NAME`: the API's address comes from the deployed stack's `ApiUrl` output
(CloudFormation DescribeStacks); here the stack lives in moto and its output points at local mode's HTTP
server, so the command runs its real path end to end: the stack's output, the HTTP API, the tables, the
page. And `make demo` ends with such a report."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from tests.e2e.conftest import START
from typer.testing import CliRunner

from cairn.cli.main import app
from cairn.local.runtime import LocalCairn
from cairn.services.stats import Recorder

pytestmark = pytest.mark.e2e

WF = "welcome-series"
STACK = "cairn-report-test"


def deploy(name: str, outputs: dict[str, str]) -> None:
    """A stack with the given outputs, as `sam deploy` leaves Cairn's (one resource: a template needs one)."""
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    boto3.client("cloudformation").create_stack(StackName=name, TemplateBody=json.dumps(template))


def test_report_finds_the_api_through_the_stacks_outputs(
    local: LocalCairn, base_url: str, tmp_path: Path
) -> None:
    version = "v-report-stack"
    recorder = Recorder()
    for _ in range(4):
        recorder.record_entered(WF, version, None, START)
    recorder.record_conversion(WF, version, None, START, START, cid="c-report-stack")
    api_url = f"{base_url}/"  # API Gateway's URL, as a stack output might carry it
    deploy(STACK, {"ApiUrl": api_url, "PublicBaseUrl": api_url})

    out = tmp_path / "stack.html"
    args = ["report", WF, "--stack", STACK, "--key", str(local.secret_key), "--version", version]
    args += ["--html", str(out)]
    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    assert WF in result.output and "25.0%" in result.output  # 1 conversion of 4 entered
    assert api_url.rstrip("/") in out.read_text(encoding="utf-8")  # the page names where it read from
    assert 'data-chart="funnel"' in out.read_text(encoding="utf-8")


def test_report_says_why_when_the_stack_has_no_api(local: LocalCairn) -> None:
    deploy("cairn-half-deployed", {"Other": "x"})
    key = str(local.secret_key)

    without = CliRunner().invoke(app, ["report", WF, "--stack", "cairn-half-deployed", "--key", key])
    assert without.exit_code == 1
    assert without.output.strip() == "cairn: stack cairn-half-deployed has no ApiUrl output"

    missing = CliRunner().invoke(app, ["report", WF, "--stack", "no-such-stack", "--key", key])
    assert missing.exit_code == 1 and "cannot read stack no-such-stack" in missing.output
    assert len(missing.output.strip().splitlines()) == 1

    both = CliRunner().invoke(app, ["report", WF, "--stack", STACK, "--api", "http://x", "--key", key])
    assert both.exit_code == 1 and "give --api or --stack, not both" in both.output


def test_the_demo_ends_with_the_report_and_names_its_page(local: LocalCairn, tmp_path: Path) -> None:
    """`make demo`'s last word (cairn.cli.demo.run calls these two on its own local mode)."""
    from rich.console import Console

    from cairn.cli import demo

    recorder = Recorder()
    for _ in range(3):
        recorder.record_entered(demo.REPORTED, "v-demo", None, START)
    recorder.record_assigned(demo.REPORTED, "v-demo", "offer", "B", START)
    console = Console(record=True, width=160)
    page = tmp_path / "artifacts" / "demo.html"

    assert demo.measurement(console, demo._report(local), page) is True

    shown = console.export_text()
    assert f"cairn report {demo.REPORTED}" in shown and "Funnel (step order)" in shown
    assert str(page) in shown.replace("\n", "")
    assert 'data-chart="funnel"' in page.read_text(encoding="utf-8")

    refused = Console(record=True, width=160)
    assert demo.measurement(refused, ValueError("no such workflow"), tmp_path / "x.html") is False
    assert "could not be read" in refused.export_text()
    assert not (tmp_path / "x.html").exists()
