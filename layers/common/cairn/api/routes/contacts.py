"""Contact routes (secret keys): read, erase, subscriptions, import and progressive profiling."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from cairn.api.auth import Auth
from cairn.api.checks import item_size, parse_item, storable
from cairn.api.gate import Access
from cairn.api.models import (
    BatchOut,
    ContactDetailOut,
    ContactOut,
    ErrorBody,
    ImportContactIn,
    ImportIn,
    ItemResult,
    NextFieldsOut,
    SubscriptionIn,
)
from cairn.api.responses import error_body, errors
from cairn.api.views import contact_detail_out, contact_out
from cairn.domain import segment_spec
from cairn.domain.errors import CairnError, FieldProblem, NotFound, PayloadTooLarge
from cairn.services.erase import Eraser
from cairn.services.identity import ConsentChange
from cairn.services.intake import ImportContact, Intake

UserId = Annotated[
    str, Path(alias="userId", min_length=1, max_length=765, description="the contact's userId")
]
MAX_IMPORT = 500


def user(raw: str) -> str:
    """The path parameter as the caller meant it (API Gateway passes the raw, percent-encoded path)."""
    value = unquote(raw)
    if not 1 <= len(value) <= 255:
        raise NotFound("no contact with that userId")
    return value


def register(app: APIGatewayHttpResolver, auth: Auth, intake: Intake) -> None:
    gate = auth.gate
    gate.declare("GET", "/v1/contacts/<userId>", Access.SECRET)
    gate.declare("DELETE", "/v1/contacts/<userId>", Access.SECRET)
    gate.declare("PUT", "/v1/contacts/<userId>/subscriptions/<channel>", Access.SECRET)
    gate.declare("GET", "/v1/contacts/<userId>/next-fields", Access.SECRET)
    gate.declare("POST", "/v1/contacts/import", Access.SECRET, max_body=segment_spec.MAX_BATCH_BYTES)
    eraser = Eraser(intake.rt)

    @app.post(
        "/v1/contacts/import",
        responses=errors(400, 413, 422),
        tags=["contacts"],
        summary="Import up to 500 contacts with consent and suppression; fires no triggers",
    )
    def import_contacts(body: ImportIn) -> BatchOut:
        auth.secret()
        if len(body.contacts) > MAX_IMPORT:
            raise PayloadTooLarge(
                f"at most {MAX_IMPORT} contacts per request",
                [FieldProblem("contacts", f"{len(body.contacts)} contacts; at most {MAX_IMPORT}")],
            )
        results: dict[int, ItemResult] = {}
        commands: list[tuple[int, ImportContact]] = []
        for index, raw in enumerate(body.contacts):
            try:
                if item_size(raw) > segment_spec.MAX_EVENT_BYTES:
                    raise PayloadTooLarge(f"a contact is larger than {segment_spec.MAX_EVENT_BYTES} bytes")
                item = parse_item(ImportContactIn, raw)
                storable(traits=item.traits)
                commands.append(
                    (
                        index,
                        ImportContact(
                            user_id=item.user_id,
                            traits=item.traits,
                            tags=frozenset(item.tags),
                            consent={
                                ch: ConsentChange(c.status, c.source, c.updated_at)
                                for ch, c in item.consent.items()
                            },
                            suppression=item.suppression,
                        ),
                    )
                )
            except CairnError as exc:
                results[index] = _failed(index, exc)
        for (index, _), outcome in zip(
            commands, intake.import_contacts([c for _, c in commands]), strict=True
        ):
            results[index] = (
                _failed(index, outcome)
                if isinstance(outcome, CairnError)
                else ItemResult(index=index, status=200)
            )
        return BatchOut(results=[results[i] for i in sorted(results)])

    @app.get(
        "/v1/contacts/<userId>",
        responses=errors(404),
        tags=["contacts"],
        summary="A contact, its runs and messages",
    )
    def get_contact(user_id: UserId) -> ContactDetailOut:
        auth.secret()
        return contact_detail_out(intake.contact_detail(user(user_id)))

    @app.delete(
        "/v1/contacts/<userId>",
        status_code=204,
        responses={
            **errors(404),
            204: {"description": "erased; only a hashed tombstone of its addresses is kept"},
        },
        tags=["contacts"],
        summary="Erase a contact everywhere and end its runs; keep only a hashed suppression tombstone",
    )
    def erase_contact(user_id: UserId) -> Response[str]:
        auth.secret()
        if not eraser.erase(user(user_id)):
            raise NotFound("no contact with that userId")
        return Response(204, None, "")

    @app.put(
        "/v1/contacts/<userId>/subscriptions/<channel>",
        responses=errors(400, 404, 409, 422),
        tags=["contacts"],
        summary="Subscribe or unsubscribe a contact on a channel (email with double opt-in: pending)",
    )
    def put_subscription(
        user_id: UserId,
        channel: Annotated[str, Path(pattern="^(email|sms)$", description="email or sms")],
        body: SubscriptionIn,
    ) -> ContactOut:
        key = auth.secret()
        return contact_out(intake.set_subscription(key, user(user_id), channel, body.status, body.source))

    @app.get(
        "/v1/contacts/<userId>/next-fields",
        responses=errors(404, 422),
        tags=["contacts"],
        summary="Progressive profiling: the next fields of a form worth asking this contact for",
    )
    def get_next_fields(
        user_id: UserId,
        form: Annotated[str, Query(min_length=1, max_length=100, description="a form of settings.yaml")],
    ) -> NextFieldsOut:
        auth.secret()
        return NextFieldsOut(form=form, fields=intake.next_fields(user(user_id), form))


def _failed(index: int, exc: CairnError) -> ItemResult:
    return ItemResult(index=index, status=exc.status, error=ErrorBody.model_validate(error_body(exc)))
