"""The stack's HMAC secret (contact ids, unsubscribe tokens), fetched once and cached."""

from __future__ import annotations

import os

from aws_lambda_powertools.utilities import parameters


def stack_secret(secret_arn: str) -> bytes:
    """The secret's bytes. CAIRN_SECRET in the environment wins (tests, local mode without a stack)."""
    override = os.environ.get("CAIRN_SECRET")
    if override:
        return override.encode()
    value = parameters.get_secret(secret_arn, max_age=300)
    return str(value).encode()
