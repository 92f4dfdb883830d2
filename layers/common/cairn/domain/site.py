"""The compiled site: everything the functions need from a project, shipped as one JSON bundle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cairn.domain.settings import Settings
from cairn.domain.templates import TemplateSet
from cairn.domain.workflows import Workflow


@dataclass(frozen=True)
class Site:
    workflows: dict[str, Workflow]
    templates: TemplateSet
    settings: Settings
    segments: dict[str, Any] = field(default_factory=dict)

    def workflows_triggered_by(self, event: str) -> list[Workflow]:
        return [wf for wf in self.workflows.values() if wf.trigger_event == event]

    def to_data(self) -> dict[str, Any]:
        return {
            "format": 1,
            "workflows": {
                wid: {"version": wf.content_hash(), "definition": wf.model_dump(mode="json", by_alias=True)}
                for wid, wf in sorted(self.workflows.items())
            },
            "templates": self.templates.to_data(),
            "settings": self.settings.model_dump(mode="json"),
            "segments": self.segments,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Site:
        return cls(
            workflows={
                wid: Workflow.model_validate(entry["definition"]) for wid, entry in data["workflows"].items()
            },
            templates=TemplateSet.from_data(data["templates"]),
            settings=Settings.model_validate(data["settings"]),
            segments=data.get("segments", {}),
        )
