"""The `cairn` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Cairn: marketing automation in your own AWS account.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys: create, list and revoke.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

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
        f"ok: {len(project.site.workflows)} workflow(s), {len(project.site.templates.email)} email and "
        f"{len(project.site.templates.sms)} SMS template(s)"
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


@app.command()
def demo(root: Root = Path(".")) -> None:
    """Play the canonical journeys on synthetic contacts in local mode and print what each one received."""
    from cairn.cli.demo import run

    sys.exit(run(root))


@keys_app.command("create")
def keys_create(
    kind: Annotated[str, typer.Option(help="write (browser-safe: track, identify, batch) or secret")],
    stack: Annotated[str | None, typer.Option(help="the deployed stack (its KeysTable output)")] = None,
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
) -> None:
    """Create an API key in a deployed stack and print it once (only its hash is stored)."""
    from cairn.domain.keys import KeyKind

    if kind not in ("write", "secret"):
        _fail("--kind must be write or secret")
    _use_stack_tables(stack)
    from cairn.adapters.keys import KeyStore

    typer.echo(KeyStore.create(KeyKind(kind), name))


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="the key, or its sha256 hash")],
    stack: Annotated[str | None, typer.Option(help="the deployed stack")] = None,
) -> None:
    """Revoke a key; running functions stop accepting it within a minute."""
    _use_stack_tables(stack)
    from cairn.adapters.keys import KeyStore

    if not KeyStore.revoke(key):
        _fail("no such key")
    typer.echo("revoked")


def _use_stack_tables(stack: str | None) -> None:
    """Point the table models at a deployed stack's tables (from its outputs) before they are imported."""
    if "cairn.adapters.tables" in sys.modules:
        return
    if stack is None:
        if "KEYS_TABLE" not in os.environ:
            _fail("name the deployed stack with --stack (or set KEYS_TABLE)")
        return
    from cairn.adapters.aws import client

    try:
        outputs = client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    except Exception as exc:
        _fail(f"cannot read stack {stack}: {exc}")
    by_key = {o["OutputKey"]: o["OutputValue"] for o in outputs}
    for env, output in (("KEYS_TABLE", "KeysTableName"), ("CONTACTS_TABLE", "ContactsTableName")):
        if output in by_key:
            os.environ[env] = by_key[output]


def main() -> None:
    app()
