"""`cairn keys create|list|revoke|identity-secret`: API keys of a deployed stack (stored hashed)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

keys_app = typer.Typer(help="API keys: create, list and revoke.", no_args_is_help=True)
Stack = Annotated[str | None, typer.Option(help="the deployed stack (its KeysTable output)")]


def _fail(message: str) -> None:
    typer.echo(f"cairn: {message}", err=True)
    raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    kind: Annotated[str, typer.Option(help="write (browser-safe: track, identify, batch) or secret")],
    stack: Stack = None,
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from cairn.domain.keys import KeyKind

    if kind not in ("write", "secret"):
        _fail("--kind must be write or secret")
    _use_stack_tables(stack)
    from cairn.adapters.keys import KeyStore

    typer.echo(KeyStore.create(KeyKind(kind), name))


@keys_app.command("list")
def keys_list(stack: Stack = None) -> None:
    """List the keys: a prefix of each hash (what `revoke` takes), kind, name, created, revoked."""
    _use_stack_tables(stack)
    from cairn.adapters.keys import KeyStore

    keys = KeyStore.list()
    if not keys:
        typer.echo("no keys")
        return
    for key in keys:
        created = key.created_at.strftime("%Y-%m-%d %H:%M") if key.created_at else "-"
        state = "revoked" if key.revoked else "active"
        typer.echo(f"{key.key_hash[:12]}  {key.kind:6}  {state:7}  {created:16}  {key.name}")


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[
        str, typer.Argument(help="the key, its sha256 hash, or the hash prefix `keys list` shows")
    ],
    stack: Stack = None,
) -> None:
    """Revoke a key; running functions stop accepting it within a minute."""
    _use_stack_tables(stack)
    from cairn.adapters.keys import KeyStore

    if not KeyStore.revoke(key):
        _fail("no such key (or the prefix matches several)")
    typer.echo("revoked")


@keys_app.command("identity-secret")
def keys_identity_secret(
    stack: Annotated[str, typer.Option(help="the deployed stack (its HmacSecret)")],
) -> None:
    """Print the secret your back end signs user ids with (userIdHash = hex HMAC-SHA256 of the userId)."""
    from cairn.adapters.aws import client
    from cairn.domain.identity import identity_secret

    try:
        resources = client("cloudformation").describe_stack_resource(
            StackName=stack, LogicalResourceId="HmacSecret"
        )
        arn = resources["StackResourceDetail"]["PhysicalResourceId"]
        secret = client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    except Exception as exc:
        _fail(f"cannot read the stack's secret: {exc}")
    typer.echo(identity_secret(str(secret).encode()).hex())


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
