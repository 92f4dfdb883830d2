"""Segments (DESIGN.md section 4): segment files, their validation, and the dependency index.

A segment file names a rule (a *dynamic* segment: membership follows the rule) or no rule at all (a
*static* list: contacts are added and removed by ``add_to_list``/``remove_from_list`` steps and the
API)::

    version: 1
    id: eco-hikers
    name: Hikers who care about the planet
    rule:
      all:
        - {tag: eco}
        - {event: order_completed, where: {property: category, eq: hiking}, within: 180d}

A ``{segment: id}`` inside a rule *is* that segment's rule: references to dynamic segments are inlined
once, when the catalog is built (cycles are an error), so evaluation, the events a rule reads, what it
depends on and when it changes by time alone all see through them. References to static lists stay:
a static list's members are the contacts whose ``lists`` name it (what ``add_to_list`` steps and the
API write), read at evaluation time.

Pure: no AWS imports.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from cairn.domain import rules
from cairn.domain.durations import format_duration
from cairn.domain.rules import ContactView, Dependencies, History, Rule
from cairn.domain.yamlsource import Problem, line_of, plain

__all__ = [
    "ID_RE",
    "RESERVED_EVENTS",
    "Change",
    "Segment",
    "SegmentCatalog",
    "SegmentFile",
    "bucket_time",
    "due_bucket",
    "load_segments",
    "path_loc",
]

# Lower-case words joined by single dashes, each starting with a letter (as workflow ids): ids appear
# in event properties, API paths and item keys.
ID_RE: Final = re.compile(r"^(?=.{1,64}$)[a-z][a-z0-9]*(-[a-z][a-z0-9]*)*$")
# Cairn records these itself when membership changes: a rule over them would feed on its own output.
RESERVED_EVENTS: Final = frozenset({"segment_entered", "segment_exited"})


class SegmentFile(BaseModel):
    """One ``segments/<id>.yaml`` as written (the rule stays data until it is parsed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    id: str
    name: str
    description: str = ""
    kind: Literal["dynamic", "static"] = "dynamic"
    rule: Any = None


@dataclass(frozen=True)
class Segment:
    """A segment ready to use: its rule parsed, referenced segments inlined, compiled once."""

    id: str
    name: str
    description: str
    kind: str  # dynamic | static
    rule: Rule | None  # as written
    expanded: Rule | None  # dynamic segments inlined; static lists stay references
    version: str  # changes exactly when the expanded rule (what membership means) changes
    check: Callable[[ContactView], bool] | None = field(repr=False, compare=False)
    deps: Dependencies | None
    history: History

    @property
    def dynamic(self) -> bool:
        return self.kind == "dynamic"

    @property
    def static(self) -> bool:
        return self.kind == "static"

    @property
    def time_driven(self) -> bool:
        """Whether membership can change by the passing of time alone (a `within`, a relative date)."""
        return self.deps is not None and self.deps.time

    def data(self) -> dict[str, Any]:
        """The definition as users wrote it (normalised): what the site bundle and the API carry."""
        out: dict[str, Any] = {
            "version": 1,
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "kind": self.kind,
        }
        if self.rule is not None:
            out["rule"] = rules.dump_rule(self.rule)
        return out


@dataclass(frozen=True)
class Change:
    """What changed about one contact: only segments that depend on it need a second look."""

    attributes: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    events: frozenset[str] = frozenset()
    lists: frozenset[str] = frozenset()  # static lists the contact joined or left (its `lists`)
    everything: bool = False  # a new contact: any rule may hold now

    @property
    def empty(self) -> bool:
        return not (
            self.everything or self.attributes or self.tags or self.channels or self.events or self.lists
        )

    @classmethod
    def event(cls, name: str) -> Change:
        return cls(events=frozenset({name}))


def _version(kind: str, expanded: Rule | None) -> str:
    body = {"kind": kind, "rule": None if expanded is None else rules.dump_rule(expanded)}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:12]


class SegmentCatalog:
    """Every segment of a project, and the index of what each depends on."""

    def __init__(self, segments: Mapping[str, Segment]) -> None:
        self.segments: dict[str, Segment] = dict(sorted(segments.items()))
        self._by_attribute: dict[str, set[str]] = {}
        self._by_tag: dict[str, set[str]] = {}
        self._by_channel: dict[str, set[str]] = {}
        self._by_event: dict[str, set[str]] = {}
        self._by_list: dict[str, set[str]] = {}
        for segment in self.segments.values():
            if segment.static:  # a static list's membership is the contact's `lists`
                self._by_list.setdefault(segment.id, set()).add(segment.id)
            deps = segment.deps
            if deps is None:
                continue
            for index, keys in (
                (self._by_attribute, deps.attributes),
                (self._by_tag, deps.tag_names),
                (self._by_channel, deps.channels),
                (self._by_event, deps.events),
                (self._by_list, deps.segments),
            ):
                for key in keys:
                    index.setdefault(key, set()).add(segment.id)
        self.all: tuple[Segment, ...] = tuple(self.segments.values())
        self.dynamic: tuple[Segment, ...] = tuple(s for s in self.all if s.dynamic)
        self.time_driven: tuple[Segment, ...] = tuple(s for s in self.dynamic if s.time_driven)
        self.events: frozenset[str] = frozenset(self._by_event)

    @classmethod
    def from_data(cls, data: Mapping[str, Mapping[str, Any]]) -> SegmentCatalog:
        """The catalog of a site bundle (definitions `load_segments` validated); raises on bad data."""
        definitions = {sid: SegmentFile.model_validate(dict(d)) for sid, d in data.items()}
        parsed = {
            sid: None if d.rule is None else rules.parse_rule(d.rule, f"segments.{sid}.rule")
            for sid, d in definitions.items()
        }
        expanded, cycles = _expand(parsed, {sid: d.kind for sid, d in definitions.items()})
        if cycles:
            raise ValueError("segment references form a cycle: " + "; ".join(" -> ".join(c) for c in cycles))
        return cls({sid: _segment(definitions[sid], parsed[sid], expanded[sid]) for sid in definitions})

    # -- lookups --------------------------------------------------------------------------------
    def __contains__(self, segment_id: object) -> bool:
        return segment_id in self.segments

    def __len__(self) -> int:
        return len(self.segments)

    def get(self, segment_id: str) -> Segment | None:
        return self.segments.get(segment_id)

    def affected(self, change: Change) -> list[Segment]:
        """The segments whose membership ``change`` can change, in id order: dynamic segments that read
        what changed, and static lists the contact joined or left."""
        if change.everything:
            return list(self.all)
        ids: set[str] = set()
        for index, keys in (
            (self._by_attribute, change.attributes),
            (self._by_tag, change.tags),
            (self._by_channel, change.channels),
            (self._by_event, change.events - RESERVED_EVENTS),
            (self._by_list, change.lists),
        ):
            for key in keys:
                ids |= index.get(key, set())
        return [self.segments[sid] for sid in sorted(ids)]

    def expand(self, rule: Rule) -> Rule:
        """``rule`` with its references to dynamic segments inlined (for live evaluation elsewhere)."""

        def definition(segment_id: str) -> Rule | None:
            segment = self.segments.get(segment_id)
            return segment.expanded if segment is not None and segment.dynamic else None

        return rules.inline_segments(rule, definition)


def _segment(definition: SegmentFile, parsed: Rule | None, expanded: Rule | None) -> Segment:
    return Segment(
        id=definition.id,
        name=definition.name,
        description=definition.description,
        kind=definition.kind,
        rule=parsed,
        expanded=expanded,
        version=_version(definition.kind, expanded),
        check=None if expanded is None else rules.compile_rule(expanded),
        deps=None if expanded is None else rules.dependencies(expanded),
        history=rules.NO_HISTORY if expanded is None else rules.history(expanded),
    )


def _expand(
    parsed: Mapping[str, Rule | None], kinds: Mapping[str, str]
) -> tuple[dict[str, Rule | None], list[list[str]]]:
    """Every dynamic segment's rule with references to other dynamic segments inlined; and the cycles
    found (each as the path that closes it, e.g. ``[a, b, a]``). Unknown references stay as they are."""
    expanded: dict[str, Rule | None] = {}
    cycles: list[list[str]] = []
    visiting: list[str] = []

    def visit(segment_id: str) -> Rule | None:
        if segment_id in expanded:
            return expanded[segment_id]
        if segment_id in visiting:
            cycle = [*visiting[visiting.index(segment_id) :], segment_id]
            if not any(set(cycle) == set(found) for found in cycles):
                cycles.append(cycle)
            return None
        rule = parsed.get(segment_id)
        if rule is None or kinds.get(segment_id) != "dynamic":
            return None
        visiting.append(segment_id)
        result = rules.inline_segments(rule, visit)
        visiting.pop()
        expanded[segment_id] = result
        return result

    for segment_id in sorted(parsed):
        if kinds.get(segment_id) == "dynamic":
            visit(segment_id)
        else:
            expanded[segment_id] = None
    return expanded, cycles


# --------------------------------------------------------------------------- validation

_PATH_PART: Final = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def path_loc(path: str) -> tuple[str | int, ...]:
    """``rule.all[2].event.within`` -> ``("rule", "all", 2, "event", "within")`` (for ``line_of``)."""
    return tuple(int(index) if index else name for name, index in _PATH_PART.findall(path))


def _conditions(data: Any, loc: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every rule mapping in raw rule data with its location (not descending into an event's where)."""
    if not isinstance(data, Mapping):
        return
    yield loc, data
    for key in ("all", "any"):
        items = data.get(key)
        if isinstance(items, list):
            for index, item in enumerate(items):
                yield from _conditions(item, (*loc, key, index))
    if "not" in data:
        yield from _conditions(data["not"], (*loc, "not"))


def load_segments(
    sources: Sequence[tuple[str, Any]], *, retention: timedelta | None = None
) -> tuple[dict[str, dict[str, Any]], list[Problem]]:
    """Validate segment files (``(file, data)`` pairs as ``yamlsource.load`` read them).

    Returns the normalised definitions by id (what the site bundle carries; ``SegmentCatalog.from_data``
    reads them) and every problem found, each with its file and line. ``retention`` is how long events
    are kept: a ``within`` longer than that could never be honoured."""
    problems: list[Problem] = []
    files: dict[str, tuple[str, Any, SegmentFile]] = {}
    parsed: dict[str, Rule | None] = {}
    for file, raw in sources:

        def add(loc: tuple[str | int, ...], message: str, file: str = file, raw: Any = raw) -> None:
            problems.append(Problem(file, line_of(raw, loc), message))

        if not isinstance(raw, Mapping):
            add((), "a segment file is a mapping with id, name and rule (or kind: static)")
            continue
        try:
            definition = SegmentFile.model_validate(plain(raw))
        except ValidationError as exc:
            for err in exc.errors():
                loc = tuple(err["loc"])
                where = ".".join(str(p) for p in loc) or "segment"
                add(loc, f"{where}: {err['msg']}")
            continue
        ok = True
        if not ID_RE.match(definition.id):
            add(
                ("id",),
                "id must be lower-case words of letters and digits joined by single '-', each starting "
                "with a letter (e.g. eco-hikers), at most 64 characters",
            )
            ok = False
        expected = file.rsplit("/", 1)[-1].split(".", 1)[0]
        if file.endswith((".yaml", ".yml")) and expected != definition.id:
            add(("id",), f"id '{definition.id}' must match the file name '{expected}'")
            ok = False
        if definition.id in files:
            add(("id",), f"duplicate segment id '{definition.id}' (also in {files[definition.id][0]})")
            continue
        rule: Rule | None = None
        if definition.kind == "static":
            if definition.rule is not None:
                add(("rule",), "a static list has no rule: add_to_list steps and the API maintain it")
                ok = False
        elif definition.rule is None:
            add(("id",), "a dynamic segment needs a rule (or `kind: static` for a list kept by hand)")
            ok = False
        else:
            try:
                rule = rules.parse_rule(plain(raw)["rule"], "rule")
            except rules.RuleError as exc:
                for p in exc.problems:
                    add(path_loc(p.path), f"{p.path}: {p.message}")
                ok = False
            for loc, node in _conditions(raw.get("rule"), ("rule",)):
                if node.get("event") in RESERVED_EVENTS:
                    add(
                        (*loc, "event"),
                        f"{'.'.join(map(str, loc))}: a segment rule cannot read {node['event']} events "
                        "(Cairn records them when membership changes); use {segment: <id>} instead",
                    )
                    ok = False
        files[definition.id] = (file, raw, definition)
        parsed[definition.id] = rule if ok else None
        if not ok:
            parsed.pop(definition.id)

    kinds = {sid: entry[2].kind for sid, entry in files.items()}
    for sid, (file, raw, _definition) in files.items():
        for loc, node in _conditions(raw.get("rule"), ("rule",)):
            ref = node.get("segment")
            if isinstance(ref, str) and ref not in kinds:
                problems.append(
                    Problem(file, line_of(raw, (*loc, "segment")), f"{_dotted(loc)}: unknown segment '{ref}'")
                )
                parsed.pop(sid, None)
    expanded, cycles = _expand(parsed, kinds)
    for cycle in cycles:
        for member in cycle[:-1]:
            file, raw, _ = files[member]
            problems.append(
                Problem(
                    file,
                    line_of(raw, ("rule",)),
                    "segment references go round in a circle: " + " -> ".join(cycle),
                )
            )
    if retention is not None:
        for sid, rule in expanded.items():
            window = None if rule is None else rules.max_within(rule)
            if window is not None and window > retention:
                file, raw, _ = files[sid]
                problems.append(
                    Problem(file, line_of(raw, ("rule",)), retention_problem("rule", window, retention))
                )
    if problems:
        return {}, problems
    definitions = {sid: entry[2] for sid, entry in files.items()}
    normalised = {
        sid: _segment(definitions[sid], parsed.get(sid), expanded.get(sid)).data() for sid in sorted(files)
    }
    return normalised, problems


def retention_problem(where: str, window: timedelta, retention: timedelta) -> str:
    days = retention // timedelta(days=1)
    return (
        f"{where}: reads events from the last {format_duration(window)}, but events are kept {days} days "
        "(EVENT_TTL_DAYS): shorten the window or keep events longer"
    )


def _dotted(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --------------------------------------------------------------------------- the hourly time index

HOUR: Final = timedelta(hours=1)
_BUCKET_FORMAT: Final = "%Y-%m-%dT%H"


def due_bucket(moment: datetime) -> str:
    """The hour whose tick first sees ``moment`` as due: ticks run on the hour, so a change due at 10:00
    is processed at 10:00 and one due at 10:00:01 at 11:00 (label ``2026-12-01T11``)."""
    moment = moment.astimezone(UTC)
    start = moment.replace(minute=0, second=0, microsecond=0)
    return (start if start == moment else start + HOUR).strftime(_BUCKET_FORMAT)


def bucket_time(label: str) -> datetime:
    """The instant of an hour label's tick."""
    return datetime.strptime(label, _BUCKET_FORMAT).replace(tzinfo=UTC)
