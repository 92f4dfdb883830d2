"""Shaping the services' results as the API's documented responses."""

from __future__ import annotations

from cairn.adapters.contacts import Profile
from cairn.api.models import ConsentOut, ContactDetailOut, ContactOut, EnrollmentOut, MessageOut, SegmentOut
from cairn.services.intake import ContactDetail


def _attributes(profile: Profile) -> dict[str, object]:
    attrs = dict(profile.attributes)
    for name in ("email", "phone", "timezone"):
        if getattr(profile, name) is not None:
            attrs[name] = getattr(profile, name)
    return attrs


def _consent(profile: Profile) -> dict[str, ConsentOut]:
    return {
        ch: ConsentOut(status=str(v.get("status")), source=v.get("source"), updatedAt=v.get("updatedAt"))
        for ch, v in profile.consent.items()
        if isinstance(v, dict) and v.get("status")
    }


def contact_out(profile: Profile) -> ContactOut:
    return ContactOut(
        userId=profile.user_id,
        anonymousIds=sorted(profile.anonymous_ids),
        attributes=_attributes(profile),
        tags=sorted(profile.tags),
        consent=_consent(profile),
        suppression=profile.suppression,
    )


def contact_detail_out(detail: ContactDetail) -> ContactDetailOut:
    base = contact_out(detail.profile)
    return ContactDetailOut(
        **base.model_dump(),
        segments=[SegmentOut.model_validate(s) for s in detail.segments],
        enrollments=[EnrollmentOut.model_validate(e) for e in detail.enrollments],
        messages=[MessageOut.model_validate(m) for m in detail.messages],
    )
