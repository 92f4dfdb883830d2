"""Double opt-in (public): `GET /v1/confirm?token=...` completes a pending email subscription."""

from __future__ import annotations

import html
from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.params import Query

from cairn.api.auth import Auth
from cairn.api.pages import HTML_CONTENT, html_page
from cairn.domain.errors import CairnError
from cairn.domain.tokens import LINK_BASE_URL
from cairn.services.intake import Intake

Token = Annotated[str, Query(min_length=1, max_length=4096, description="the signed token from the email")]


def page(title: str, body: str, status: int = 200) -> Response[str]:
    return html_page(title, f"<p>{html.escape(body)}</p>", status)


def register(app: APIGatewayHttpResolver, auth: Auth, intake: Intake) -> None:
    def remember_base_url(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[str]:
        """Links in a confirmation sent while serving this request point back at this API."""
        domain = app.current_event.request_context.domain_name
        scheme = "http" if domain.startswith(("127.0.0.1", "localhost")) else "https"
        token = LINK_BASE_URL.set(f"{scheme}://{domain}" if domain else None)
        try:
            return next_middleware(app)
        finally:
            LINK_BASE_URL.reset(token)

    app.use(middlewares=[remember_base_url])

    @app.get(
        "/v1/confirm",
        responses={
            200: {"description": "subscribed", "content": HTML_CONTENT},
            400: {"description": "not a confirmation link", "content": HTML_CONTENT},
            403: {"description": "a forged, tampered or expired link", "content": HTML_CONTENT},
            404: {"description": "the contact was erased", "content": HTML_CONTENT},
            409: {"description": "no longer waiting for confirmation", "content": HTML_CONTENT},
        },
        tags=["consent"],
        summary="Confirm an email subscription (double opt-in): the link of the confirmation email",
    )
    def confirm(token: Token) -> Response[str]:
        from cairn.services.send import Confirmations  # rendering and SES: not on the intake path

        try:
            Confirmations(intake.rt).confirm(token)
        except CairnError as exc:
            return page("This link does not work", exc.message, exc.status)
        return page("You are subscribed", "Thank you for confirming. You will hear from us soon.")
