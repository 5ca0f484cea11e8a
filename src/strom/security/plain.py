"""SASL/PLAIN (RFC 4616) checked against the broker's SCRAM credentials: parsing the one
client message, and verifying its password against a user's stored SCRAM credentials (the
password is salted and hashed as SCRAM would, and the stored key compared), doing the same
work for an unknown user so that the time taken does not tell whether the user exists."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Final

from strom.security.principal import AuthenticationFailed
from strom.security.scram import (
    ScramCredential,
    credential_from_salted_password,
    fake_credential,
    salted_password,
)

MECHANISM: Final = "PLAIN"

INVALID_CREDENTIALS: Final = "Authentication failed: Invalid username or password"
"""Kafka's PlainSaslServer answer to a wrong password or an unknown user."""

_DUMMY_MECHANISM: Final = "SCRAM-SHA-256"


def parse_plain(message: bytes) -> tuple[str, str]:
    """(user, password) of a PLAIN message `[authzid] NUL authcid NUL passwd` (UTF-8).
    AuthenticationFailed if it is not one, if user or password is empty, or if an authzid is
    given that is not the user."""
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthenticationFailed("Invalid SASL/PLAIN response: not UTF-8") from None
    tokens = text.split("\x00")
    if len(tokens) != 3:
        raise AuthenticationFailed(
            f"Invalid SASL/PLAIN response: expected 3 tokens, got {len(tokens)}"
        )
    authzid, user, password = tokens
    if not user:
        raise AuthenticationFailed("Authentication failed: username not specified")
    if not password:
        raise AuthenticationFailed("Authentication failed: password not specified")
    if authzid and authzid != user:
        raise AuthenticationFailed(
            "Authentication failed: Client requested an authorization id that is different"
            " from username"
        )
    return user, password


def dummy_credential(secret: bytes) -> ScramCredential:
    """The credential verify_password works against for an unknown user: a SCRAM-SHA-256
    credential with MIN_ITERATIONS, derived from the broker's secret."""
    return fake_credential(_DUMMY_MECHANISM, secret, "\x00plain dummy")


def _matches(mechanism: str, password: bytes, credential: ScramCredential) -> bool:
    salted = salted_password(mechanism, password, credential.salt, credential.iterations)
    derived = credential_from_salted_password(
        mechanism, credential.salt, salted, credential.iterations
    )
    # The stored key suffices: it is derived from the password alone (given salt and count).
    return hmac.compare_digest(derived.stored_key, credential.stored_key)


def verify_password(
    password: str, credentials: Mapping[str, ScramCredential], dummy: ScramCredential
) -> bool:
    """Whether `password` matches one of a user's SCRAM credentials (`credentials`: SCRAM
    mechanism name -> credential; ValueError for a name that is not a SCRAM mechanism).

    Every credential is checked, a match does not cut the work short; an unknown user (no
    credentials) costs one check against `dummy` and is False. So a wrong password takes as
    long for an unknown user as for a user with one credential of MIN_ITERATIONS (a user with
    more credentials, or more iterations, takes longer).
    """
    secret = password.encode("utf-8")
    if not credentials:
        _matches(_DUMMY_MECHANISM, secret, dummy)
        return False
    matched = False
    for mechanism, credential in credentials.items():
        matched |= _matches(mechanism, secret, credential)
    return matched
