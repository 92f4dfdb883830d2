"""Writes racing an erase cannot bring the contact back, against moto, with the erase injected at the
worst moment: between a writer's read and its write (an identify or import creating the contact, the
stream creating the profile of a contact it has an event for, a consent change) and between the erase's
own read of the profile and its delete (an identify setting another email meanwhile). The guarantee comes
from conditions on the writes themselves (every create checks the contact's erase mark in the same
transaction), not from a read made before."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pynamodb.exceptions import DoesNotExist
from tests.component.conftest import SAMPLE_NOW, FakeClock, cid_of

from cairn.adapters.tables import ContactItem, IdentityItem
from cairn.bootstrap import Runtime
from cairn.domain.erasure import GRACE
from cairn.domain.errors import Conflict
from cairn.domain.identity import identity_key
from cairn.domain.keys import ApiKey, KeyKind
from cairn.services.erase import Eraser
from cairn.services.intake import Identify, ImportContact, Intake
from cairn.services.react import IncomingEvent, Reactor

ANN = "u-ann"
SECRET = ApiKey("s" * 64, KeyKind.SECRET, "test")


@pytest.fixture
def rt(tables: dict[str, str], clock: FakeClock) -> Runtime:
    from cairn.bootstrap import runtime

    return runtime()


def contact_items(user_id: str) -> list[str]:
    return [item.sk for item in ContactItem.query(cid_of(user_id), consistent_read=True)]


def identity(kind: str, value: str) -> str | None:
    try:
        return IdentityItem.get(identity_key(kind, value), consistent_read=True).cid
    except DoesNotExist:
        return None


def tombstoned(address: str) -> bool:
    """A tombstone holds no contact id: only that the address's hash is there."""
    try:
        IdentityItem.get(identity_key("tomb", address), consistent_read=True)
        return True
    except DoesNotExist:
        return False


def erase_before_first(rt: Runtime, monkeypatch: pytest.MonkeyPatch, method: str) -> list[bool]:
    """Erase Ann just before the first call of `rt.contacts.<method>` goes through (after the caller
    read whatever it reads first). Returns a list that holds True once the erase ran."""
    done: list[bool] = []
    original: Callable[..., Any] = getattr(rt.contacts, method)

    def racing(*args: Any, **kwargs: Any) -> Any:
        if not done:
            done.append(True)
            Eraser(rt).erase(ANN)
        return original(*args, **kwargs)

    monkeypatch.setattr(rt.contacts, method, racing)
    return done


def test_an_identify_racing_an_erase_cannot_create_the_contact_again(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    raced = erase_before_first(rt, monkeypatch, "update")  # after identify read "no contact yet"

    with pytest.raises(Conflict) as refused:
        Intake(rt).identify(SECRET, Identify(ANN, traits={"email": "ann@example.com", "plan": "pro"}))

    assert raced and refused.value.status == 409
    assert contact_items(ANN) == []
    assert identity("email", "ann@example.com") is None  # the address was not claimed either


def test_an_import_racing_an_erase_cannot_create_the_contact_again(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    raced = erase_before_first(rt, monkeypatch, "update")
    [result] = Intake(rt).import_contacts([ImportContact(ANN, traits={"email": "ann@example.com"})])
    assert raced and isinstance(result, Conflict)
    assert contact_items(ANN) == []


def test_an_identify_setting_another_email_while_the_erase_runs_is_erased_with_it(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    intake = Intake(rt)
    intake.identify(SECRET, Identify(ANN, traits={"email": "ann@example.com"}))
    original = rt.contacts.delete_profile

    def identify_first(cid: str) -> Any:  # after the erase read the profile, before it deletes it
        intake.identify(SECRET, Identify(ANN, traits={"email": "ann@elsewhere.example"}))
        return original(cid)

    monkeypatch.setattr(rt.contacts, "delete_profile", identify_first)

    assert Eraser(rt).erase(ANN)

    assert contact_items(ANN) == []
    assert identity("email", "ann@example.com") is None
    assert identity("email", "ann@elsewhere.example") is None  # no identity left pointing at her
    assert tombstoned("ann@example.com") and tombstoned("ann@elsewhere.example")  # neither mailed again


def test_the_stream_creates_no_profile_for_a_contact_erased_while_it_reacts(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    raced = erase_before_first(rt, monkeypatch, "get")  # ensure's read: no profile yet
    event = IncomingEvent(cid_of(ANN), "m-1", "page_viewed", SAMPLE_NOW, {}, ANN)

    Reactor(rt).on_event(event)  # reacts to nothing, and does not fail

    assert raced and contact_items(ANN) == []


def test_ensure_and_set_consent_create_no_profile_of_an_erased_contact(rt: Runtime, clock: FakeClock) -> None:
    Intake(rt).identify(SECRET, Identify(ANN, traits={"email": "ann@example.com"}))
    Eraser(rt).erase(ANN)
    cid = cid_of(ANN)

    assert rt.contacts.set_consent(cid, "email", "subscribed", "double-opt-in", now=clock.now()) is None
    assert rt.contacts.ensure(cid, now=clock.now(), user_id=ANN) is False
    assert contact_items(ANN) == []

    clock.advance(GRACE)  # the grace period's last instant (as erasure.recently_erased has it)
    assert rt.contacts.ensure(cid, now=clock.now(), user_id=ANN) is False
    clock.advance(timedelta(microseconds=1))  # after it she may come back as a new contact
    assert rt.contacts.ensure(cid, now=clock.now(), user_id=ANN) is True
    assert contact_items(ANN) == ["profile"]


def test_a_subscription_racing_an_erase_cannot_create_the_contact_again(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    raced = erase_before_first(rt, monkeypatch, "update")
    with pytest.raises(Conflict):
        Intake(rt).set_subscription(SECRET, ANN, "email", "unsubscribed", "api")
    assert raced and contact_items(ANN) == []
