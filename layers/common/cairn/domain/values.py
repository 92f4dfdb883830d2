"""What a JSON value from a caller must be to be stored as is (DynamoDB's rules), pure."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from cairn.domain.errors import FieldProblem

MAX_DEPTH = 16  # DynamoDB allows 32 levels; events and traits never need more than a few
MAX_DIGITS = 38  # DynamoDB's number precision
MAX_MAGNITUDE = Decimal("9.9999999999999999999999999999999999999E+125")
MIN_MAGNITUDE = Decimal("1E-130")


def text_ok(value: str) -> bool:
    """Encodable as UTF-8 (JSON may carry lone surrogates, which no store or hash accepts)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _number_problem(value: int | float) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return "not a finite number"
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if number == 0:
        return None
    digits = len("".join(map(str, number.as_tuple().digits)).strip("0"))
    if digits > MAX_DIGITS:
        return f"more than {MAX_DIGITS} significant digits"
    if abs(number) > MAX_MAGNITUDE or abs(number) < MIN_MAGNITUDE:
        return "out of the range of stored numbers"
    return None


def problems(value: Any, field: str, depth: int = 0) -> list[FieldProblem]:
    """Every reason `value` (parsed JSON) cannot be stored, each naming its field (`properties.a.0`)."""
    if depth > MAX_DEPTH:
        return [FieldProblem(field, f"nested deeper than {MAX_DEPTH} levels")]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        problem = _number_problem(value)
        return [FieldProblem(field, problem)] if problem else []
    if isinstance(value, str):
        return [] if text_ok(value) else [FieldProblem(field, "not valid Unicode text")]
    if isinstance(value, list):
        out: list[FieldProblem] = []
        for i, item in enumerate(value):
            out.extend(problems(item, f"{field}.{i}", depth + 1))
        return out
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            if not isinstance(key, str) or not key or not text_ok(key):
                out.append(FieldProblem(field, "keys must be non-empty text"))
                continue
            out.extend(problems(item, f"{field}.{key}", depth + 1))
        return out
    return [FieldProblem(field, "not a JSON value")]
