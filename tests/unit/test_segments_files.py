"""Segment files: validation with file, line and path; references inlined, cycles refused; the dependency
index; the hourly time index. Plain values, no AWS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import ROOT

from cairn.domain import rules
from cairn.domain.segments import (
    Change,
    SegmentCatalog,
    bucket_time,
    due_bucket,
    load_segments,
    path_loc,
)
from cairn.domain.yamlsource import load

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DAYS_400 = timedelta(days=400)


def source(text: str, name: str = "segments/s.yaml") -> tuple[str, Any]:
    return name, load(text)


def problems_of(*files: tuple[str, Any], retention: timedelta | None = DAYS_400) -> list[str]:
    _, problems = load_segments(list(files), retention=retention)
    return [str(p) for p in problems]


def catalog(**rules_by_id: Any) -> SegmentCatalog:
    data = {
        sid: {"id": sid, "name": sid, **({"kind": "static"} if rule is None else {"rule": rule})}
        for sid, rule in rules_by_id.items()
    }
    return SegmentCatalog.from_data(data)


def contact(**fields: Any) -> rules.ContactView:
    return rules.ContactView(
        attributes=fields.get("attributes", {}),
        tags=frozenset(fields.get("tags", ())),
        consent=fields.get("consent", {}),
        events=fields.get("events", []),
        now=fields.get("now", NOW),
        segment=fields.get("segment"),
    )


# ---------------------------------------------------------------- the repo's segments


def test_the_projects_segments_are_valid_and_cover_every_kind_of_segmentation() -> None:
    sources = [
        (str(p.relative_to(ROOT)), load(p.read_text(encoding="utf-8")))
        for p in sorted((ROOT / "segments").glob("*.yaml"))
    ]
    definitions, problems = load_segments(sources, retention=DAYS_400)
    assert problems == []
    built = SegmentCatalog.from_data(definitions)
    deps = {s.id: s.deps for s in built.dynamic}
    assert any(d and d.attributes and not d.events for d in deps.values()), "demographic"
    assert any(d and d.tag_names for d in deps.values()), "a tag as a dynamic list"
    assert any(d and "order_completed" in d.events for d in deps.values()), "transactional"
    assert any(d and d.time for d in deps.values()), "behavioural, within a window"
    assert [s.id for s in built.segments.values() if s.static] == ["summit-contest", "webinar-guests"]
    # eco-hikers uses newsletter-readers: its rule, inlined, reads email_opened with a 60d window too.
    eco = built.segments["eco-hikers"]
    assert rules.referenced_segments(eco.expanded) == set()  # type: ignore[arg-type]
    assert "email_opened" in eco.history.events


def test_definitions_round_trip_through_the_site_bundle() -> None:
    files = [source("id: s\nname: S\nrule: {attribute: plan, eq: pro}\n")]
    definitions, _ = load_segments(files)
    assert definitions == {
        "s": {
            "version": 1,
            "id": "s",
            "name": "S",
            "description": "",
            "kind": "dynamic",
            "rule": {"attribute": "plan", "eq": "pro"},
        }
    }
    again = SegmentCatalog.from_data(definitions).segments["s"]
    assert again.data() == definitions["s"]


# ---------------------------------------------------------------- problems with file and line


def test_a_rule_problem_names_the_file_the_line_and_the_path() -> None:
    text = "id: s\nname: S\nrule:\n  all:\n    - {tag: vip}\n    - {event: order_completed, within: 7days}\n"
    assert problems_of(source(text)) == [
        "segments/s.yaml:6: rule.all[1].event.within: invalid duration '7days': write a whole number and a "
        "unit m, h, d or w, like '30m' or '7d'"
    ]


def test_every_problem_is_reported_not_only_the_first() -> None:
    text = "id: Bad_Id\nname: S\ncolour: red\nrule: {tag: vip}\n"
    found = problems_of(source(text))
    assert found == ["segments/s.yaml:3: colour: Extra inputs are not permitted"]
    text = "id: Bad_Id\nname: S\nrule: {tag: vip, within: 1d}\n"
    found = problems_of(source(text))
    assert any("segments/s.yaml:1: id must be lower-case" in p for p in found)
    assert any("segments/s.yaml:3: rule.tag.within: unknown key 'within'" in p for p in found)


def test_the_id_must_match_the_file_name_and_be_unique() -> None:
    a = source("id: one\nname: A\nrule: {tag: a}\n", "segments/one.yaml")
    b = source("id: one\nname: B\nrule: {tag: b}\n", "segments/two.yaml")
    assert problems_of(a, b) == [
        "segments/two.yaml:1: id 'one' must match the file name 'two'",
        "segments/two.yaml:1: duplicate segment id 'one' (also in segments/one.yaml)",
    ]


def test_static_lists_have_no_rule_and_dynamic_segments_need_one() -> None:
    assert problems_of(source("id: s\nname: S\nkind: static\nrule: {tag: x}\n")) == [
        "segments/s.yaml:4: a static list has no rule: add_to_list steps and the API maintain it"
    ]
    assert problems_of(source("id: s\nname: S\n")) == [
        "segments/s.yaml:1: a dynamic segment needs a rule (or `kind: static` for a list kept by hand)"
    ]
    assert problems_of(source("id: s\nname: S\nkind: static\n")) == []


def test_a_rule_cannot_read_the_events_cairn_records_when_membership_changes() -> None:
    text = "id: s\nname: S\nrule:\n  any:\n    - {tag: x}\n    - {event: segment_entered, within: 1d}\n"
    assert problems_of(source(text)) == [
        "segments/s.yaml:6: rule.any.1: a segment rule cannot read segment_entered events (Cairn records "
        "them when membership changes); use {segment: <id>} instead"
    ]


def test_an_unknown_segment_is_named_at_its_line() -> None:
    text = "id: s\nname: S\nrule:\n  all:\n    - {tag: x}\n    - {segment: nowhere}\n"
    assert problems_of(source(text)) == ["segments/s.yaml:6: rule.all[1]: unknown segment 'nowhere'"]


@pytest.mark.parametrize(
    ("files", "cycle"),
    [
        ({"a": {"segment": "a"}}, "a -> a"),
        ({"a": {"segment": "b"}, "b": {"not": {"segment": "a"}}}, "a -> b -> a"),
        (
            {"a": {"segment": "b"}, "b": {"segment": "c"}, "c": {"all": [{"tag": "x"}, {"segment": "a"}]}},
            None,
        ),
    ],
)
def test_segment_references_that_go_round_in_a_circle_are_refused(
    files: dict[str, Any], cycle: str | None
) -> None:
    sources = [
        (f"segments/{sid}.yaml", {"id": sid, "name": sid, "rule": rule}) for sid, rule in files.items()
    ]
    found = problems_of(*sources)
    assert found, "a cycle is a problem"
    assert all("go round in a circle" in p for p in found)
    assert len(found) == len(files)  # each segment of the cycle says so
    if cycle is not None:
        assert found[0].endswith(cycle)
    with pytest.raises(ValueError, match="cycle"):
        SegmentCatalog.from_data({sid: {"id": sid, "name": sid, "rule": rule} for sid, rule in files.items()})


def test_a_window_longer_than_events_are_kept_is_refused_even_through_a_reference() -> None:
    long = source("id: long\nname: L\nrule: {event: e, within: 500d}\n", "segments/long.yaml")
    user = source("id: user\nname: U\nrule:\n  any: [{tag: x}, {segment: long}]\n", "segments/user.yaml")
    found = problems_of(long, user)
    assert found == [
        "segments/long.yaml:3: rule: reads events from the last 500d, but events are kept 400 days "
        "(EVENT_TTL_DAYS): shorten the window or keep events longer",
        "segments/user.yaml:4: rule: reads events from the last 500d, but events are kept 400 days "
        "(EVENT_TTL_DAYS): shorten the window or keep events longer",
    ]
    assert problems_of(long, user, retention=timedelta(days=500)) == []


def test_path_loc_reads_rule_paths() -> None:
    assert path_loc("rule.all[2].event.within") == ("rule", "all", 2, "event", "within")
    assert path_loc("rule") == ("rule",)


# ---------------------------------------------------------------- references, live and inlined


def test_a_reference_is_inlined_and_a_static_list_stays_a_reference() -> None:
    built = catalog(
        buyers={"event": "order_completed", "within": "30d"},
        guests=None,
        vip_buyers={"all": [{"tag": "vip"}, {"segment": "buyers"}, {"segment": "guests"}]},
    )
    vip = built.segments["vip_buyers"]
    assert vip.expanded == rules.parse_rule(
        {"all": [{"tag": "vip"}, {"event": "order_completed", "within": "30d"}, {"segment": "guests"}]}
    )
    assert vip.deps is not None
    assert vip.deps.segments == {"guests"}
    assert vip.history == rules.History(frozenset({"order_completed"}), timedelta(days=30))
    assert vip.time_driven


def test_a_definition_change_anywhere_beneath_changes_the_version() -> None:
    before = catalog(a={"tag": "x"}, b={"segment": "a"})
    after = catalog(a={"tag": "y"}, b={"segment": "a"})
    assert before.segments["b"].version != after.segments["b"].version
    same = catalog(a={"tag": "x"}, b={"segment": "a"}, c={"tag": "z"})
    assert same.segments["b"].version == before.segments["b"].version


# ---------------------------------------------------------------- the dependency index


def test_only_the_segments_that_read_what_changed_are_affected() -> None:
    built = catalog(
        germans={"attribute": "country", "eq": "DE"},
        vips={"tag": "vip"},
        buyers={"event": "order_completed"},
        mailable={"consent": "email"},
        guests=None,
        vip_guests={"all": [{"segment": "vips"}, {"segment": "guests"}]},
    )

    def ids(change: Change) -> list[str]:
        return [s.id for s in built.affected(change)]

    assert ids(Change(attributes=frozenset({"country"}))) == ["germans"]
    assert ids(Change(attributes=frozenset({"shoe_size"}))) == []
    assert ids(Change(tags=frozenset({"vip"}))) == ["vip_guests", "vips"]
    assert ids(Change(tags=frozenset({"newsletter"}))) == []
    assert ids(Change.event("order_completed")) == ["buyers"]
    assert ids(Change.event("segment_entered")) == []
    assert ids(Change(channels=frozenset({"email"}))) == ["mailable"]
    assert ids(Change(channels=frozenset({"sms"}))) == []
    assert ids(Change(lists=frozenset({"guests"}))) == ["guests", "vip_guests"]
    assert ids(Change(lists=frozenset({"some-other-list"}))) == []
    assert ids(Change(everything=True)) == ["buyers", "germans", "guests", "mailable", "vip_guests", "vips"]
    assert Change().empty and not Change.event("x").empty


# ---------------------------------------------------------------- the hourly time index


@pytest.mark.parametrize(
    ("moment", "label"),
    [
        (datetime(2026, 12, 1, 10, 0, tzinfo=UTC), "2026-12-01T10"),
        (datetime(2026, 12, 1, 10, 0, 0, 1, tzinfo=UTC), "2026-12-01T11"),
        (datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC), "2026-12-02T00"),
        (datetime(2026, 12, 1, 11, 30, tzinfo=UTC) + timedelta(hours=0), "2026-12-01T12"),
    ],
)
def test_a_change_is_indexed_under_the_first_tick_at_or_after_it(moment: datetime, label: str) -> None:
    assert due_bucket(moment) == label
    assert bucket_time(label) >= moment
    assert bucket_time(label) - moment < timedelta(hours=1)


def test_the_seed_examples_evaluate_as_described(tmp_path: Path) -> None:
    built = SegmentCatalog.from_data(
        load_segments(
            [
                (str(p.relative_to(ROOT)), load(p.read_text(encoding="utf-8")))
                for p in sorted((ROOT / "segments").glob("*.yaml"))
            ]
        )[0]
    )

    def event(name: str, days_ago: float, **props: Any) -> rules.EventRecord:
        return rules.EventRecord(name, NOW - timedelta(days=days_ago), props)

    camper = contact(
        events=[
            event("order_completed", 100, category="hiking", total=120),
            event("order_completed", 20, category="hiking", total=90),
            event("product_viewed", 1, category="camping"),
        ]
    )
    check = built.segments["camping-curious-hikers"].check
    assert check is not None
    assert check(camper)
    bought_a_tent = contact(
        events=[*camper.events, event("order_completed", 0.5, category="camping", total=300)]
    )
    assert not check(bought_a_tent)
    lapsed = built.segments["lapsed-customers"].check
    assert lapsed is not None
    assert lapsed(contact(events=[event("order_completed", 91)]))
    assert not lapsed(contact(events=[event("order_completed", 91), event("order_completed", 10)]))
    assert not lapsed(contact())


# ---------------------------------------------------------------- cairn validate / compile


def test_a_project_reports_segment_problems_and_holds_workflows_to_the_event_retention(
    tmp_path: Path,
) -> None:
    from cairn.project import event_retention, load_project

    (tmp_path / "segments").mkdir()
    (tmp_path / "workflows").mkdir()
    (tmp_path / "template.yaml").write_text(
        "Globals:\n  Function:\n    Environment:\n      Variables:\n        EVENT_TTL_DAYS: 60\n"
        "        TABLE: !Ref Something\n",
        encoding="utf-8",
    )
    (tmp_path / "segments" / "buyers.yaml").write_text(
        "id: buyers\nname: Buyers\nrule: {event: order_completed, within: 90d}\n", encoding="utf-8"
    )
    (tmp_path / "segments" / "fans.yaml").write_text(
        "id: fans\nname: Fans\nrule: {tag: fan}\n", encoding="utf-8"
    )
    (tmp_path / "workflows" / "segment-build.yaml").write_text(
        "id: segment-build\nname: S\ntrigger: {event: e}\naudience:\n  all:\n    - {segment: fans}\n"
        "    - {event: page_viewed, within: 61d}\nsteps:\n  - wait: 1d\n",
        encoding="utf-8",
    )
    assert event_retention(tmp_path) == timedelta(days=60)

    problems = [str(p) for p in load_project(tmp_path).problems]

    assert (
        "segments/buyers.yaml:3: rule: reads events from the last 90d, but events are kept 60 days "
        "(EVENT_TTL_DAYS): shorten the window or keep events longer"
    ) in problems
    # With a segment in error, workflows are not checked against segments' windows (no noise)...
    (tmp_path / "segments" / "buyers.yaml").write_text(
        "id: buyers\nname: Buyers\nrule: {event: order_completed, within: 30d}\n", encoding="utf-8"
    )
    problems = [str(p) for p in load_project(tmp_path).problems]
    # ...and once they are fine, a workflow's own windows are held to the retention too.
    assert any(
        p.startswith("workflows/segment-build.yaml:5: audience: reads events from the last 61d")
        for p in problems
    )
    assert (
        "workflows/segment-build.yaml:1: id 'segment-build' is reserved (a state machine of the stack)"
        in problems
    )
    assert event_retention(tmp_path / "nowhere") == timedelta(days=400)
