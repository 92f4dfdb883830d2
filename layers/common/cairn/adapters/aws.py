"""boto3 clients, built once per process with botocore's retry configuration."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

RETRIES = BotoConfig(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3, read_timeout=10)


@cache
def client(service: str) -> Any:
    return boto3.client(service, config=RETRIES)  # type: ignore[call-overload]


def reset() -> None:
    """Forget cached clients (tests and local mode create fresh mocks)."""
    client.cache_clear()
