"""End-to-end tier: the whole application in local mode, executing the real generated ASL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.e2e.projects import ROOT, START, check_clean, serving
from tests.e2e.sending import check_marketing_mail

from cairn.local.runtime import LocalCairn

__all__ = ["ROOT", "START"]


@pytest.fixture
def local() -> Iterator[LocalCairn]:
    with LocalCairn(ROOT, start_time=START) as runtime:
        yield runtime
        check_clean(runtime)
        check_marketing_mail(runtime)  # every marketing email: one-click headers that work (raw MIME)


@pytest.fixture
def base_url(local: LocalCairn) -> Iterator[str]:
    """Local mode over real HTTP on 127.0.0.1 (no trailing slash)."""
    with serving(local) as url:
        yield url


pytestmark = pytest.mark.e2e
