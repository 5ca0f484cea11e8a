"""SASL/PLAIN: parsing the client's message as RFC 4616 and Kafka's PlainSaslServer do, and
checking its password against the user's SCRAM credentials of either mechanism."""

from __future__ import annotations

import pytest

from strom.security.plain import (
    INVALID_CREDENTIALS,
    dummy_credential,
    parse_plain,
    verify_password,
)
from strom.security.principal import AuthenticationFailed
from strom.security.scram import MIN_ITERATIONS, ScramCredential, credential_from_password

SECRET = b"broker secret"
DIFFERENT_AUTHZID = (
    "Authentication failed: Client requested an authorization id that is different from username"
)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"\x00alice\x00secret", ("alice", "secret")),
        (b"alice\x00alice\x00secret", ("alice", "secret")),
        (b"\x00al ice\x00p a:s=s,", ("al ice", "p a:s=s,")),
        ("\x00jürgen\x00päss".encode(), ("jürgen", "päss")),
    ],
)
def test_parse_plain(message: bytes, expected: tuple[str, str]) -> None:
    assert parse_plain(message) == expected


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"", "Invalid SASL/PLAIN response: expected 3 tokens, got 1"),
        (b"alice\x00secret", "Invalid SASL/PLAIN response: expected 3 tokens, got 2"),
        (b"\x00alice\x00sec\x00ret", "Invalid SASL/PLAIN response: expected 3 tokens, got 4"),
        (b"\x00\x00secret", "Authentication failed: username not specified"),
        (b"\x00alice\x00", "Authentication failed: password not specified"),
        (b"\x00\x00", "Authentication failed: username not specified"),
        (b"admin\x00alice\x00secret", DIFFERENT_AUTHZID),
        (b"Alice\x00alice\x00secret", DIFFERENT_AUTHZID),
        (b"\x00alice\x00\xff", "Invalid SASL/PLAIN response: not UTF-8"),
    ],
)
def test_parse_plain_refuses(message: bytes, error: str) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        parse_plain(message)
    assert str(caught.value) == error
    assert "secret" not in str(caught.value)


def test_verify_against_each_mechanism() -> None:
    dummy = dummy_credential(SECRET)
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        creds = {mechanism: credential_from_password(mechanism, "päss", 8192)}
        assert verify_password("päss", creds, dummy)
        assert not verify_password("pass", creds, dummy)
        assert not verify_password("päss ", creds, dummy)


def test_verify_with_both_mechanisms_matches_either() -> None:
    dummy = dummy_credential(SECRET)
    creds = {
        "SCRAM-SHA-256": credential_from_password("SCRAM-SHA-256", "old"),
        "SCRAM-SHA-512": credential_from_password("SCRAM-SHA-512", "new"),
    }
    assert verify_password("old", creds, dummy)
    assert verify_password("new", creds, dummy)
    assert not verify_password("neither", creds, dummy)


def test_unknown_user_is_false_and_does_the_work(monkeypatch: pytest.MonkeyPatch) -> None:
    import strom.security.plain as plain
    import strom.security.scram as scram

    dummy = dummy_credential(SECRET)
    seen: list[tuple[str, ScramCredential]] = []
    original = scram.salted_password

    def spy(mechanism: str, password: bytes, salt: bytes, iterations: int) -> bytes:
        seen.append((mechanism, ScramCredential(salt, b"", b"", iterations)))
        return original(mechanism, password, salt, iterations)

    monkeypatch.setattr(plain, "salted_password", spy)
    assert not verify_password("anything", {}, dummy)
    assert seen == [("SCRAM-SHA-256", ScramCredential(dummy.salt, b"", b"", MIN_ITERATIONS))]


def test_dummy_credential_is_deterministic_and_secret_bound() -> None:
    dummy = dummy_credential(SECRET)
    assert dummy == dummy_credential(SECRET)
    assert dummy.salt != dummy_credential(b"another").salt
    assert dummy.iterations == MIN_ITERATIONS and len(dummy.stored_key) == 32


def test_unknown_mechanism_in_the_store_is_a_programming_error() -> None:
    cred = credential_from_password("SCRAM-SHA-256", "pw")
    with pytest.raises(ValueError, match="unknown SCRAM mechanism"):
        verify_password("pw", {"SCRAM-SHA-1": cred}, dummy_credential(SECRET))


def test_kafkas_message_for_a_wrong_password() -> None:
    assert INVALID_CREDENTIALS == "Authentication failed: Invalid username or password"
