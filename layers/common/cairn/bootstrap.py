"""Wiring: the adapters and services a function needs, built once per cold start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING

from cairn.adapters.contacts import ContactStore, EnrollmentStore, MessageStore
from cairn.adapters.events import EventStore
from cairn.adapters.executions import Executions
from cairn.adapters.identities import IdentityStore
from cairn.adapters.keys import KeyStore
from cairn.adapters.secrets import stack_secret
from cairn.config import Config

if TYPE_CHECKING:
    from cairn.domain.rendering import Renderer
    from cairn.domain.settings import Settings
    from cairn.domain.site import Site
    from cairn.services.segments import Segments


@dataclass
class Runtime:
    config: Config

    @cached_property
    def secret(self) -> bytes:
        return stack_secret(self.config.secret_arn)

    @cached_property
    def site(self) -> Site:
        return self.config.site

    @cached_property
    def settings(self) -> Settings:
        """settings.yaml alone, without loading the workflows and templates (the trigger's cold start)."""
        if "site" in self.__dict__:
            return self.site.settings
        return self.config.settings

    @cached_property
    def renderer(self) -> Renderer:
        from cairn.domain.rendering import Renderer

        return Renderer(self.site.templates, timezone_fallback=self.site.settings.timezone)

    @cached_property
    def contacts(self) -> ContactStore:
        return ContactStore()

    @cached_property
    def events(self) -> EventStore:
        return EventStore(ttl=timedelta(days=self.config.event_ttl_days))

    @cached_property
    def enrollments(self) -> EnrollmentStore:
        return EnrollmentStore()

    @cached_property
    def messages(self) -> MessageStore:
        return MessageStore()

    @cached_property
    def keys(self) -> KeyStore:
        return KeyStore()

    @cached_property
    def executions(self) -> Executions:
        return Executions()

    @cached_property
    def identities(self) -> IdentityStore:
        return IdentityStore()

    @cached_property
    def segments(self) -> Segments:
        """Segment membership, lists and the live resolver (cairn.services.segments)."""
        from cairn.services.segments import Segments

        return Segments(self)


def runtime() -> Runtime:
    return Runtime(Config.from_env())
