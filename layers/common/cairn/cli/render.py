"""`cairn render <template> --contact <file|userId>`: preview a message as a contact would get it."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from cairn.domain.rendering import RenderedEmail, RenderedSms
    from cairn.domain.settings import Settings

PREVIEW_BASE_URL = "https://links.example"
Root = Annotated[Path, typer.Option("--root", help="the project folder", file_okay=False)]


class PreviewError(Exception):
    """A one-line reason the preview cannot be made."""


@dataclass
class Preview:
    channel: str
    email: RenderedEmail | None = None
    sms: RenderedSms | None = None


def _json_object(path: Path, the: str, a: str) -> dict[str, Any]:
    """The JSON object in the file; `the`, `a`: what it holds, for the errors ("the contact", "a contact")."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PreviewError(f"cannot read {the} {path}: {exc}") from None
    if not isinstance(data, dict):
        raise PreviewError(f"{path}: {a} is a JSON object")
    return data


def contact_from_file(path: Path) -> dict[str, Any]:
    """A contact as JSON: its attributes (traits) as a flat object, or the shape of
    `GET /v1/contacts/{userId}` (`{"userId", "attributes": {...}}`)."""
    data = _json_object(path, "the contact", "a contact")
    attributes: dict[str, Any] = data
    for key in ("attributes", "traits"):
        if isinstance(data.get(key), dict):
            attributes = data[key]
            break
    out = dict(attributes)
    if isinstance(data.get("userId"), str):
        out.setdefault("userId", data["userId"])
    return out


def event_from_file(path: Path | None) -> dict[str, Any]:
    """The trigger event as a track call (`{"event", "properties", "timestamp"?, "messageId"?}`)."""
    if path is None:
        return {"properties": {}}
    data = _json_object(path, "the event", "an event")
    return {
        "event": data.get("event"),
        "messageId": data.get("messageId", "preview"),
        "timestamp": data.get("timestamp"),
        "properties": data.get("properties") if isinstance(data.get("properties"), dict) else {},
    }


def preview_context(
    settings: Settings,
    attributes: dict[str, Any],
    *,
    event: dict[str, Any] | None = None,
    now: datetime | None = None,
    base_url: str = PREVIEW_BASE_URL,
) -> dict[str, Any]:
    """The context a send would build, with placeholder links."""
    base = base_url.rstrip("/")
    return {
        **attributes,
        "contact": attributes,
        "event": event or {"properties": {}},
        "workflow": {"id": "preview", "stepId": "preview", "version": "preview", "run": 1},
        "unsubscribe_url": f"{base}/v1/unsubscribe?token=preview",
        "confirm_url": f"{base}/v1/confirm?token=preview",
        "postal_address": settings.postal_address or "(postal_address from settings.yaml)",
        "public_url": base,
        "timezone": attributes.get("timezone") or settings.timezone,
        "now": now or datetime.now(UTC),
    }


def render(
    root: Path, template: str, attributes: dict[str, Any], *, channel: str | None, event: dict[str, Any]
) -> Preview:
    from cairn.domain.rendering import Renderer, TemplateRenderError
    from cairn.project import load_project

    project = load_project(root)
    templates = project.site.templates
    settings = project.site.settings
    in_email, in_sms = template in templates.email, template in templates.sms
    if channel is None:
        if in_email and in_sms:
            raise PreviewError(f"{template!r} is both an email and an SMS template: pick one with --channel")
        channel = "email" if in_email else "sms" if in_sms else None
    if channel is None or (channel == "email" and not in_email) or (channel == "sms" and not in_sms):
        known = ", ".join(sorted({*templates.email, *templates.sms})) or "none"
        raise PreviewError(f"no {channel or 'email or SMS'} template {template!r} (templates: {known})")
    renderer = Renderer(templates, timezone_fallback=settings.timezone)
    context = preview_context(settings, attributes, event=event)
    try:
        if channel == "email":
            return Preview("email", email=renderer.render_email(template, context))
        return Preview("sms", sms=renderer.render_sms(template, context))
    except TemplateRenderError as exc:
        raise PreviewError(str(exc)) from None


def contact_from_stack(stack: str, user_id: str) -> dict[str, Any]:
    """A contact of a deployed stack, read from its tables (needs AWS credentials)."""
    from cairn.adapters.aws import client

    try:
        described = client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    except Exception as exc:
        raise PreviewError(f"cannot read stack {stack}: {exc}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    if "ContactsTableName" not in outputs or "SecretArn" not in outputs:
        raise PreviewError(f"stack {stack} has no ContactsTableName/SecretArn outputs: is it a Cairn stack?")
    from cairn.adapters.secrets import stack_secret
    from cairn.adapters.tables import ContactItem
    from cairn.domain.identity import cid_for_user

    ContactItem.Meta.table_name = outputs["ContactsTableName"]
    ContactItem._connection = None
    from cairn.adapters.contacts import ContactStore
    from cairn.services.views import attributes_of

    profile = ContactStore().get(cid_for_user(stack_secret(outputs["SecretArn"]), user_id))
    if profile is None:
        raise PreviewError(f"no contact with that userId in stack {stack}")
    return attributes_of(profile)


def show(preview: Preview, html_out: Path | None) -> None:
    if preview.sms is not None:
        sms = preview.sms
        typer.echo(f"SMS ({sms.kind}, {len(sms.body)} characters, {sms.segments} part(s)):")
        typer.echo(sms.body)
        return
    assert preview.email is not None
    email = preview.email
    typer.echo(f"Subject:   {email.subject}")
    typer.echo(f"Preheader: {email.preheader}")
    typer.echo(f"Kind:      {email.kind}")
    typer.echo("")
    typer.echo(email.text)
    if html_out is not None:
        html_out.write_text(email.html, encoding="utf-8")
        typer.echo(f"(HTML written to {html_out})")
    else:
        typer.echo(f"(HTML: {len(email.html)} characters; --html FILE writes it)")


def register(app: typer.Typer) -> None:
    @app.command(name="render")
    def render_command(
        template: Annotated[
            str, typer.Argument(help="the template name (templates/<name>.email.yaml, .sms.txt)")
        ],
        *,
        contact: Annotated[
            str, typer.Option(help="a JSON file of the contact's attributes, or a userId (with --stack)")
        ],
        root: Root = Path("."),
        channel: Annotated[str | None, typer.Option(help="email or sms, when a name has both")] = None,
        event: Annotated[
            Path | None, typer.Option(help="a JSON file of the trigger event (a track call)")
        ] = None,
        stack: Annotated[str | None, typer.Option(help="read the userId's contact from this stack")] = None,
        html: Annotated[Path | None, typer.Option(help="write the email's HTML to this file")] = None,
    ) -> None:
        """Preview a template rendered for one contact: subject, preheader, text (and HTML), or the SMS."""
        try:
            if channel not in (None, "email", "sms"):
                raise PreviewError("--channel must be email or sms")
            path = Path(contact)
            if path.exists():
                attributes = contact_from_file(path)
            elif stack is not None:
                attributes = contact_from_stack(stack, contact)
            else:
                raise PreviewError(f"{contact} is not a file; to read a contact by userId, name the --stack")
            preview = render(root, template, attributes, channel=channel, event=event_from_file(event))
        except PreviewError as exc:
            typer.echo(f"cairn: {exc}", err=True)
            sys.exit(1)
        show(preview, html)
