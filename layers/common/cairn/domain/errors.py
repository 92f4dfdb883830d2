"""Typed domain errors. HTTP maps them once; ASL matches the workflow ones by class name."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldProblem:
    field: str
    problem: str


class CairnError(Exception):
    """Base class for errors a caller can act on."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: list[FieldProblem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class MalformedRequest(CairnError):
    status = 400
    code = "malformed_request"


class ValidationFailed(CairnError):
    status = 422
    code = "validation_failed"


class Unauthorized(CairnError):
    status = 401
    code = "unauthorized"


class Forbidden(CairnError):
    status = 403
    code = "forbidden"


class NotFound(CairnError):
    status = 404
    code = "not_found"


class Conflict(CairnError):
    status = 409
    code = "conflict"


class PayloadTooLarge(CairnError):
    status = 413
    code = "payload_too_large"


class Unavailable(CairnError):
    """A write failed after its retries (the table throttled us): safe to send again (a batch item)."""

    status = 503
    code = "unavailable"


class Throttled(CairnError):
    status = 429
    code = "throttled"

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("too many requests for this key")
        self.retry_after = retry_after


# Raised inside state machine tasks; matched by name in ASL Catch.
class ContactConverted(Exception):
    """The run's goal is met: the run ends in its Converted state."""


class ContactExited(Exception):
    """The run's exit condition holds (or the run was stopped): it ends in its Exited state."""


class StaleRun(Exception):
    """A task for a run that is no longer the contact's active run (a late retry)."""


class TransientError(Exception):
    """A provider or table throttled us before anything happened: safe to retry (ASL Retry matches it)."""


class WebhookFailed(Exception):
    """A webhook's receiver did not answer 2xx in time (5xx, 408, 429, timeout, network): retried by the
    webhook step's ASL Retry, then caught."""


class WebhookRejected(Exception):
    """A webhook's receiver refused the call for good (another 4xx): not retried."""
