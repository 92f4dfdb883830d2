"""Contact routes (secret keys): read a contact, set a channel's subscription."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Path

from cairn.api.auth import Auth
from cairn.api.models import ContactOut, SubscriptionIn
from cairn.api.responses import ERRORS
from cairn.domain.errors import NotFound
from cairn.services.intake import Intake, contact_out

UserId = Annotated[str, Path(min_length=1, max_length=255)]


def register(app: APIGatewayHttpResolver, auth: Auth, intake: Intake) -> None:
    @app.get("/v1/contacts/<user_id>", responses=ERRORS, tags=["contacts"])
    def get_contact(user_id: UserId) -> ContactOut:
        auth.secret()
        profile = intake.get_contact(user_id)
        if profile is None:
            raise NotFound("no contact with that userId")
        return contact_out(profile)

    @app.put("/v1/contacts/<user_id>/subscriptions/<channel>", responses=ERRORS, tags=["contacts"])
    def put_subscription(
        user_id: UserId,
        channel: Annotated[str, Path(pattern="^(email|sms)$")],
        body: SubscriptionIn,
    ) -> ContactOut:
        key = auth.secret()
        return intake.set_subscription(key, user_id, channel, body)
