"""`cairn graph`: a workflow as a Mermaid flowchart."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tests.conftest import ROOT
from typer.testing import CliRunner

from cairn.cli.main import app
from cairn.domain.graph import mermaid
from cairn.project import load_project

PROJECT = load_project(ROOT)
NODE = re.compile(r"^\s+([A-Za-z0-9_]+)[\[\(\{]")
EDGE = re.compile(r"^\s+([A-Za-z0-9_]+) -->(?:\|\"[^\"]*\"\|)? ([A-Za-z0-9_]+)$")


@pytest.mark.parametrize("workflow_id", sorted(PROJECT.site.workflows))
def test_every_edge_joins_declared_nodes_and_every_node_is_reached(workflow_id: str) -> None:
    text = mermaid(PROJECT.site.workflows[workflow_id])
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    nodes = {m.group(1) for line in lines if (m := NODE.match(line))}
    edges = [(m.group(1), m.group(2)) for line in lines if (m := EDGE.match(line))]
    assert edges
    for a, b in edges:
        assert a in nodes and b in nodes, (a, b)
    reached = {"trigger"}
    for _ in range(len(edges)):
        reached |= {b for a, b in edges if a in reached}
    assert nodes - reached <= {"converted", "leave", "exited", "done"}


def test_the_abandoned_cart_reads_as_its_journey() -> None:
    text = mermaid(PROJECT.site.workflows["abandoned-cart"])
    assert "event cart_abandoned where {property: cart_value, gte: 20}" in text
    assert '|"A 45%"|' in text and '|"holdout 10%"| done' in text
    assert '|"no email_clicked in 1d"|' in text
    assert "Converted — goal: order_completed within 7d" in text


def test_the_command_prints_it_and_fails_with_a_reason_on_an_unknown_workflow(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["graph", "lead-nurture", "--root", str(ROOT)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("flowchart TD")
    assert "task for sales: Call this high-value lead" in result.output
    missing = runner.invoke(app, ["graph", "nope", "--root", str(ROOT)])
    assert missing.exit_code == 1
    assert "no such workflow" in missing.output
