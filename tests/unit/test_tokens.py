"""HMAC-signed link tokens: round trip, tampering, expiry, key rotation, purpose binding."""

from __future__ import annotations

import base64
import json
import string
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cairn.domain.tokens import BadToken, Keyring, derive_key, sign, verify

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
K1 = b"k1-secret-0123456789abcdef-k1-secret"
K2 = b"k2-secret-fedcba9876543210-k2-secret"
PAYLOAD: dict[str, str | int] = {"cid": "c_01HX5ZQ7K8V3", "m": "msg-42", "ch": "email", "v": 3}
TOKEN_CHARS = string.ascii_letters + string.digits + "-_.=+/~ %"


def reason(
    token: str, secrets: dict[str, bytes] | None = None, now: datetime = NOW, purpose: str = ""
) -> str:
    with pytest.raises(BadToken) as caught:
        verify(token, secrets if secrets is not None else {"k1": K1}, now=now, purpose=purpose)
    return caught.value.reason


def test_round_trip() -> None:
    token = sign(PAYLOAD, K1, now=NOW)

    assert verify(token, {"k1": K1}, now=NOW) == PAYLOAD
    assert verify(token, {"k1": K1}, now=NOW + timedelta(days=3650)) == PAYLOAD  # no ttl: no expiry


def test_token_is_compact_and_url_safe() -> None:
    token = sign(PAYLOAD, K1, now=NOW, ttl=timedelta(days=30))

    assert set(token) <= set(string.ascii_letters + string.digits + "-_.")
    assert "=" not in token
    assert token.startswith("k1.")
    assert len(token) < 160


def test_every_single_character_change_is_refused() -> None:
    token = sign(PAYLOAD, K1, now=NOW, ttl=timedelta(hours=1))

    for i, original in enumerate(token):
        for replacement in TOKEN_CHARS:
            if replacement != original:
                tampered = token[:i] + replacement + token[i + 1 :]
                assert reason(tampered) in {"malformed", "signature"}, (i, replacement)


def test_edited_payload_with_a_recomputed_body_is_refused() -> None:
    key_id, _, signature = sign(PAYLOAD, K1, now=NOW).split(".")
    forged = base64.urlsafe_b64encode(json.dumps({"p": {**PAYLOAD, "cid": "someone-else"}}).encode())

    assert reason(f"{key_id}.{forged.decode().rstrip('=')}.{signature}") == "signature"


def test_truncation_and_extension_are_refused() -> None:
    token = sign(PAYLOAD, K1, now=NOW)

    assert reason(token[:-1]) in {"malformed", "signature"}
    assert reason(token + "A") in {"malformed", "signature"}
    assert reason(token + ".x") == "malformed"


@pytest.mark.parametrize("bad", ["", "abc", "a.b", "k1..", "k1.!!!.x", "k1.e30.é", "k1." + "A" * 5000])
def test_garbage_is_malformed_or_unsigned(bad: str) -> None:
    assert reason(bad) in {"malformed", "signature"}


def test_expiry() -> None:
    token = sign(PAYLOAD, K1, now=NOW, ttl=timedelta(days=7))

    assert verify(token, {"k1": K1}, now=NOW + timedelta(days=7) - timedelta(seconds=1)) == PAYLOAD
    assert reason(token, now=NOW + timedelta(days=7)) == "expired"
    assert reason(token, now=NOW + timedelta(days=8)) == "expired"


def test_an_expired_token_with_a_bad_signature_is_a_signature_problem() -> None:
    token = sign(PAYLOAD, K2, now=NOW, ttl=timedelta(seconds=1))

    assert reason(token, {"k1": K1}, now=NOW + timedelta(days=1)) == "signature"


def test_rotation_old_keys_verify_during_the_grace_period() -> None:
    old = sign(PAYLOAD, K1, now=NOW, key_id="k1")
    new = sign(PAYLOAD, K2, now=NOW, key_id="k2")

    during_grace = {"k1": K1, "k2": K2}
    assert verify(old, during_grace, now=NOW) == PAYLOAD
    assert verify(new, during_grace, now=NOW) == PAYLOAD

    after_grace = {"k2": K2}
    assert reason(old, after_grace) == "signature"
    assert verify(new, after_grace, now=NOW) == PAYLOAD


def test_key_id_cannot_be_swapped_to_another_key() -> None:
    token = sign(PAYLOAD, K1, now=NOW, key_id="k1")

    assert reason("k2" + token[2:], {"k1": K1, "k2": K2}) == "signature"


def test_purpose_is_bound_into_the_signature() -> None:
    token = sign(PAYLOAD, K1, now=NOW, purpose="confirm")

    assert verify(token, {"k1": K1}, now=NOW, purpose="confirm") == PAYLOAD
    assert reason(token, purpose="unsubscribe") == "signature"
    assert reason(token) == "signature"


@pytest.mark.parametrize(
    ("payload", "secret", "kw"),
    [
        ({"a": 1.5}, K1, {}),
        ({"a": True}, K1, {}),
        ({"a": None}, K1, {}),
        ({1: "a"}, K1, {}),
        (PAYLOAD, b"short", {}),
        (PAYLOAD, K1, {"ttl": timedelta(0)}),
        (PAYLOAD, K1, {"key_id": "k.1"}),
        (PAYLOAD, K1, {"key_id": ""}),
        (PAYLOAD, K1, {"now": datetime(2024, 1, 1)}),
    ],
)
def test_sign_refuses_bad_input(payload: dict[Any, Any], secret: bytes, kw: dict[str, Any]) -> None:
    kw = {"now": NOW, **kw}
    with pytest.raises(ValueError):
        sign(payload, secret, **kw)


def test_verify_needs_an_aware_now() -> None:
    with pytest.raises(ValueError):
        verify(sign(PAYLOAD, K1, now=NOW), {"k1": K1}, now=datetime(2024, 5, 1))


def test_bad_token_carries_its_reason() -> None:
    error = BadToken("expired")
    assert error.reason == "expired"
    assert str(error) == "expired"


# -- properties -------------------------------------------------------------------------------

payloads = st.dictionaries(
    st.text(max_size=20),
    st.one_of(st.text(max_size=40), st.integers(min_value=-(2**63), max_value=2**63)),
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(payload=payloads, ttl=st.one_of(st.none(), st.integers(min_value=1, max_value=10**8)))
def test_any_payload_round_trips(payload: dict[str, str | int], ttl: int | None) -> None:
    token = sign(payload, K1, now=NOW, ttl=None if ttl is None else timedelta(seconds=ttl))

    assert verify(token, {"k1": K1}, now=NOW) == payload


@settings(max_examples=300, deadline=None)
@given(payload=payloads, data=st.data())
def test_any_single_character_tampering_is_refused(
    payload: dict[str, str | int], data: st.DataObject
) -> None:
    token = sign(payload, K1, now=NOW, ttl=timedelta(days=1))
    i = data.draw(st.integers(min_value=0, max_value=len(token) - 1), label="position")
    replacement = data.draw(st.characters().filter(lambda c: c != token[i]), label="replacement")
    tampered = token[:i] + replacement + token[i + 1 :]

    with pytest.raises(BadToken) as caught:
        verify(tampered, {"k1": K1}, now=NOW)
    assert caught.value.reason in {"malformed", "signature"}


# ---------------------------------------------------------------- the stack's keyring (rotation)

STACK_SECRET = b"stack-secret-0123456789abcdef-stack"


def test_k1_is_the_stack_secret_so_links_already_sent_keep_working() -> None:
    token = Keyring(STACK_SECRET).sign(PAYLOAD, now=NOW, purpose="unsubscribe")

    assert token.startswith("k1.")
    assert verify(token, {"k1": STACK_SECRET}, now=NOW, purpose="unsubscribe") == PAYLOAD


def test_later_keys_are_derived_from_the_stack_secret_and_differ_from_it() -> None:
    k2, k3 = derive_key(STACK_SECRET, "k2"), derive_key(STACK_SECRET, "k3")

    assert len({k2, k3, STACK_SECRET}) == 3
    assert derive_key(STACK_SECRET, "k2") == k2  # deterministic: every function derives the same key
    assert derive_key(b"another-stack-secret-0123456789", "k2") != k2


def test_rotation_signs_with_the_new_key_and_honours_the_old_one_through_its_grace_date() -> None:
    old_link = Keyring(STACK_SECRET).sign(PAYLOAD, now=NOW, purpose="unsubscribe")
    rotated = Keyring(STACK_SECRET, current="k2", retired={"k1": date(2024, 6, 30)})

    new_link = rotated.sign(PAYLOAD, now=NOW, purpose="unsubscribe")

    assert new_link.startswith("k2.")
    assert rotated.verify(new_link, now=NOW, purpose="unsubscribe") == PAYLOAD
    assert rotated.verify(old_link, now=datetime(2024, 6, 30, 23, 59, tzinfo=UTC), purpose="unsubscribe")
    with pytest.raises(BadToken) as late:
        rotated.verify(old_link, now=datetime(2024, 7, 1, 0, 0, tzinfo=UTC), purpose="unsubscribe")
    assert late.value.reason == "signature"


def test_a_key_that_is_neither_current_nor_retired_verifies_nothing() -> None:
    k2_link = Keyring(STACK_SECRET, current="k2").sign(PAYLOAD, now=NOW, purpose="confirm")
    k1_link = Keyring(STACK_SECRET).sign(PAYLOAD, now=NOW, purpose="confirm")

    with pytest.raises(BadToken):
        Keyring(STACK_SECRET).verify(k2_link, now=NOW, purpose="confirm")  # a key from the future
    with pytest.raises(BadToken):
        Keyring(STACK_SECRET, current="k2").verify(k1_link, now=NOW, purpose="confirm")  # dropped, no grace


def test_a_keyring_token_is_bound_to_its_purpose() -> None:
    ring = Keyring(STACK_SECRET)
    confirm = ring.sign({"c": "c1", "ch": "email"}, now=NOW, purpose="confirm")

    with pytest.raises(BadToken):
        ring.verify(confirm, now=NOW, purpose="unsubscribe")


@pytest.mark.parametrize("key_id", ["k0", "key2", "K2", "k1234567", ""])
def test_stack_key_ids_are_k_and_a_number(key_id: str) -> None:
    with pytest.raises(ValueError):
        derive_key(STACK_SECRET, key_id)


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=20) | st.integers(), max_size=4))
@settings(max_examples=100)
def test_keyring_round_trip_with_any_payload(payload: dict[str, Any]) -> None:
    ring = Keyring(STACK_SECRET, current="k7", retired={"k6": date(2030, 1, 1)})

    assert ring.verify(ring.sign(payload, now=NOW, purpose="p"), now=NOW, purpose="p") == payload
