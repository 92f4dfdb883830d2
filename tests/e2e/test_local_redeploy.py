"""LocalCairn.redeploy (issue 5): what `sam deploy` of a changed project does, local mode still running."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.projects import project, repo_workflows, running
from tests.e2e.workflow_helpers import contact, runs, track

from cairn.local.runtime import LocalCairn, ProjectInvalid

pytestmark = pytest.mark.e2e

FLASH_SALE = """
id: flash-sale
name: Flash sale
trigger: {event: flash_sale_opened}
steps:
  - wait: 1d
  - send_email: {template: welcome-discount}
"""


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalCairn]:
    """The repo's project, with its own copy of the repo's workflows that the test may change."""
    with running(project(tmp_path, workflows=repo_workflows())) as runtime:
        yield runtime


def machines(local: LocalCairn) -> dict[str, str]:
    assert local.stack is not None
    return dict(local.stack.state_machines)


def test_a_new_workflow_takes_contacts_and_a_removed_one_keeps_its_runs(local: LocalCairn) -> None:
    flash = local.root / "workflows" / "flash-sale.yaml"
    flash.write_text(FLASH_SALE.lstrip(), encoding="utf-8")
    assert local.redeploy() == {"created": ["flash-sale"], "updated": [], "retained": []}
    contact(local, "ada")
    track(local, "ada", "flash_sale_opened")
    local.settle()
    [run] = runs(local, "flash-sale", "ada")
    assert run["status"] == "RUNNING"

    flash.unlink()
    assert local.redeploy() == {"created": [], "updated": [], "retained": ["flash-sale"]}
    [run] = runs(local, "flash-sale", "ada")  # the run in flight goes on on its retained state machine
    assert run["status"] == "RUNNING"


def test_a_project_with_problems_is_refused_and_nothing_changes(local: LocalCairn) -> None:
    before = machines(local)
    broken = (
        "id: broken\nname: Broken\ntrigger: {event: x}\nsteps:\n  - send_email: {template: no-such-one}\n"
    )
    (local.root / "workflows" / "broken.yaml").write_text(broken, encoding="utf-8")
    with pytest.raises(ProjectInvalid) as refused:
        local.redeploy()
    assert any("no-such-one" in str(p) for p in refused.value.problems)
    assert machines(local) == before
