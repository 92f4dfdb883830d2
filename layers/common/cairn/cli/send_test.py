"""`cairn send-test <template> --to <seed address> [--stack NAME]`: one real message to a test inbox."""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from cairn.cli.render import PreviewError, Root, contact_from_file, event_from_file, render

TEST_PREFIX = "[TEST] "


@dataclass(frozen=True)
class Target:
    """Where a test goes out from: the stack's sender, configuration set and public URL."""

    sender_name: str
    sender_email: str
    configuration_set: str = ""
    base_url: str = "https://links.example"


def stack_target(stack: str, sender_name: str) -> Target:
    from cairn.adapters.aws import client

    try:
        described = client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    except Exception as exc:
        raise PreviewError(f"cannot read stack {stack}: {exc}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    params = {p["ParameterKey"]: p.get("ParameterValue", "") for p in described.get("Parameters", [])}
    if "SenderEmail" not in params or "ConfigurationSetName" not in outputs:
        raise PreviewError(f"stack {stack} has no SenderEmail parameter: is it a Cairn stack?")
    return Target(
        sender_name=sender_name,
        sender_email=params["SenderEmail"],
        configuration_set=outputs["ConfigurationSetName"],
        base_url=outputs.get("PublicBaseUrl", "https://links.example"),
    )


def build_test_email(
    root: Path, template: str, *, to: str, attributes: dict[str, Any], event: dict[str, Any], target: Target
) -> tuple[str, bytes]:
    """(message id, raw MIME) of a test email: the template rendered for `attributes`, subject marked."""
    from cairn.domain import mime

    preview = render(root, template, {"email": to, **attributes}, channel="email", event=event)
    assert preview.email is not None
    rendered = preview.email
    rendered.subject = TEST_PREFIX + rendered.subject
    message_id = f"test-{uuid.uuid4().hex}"
    domain = target.sender_email.rsplit("@", 1)[-1]
    raw = mime.build_email(
        sender=f"{target.sender_name} <{target.sender_email}>",
        recipient=to,
        rendered=rendered,
        message_id=message_id,
        # A test link: it leads to Cairn's "not a valid link" page and unsubscribes nobody.
        unsubscribe_url=f"{target.base_url.rstrip('/')}/v1/unsubscribe?token=send-test"
        if rendered.kind == "marketing"
        else None,
        domain=domain,
        date=datetime.now(UTC),
    )
    return message_id, raw


def register(app: typer.Typer) -> None:
    @app.command(name="send-test")
    def send_test(
        template: Annotated[str, typer.Argument(help="the template name")],
        *,
        to: Annotated[str, typer.Option(help="the seed address (an inbox or phone number of your own)")],
        stack: Annotated[str | None, typer.Option(help="the deployed stack that sends it")] = None,
        contact: Annotated[Path | None, typer.Option(help="a JSON file of attributes to render with")] = None,
        event: Annotated[Path | None, typer.Option(help="a JSON file of the trigger event")] = None,
        channel: Annotated[str | None, typer.Option(help="email or sms, when a name has both")] = None,
        root: Root = Path("."),
        dry_run: Annotated[bool, typer.Option(help="print the raw message instead of sending it")] = False,
    ) -> None:
        """Send one message from a template to a seed address through a deployed stack's SES or SNS
        (subject marked [TEST]; consent, caps and quiet hours do not apply: the address is yours)."""
        from cairn.project import load_settings

        try:
            attributes = contact_from_file(contact) if contact is not None else {"firstName": "Test"}
            trigger = event_from_file(event)
            settings = load_settings(root.resolve(), [])
            is_sms = to.startswith("+") if channel is None else channel == "sms"
            if stack is None and not dry_run:
                raise PreviewError("name the deployed stack that sends it with --stack (or use --dry-run)")
            if is_sms:
                preview = render(root, template, {"phone": to, **attributes}, channel="sms", event=trigger)
                assert preview.sms is not None
                if dry_run:
                    typer.echo(preview.sms.body)
                    return
                from cairn.adapters import messaging

                provider_id = messaging.send_sms(
                    preview.sms.body,
                    phone=to,
                    transactional=preview.sms.kind == "transactional",
                    sender_id=settings.sender.sms_id,
                )
                typer.echo(f"sent SMS ({preview.sms.segments} part(s)); SNS message id {provider_id}")
                return
            target = (
                stack_target(stack, settings.sender.name)
                if stack is not None
                else Target(
                    sender_name=settings.sender.name,
                    sender_email=settings.sender.email or "hello@example.com",
                )
            )
            message_id, raw = build_test_email(
                root, template, to=to, attributes=attributes, event=trigger, target=target
            )
            if dry_run:
                sys.stdout.write(raw.decode("utf-8"))
                return
            from cairn.adapters import messaging

            provider_id = messaging.send_email(
                raw,
                sender=target.sender_email,
                recipient=to,
                configuration_set=target.configuration_set,
                message_id=message_id,
            )
            typer.echo(f"sent {template!r} to the seed address; SES message id {provider_id}")
        except PreviewError as exc:
            typer.echo(f"cairn: {exc}", err=True)
            sys.exit(1)
        except Exception as exc:  # a provider's refusal, said in one line
            typer.echo(f"cairn: not sent: {exc}", err=True)
            sys.exit(1)
