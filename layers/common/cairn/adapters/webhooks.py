"""Webhook delivery: one HTTPS POST with a timeout; the outcome typed for the state machine's Retry."""

from __future__ import annotations

import urllib.error
import urllib.request

from aws_lambda_powertools.utilities import parameters

from cairn.domain.errors import WebhookFailed, WebhookRejected

RETRYABLE = {408, 425, 429}


def signing_secret(name: str) -> bytes:
    """The HMAC key shared with a receiver: a Secrets Manager secret (cached for 5 minutes)."""
    return str(parameters.get_secret(name, max_age=300)).encode()


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> int:
    """POST and return the status; WebhookFailed to try again later, WebhookRejected for good."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        raise WebhookFailed(f"no answer from the receiver: {type(exc).__name__}") from None
    if 200 <= status < 300:
        return status
    if status >= 500 or status in RETRYABLE:
        raise WebhookFailed(f"the receiver answered {status}")
    raise WebhookRejected(f"the receiver answered {status}")
