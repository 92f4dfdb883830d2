"""`cairn graph <workflow>`: print a workflow as a Mermaid flowchart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def graph(
    workflow: Annotated[str, typer.Argument(help="the workflow id (workflows/<id>.yaml)")],
    root: Annotated[Path, typer.Option("--root", help="the project folder", file_okay=False)] = Path("."),
) -> None:
    """Print the journey as Mermaid text (trigger, steps, branches with their conditions, ends)."""
    from cairn.domain.graph import mermaid
    from cairn.project import load_project

    project = load_project(root)
    wf = project.site.workflows.get(workflow)
    if wf is None:
        problems = [p for p in project.problems if p.file.endswith(f"{workflow}.yaml")]
        for problem in problems:
            typer.echo(str(problem), err=True)
        known = ", ".join(sorted(project.site.workflows)) or "none"
        reason = "it has problems" if problems else f"no such workflow (known: {known})"
        typer.echo(f"cairn: cannot draw {workflow}: {reason}", err=True)
        raise typer.Exit(1)
    typer.echo(mermaid(wf), nl=False)


def register(app: typer.Typer) -> None:
    app.command(name="graph")(graph)
