"""Unsubscribe links (public): GET shows a page with a button, POST is RFC 8058 one-click."""

from __future__ import annotations

import html
from typing import Annotated
from urllib.parse import parse_qs, quote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from cairn.api.auth import Auth
from cairn.api.gate import Access, decoded_body
from cairn.api.pages import HTML_CONTENT, html_page
from cairn.api.responses import errors
from cairn.domain.errors import MalformedRequest
from cairn.services.intake import Intake
from cairn.services.unsubscribe import Unsubscriber

Token = Annotated[str, Query(min_length=1, max_length=4096, description="the signed token from the link")]


def page(title: str, body_html: str) -> Response[str]:
    style = "button{font-size:1rem;padding:.6rem 1.2rem}"
    return html_page(title, body_html, style=style, csp="; form-action 'self'")


def one_click(event: dict[str, object]) -> bool:
    """RFC 8058: the POST carries List-Unsubscribe=One-Click, form-encoded or as multipart form data."""
    body = decoded_body(event)  # type: ignore[arg-type]
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}  # type: ignore[attr-defined]
    if headers.get("content-type", "").startswith("multipart/form-data"):
        return 'name="List-Unsubscribe"' in body and "One-Click" in body
    return "One-Click" in parse_qs(body, keep_blank_values=True).get("List-Unsubscribe", [])


def register(app: APIGatewayHttpResolver, auth: Auth, intake: Intake) -> None:
    auth.gate.declare("GET", "/v1/unsubscribe", Access.PUBLIC)
    auth.gate.declare("POST", "/v1/unsubscribe", Access.PUBLIC, max_body=4096)
    links = Unsubscriber(intake.rt)

    @app.get(
        "/v1/unsubscribe",
        responses={
            **errors(400),
            200: {"description": "a page with a button to confirm", "content": HTML_CONTENT},
        },
        tags=["unsubscribe"],
        summary="The page an unsubscribe link opens (nothing changes until its button is pressed)",
    )
    def unsubscribe_page(token: Token) -> Response[str]:
        links.verify(token)  # a bad link says so now, not after the click
        action = f"?token={quote(token, safe='')}"
        form = (
            f'<p>Stop receiving these emails?</p><form method="post" action="{html.escape(action)}">'
            '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
            "<button type=submit>Unsubscribe</button></form>"
        )
        return page("Unsubscribe", form)

    @app.post(
        "/v1/unsubscribe",
        responses={**errors(400), 200: {"description": "unsubscribed", "content": HTML_CONTENT}},
        tags=["unsubscribe"],
        summary="One-click unsubscribe (RFC 8058): form-encoded List-Unsubscribe=One-Click",
    )
    def unsubscribe(token: Token) -> Response[str]:
        if not one_click(app.current_event.raw_event):
            raise MalformedRequest("send the form field List-Unsubscribe=One-Click")
        links.unsubscribe(token, source="unsubscribe-link")
        return page("You are unsubscribed", "<p>You will not receive these emails any more.</p>")
