"""The `cairn` command."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cairn.cli import keys, render, report, send_test

app = typer.Typer(help="Cairn: marketing automation in your own AWS account.", no_args_is_help=True)

Root = Annotated[Path, typer.Option("--root", help="the project folder", file_okay=False)]


def _fail(message: str) -> None:
    typer.echo(f"cairn: {message}", err=True)
    raise typer.Exit(1)


@app.command()
def validate(root: Root = Path(".")) -> None:
    """Check workflows/, segments/, templates/ and settings.yaml; report every problem."""
    from cairn.project import load_project

    project = load_project(root)
    for problem in project.problems:
        typer.echo(str(problem), err=True)
    if project.problems:
        _fail(f"{len(project.problems)} problem(s)")
    typer.echo(
        f"ok: {len(project.site.workflows)} workflow(s), {len(project.site.segments)} segment(s), "
        f"{len(project.site.templates.email)} email and {len(project.site.templates.sms)} SMS template(s)"
    )


@app.command(name="compile")
def compile_(
    root: Root = Path("."),
    check: Annotated[bool, typer.Option(help="only check that statemachines/ is up to date")] = False,
) -> None:
    """Compile workflows/ into statemachines/ (ASL, the nested template and the site bundle)."""
    from cairn.project import load_project, stale_outputs, write_outputs

    project = load_project(root)
    for problem in project.problems:
        typer.echo(str(problem), err=True)
    if project.problems:
        _fail(f"{len(project.problems)} problem(s); nothing written")
    if check:
        stale = stale_outputs(project)
        if stale:
            _fail("statemachines/ is out of date (run `cairn compile`): " + ", ".join(map(str, stale)))
        typer.echo("statemachines/ is up to date")
        return
    written = write_outputs(project)
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"compiled {len(project.asl)} workflow(s); {len(written)} file(s) changed")


@app.command()
def local(
    root: Root = Path("."),
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 3000,
    verbose: Annotated[bool, typer.Option(help="the functions' INFO logs")] = False,
) -> None:
    """Run the whole application locally on 127.0.0.1 (moto, the real handlers and ASL, a virtual clock)."""
    from cairn.local.runtime import LocalCairn, ProjectInvalid
    from cairn.local.server import serve

    runtime = LocalCairn(root, port=port, log_level="INFO" if verbose else "WARNING")
    try:
        runtime.start()
    except ProjectInvalid as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        _fail("the project has problems; fix them and start again")
    server = serve(runtime, port=port)
    typer.echo(f"Cairn local mode on http://127.0.0.1:{port}  (API docs: /docs)")
    typer.echo(f"  secret key: {runtime.secret_key}")
    typer.echo(f"  write key:  {runtime.write_key}")
    typer.echo('  virtual clock: POST /_local/clock/advance {"seconds": N}; outbox: GET /_local/outbox')
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        runtime.stop()


__import__("cairn.cli.graph", fromlist=["register"]).register(app)  # cairn graph <workflow>


@app.command()
def demo(root: Root = Path(".")) -> None:
    """Play the canonical journeys on synthetic contacts in local mode and print what each one received."""
    from cairn.cli.demo import run

    sys.exit(run(root))


keys.register(app)  # cairn keys create|list|revoke|identity-secret (cli/keys.py)
render.register(app)  # cairn render <template> --contact <file|userId> (cli/render.py)
send_test.register(app)  # cairn send-test <template> --to <seed address> (cli/send_test.py)
report.register(app)  # cairn report <workflow> [--html out.html] (cli/report.py)


def main() -> None:
    app()
