"""End-to-end tier: the whole application in local mode, executing the real generated ASL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.e2e.sending import check_marketing_mail

from cairn.local.runtime import LocalCairn

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def local() -> Iterator[LocalCairn]:
    with LocalCairn(ROOT, start_time=START) as runtime:
        yield runtime
        assert runtime.host.errors == [], runtime.host.errors
        assert runtime.streams.failed == []
        check_marketing_mail(runtime)  # every marketing email: one-click headers that work (raw MIME)


pytestmark = pytest.mark.e2e
