"""Intake routes: track, identify and batch — write keys allowed (the gate answers CORS for them)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from cairn.api.auth import Auth
from cairn.api.checks import item_size, parse_item, storable
from cairn.api.gate import Access
from cairn.api.models import (
    BatchIn,
    BatchOut,
    ContactOut,
    ErrorBody,
    IdentifyIn,
    ItemResult,
    TrackIn,
    TrackOut,
)
from cairn.api.responses import error_body, errors
from cairn.api.views import contact_out
from cairn.domain import segment_spec
from cairn.domain.errors import (
    CairnError,
    FieldProblem,
    MalformedRequest,
    PayloadTooLarge,
    ValidationFailed,
)
from cairn.domain.keys import ApiKey
from cairn.services.identity import ConsentChange
from cairn.services.intake import Identify, Intake, Track, Tracked


def track_command(body: TrackIn, *, sent_at: Any = None, context: Any = None) -> Track:
    storable(properties=body.properties, context=body.context)
    return Track(
        event=body.event,
        user_id=body.user_id,
        anonymous_id=body.anonymous_id,
        properties=body.properties,
        timestamp=body.timestamp,
        sent_at=body.sent_at or sent_at,
        message_id=body.message_id,
        context=body.context if body.context is not None else context,
        user_id_hash=body.user_id_hash,
    )


def identify_command(body: IdentifyIn) -> Identify:
    storable(traits=body.traits)
    return Identify(
        user_id=body.user_id,
        traits=body.traits,
        anonymous_id=body.anonymous_id,
        message_id=body.message_id,
        consent={ch: ConsentChange(c.status, c.source) for ch, c in body.consent.items()},
        user_id_hash=body.user_id_hash,
    )


def register(app: APIGatewayHttpResolver, auth: Auth, intake: Intake) -> None:
    gate = auth.gate
    gate.declare("POST", "/v1/track", Access.WRITE, max_body=segment_spec.MAX_EVENT_BYTES)
    gate.declare("POST", "/v1/identify", Access.WRITE, max_body=segment_spec.MAX_EVENT_BYTES)
    gate.declare("POST", "/v1/batch", Access.WRITE, max_body=segment_spec.MAX_BATCH_BYTES)

    @app.post(
        "/v1/track",
        status_code=202,
        responses=errors(400, 413, 422, ok=202, description="accepted (or a duplicate, not stored again)"),
        tags=["intake"],
        summary="Record an event (Segment's track); a repeated messageId answers duplicate: true",
    )
    def track(body: TrackIn) -> TrackOut:
        key = auth.key(write_ok=True)
        done = intake.track(key, track_command(body))
        return TrackOut(messageId=done.message_id, duplicate=done.duplicate)

    @app.post(
        "/v1/identify",
        responses=errors(400, 409, 413, 422),
        tags=["intake"],
        summary="Merge traits into a contact (Segment's identify); an anonymousId merges into the userId",
    )
    def identify(body: IdentifyIn) -> ContactOut:
        key = auth.key(write_ok=True)
        return contact_out(intake.identify(key, identify_command(body)))

    @app.post(
        "/v1/batch",
        responses=errors(400, 413, 422),
        tags=["intake"],
        summary="Up to 500 track and identify calls (4 MB); one result per item, a bad item fails alone",
    )
    def batch(body: BatchIn) -> BatchOut:
        key = auth.key(write_ok=True)
        if len(body.batch) > segment_spec.MAX_BATCH_ITEMS:
            raise PayloadTooLarge(
                f"at most {segment_spec.MAX_BATCH_ITEMS} items",
                [FieldProblem("batch", f"{len(body.batch)} items; at most {segment_spec.MAX_BATCH_ITEMS}")],
            )
        storable(context=body.context)
        return BatchOut(results=run_batch(intake, key, body))


def run_batch(intake: Intake, key: ApiKey, body: BatchIn) -> list[ItemResult]:
    """Tracks are written together (one conditional PutItem each, in parallel); identifies one by one."""
    results: dict[int, ItemResult] = {}
    tracks: list[tuple[int, Track]] = []
    for index, item in enumerate(body.batch):
        try:
            if item_size(item) > segment_spec.MAX_EVENT_BYTES:
                raise PayloadTooLarge(f"an item is larger than {segment_spec.MAX_EVENT_BYTES} bytes")
            if not isinstance(item, dict):
                raise MalformedRequest("an item must be a JSON object")
            kind = item.get("type", "track")
            if kind == "track":
                parsed = parse_item(TrackIn, item)
                tracks.append((index, track_command(parsed, sent_at=body.sent_at, context=body.context)))
            elif kind == "identify":
                intake.identify(key, identify_command(parse_item(IdentifyIn, item)))
                results[index] = ItemResult(index=index, status=200)
            else:
                raise ValidationFailed("unknown item type", [FieldProblem("type", "track or identify")])
        except CairnError as exc:
            results[index] = _failed(index, exc)
    outcomes = intake.track_many(key, [cmd for _, cmd in tracks])
    for (index, _cmd), outcome in zip(tracks, outcomes, strict=True):
        if isinstance(outcome, Tracked):
            results[index] = ItemResult(
                index=index, status=202, messageId=outcome.message_id, duplicate=outcome.duplicate
            )
        else:
            results[index] = _failed(index, outcome)
    return [results[i] for i in sorted(results)]


def _failed(index: int, exc: CairnError) -> ItemResult:
    return ItemResult(index=index, status=exc.status, error=ErrorBody.model_validate(error_body(exc)))
