"""Projects and runtimes of the end-to-end tests: the repo's project with workflows (and settings) of a
test's own, local mode started on a project and checked when it stops, and local mode's HTTP server."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from cairn.local.runtime import LocalCairn

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
OWN = ("workflows", "segments", "settings.yaml")


def project(
    tmp: Path,
    *,
    workflows: Mapping[str, str | Mapping[str, Any]],
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """A project folder `tmp/project` using the repo's template.yaml, functions, templates and segments, with
    its own workflows (id: YAML text as written, or a definition without its id) and settings (the repo's
    settings changed by `settings`)."""
    root = tmp / "project"
    root.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in OWN or entry.name.startswith("."):
            continue
        (root / entry.name).symlink_to(entry)
    merged = yaml.safe_load((ROOT / "settings.yaml").read_text(encoding="utf-8"))
    for key, value in (settings or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    (root / "settings.yaml").write_text(yaml.safe_dump(merged), encoding="utf-8")
    (root / "workflows").mkdir()
    for wid, definition in workflows.items():
        text = definition if isinstance(definition, str) else yaml.safe_dump({"id": wid, **definition})
        (root / "workflows" / f"{wid}.yaml").write_text(text, encoding="utf-8")
    if (ROOT / "segments").is_dir():
        shutil.copytree(ROOT / "segments", root / "segments")
    return root


def repo_workflows() -> dict[str, str]:
    """The repo's own workflows, id: YAML text."""
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted((ROOT / "workflows").glob("*.yaml"))}


def check_clean(local: LocalCairn) -> None:
    """No function failed and no stream record was given up on."""
    assert local.host.errors == [], local.host.errors
    assert local.streams.failed == []


@contextmanager
def running(root: Path, start: datetime = START) -> Iterator[LocalCairn]:
    """Local mode on `root`, checked clean when the block ends."""
    with LocalCairn(root, start_time=start) as runtime:
        yield runtime
        check_clean(runtime)


@contextmanager
def serving(local: LocalCairn) -> Iterator[str]:
    """Local mode's HTTP server on a free port of 127.0.0.1; yields its base URL (no trailing slash)."""
    from cairn.local.server import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = serve(local, port=port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
