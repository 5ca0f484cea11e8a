"""Who a connection is: Kafka's principal ("User:alice"), the anonymous principal of an
unauthenticated listener, and the exception every SASL mechanism raises when an exchange
fails (its message is meant for the client, so it never holds a password or key)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class KafkaPrincipal:
    """A principal as Kafka names one: a type ("User") and a name."""

    type: str
    name: str

    def __str__(self) -> str:
        # Kafka's KafkaPrincipal.toString: "<type>:<name>".
        return f"{self.type}:{self.name}"


ANONYMOUS: Final = KafkaPrincipal("User", "ANONYMOUS")


def parse_principal(text: str) -> KafkaPrincipal:
    """The principal "<type>:<name>" names; the name may itself hold colons ("User:a:b" is
    the user "a:b"). ValueError when there is no colon or either side is empty."""
    kind, sep, name = text.partition(":")
    if not sep or not kind or not name:
        raise ValueError(
            f"a principal is written <type>:<name>, e.g. User:alice, with neither part empty;"
            f" got {text!r}"
        )
    return KafkaPrincipal(kind, name)


class AuthenticationFailed(Exception):
    """A SASL exchange failed. str(exc) is safe to send to the client: it never contains a
    password, a key or anything else the client did not already know."""


def invalid_credentials_message(mechanism: str, *, reauthentication: bool = False) -> str:
    """Kafka's answer to a client whose credentials did not verify (its SaslServerAuthenticator
    sends this, and nothing more specific, for a wrong password or an unknown user)."""
    during = "re-authentication" if reauthentication else "authentication"
    return (
        f"Authentication failed during {during} due to invalid credentials with SASL"
        f" mechanism {mechanism}"
    )
