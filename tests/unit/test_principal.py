"""Kafka principals: their text form both ways, and Kafka's invalid-credentials message."""

from __future__ import annotations

import pytest

from strom.security.principal import (
    ANONYMOUS,
    KafkaPrincipal,
    invalid_credentials_message,
    parse_principal,
)


def test_str_is_kafkas_to_string() -> None:
    assert str(KafkaPrincipal("User", "alice")) == "User:alice"
    assert str(ANONYMOUS) == "User:ANONYMOUS"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("User:alice", KafkaPrincipal("User", "alice")),
        ("User:CN=a:b,O=c", KafkaPrincipal("User", "CN=a:b,O=c")),
        ("Group:ops", KafkaPrincipal("Group", "ops")),
        ("User:ANONYMOUS", ANONYMOUS),
    ],
)
def test_parse(text: str, expected: KafkaPrincipal) -> None:
    assert parse_principal(text) == expected
    assert str(parse_principal(text)) == text


@pytest.mark.parametrize("text", ["", "alice", ":alice", "User:", ":"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"<type>:<name>"):
        parse_principal(text)


def test_principal_is_frozen_and_hashable() -> None:
    principal = KafkaPrincipal("User", "alice")
    assert {principal: 1}[KafkaPrincipal("User", "alice")] == 1
    with pytest.raises(AttributeError):
        principal.name = "bob"  # type: ignore[misc]


def test_invalid_credentials_message() -> None:
    assert invalid_credentials_message("SCRAM-SHA-256") == (
        "Authentication failed during authentication due to invalid credentials with SASL"
        " mechanism SCRAM-SHA-256"
    )
    assert invalid_credentials_message("PLAIN", reauthentication=True) == (
        "Authentication failed during re-authentication due to invalid credentials with SASL"
        " mechanism PLAIN"
    )
