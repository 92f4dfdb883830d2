"""What a caller's JSON value must be to be stored as is: every problem found, each naming its field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.domain.values import MAX_DEPTH, problems, text_ok

FAST = settings(max_examples=300, deadline=None)

keys = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=8)
storable_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**37), max_value=10**37),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e100, max_value=1e100).filter(
        lambda f: f == 0 or abs(f) >= 1e-100
    ),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
)
storable = st.recursive(
    storable_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=20,
)
# Anything json.loads can return, lone surrogates, non-finite floats and huge numbers included.
anything = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.text(alphabet=st.characters(exclude_characters="."), max_size=6), inner, max_size=4
        ),
    ),
    max_leaves=25,
)


def fields(value: Any, name: str) -> list[str]:
    return [p.field for p in problems(value, name)]


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def test_plain_json_is_storable() -> None:
    value = {"sku": "A-1", "qty": 2, "price": 19.99, "gift": False, "note": None, "tags": ["x", "ü", "🙂"]}
    assert problems(value, "properties") == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (float("inf"), "not a finite number"),
        (float("-inf"), "not a finite number"),
        (float("nan"), "not a finite number"),
        (12345678901234567890123456789012345678901, "more than 38 significant digits"),
        (0.1234567890123456789012345678901234567891, None),  # a float has at most 17 significant digits
        (10**126, "out of the range of stored numbers"),
        (1e-131, "out of the range of stored numbers"),
        (1e-130, None),
        (-(10**125), None),
        (0, None),
        (0.0, None),
        (10**40, None),  # one significant digit
    ],
)
def test_numbers_follow_dynamodbs_rules(value: Any, problem: str | None) -> None:
    found = problems({"n": value}, "properties")
    assert [p.problem for p in found] == ([problem] if problem else [])
    if problem:
        assert found[0].field == "properties.n"


def test_a_lone_surrogate_is_not_text() -> None:
    assert not text_ok("\ud800")
    assert text_ok("ok ✓")
    assert fields({"a": ["fine", "bad \udfff"]}, "properties") == ["properties.a.1"]


def test_keys_must_be_non_empty_text() -> None:
    found = problems({"": 1, "\ud800": 2, "ok": 3}, "context")
    assert [(p.field, p.problem) for p in found] == [
        ("context", "keys must be non-empty text"),
        ("context", "keys must be non-empty text"),
    ]


def test_nesting_deeper_than_the_limit_is_refused_once_where_it_starts() -> None:
    assert problems(nested(MAX_DEPTH), "properties") == []
    found = problems(nested(MAX_DEPTH + 1), "properties")
    assert len(found) == 1
    assert found[0].field == "properties" + ".a" * (MAX_DEPTH + 1)
    assert "deeper" in found[0].problem


def test_every_problem_is_reported_not_only_the_first() -> None:
    value = {"a": float("nan"), "b": [1, float("inf"), {"c": "\ud800"}], "d": 10**200}
    assert fields(value, "properties") == [
        "properties.a",
        "properties.b.1",
        "properties.b.2.c",
        "properties.d",
    ]


def test_what_json_cannot_hold_is_refused() -> None:
    assert fields({"when": object()}, "properties") == ["properties.when"]
    assert fields({"amount": Decimal("1.5")}, "properties") == ["properties.amount"]  # not from json.loads


@FAST
@given(storable)
def test_values_within_the_limits_are_accepted(value: Any) -> None:
    assert problems(value, "properties") == []


@FAST
@given(anything)
def test_any_json_value_is_judged_without_raising_and_each_problem_names_a_real_path(value: Any) -> None:
    for problem in problems(value, "p"):
        node = value
        for part in problem.field.split(".")[1:]:  # walk the path the problem names: it is in the value
            if isinstance(node, list):
                node = node[int(part)]
            else:
                assert isinstance(node, dict) and part in node
                node = node[part]
