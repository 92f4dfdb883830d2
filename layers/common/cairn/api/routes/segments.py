"""Segment routes (secret keys): definitions with member counts, members, previews of unsaved rules,
and the members of static lists (DESIGN.md section 2)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from cairn.api.auth import Auth
from cairn.api.gate import Access
from cairn.api.responses import errors
from cairn.api.routes.contacts import UserId, user
from cairn.domain.errors import NotFound
from cairn.domain.identity import cid_for_user
from cairn.services.intake import Intake

SegmentId = Annotated[str, Path(alias="segmentId", min_length=1, max_length=64, description="a segment id")]


class BuildOut(BaseModel):
    status: str = Field(
        description="requested, building, ready, failed, or outdated (of an older definition)"
    )
    version: str
    finishedAt: str | None = None


class SegmentOut(BaseModel):
    id: str
    name: str
    description: str = ""
    kind: str = Field(description="dynamic (a rule decides) or static (a list kept by hand)")
    rule: dict[str, Any] | None = None
    version: str = Field(description="changes when what membership means changes (a rule, a segment it uses)")
    memberCount: int
    build: BuildOut | None = Field(None, description="the last build over every contact, if any")


class SegmentsOut(BaseModel):
    segments: list[SegmentOut]


class MemberOut(BaseModel):
    userId: str | None = Field(description="null for an anonymous contact")
    enteredAt: str | None = None


class MembersOut(BaseModel):
    members: list[MemberOut]
    cursor: str | None = Field(description="pass it back for the next page; null after the last")


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule: Any = Field(description="a rule in the segment language (DESIGN.md section 4)")


class SampleOut(BaseModel):
    userId: str


class PreviewOut(BaseModel):
    count: int = Field(description="contacts the rule selects now (estimated unless `exact`)")
    sample: list[SampleOut]
    exact: bool = Field(description="false: counted on a random share of the contacts and scaled up")
    scanned: int = Field(description="contacts read")


class ListMemberOut(BaseModel):
    id: str
    userId: str
    member: bool
    enteredAt: str | None = None


def register(app: APIGatewayHttpResolver, auth: Auth, intake: Intake) -> None:
    gate = auth.gate
    gate.declare("GET", "/v1/segments", Access.SECRET)
    gate.declare("GET", "/v1/segments/<segmentId>", Access.SECRET)
    gate.declare("GET", "/v1/segments/<segmentId>/members", Access.SECRET)
    gate.declare("POST", "/v1/segments/preview", Access.SECRET, max_body=64 * 1024)
    gate.declare("PUT", "/v1/segments/<segmentId>/members/<userId>", Access.SECRET)
    gate.declare("DELETE", "/v1/segments/<segmentId>/members/<userId>", Access.SECRET)
    rt = intake.rt

    def described(ids: list[str]) -> list[SegmentOut]:
        segments = rt.segments
        counts = segments.member_counts(ids)
        builds = segments.builds(ids)
        out = []
        for sid in ids:
            segment = segments.catalog.segments[sid]
            build = builds.get(sid)
            out.append(
                SegmentOut(
                    **{k: v for k, v in segment.data().items() if k != "version"},
                    version=segment.version,
                    memberCount=counts.get(sid, 0),
                    build=BuildOut(**build) if build else None,
                )
            )
        return out

    @app.get(
        "/v1/segments", responses=errors(), tags=["segments"], summary="Every segment, with member counts"
    )
    def list_segments() -> SegmentsOut:
        auth.secret()
        return SegmentsOut(segments=described(list(rt.segments.catalog.segments)))

    @app.post(
        "/v1/segments/preview",
        responses=errors(400, 422),
        tags=["segments"],
        summary="How many contacts an unsaved rule selects, and a few of them",
    )
    def preview(body: PreviewIn) -> PreviewOut:
        auth.secret()
        return PreviewOut.model_validate(rt.segments.preview(body.rule))

    @app.get(
        "/v1/segments/<segmentId>",
        responses=errors(404),
        tags=["segments"],
        summary="A segment's definition and member count",
    )
    def get_segment(segment_id: SegmentId) -> SegmentOut:
        auth.secret()
        if segment_id not in rt.segments.catalog:
            raise NotFound(f"no segment '{segment_id}'")
        return described([segment_id])[0]

    @app.get(
        "/v1/segments/<segmentId>/members",
        responses=errors(404, 422),
        tags=["segments"],
        summary="A page of a segment's members",
    )
    def get_members(
        segment_id: SegmentId,
        limit: Annotated[int, Query(ge=1, le=1000, description="members per page")] = 100,
        cursor: Annotated[str | None, Query(max_length=2048, description="from the previous page")] = None,
    ) -> MembersOut:
        auth.secret()
        members, next_cursor = rt.segments.members(segment_id, limit, cursor)
        return MembersOut(members=[MemberOut(**m) for m in members], cursor=next_cursor)

    def set_member(segment_id: str, raw_user: str, member: bool) -> ListMemberOut:
        user_id = user(raw_user)
        cid = cid_for_user(rt.secret, user_id)
        if rt.contacts.get(cid) is None:
            raise NotFound("no contact with that userId")
        segments = rt.segments
        if member:
            segments.add_to_list(cid, segment_id)
        else:
            segments.remove_from_list(cid, segment_id)
        [entry] = segments.store.memberships(cid, [segment_id]).values()
        entered = entry.entered_at.isoformat().replace("+00:00", "Z") if entry.entered_at else None
        return ListMemberOut(id=segment_id, userId=user_id, member=entry.member, enteredAt=entered)

    @app.put(
        "/v1/segments/<segmentId>/members/<userId>",
        responses=errors(404, 409),
        tags=["segments"],
        summary="Add a contact to a static list (a segment with kind: static)",
    )
    def add_member(segment_id: SegmentId, user_id: UserId) -> ListMemberOut:
        auth.secret()
        return set_member(segment_id, user_id, True)

    @app.delete(
        "/v1/segments/<segmentId>/members/<userId>",
        responses=errors(404, 409),
        tags=["segments"],
        summary="Remove a contact from a static list",
    )
    def remove_member(segment_id: SegmentId, user_id: UserId) -> ListMemberOut:
        auth.secret()
        return set_member(segment_id, user_id, False)
