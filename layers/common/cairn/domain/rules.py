"""The rule language of segments, audiences, branches, goals and exits (DESIGN.md section 4).

``parse_rule`` turns YAML/JSON data into typed nodes and reports every problem with
its path; ``dump_rule`` writes them back. ``evaluate`` is the reference tree walk;
``compile_rule`` builds closures that agree with it and run fast. ``dependencies``,
``max_within`` and ``next_time_change`` tell the rest of Cairn when a rule needs a
second look. Pure: no AWS imports.

Value semantics, shared by attributes (``{attribute: ...}``) and event properties
(``{property: ...}`` inside ``where``):

- A missing value (absent or null) fails every comparison; only ``exists: false`` holds.
- No coercion: ``"5"`` is not ``5`` and ``true`` is not ``1``; ints, floats and
  Decimals are all numbers. Ordering needs two numbers or two strings, else it is false.
- ``before``/``after`` read ISO dates (``2024-01-31``) and date-times; naive date-times
  are UTC. If either side is a plain date the comparison is by UTC calendar day.
"""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Any, Final, Literal, TypeAlias, cast, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    PlainSerializer,
    SkipValidation,
    Tag,
)

from cairn.domain.durations import DurationError, format_duration, parse_duration

__all__ = [
    "CHANNELS",
    "MAX_RULE_DURATION",
    "OPERATORS",
    "AllRule",
    "AllWhere",
    "AnyRule",
    "AnyWhere",
    "AttributeCondition",
    "ConsentCondition",
    "ContactView",
    "CountTest",
    "Dependencies",
    "EventCondition",
    "EventRecord",
    "History",
    "NotRule",
    "NotWhere",
    "PropertyCondition",
    "Rule",
    "RuleError",
    "RuleProblem",
    "SegmentCondition",
    "SegmentUnavailable",
    "SumTest",
    "TagCondition",
    "TimeTest",
    "Where",
    "compile_rule",
    "compile_where",
    "dependencies",
    "dump_rule",
    "dump_where",
    "evaluate",
    "evaluate_where",
    "history",
    "inline_segments",
    "max_within",
    "next_time_change",
    "parse_rule",
    "parse_where",
    "referenced_segments",
]

Operator = Literal[
    "eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between",
    "contains", "starts_with", "exists", "before", "after",
]  # fmt: skip
NumberOperator = Literal["eq", "ne", "gt", "gte", "lt", "lte", "between"]
TimeOperator = Literal["before", "after"]
Channel = Literal["email", "sms"]

OPERATORS: Final[tuple[str, ...]] = get_args(Operator)
NUMBER_OPERATORS: Final[tuple[str, ...]] = get_args(NumberOperator)
TIME_OPERATORS: Final[tuple[str, ...]] = get_args(TimeOperator)
CHANNELS: Final[tuple[str, ...]] = get_args(Channel)
SUBSCRIBED: Final = "subscribed"
MAX_RULE_DURATION: Final = timedelta(days=36_500)
"""Longest ``within`` window or relative date offset (about a century, e.g. ages)."""

Scalar: TypeAlias = str | int | float | bool
Number: TypeAlias = int | float
TimeRef: TypeAlias = date | datetime | timedelta
"""An absolute date or UTC date-time, or a signed offset from ``now`` (``-30d``)."""
Operand: TypeAlias = Scalar | tuple[Scalar, ...] | TimeRef

_ONE_MICROSECOND: Final = timedelta(microseconds=1)
_MIN_TIME: Final = datetime.min.replace(tzinfo=UTC)
_MAX_TIME: Final = datetime.max.replace(tzinfo=UTC)
_COLLECTIONS: Final = (list, tuple, set, frozenset)


# --------------------------------------------------------------------------- model


class _Node(BaseModel):
    """A rule node: immutable; equal when its fields are, value types included (1, 1.0, true differ)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Node):
            return NotImplemented
        return _key(self) == _key(other)

    def __hash__(self) -> int:
        return hash(_key(self))


def _key(value: Any) -> Any:
    """A hashable key that tells apart values Python finds equal across types."""
    if isinstance(value, _Node):
        fields = type(value).model_fields
        return (type(value).__name__, *((name, _key(getattr(value, name))) for name in fields))
    if isinstance(value, tuple):
        return ("tuple", *(_key(v) for v in value))
    return (type(value).__name__, value)


class AttributeCondition(_Node):
    """``{attribute: name, <op>: value}``."""

    attribute: str
    op: Operator
    value: SkipValidation[Operand]


class TagCondition(_Node):
    """``{tag: name}``."""

    tag: str


class ConsentCondition(_Node):
    """``{consent: email|sms}``: the contact is subscribed on that channel."""

    consent: Channel


class SegmentCondition(_Node):
    """``{segment: id}``, resolved live through ``ContactView.segment``."""

    segment: str


class PropertyCondition(_Node):
    """``{property: name, <op>: value}`` on an event's properties (inside ``where``)."""

    property: str
    op: Operator
    value: SkipValidation[Operand]


class AllWhere(_Node):
    """``all: [...]`` inside ``where``."""

    rules: tuple[Where, ...]


class AnyWhere(_Node):
    """``any: [...]`` inside ``where``."""

    rules: tuple[Where, ...]


class NotWhere(_Node):
    """``not: ...`` inside ``where``."""

    rule: Where


class CountTest(_Node):
    """``count: {op: n}``."""

    op: NumberOperator
    value: SkipValidation[int | tuple[int, int]]


class SumTest(_Node):
    """``sum: {property: name, op: n}``; non-numeric and missing values add nothing."""

    property: str
    op: NumberOperator
    value: SkipValidation[Number | tuple[Number, Number]]


class TimeTest(_Node):
    """``first``/``last``: ``{before|after: time}`` on the earliest/latest matching event."""

    op: TimeOperator
    at: SkipValidation[TimeRef]


class EventCondition(_Node):
    """``{event, where?, within?, count?, sum?, first?, last?}``; bare means count >= 1."""

    event: str
    where: Where | None = None
    within: timedelta | None = None
    count: CountTest | None = None
    sum: SumTest | None = None
    first: TimeTest | None = None
    last: TimeTest | None = None

    @property
    def is_bare(self) -> bool:
        """No count, sum, first or last: the condition is ``count >= 1``."""
        return self.count is None and self.sum is None and self.first is None and self.last is None


class AllRule(_Node):
    """``all: [...]``: every rule holds."""

    rules: tuple[Rule, ...]


class AnyRule(_Node):
    """``any: [...]``: at least one rule holds."""

    rules: tuple[Rule, ...]


class NotRule(_Node):
    """``not: rule``."""

    rule: Rule


_RULE_CLASSES: Final = (
    AttributeCondition, TagCondition, ConsentCondition, SegmentCondition,
    EventCondition, AllRule, AnyRule, NotRule,
)  # fmt: skip
_WHERE_CLASSES: Final = (PropertyCondition, AllWhere, AnyWhere, NotWhere)


def _node_tag(value: Any) -> str | None:
    return type(value).__name__ if isinstance(value, _Node) else None


def _coerce_rule(value: Any) -> Any:
    return value if isinstance(value, _RULE_CLASSES) else parse_rule(value)


def _coerce_where(value: Any) -> Any:
    return value if isinstance(value, _WHERE_CLASSES) else parse_where(value)


def _serialize(value: _Node) -> dict[str, Any]:
    return _dump(value)


Rule: TypeAlias = Annotated[
    Annotated[AttributeCondition, Tag("AttributeCondition")]
    | Annotated[TagCondition, Tag("TagCondition")]
    | Annotated[ConsentCondition, Tag("ConsentCondition")]
    | Annotated[SegmentCondition, Tag("SegmentCondition")]
    | Annotated[EventCondition, Tag("EventCondition")]
    | Annotated[AllRule, Tag("AllRule")]
    | Annotated[AnyRule, Tag("AnyRule")]
    | Annotated[NotRule, Tag("NotRule")],
    Discriminator(_node_tag),
    BeforeValidator(_coerce_rule),
    PlainSerializer(_serialize, return_type=dict),
]
"""A rule node. As a pydantic field it also accepts the YAML shape and dumps back to it."""

Where: TypeAlias = Annotated[
    Annotated[PropertyCondition, Tag("PropertyCondition")]
    | Annotated[AllWhere, Tag("AllWhere")]
    | Annotated[AnyWhere, Tag("AnyWhere")]
    | Annotated[NotWhere, Tag("NotWhere")],
    Discriminator(_node_tag),
    BeforeValidator(_coerce_where),
    PlainSerializer(_serialize, return_type=dict),
]
"""A condition on one event's properties (``where``)."""

for _model in (AllWhere, AnyWhere, NotWhere, EventCondition, AllRule, AnyRule, NotRule):
    _model.model_rebuild()


# --------------------------------------------------------------------------- errors


@dataclass(frozen=True)
class RuleProblem:
    """One problem in a rule, at a path like ``rule.all[2].event.within``."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class RuleError(ValueError):
    """A rule that does not parse; ``problems`` lists every problem found."""

    def __init__(self, problems: Sequence[RuleProblem]) -> None:
        self.problems: list[RuleProblem] = list(problems)
        count = len(self.problems)
        head = "1 problem" if count == 1 else f"{count} problems"
        super().__init__(f"{head} in rule:\n" + "\n".join(f"  {p}" for p in self.problems))


class SegmentUnavailable(LookupError):
    """A ``{segment: id}`` was evaluated on a contact view without a segment resolver."""

    def __init__(self, segment_id: str) -> None:
        self.segment_id = segment_id
        super().__init__(
            f"segment {segment_id!r} cannot be resolved: the contact view has no segment resolver"
        )


# --------------------------------------------------------------------------- parser

_RULE_KEYS: Final = ("attribute", "tag", "consent", "segment", "event", "all", "any", "not")
_WHERE_KEYS: Final = ("property", "all", "any", "not")
_EVENT_OPTIONS: Final = ("where", "within", "count", "sum", "first", "last")
_ORDERING: Final = ("gt", "gte", "lt", "lte")


def parse_rule(data: object, path: str = "rule") -> Rule:
    """Parse a rule from YAML/JSON data; raise ``RuleError`` listing every problem."""
    parser = _Parser()
    rule = parser.rule(data, path)
    if parser.problems or rule is None:
        raise RuleError(parser.problems or [RuleProblem(path, "invalid rule")])
    return rule


def parse_where(data: object, path: str = "where") -> Where:
    """Parse a ``where`` (property conditions with all/any/not; a list means all)."""
    parser = _Parser()
    where = parser.where(data, path)
    if parser.problems or where is None:
        raise RuleError(parser.problems or [RuleProblem(path, "invalid condition")])
    return where


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, int | float | Decimal):
        return f"the number {value}"
    if isinstance(value, datetime):
        return f"the date-time {value.isoformat()}"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _suggest(key: object, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _is_name(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""


class _Parser:
    """Parses nodes, collecting problems instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[RuleProblem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(RuleProblem(path, message))

    # ---- structure

    def _kind(self, data: object, path: str, kinds: tuple[str, ...], what: str) -> str | None:
        """The one key of ``kinds`` in a mapping, or None after reporting why not."""
        if not isinstance(data, Mapping):
            self.add(path, f"must be a mapping with one of {', '.join(kinds)}; got {_describe(data)}")
            return None
        found = [k for k in kinds if k in data]
        if len(found) == 1:
            return found[0]
        if found:
            self.add(
                path, f"mixes {' and '.join(found)}: one {what} per mapping; combine them with all or any"
            )
            return None
        keys = ", ".join(repr(k) for k in data) or "no keys"
        if what == "condition" and "property" in data:
            self.add(path, "property conditions go inside an event's where; use attribute for contacts")
        elif what == "property condition" and any(k in data for k in _RULE_KEYS):
            self.add(path, "where compares event properties only: use {property: name, <operator>: value}")
        else:
            hint = _suggest(next(iter(data), ""), kinds)
            self.add(path, f"unknown {what} ({keys}): expected one of {', '.join(kinds)}{hint}")
        return None

    def _group(
        self, items: object, path: str, child: Callable[[object, str], _Node | None]
    ) -> tuple[_Node, ...] | None:
        """A non-empty list of conditions at ``path``."""
        if isinstance(items, str) or not isinstance(items, Sequence):
            self.add(path, f"must be a list of conditions; got {_describe(items)}")
            return None
        if not items:
            self.add(path, "must list at least one condition")
            return None
        nodes = [child(item, f"{path}[{i}]") for i, item in enumerate(items)]
        if any(n is None for n in nodes):
            return None
        return tuple(n for n in nodes if n is not None)

    def _no_extra_keys(self, data: Mapping[Any, Any], path: str, kind: str) -> bool:
        ok = True
        for key in data:
            if key != kind:
                self.add(f"{path}.{key}", f"unknown key {key!r} next to {kind!r}")
                ok = False
        return ok

    def rule(self, data: object, path: str) -> Rule | None:
        if isinstance(data, _RULE_CLASSES):
            return data
        kind = self._kind(data, path, _RULE_KEYS, "condition")
        if kind is None:
            return None
        assert isinstance(data, Mapping)
        if kind in ("all", "any"):
            ok = self._no_extra_keys(data, path, kind)
            rules = self._group(data[kind], f"{path}.{kind}", self.rule)
            if rules is None or not ok:
                return None
            return AllRule(rules=rules) if kind == "all" else AnyRule(rules=rules)  # type: ignore[arg-type]
        if kind == "not":
            inner_ok = self._no_extra_keys(data, path, kind)
            inner = self.rule(data["not"], f"{path}.not")
            return NotRule(rule=inner) if inner is not None and inner_ok else None
        if kind == "attribute":
            parsed = self._leaf(data, path, "attribute")
            return (
                None
                if parsed is None
                else AttributeCondition(attribute=parsed[0], op=parsed[1], value=parsed[2])
            )
        if kind == "event":
            return self._event(data, path)
        return self._simple(data, path, kind)

    def where(self, data: object, path: str) -> Where | None:
        if isinstance(data, _WHERE_CLASSES):
            return data
        if isinstance(data, list | tuple):
            rules = self._group(data, path, self.where)
            if rules is None:
                return None
            return AllWhere(rules=rules)  # type: ignore[arg-type]
        kind = self._kind(data, path, _WHERE_KEYS, "property condition")
        if kind is None:
            return None
        assert isinstance(data, Mapping)
        if kind in ("all", "any"):
            ok = self._no_extra_keys(data, path, kind)
            rules = self._group(data[kind], f"{path}.{kind}", self.where)
            if rules is None or not ok:
                return None
            return AllWhere(rules=rules) if kind == "all" else AnyWhere(rules=rules)  # type: ignore[arg-type]
        if kind == "not":
            inner_ok = self._no_extra_keys(data, path, kind)
            inner = self.where(data["not"], f"{path}.not")
            return NotWhere(rule=inner) if inner is not None and inner_ok else None
        parsed = self._leaf(data, path, "property")
        return (
            None if parsed is None else PropertyCondition(property=parsed[0], op=parsed[1], value=parsed[2])
        )

    # ---- leaves

    def _simple(self, data: Mapping[Any, Any], path: str, kind: str) -> Rule | None:
        base = f"{path}.{kind}"
        ok = True
        for key in data:
            if key != kind:
                self.add(f"{base}.{key}", f"unknown key {key!r}: a {kind} condition takes no options")
                ok = False
        value = data[kind]
        if kind == "consent":
            if value not in CHANNELS:
                self.add(base, f"unknown channel {value!r}: expected one of {', '.join(CHANNELS)}")
                return None
            return ConsentCondition(consent=value) if ok else None
        if not _is_name(value):
            self.add(base, f"must be a non-empty {kind} name; got {_describe(value)}")
            return None
        if not ok:
            return None
        return TagCondition(tag=value) if kind == "tag" else SegmentCondition(segment=value)

    def _operators(
        self, data: Mapping[Any, Any], path: str, allowed: tuple[str, ...], fixed: tuple[str, ...] = ()
    ) -> tuple[bool, list[str]]:
        """Check for exactly one operator of ``allowed`` besides ``fixed`` keys."""
        ok = True
        ops: list[str] = []
        for key in data:
            if key in fixed:
                continue
            if isinstance(key, str) and key in allowed:
                ops.append(key)
            else:
                self.add(
                    f"{path}.{key}",
                    f"unknown operator {key!r}: expected one of {', '.join(allowed)}"
                    + _suggest(key, allowed),
                )
                ok = False
        if not ops and ok:
            self.add(path, f"needs an operator: one of {', '.join(allowed)}")
            ok = False
        if len(ops) > 1:
            self.add(
                path,
                f"has {len(ops)} operators ({', '.join(ops)}): use one per condition (or between, or all)",
            )
            ok = False
        return ok, ops

    def _leaf(self, data: Mapping[Any, Any], path: str, key: str) -> tuple[str, Any, Operand] | None:
        base = f"{path}.{key}"
        name = data[key]
        ok = _is_name(name)
        if not ok:
            self.add(base, f"must be a non-empty {key} name; got {_describe(name)}")
        ops_ok, ops = self._operators(data, base, OPERATORS, fixed=(key,))
        values = [self._operand(op, data[op], f"{base}.{op}") for op in ops]
        if not (ok and ops_ok) or values[0] is None:
            return None
        return name, ops[0], values[0]

    def _scalar(self, value: object, path: str) -> Scalar | None:
        if isinstance(value, bool | str):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float | Decimal):
            if not math.isfinite(value):
                self.add(path, f"must be a finite number; got {value}")
                return None
            if isinstance(value, Decimal):
                return int(value) if value == value.to_integral_value() else float(value)
            return value
        if isinstance(value, date):
            self.add(
                path,
                "an unquoted date is read as a date, not text: quote it, or compare dates with before/after",
            )
        elif value is None:
            self.add(path, "is empty (null); use exists: false to test for a missing value")
        else:
            self.add(path, f"must be a string, a number or true/false; got {_describe(value)}")
        return None

    def _number(self, value: object, path: str, *, integer: bool = False) -> Number | None:
        kind = "a whole number >= 0" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            self.add(path, f"must be {kind}; got {_describe(value)}")
            return None
        number = self._scalar(value, path)
        if number is None or isinstance(number, bool | str):
            return None
        if integer and (not isinstance(number, int) or number < 0):
            self.add(path, f"must be {kind}; got {_describe(value)}")
            return None
        return number

    def _orderable(self, value: object, path: str) -> str | Number | None:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            return self._number(value, path)
        if isinstance(value, date):
            self.add(path, "dates compare with before/after, not gt/gte/lt/lte/between")
        else:
            self.add(path, f"must be a number or a string; got {_describe(value)}")
        return None

    def _list(self, value: object, path: str) -> Sequence[Any] | None:
        if isinstance(value, str) or not isinstance(value, Sequence):
            self.add(path, f"must be a list of values; got {_describe(value)}")
            return None
        return value

    def _operand(self, op: str, value: object, path: str) -> Operand | None:
        if op in ("eq", "ne", "contains"):
            return self._scalar(value, path)
        if op == "starts_with":
            if isinstance(value, str):
                return value
            self.add(path, f"must be a string; got {_describe(value)}")
            return None
        if op == "exists":
            if isinstance(value, bool):
                return value
            self.add(path, f"must be true or false; got {_describe(value)}")
            return None
        if op in ("before", "after"):
            return self._time_ref(value, path)
        if op in _ORDERING:
            return self._orderable(value, path)
        items = self._list(value, path)
        if items is None:
            return None
        if op == "between":
            return self._between(items, path, self._orderable)
        # in / not_in
        if not items:
            self.add(path, "must list at least one value")
            return None
        scalars = [self._scalar(item, f"{path}[{i}]") for i, item in enumerate(items)]
        if any(s is None for s in scalars):
            return None
        if any(isinstance(s, bool) for s in scalars) and any(isinstance(s, str) for s in scalars):
            self.add(
                path,
                "mixes text and true/false: quote values like 'NO' or 'yes' (YAML reads them as booleans)",
            )
            return None
        return tuple(s for s in scalars if s is not None)

    def _between(
        self, items: Sequence[Any], path: str, bound: Callable[[object, str], Any]
    ) -> tuple[Any, Any] | None:
        if len(items) != 2:
            self.add(path, f"must be a list of two values [low, high]; got {len(items)} values")
            return None
        low, high = bound(items[0], f"{path}[0]"), bound(items[1], f"{path}[1]")
        if low is None or high is None:
            return None
        if isinstance(low, str) != isinstance(high, str):
            self.add(path, "low and high must both be numbers or both be strings")
            return None
        if low > high:
            self.add(path, f"low {low!r} is greater than high {high!r}")
            return None
        return low, high

    def _time_ref(self, value: object, path: str) -> TimeRef | None:
        if isinstance(value, datetime):
            moment = _utc(value)
            if moment is None:
                self.add(path, f"{_describe(value)} is out of range")
            return moment
        if isinstance(value, date):
            return value
        if isinstance(value, str) and value[:1] in ("-", "+"):
            try:
                offset = parse_duration(value[1:], maximum=MAX_RULE_DURATION)
            except DurationError as error:
                self.add(path, f"invalid relative time {value!r} (like '-30d'): {error}")
                return None
            return -offset if value[0] == "-" else offset
        if isinstance(value, str):
            parsed = _parse_time_text(value)
            if parsed is None:
                self.add(
                    path,
                    f"{value!r} is not a time: use an ISO date ('2024-01-31'), a date-time "
                    "('2024-01-31T09:00:00Z') or a relative time ('-30d', '+7d')",
                )
            return parsed
        self.add(path, f"must be a date or a relative time like '-30d'; got {_describe(value)}")
        return None

    # ---- events

    def _event(self, data: Mapping[Any, Any], path: str) -> EventCondition | None:
        base = f"{path}.event"
        ok = True
        name = data["event"]
        if not _is_name(name):
            self.add(base, f"must be a non-empty event name; got {_describe(name)}")
            ok = False
        for key in data:
            if key != "event" and key not in _EVENT_OPTIONS:
                self.add(
                    f"{base}.{key}",
                    f"unknown key {key!r}: expected {', '.join(_EVENT_OPTIONS)}"
                    + _suggest(key, _EVENT_OPTIONS),
                )
                ok = False
        parts: dict[str, Any] = {}
        if "where" in data:
            parts["where"] = self.where(data["where"], f"{base}.where")
        if "within" in data:
            try:
                parts["within"] = parse_duration(data["within"], maximum=MAX_RULE_DURATION)
            except DurationError as error:
                self.add(f"{base}.within", str(error))
                parts["within"] = None
        if "count" in data:
            parts["count"] = self._count(data["count"], f"{base}.count")
        if "sum" in data:
            parts["sum"] = self._sum(data["sum"], f"{base}.sum")
        for key in ("first", "last"):
            if key in data:
                parts[key] = self._time_test(data[key], f"{base}.{key}")
        if not ok or any(v is None for v in parts.values()):
            return None
        return EventCondition(event=name, **parts)

    def _mapping(self, value: object, path: str, example: str) -> Mapping[Any, Any] | None:
        if isinstance(value, Mapping):
            return value
        self.add(path, f"must be a mapping like {example}; got {_describe(value)}")
        return None

    def _number_operand(self, op: str, value: object, path: str, *, integer: bool) -> Any:
        def bound(item: object, item_path: str) -> Number | None:
            return self._number(item, item_path, integer=integer)

        if op != "between":
            return bound(value, path)
        items = self._list(value, path)
        return None if items is None else self._between(items, path, bound)

    def _count(self, value: object, path: str) -> CountTest | None:
        data = self._mapping(value, path, "{gte: 3}")
        if data is None:
            return None
        ok, ops = self._operators(data, path, NUMBER_OPERATORS)
        values = [self._number_operand(op, data[op], f"{path}.{op}", integer=True) for op in ops]
        return CountTest(op=ops[0], value=values[0]) if ok and values[0] is not None else None

    def _sum(self, value: object, path: str) -> SumTest | None:
        data = self._mapping(value, path, "{property: total, gte: 200}")
        if data is None:
            return None
        ok = True
        if "property" not in data:
            self.add(path, "needs the property to add up: {property: name, <operator>: n}")
            ok = False
        elif not _is_name(data["property"]):
            self.add(
                f"{path}.property", f"must be a non-empty property name; got {_describe(data['property'])}"
            )
            ok = False
        ops_ok, ops = self._operators(data, path, NUMBER_OPERATORS, fixed=("property",))
        values = [self._number_operand(op, data[op], f"{path}.{op}", integer=False) for op in ops]
        if not (ok and ops_ok) or values[0] is None:
            return None
        return SumTest(property=data["property"], op=ops[0], value=values[0])

    def _time_test(self, value: object, path: str) -> TimeTest | None:
        data = self._mapping(value, path, "{after: '-30d'}")
        if data is None:
            return None
        ok, ops = self._operators(data, path, TIME_OPERATORS)
        values = [self._time_ref(data[op], f"{path}.{op}") for op in ops]
        return TimeTest(op=ops[0], at=values[0]) if ok and values[0] is not None else None


# --------------------------------------------------------------------------- dump


def dump_rule(rule: Rule) -> dict[str, Any]:
    """The YAML/JSON shape of a rule: ``parse_rule(dump_rule(r)) == r``."""
    return _dump(rule)


def dump_where(where: Where) -> dict[str, Any]:
    """The YAML/JSON shape of a ``where``."""
    return _dump(where)


def _dump_time(ref: TimeRef) -> str:
    if isinstance(ref, timedelta):
        return ("-" if ref < timedelta(0) else "+") + format_duration(abs(ref))
    if isinstance(ref, datetime):
        text = ref.isoformat()
        return text[: -len("+00:00")] + "Z" if text.endswith("+00:00") else text
    return ref.isoformat()


def _dump_operand(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_dump_operand(v) for v in value]
    if isinstance(value, date | timedelta):
        return _dump_time(value)
    return value


def _dump(node: _Node) -> dict[str, Any]:
    if isinstance(node, AttributeCondition):
        return {"attribute": node.attribute, node.op: _dump_operand(node.value)}
    if isinstance(node, PropertyCondition):
        return {"property": node.property, node.op: _dump_operand(node.value)}
    if isinstance(node, TagCondition):
        return {"tag": node.tag}
    if isinstance(node, ConsentCondition):
        return {"consent": node.consent}
    if isinstance(node, SegmentCondition):
        return {"segment": node.segment}
    if isinstance(node, AllRule | AllWhere):
        return {"all": [_dump(r) for r in node.rules]}
    if isinstance(node, AnyRule | AnyWhere):
        return {"any": [_dump(r) for r in node.rules]}
    if isinstance(node, NotRule | NotWhere):
        return {"not": _dump(node.rule)}
    if isinstance(node, CountTest):
        return {node.op: _dump_operand(node.value)}
    if isinstance(node, SumTest):
        return {"property": node.property, node.op: _dump_operand(node.value)}
    if isinstance(node, TimeTest):
        return {node.op: _dump_time(node.at)}
    if isinstance(node, EventCondition):
        out: dict[str, Any] = {"event": node.event}
        if node.where is not None:
            out["where"] = _dump(node.where)
        if node.within is not None:
            out["within"] = format_duration(node.within)
        for key in ("count", "sum", "first", "last"):
            part = getattr(node, key)
            if part is not None:
                out[key] = _dump(part)
        return out
    raise TypeError(f"not a rule node: {node!r}")


# --------------------------------------------------------------------------- contact view


def _utc(moment: datetime) -> datetime | None:
    """The same instant in UTC (naive means UTC); None if out of range."""
    if moment.tzinfo is UTC:
        return moment
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None


def _utc_required(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(moment).__name__}")
    converted = _utc(moment)
    if converted is None:
        raise ValueError(f"{what} {moment!r} is out of range in UTC")
    return converted


@dataclass(slots=True)
class EventRecord:
    """One tracked event; the timestamp is kept in UTC (naive means UTC)."""

    name: str
    timestamp: datetime
    properties: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.timestamp = _utc_required(self.timestamp, "timestamp")


@dataclass(slots=True)
class ContactView:
    """What a rule sees of one contact at ``now``; treat it as a snapshot."""

    attributes: Mapping[str, Any]
    tags: AbstractSet[str]
    consent: Mapping[str, str]
    events: Sequence[EventRecord]
    now: datetime
    segment: Callable[[str], bool] | None = None
    _index: dict[str, list[EventRecord]] | None = field(default=None, init=False, repr=False, compare=False)
    _index_of: tuple[object, int] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.now = _utc_required(self.now, "now")

    def events_named(self, name: str) -> Sequence[EventRecord]:
        """The events called ``name`` in their given order (indexed once per view)."""
        events = self.events
        index = self._index
        if index is None or self._index_of != (events, len(events)):
            index = {}
            for event in events:
                bucket = index.get(event.name)
                if bucket is None:
                    index[event.name] = [event]
                else:
                    bucket.append(event)
            self._index, self._index_of = index, (events, len(events))
        return index.get(name, ())


# --------------------------------------------------------------------------- value semantics


def _is_number(x: object) -> bool:
    if isinstance(x, bool):
        return False
    if isinstance(x, int | float):
        return True
    return isinstance(x, Decimal) and not x.is_nan()


def _same(x: Any, v: Scalar) -> bool:
    """``x`` equals the rule's scalar ``v`` without coercion."""
    if isinstance(v, bool):
        return x is v
    if isinstance(v, str):
        return isinstance(x, str) and x == v
    return _is_number(x) and bool(x == v)


def _orderable_with(x: Any, v: object) -> bool:
    return isinstance(x, str) if isinstance(v, str) else _is_number(x)


@lru_cache(maxsize=8192)
def _parse_time_text(text: str) -> date | None:
    """An ISO date (``2024-01-31``) or date-time in UTC, else None."""
    if len(text) < 10 or text[4] != "-" or text[7] != "-":
        return None
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return _utc(datetime.fromisoformat(text))
    except ValueError:
        return None


def _as_time(x: Any) -> date | None:
    if isinstance(x, str):
        return _parse_time_text(x)
    if isinstance(x, datetime):
        return _utc(x)
    if isinstance(x, date):
        return x
    return None


def _day(moment: date) -> date:
    return moment.date() if isinstance(moment, datetime) else moment


def _is_before(a: date, b: date) -> bool:
    """``a < b``; by UTC calendar day if either is a plain date."""
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a < b
    return _day(a) < _day(b)


def _shift(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment + delta
    except OverflowError:
        return _MAX_TIME if delta > timedelta(0) else _MIN_TIME


def _resolve(ref: TimeRef, now: datetime) -> date:
    return _shift(now, ref) if isinstance(ref, timedelta) else ref


def _time_holds(op: str, moment: date, ref: TimeRef, now: datetime) -> bool:
    threshold = _resolve(ref, now)
    return _is_before(moment, threshold) if op == "before" else _is_before(threshold, moment)


def _holds(op: str, value: Any, x: Any, now: datetime) -> bool:
    """The reference meaning of ``<op>: value`` on the value ``x`` (None: missing)."""
    if x is None:
        return op == "exists" and value is False
    if op == "exists":
        return value is True
    if op == "eq":
        return _same(x, value)
    if op == "ne":
        return not _same(x, value)
    if op == "in":
        return any(_same(x, v) for v in value)
    if op == "not_in":
        return not any(_same(x, v) for v in value)
    if op in _ORDERING:
        return _orderable_with(x, value) and bool(_ORDER_FUNCTIONS[op](x, value))
    if op == "between":
        low, high = value
        return _orderable_with(x, low) and bool(low <= x <= high)
    if op == "contains":
        if isinstance(x, str):
            return isinstance(value, str) and value in x
        if isinstance(x, _COLLECTIONS):
            return any(_same(item, value) for item in x)
        return False
    if op == "starts_with":
        return isinstance(x, str) and x.startswith(value)
    if op in ("before", "after"):
        moment = _as_time(x)
        return moment is not None and _time_holds(op, moment, value, now)
    raise ValueError(f"unknown operator {op!r}")


_ORDER_FUNCTIONS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
    "ne": operator.ne,
}


def _number_holds(op: str, value: Any, n: Number) -> bool:
    if op == "between":
        low, high = value
        return bool(low <= n <= high)
    return bool(_ORDER_FUNCTIONS[op](n, value))


def _combine_total(exact: int, floats: list[float]) -> Number:
    """An order-independent total: exact for ints, correctly rounded otherwise."""
    if not floats:
        return exact
    try:
        return math.fsum([*floats, float(exact)])
    except (OverflowError, ValueError):
        return math.nan


def _total(values: Iterator[Any]) -> Number:
    exact, floats = 0, []
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool):
            exact += v
        elif _is_number(v):
            floats.append(float(v))
    return _combine_total(exact, floats)


# --------------------------------------------------------------------------- reference evaluator


def evaluate(rule: Rule, contact: ContactView) -> bool:
    """Whether ``rule`` holds for ``contact`` at ``contact.now`` (a plain tree walk)."""
    return _eval(rule, contact, contact.now)


def evaluate_where(where: Where, properties: Mapping[str, Any], now: datetime) -> bool:
    """Whether one event's properties satisfy ``where`` (``now`` resolves relative dates)."""
    return _eval_where(where, properties, _utc_required(now, "now"))


def _eval(node: Rule, contact: ContactView, now: datetime) -> bool:
    if isinstance(node, AllRule):
        return all(_eval(r, contact, now) for r in node.rules)
    if isinstance(node, AnyRule):
        return any(_eval(r, contact, now) for r in node.rules)
    if isinstance(node, NotRule):
        return not _eval(node.rule, contact, now)
    if isinstance(node, AttributeCondition):
        return _holds(node.op, node.value, contact.attributes.get(node.attribute), now)
    if isinstance(node, TagCondition):
        return node.tag in contact.tags
    if isinstance(node, ConsentCondition):
        return contact.consent.get(node.consent) == SUBSCRIBED
    if isinstance(node, SegmentCondition):
        if contact.segment is None:
            raise SegmentUnavailable(node.segment)
        return bool(contact.segment(node.segment))
    if isinstance(node, EventCondition):
        return _eval_event(node, contact, now)
    raise TypeError(f"not a rule: {node!r}")


def _eval_where(node: Where, properties: Mapping[str, Any], now: datetime) -> bool:
    if isinstance(node, AllWhere):
        return all(_eval_where(r, properties, now) for r in node.rules)
    if isinstance(node, AnyWhere):
        return any(_eval_where(r, properties, now) for r in node.rules)
    if isinstance(node, NotWhere):
        return not _eval_where(node.rule, properties, now)
    if isinstance(node, PropertyCondition):
        return _holds(node.op, node.value, properties.get(node.property), now)
    raise TypeError(f"not a where condition: {node!r}")


def _eval_event(cond: EventCondition, contact: ContactView, now: datetime) -> bool:
    start = None if cond.within is None else _shift(now, -cond.within)
    matched = [
        e
        for e in contact.events
        if e.name == cond.event
        and (start is None or start < e.timestamp <= now)
        and (cond.where is None or _eval_where(cond.where, e.properties, now))
    ]
    if cond.is_bare:
        return len(matched) >= 1
    if cond.count is not None and not _number_holds(cond.count.op, cond.count.value, len(matched)):
        return False
    if cond.sum is not None:
        prop = cond.sum.property
        total = _total(e.properties.get(prop) for e in matched)
        if not _number_holds(cond.sum.op, cond.sum.value, total):
            return False
    for test, pick in ((cond.first, min), (cond.last, max)):
        if test is not None:
            if not matched:
                return False
            moment = pick(e.timestamp for e in matched)
            if not _time_holds(test.op, moment, test.at, now):
                return False
    return True


# --------------------------------------------------------------------------- compiler

Check: TypeAlias = Callable[[ContactView], bool]
ValueTest: TypeAlias = Callable[[Any, datetime], bool]
PropertiesTest: TypeAlias = Callable[[Mapping[str, Any], datetime], bool]


def compile_rule(rule: Rule) -> Check:
    """Compile ``rule`` once into closures; ``compile_rule(r)(c) == evaluate(r, c)``."""
    return _compile(rule)


def compile_where(where: Where) -> PropertiesTest:
    """Compile a ``where`` into ``test(properties, now) -> bool``."""
    return _compile_where(where)


def _all_of(checks: Sequence[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda c: first(c) and second(c)
    items = tuple(checks)

    def every(c: ContactView) -> bool:
        for check in items:  # noqa: SIM110 - a plain loop beats all() over a generator
            if not check(c):
                return False
        return True

    return every


def _any_of(checks: Sequence[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]
    items = tuple(checks)

    def some(c: ContactView) -> bool:
        for check in items:  # noqa: SIM110 - a plain loop beats any() over a generator
            if check(c):
                return True
        return False

    return some


def _all_where(tests: Sequence[PropertiesTest]) -> PropertiesTest:
    items = tuple(tests)

    def every(props: Mapping[str, Any], now: datetime) -> bool:
        for test in items:  # noqa: SIM110 - as in _all_of
            if not test(props, now):
                return False
        return True

    return every


def _any_where(tests: Sequence[PropertiesTest]) -> PropertiesTest:
    items = tuple(tests)

    def some(props: Mapping[str, Any], now: datetime) -> bool:
        for test in items:  # noqa: SIM110 - as in _any_of
            if test(props, now):
                return True
        return False

    return some


def _compile(node: Rule) -> Check:
    if isinstance(node, AllRule | AnyRule):
        children = [_compile(r) for r in node.rules]
        return _all_of(children) if isinstance(node, AllRule) else _any_of(children)
    if isinstance(node, NotRule):
        inner = _compile(node.rule)
        return lambda c: not inner(c)
    if isinstance(node, AttributeCondition):
        return _compile_attribute(node)
    if isinstance(node, TagCondition):
        tag = node.tag
        return lambda c: tag in c.tags
    if isinstance(node, ConsentCondition):
        channel = node.consent
        return lambda c: c.consent.get(channel) == SUBSCRIBED
    if isinstance(node, SegmentCondition):
        segment_id = node.segment

        def in_segment(c: ContactView) -> bool:
            resolve = c.segment
            if resolve is None:
                raise SegmentUnavailable(segment_id)
            return bool(resolve(segment_id))

        return in_segment
    if isinstance(node, EventCondition):
        return _compile_event(node)
    raise TypeError(f"not a rule: {node!r}")


def _compile_attribute(node: AttributeCondition) -> Check:
    name, op, value = node.attribute, node.op, node.value
    # The commonest leaves read the attribute inline: one call per condition.
    if op == "exists":
        if value is True:
            return lambda c: c.attributes.get(name) is not None
        return lambda c: c.attributes.get(name) is None
    if op == "eq" and isinstance(value, str):

        def eq_text(c: ContactView) -> bool:
            x = c.attributes.get(name)
            return isinstance(x, str) and x == value

        return eq_text
    if op == "in" and isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        texts = frozenset(value)

        def in_texts(c: ContactView) -> bool:
            x = c.attributes.get(name)
            return isinstance(x, str) and x in texts

        return in_texts
    test = _value_test(op, value)
    return lambda c: test(c.attributes.get(name), c.now)


def _eq_test(v: Scalar) -> ValueTest:
    if isinstance(v, bool):
        return lambda x, now: x is v
    if isinstance(v, str):
        return lambda x, now: isinstance(x, str) and x == v
    return lambda x, now: _is_number(x) and bool(x == v)


def _in_test(values: tuple[Scalar, ...]) -> ValueTest:
    texts = frozenset(v for v in values if isinstance(v, str))
    numbers = frozenset(v for v in values if _is_number(v))
    has_true, has_false = any(v is True for v in values), any(v is False for v in values)

    def test(x: Any, now: datetime) -> bool:
        if isinstance(x, str):
            return x in texts
        if x is True:
            return has_true
        if x is False:
            return has_false
        return _is_number(x) and x in numbers

    return test


def _value_test(op: str, value: Any) -> ValueTest:
    """A closure for ``<op>: value`` on a raw value (None: missing)."""
    if op == "exists":
        if value is True:
            return lambda x, now: x is not None
        return lambda x, now: x is None
    if op in ("eq", "ne"):
        eq = _eq_test(value)
        if op == "eq":
            return eq
        return lambda x, now: x is not None and not eq(x, now)
    if op in ("in", "not_in"):
        member = _in_test(value)
        if op == "in":
            return member
        return lambda x, now: x is not None and not member(x, now)
    if op in _ORDERING:
        compare = _ORDER_FUNCTIONS[op]
        if isinstance(value, str):
            return lambda x, now: isinstance(x, str) and bool(compare(x, value))
        return lambda x, now: _is_number(x) and bool(compare(x, value))
    if op == "between":
        low, high = value
        if isinstance(low, str):
            return lambda x, now: isinstance(x, str) and low <= x <= high
        return lambda x, now: _is_number(x) and bool(low <= x <= high)
    if op == "contains":
        return _contains_test(value)
    if op == "starts_with":
        prefix: str = value
        return lambda x, now: isinstance(x, str) and x.startswith(prefix)
    if op in ("before", "after"):
        return _time_value_test(op, value)
    raise ValueError(f"unknown operator {op!r}")


def _contains_test(value: Scalar) -> ValueTest:
    if isinstance(value, str):
        text = value

        def contains_text(x: Any, now: datetime) -> bool:
            if isinstance(x, str | list | tuple | set | frozenset):
                return text in x
            return False

        return contains_text
    same = _eq_test(value)

    def contains_item(x: Any, now: datetime) -> bool:
        if isinstance(x, _COLLECTIONS):
            for item in x:
                if same(item, now):
                    return True
        return False

    return contains_item


def _time_value_test(op: str, ref: TimeRef) -> ValueTest:
    before = op == "before"
    if isinstance(ref, timedelta):
        offset = ref

        def relative(x: Any, now: datetime) -> bool:
            moment = _as_time(x)
            if moment is None:
                return False
            threshold = _shift(now, offset)
            return _is_before(moment, threshold) if before else _is_before(threshold, moment)

        return relative
    fixed = ref

    def absolute(x: Any, now: datetime) -> bool:
        moment = _as_time(x)
        if moment is None:
            return False
        return _is_before(moment, fixed) if before else _is_before(fixed, moment)

    return absolute


def _compile_where(node: Where) -> PropertiesTest:
    if isinstance(node, AllWhere):
        return _all_where([_compile_where(r) for r in node.rules])
    if isinstance(node, AnyWhere):
        return _any_where([_compile_where(r) for r in node.rules])
    if isinstance(node, NotWhere):
        inner = _compile_where(node.rule)
        return lambda props, now: not inner(props, now)
    if isinstance(node, PropertyCondition):
        name = node.property
        test = _value_test(node.op, node.value)
        return lambda props, now: test(props.get(name), now)
    raise TypeError(f"not a where condition: {node!r}")


def _compile_number(op: str, value: Any) -> Callable[[Number], bool]:
    if op == "between":
        low, high = value
        return lambda n: bool(low <= n <= high)
    compare = _ORDER_FUNCTIONS[op]
    return lambda n: bool(compare(n, value))


def _compile_time_test(test: TimeTest | None) -> Callable[[datetime, datetime], bool] | None:
    if test is None:
        return None
    return _time_value_test(test.op, test.at)


def _compile_event(cond: EventCondition) -> Check:
    name, within = cond.event, cond.within
    where = None if cond.where is None else _compile_where(cond.where)
    if cond.is_bare:

        def any_event(c: ContactView) -> bool:
            now = c.now
            start = None if within is None else _shift(now, -within)
            for event in c.events_named(name):
                if start is not None and not (start < event.timestamp <= now):
                    continue
                if where is None or where(event.properties, now):
                    return True
            return False

        return any_event

    count_ok = None if cond.count is None else _compile_number(cond.count.op, cond.count.value)
    sum_ok = None if cond.sum is None else _compile_number(cond.sum.op, cond.sum.value)
    prop = None if cond.sum is None else cond.sum.property
    first_ok, last_ok = _compile_time_test(cond.first), _compile_time_test(cond.last)

    def events(c: ContactView) -> bool:
        now = c.now
        start = None if within is None else _shift(now, -within)
        n, exact, floats = 0, 0, []
        first: datetime | None = None
        last: datetime | None = None
        for event in c.events_named(name):
            moment = event.timestamp
            if start is not None and not (start < moment <= now):
                continue
            if where is not None and not where(event.properties, now):
                continue
            n += 1
            if prop is not None:
                v = event.properties.get(prop)
                if isinstance(v, int) and not isinstance(v, bool):
                    exact += v
                elif _is_number(v):
                    floats.append(float(cast(float, v)))
            if first is None or moment < first:
                first = moment
            if last is None or moment > last:
                last = moment
        if count_ok is not None and not count_ok(n):
            return False
        if sum_ok is not None and not sum_ok(_combine_total(exact, floats)):
            return False
        if first_ok is not None and (first is None or not first_ok(first, now)):
            return False
        return last_ok is None or (last is not None and last_ok(last, now))

    return events


# --------------------------------------------------------------------------- analysis


def _walk(node: _Node) -> Iterator[_Node]:
    yield node
    if isinstance(node, AllRule | AnyRule | AllWhere | AnyWhere):
        for child in node.rules:
            yield from _walk(child)
    elif isinstance(node, NotRule | NotWhere):
        yield from _walk(node.rule)
    elif isinstance(node, EventCondition):
        for part in (node.where, node.count, node.sum, node.first, node.last):
            if part is not None:
                yield from _walk(part)


def referenced_segments(rule: Rule) -> set[str]:
    """Ids of every ``{segment: id}`` in the rule."""
    return {n.segment for n in _walk(rule) if isinstance(n, SegmentCondition)}


def max_within(rule: Rule) -> timedelta | None:
    """The longest ``within`` window of the rule's event conditions; None if none has one."""
    windows = [n.within for n in _walk(rule) if isinstance(n, EventCondition) and n.within is not None]
    return max(windows, default=None)


@dataclass(frozen=True)
class Dependencies:
    """What a rule reads: a change elsewhere cannot change its result.

    ``tags`` and ``consent`` say whether any tag or channel is read; ``tag_names`` and ``channels``
    say which (a change to another tag or channel cannot change the result either)."""

    attributes: frozenset[str]
    tags: bool
    consent: bool
    events: frozenset[str]
    segments: frozenset[str]
    time: bool
    tag_names: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()


def _relative(node: _Node) -> bool:
    if isinstance(node, AttributeCondition | PropertyCondition):
        return isinstance(node.value, timedelta)
    if isinstance(node, TimeTest):
        return isinstance(node.at, timedelta)
    return isinstance(node, EventCondition) and node.within is not None


def dependencies(rule: Rule) -> Dependencies:
    """What a change must touch for the rule to need re-evaluation."""
    nodes = list(_walk(rule))
    return Dependencies(
        attributes=frozenset(n.attribute for n in nodes if isinstance(n, AttributeCondition)),
        tags=any(isinstance(n, TagCondition) for n in nodes),
        consent=any(isinstance(n, ConsentCondition) for n in nodes),
        events=frozenset(n.event for n in nodes if isinstance(n, EventCondition)),
        segments=frozenset(n.segment for n in nodes if isinstance(n, SegmentCondition)),
        time=any(_relative(n) for n in nodes),
        tag_names=frozenset(n.tag for n in nodes if isinstance(n, TagCondition)),
        channels=frozenset(n.consent for n in nodes if isinstance(n, ConsentCondition)),
    )


@dataclass(frozen=True)
class History:
    """The events a rule reads: their names, and how far back from ``now`` (``window`` None: all of
    them, because some event condition has no ``within``). No events, no history to read."""

    events: frozenset[str]
    window: timedelta | None

    def since(self, now: datetime) -> datetime | None:
        """The oldest instant worth reading (exclusive): None for everything kept."""
        return None if self.window is None else _shift(now, -self.window)

    def covers(self, other: History) -> bool:
        """Whether a view holding this history holds everything ``other`` needs."""
        if not other.events:
            return True
        if not other.events <= self.events:
            return False
        if self.window is None:
            return True
        return other.window is not None and other.window <= self.window

    def union(self, other: History) -> History:
        if not self.events:
            return other
        if not other.events:
            return self
        window = None if self.window is None or other.window is None else max(self.window, other.window)
        return History(self.events | other.events, window)


NO_HISTORY: Final = History(frozenset(), timedelta(0))


def history(rule: Rule) -> History:
    """Which events ``rule`` reads and how far back: the longest ``within``, or all of them if any
    event condition has none. Reading more cannot change the result; reading less can."""
    conditions = [n for n in _walk(rule) if isinstance(n, EventCondition)]
    if not conditions:
        return NO_HISTORY
    windows = [c.within for c in conditions]
    unbounded = any(w is None for w in windows)
    return History(
        frozenset(c.event for c in conditions),
        None if unbounded else max(w for w in windows if w is not None),
    )


def inline_segments(rule: Rule, definition: Callable[[str], Rule | None]) -> Rule:
    """``rule`` with every ``{segment: id}`` whose ``definition(id)`` is a rule replaced by that rule.

    A segment is its rule, so the result evaluates as the original does with a resolver that
    evaluates the segment's rule; references ``definition`` returns None for stay (static lists).
    ``definition`` must return rules that are already inlined (and never loop: check for cycles)."""

    def rewrite(node: Rule) -> Rule:
        if isinstance(node, SegmentCondition):
            found = definition(node.segment)
            return node if found is None else found
        if isinstance(node, AllRule):
            return AllRule(rules=tuple(rewrite(r) for r in node.rules))
        if isinstance(node, AnyRule):
            return AnyRule(rules=tuple(rewrite(r) for r in node.rules))
        if isinstance(node, NotRule):
            return NotRule(rule=rewrite(node.rule))
        return node

    return rewrite(rule)


_MAX_PROBES: Final = 512


def next_time_change(rule: Rule, contact: ContactView) -> datetime | None:
    """The earliest instant after ``contact.now`` at which the result may change by time alone.

    Candidates are every instant where a leaf can flip (an event entering or leaving a
    ``within`` window, a relative date passing); the rule is evaluated at each in turn
    and the first that changes the result is returned, so the answer is exact unless
    the rule reads a segment without a resolver or there are more than 512 candidates
    (then it is an earlier candidate, never a later one). Segments count as constant.
    """
    now = contact.now
    points = sorted({p for p in _time_points(rule, contact) if p > now})
    if not points:
        return None
    memo: dict[str, bool] = {}
    resolve = contact.segment

    def cached(segment_id: str) -> bool:
        if segment_id not in memo:
            assert resolve is not None
            memo[segment_id] = bool(resolve(segment_id))
        return memo[segment_id]

    view = ContactView(
        attributes=contact.attributes,
        tags=contact.tags,
        consent=contact.consent,
        events=contact.events,
        now=now,
        segment=None if resolve is None else cached,
    )
    try:
        current = _eval(rule, view, now)
        for point in points[:_MAX_PROBES]:
            if _eval(rule, view, point) != current:
                return point
    except SegmentUnavailable:
        return points[0]
    return points[_MAX_PROBES] if len(points) > _MAX_PROBES else None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _flips(moment: date, offset: timedelta) -> Iterator[datetime]:
    """Instants ``now`` at which ``moment`` vs ``now + offset`` can change sides."""
    try:
        if isinstance(moment, datetime):
            yield _shift(moment, -offset)
            yield _shift(moment, _ONE_MICROSECOND - offset)
        else:
            yield _shift(_midnight(moment), -offset)
            yield _shift(_midnight(moment + timedelta(days=1)), -offset)
    except OverflowError:
        return


def _time_points(node: Rule, contact: ContactView) -> Iterator[datetime]:
    if isinstance(node, AllRule | AnyRule):
        for child in node.rules:
            yield from _time_points(child, contact)
    elif isinstance(node, NotRule):
        yield from _time_points(node.rule, contact)
    elif isinstance(node, AttributeCondition):
        if isinstance(node.value, timedelta):
            moment = _as_time(contact.attributes.get(node.attribute))
            if moment is not None:
                yield from _flips(moment, node.value)
    elif isinstance(node, EventCondition):
        yield from _event_points(node, contact)


def _event_points(cond: EventCondition, contact: ContactView) -> Iterator[datetime]:
    relative_props = [
        n
        for n in ([] if cond.where is None else _walk(cond.where))
        if isinstance(n, PropertyCondition) and isinstance(n.value, timedelta)
    ]
    relative_tests = [t for t in (cond.first, cond.last) if t is not None and isinstance(t.at, timedelta)]
    if cond.within is None and not relative_props and not relative_tests:
        return
    for event in contact.events:
        if event.name != cond.event:
            continue
        if cond.within is not None:
            yield event.timestamp
            yield _shift(event.timestamp, cond.within)
        for test in relative_tests:
            assert isinstance(test.at, timedelta)
            yield from _flips(event.timestamp, test.at)
        for leaf in relative_props:
            assert isinstance(leaf.value, timedelta)
            moment = _as_time(event.properties.get(leaf.property))
            if moment is not None:
                yield from _flips(moment, leaf.value)
