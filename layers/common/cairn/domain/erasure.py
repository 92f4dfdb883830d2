"""What may follow an erasure, pure: which events belong to the erased life, and when the same user id
may become a contact again (cairn.services.erase applies it)."""

from __future__ import annotations

from datetime import datetime, timedelta

# After an erase, requests that were in flight (or a browser still sending for a user who asked to be
# forgotten) cannot bring the contact back for this long; then the user id may return as a new contact.
GRACE = timedelta(minutes=15)


def is_stale(erased_at: datetime | None, *, timestamp: datetime, received_at: datetime) -> bool:
    """An event of a contact erased at `erased_at` that belongs to the erased life: it happened before the
    erase (whenever it arrives: a stream record in flight, a retry queue flushed days later), or it arrived
    within GRACE after it."""
    if erased_at is None:
        return False
    return timestamp <= erased_at or received_at <= erased_at + GRACE


def recently_erased(erased_at: datetime | None, now: datetime) -> bool:
    """A write that would create the contact again now is refused."""
    return erased_at is not None and now <= erased_at + GRACE
