"""Checks the pydantic models cannot express: values DynamoDB can store, and a batch item's own size."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from cairn.domain import values
from cairn.domain.errors import FieldProblem, MalformedRequest, ValidationFailed


def storable(**fields: Any) -> None:
    """422 naming every field (`properties.cart.0.price`) whose value cannot be stored as is."""
    problems: list[FieldProblem] = []
    for name, value in fields.items():
        if value is not None:
            problems.extend(values.problems(value, name))
    if problems:
        raise ValidationFailed("some values cannot be stored", problems)


def field_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


def parse_item(model: type[BaseModel], item: Any) -> Any:
    """A batch or import item validated alone: 422 naming the item's own fields."""
    if not isinstance(item, dict):
        raise MalformedRequest("an item must be a JSON object")
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        details = [
            FieldProblem(field_name(tuple(e["loc"])), str(e["msg"]).removeprefix("Value error, "))
            for e in exc.errors()
        ]
        raise ValidationFailed("the item failed validation", details) from None


def item_size(item: Any) -> int:
    return len(
        json.dumps(item, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8", "replace")
    )
