"""Progressive profiling, pure: which fields of a form are worth asking a contact for next."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cairn.domain.settings import Form


def known(value: Any) -> bool:
    return value is not None and value not in ("", [], {})


def next_fields(form: Form, attributes: Mapping[str, Any]) -> list[str]:
    """The form's fields the contact has not given yet, in the form's order, at most `form.ask`."""
    missing = [name for name in form.fields if not known(attributes.get(name))]
    return missing[: form.ask]
