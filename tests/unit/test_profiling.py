"""Progressive profiling: the next fields of a form worth asking a contact for."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.domain.profiling import known, next_fields
from cairn.domain.settings import Form

FAST = settings(max_examples=200, deadline=None)
FORM = Form(fields=["firstName", "company", "role", "country", "phone"], ask=2)


def test_a_new_contact_is_asked_the_forms_first_fields() -> None:
    assert next_fields(FORM, {}) == ["firstName", "company"]


def test_what_the_contact_gave_is_not_asked_again() -> None:
    assert next_fields(FORM, {"firstName": "Ann", "company": "Trailhead"}) == ["role", "country"]
    assert next_fields(FORM, {"company": "Trailhead", "country": "DE"}) == ["firstName", "role"]


def test_empty_values_count_as_not_given_but_false_and_zero_as_given() -> None:
    given_values = {"firstName": "", "company": [], "role": {}, "country": False, "phone": 0}
    assert next_fields(Form(fields=list(given_values), ask=5), given_values) == [
        "firstName",
        "company",
        "role",
    ]
    assert known(False) and known(0) and not known(None)


def test_a_complete_contact_is_asked_nothing() -> None:
    assert next_fields(FORM, dict.fromkeys(FORM.fields, "x")) == []


@FAST
@given(
    fields=st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=12, unique=True),
    ask=st.integers(min_value=1, max_value=50),
    data=st.data(),
)
def test_the_next_fields_are_the_first_missing_ones_in_form_order(
    fields: list[str], ask: int, data: st.DataObject
) -> None:
    form = Form(fields=fields, ask=ask)
    attributes: dict[str, Any] = data.draw(
        st.dictionaries(st.sampled_from(fields), st.one_of(st.none(), st.just(""), st.integers()))
    )
    result = next_fields(form, attributes)

    missing = [f for f in fields if not known(attributes.get(f))]
    assert result == missing[:ask]
    assert len(result) <= ask
