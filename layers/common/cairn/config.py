"""The functions' configuration: parsed once from the environment at cold start, failing fast."""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from cairn.domain.settings import Settings
    from cairn.domain.site import Site


class Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    contacts_table: str = Field(alias="CONTACTS_TABLE")
    events_table: str = Field(alias="EVENTS_TABLE")
    identities_table: str = Field(alias="IDENTITIES_TABLE")
    keys_table: str = Field(alias="KEYS_TABLE")
    state_machine_prefix: str = Field(alias="STATE_MACHINE_PREFIX")
    sender_email: str = Field(default="", alias="SENDER_EMAIL")
    ses_configuration_set: str = Field(default="", alias="SES_CONFIGURATION_SET")
    postal_address: str = Field(default="", alias="POSTAL_ADDRESS")
    secret_arn: str = Field(default="", alias="SECRET_ARN")
    site_path: str = Field(default="/opt/site.json", alias="CAIRN_SITE_PATH")
    public_base_url: str = Field(default="http://127.0.0.1:3000", alias="PUBLIC_BASE_URL")
    stage: str = Field(default="dev", alias="STAGE")
    event_ttl_days: int = Field(default=400, alias="EVENT_TTL_DAYS")

    @classmethod
    def from_env(cls) -> Config:
        return cls.model_validate(dict(os.environ))

    def state_machine_arn(self, workflow_id: str) -> str:
        return f"{self.state_machine_prefix}{workflow_id}"

    @cached_property
    def site(self) -> Site:
        from cairn.domain.site import Site  # not on the intake path: keeps the trigger's cold start short

        return Site.from_data(json.loads(Path(self.site_path).read_text(encoding="utf-8")))

    @cached_property
    def settings(self) -> Settings:
        """Only the settings of the site bundle (defaults when there is no bundle, as in the benchmarks)."""
        from cairn.domain.settings import Settings

        path = Path(self.site_path)
        if not path.exists():
            return Settings()
        return Settings.model_validate(json.loads(path.read_text(encoding="utf-8")).get("settings") or {})
