"""A client connection's security session: which listener it came in on, with what security
protocol, from where, and who it is (the principal), as Kafka's RequestContext carries them.

The server creates one per connection; the request pipeline reads it before every request
(a SASL listener serves only ApiVersions, SaslHandshake and SaslAuthenticate until the client
authenticated) and the SASL handlers move it on. Authorization reads `principal`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from strom.security.principal import ANONYMOUS, KafkaPrincipal


class SecurityProtocol(enum.StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"

    @property
    def uses_sasl(self) -> bool:
        return self in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)

    @property
    def uses_tls(self) -> bool:
        return self in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)


@dataclass(slots=True)
class Session:
    listener: str  # the listener's name, e.g. PLAINTEXT or CLIENT (Metadata answers its endpoints)
    protocol: SecurityProtocol
    client_host: str
    client_port: int = 0
    # Who the client is: User:ANONYMOUS until SASL authenticates it, or from its TLS
    # certificate (SSL listeners with client authentication).
    principal: KafkaPrincipal = ANONYMOUS
    authenticated: bool = False  # SASL listeners: set by SaslAuthenticate
    mechanism: str | None = None  # the SASL mechanism chosen by SaslHandshake
    # The SASL exchange in progress (strom.broker.sasl), None between authentications.
    exchange: Any = None
    # time.monotonic() after which the connection must re-authenticate (KIP-368), or None.
    reauth_deadline: float | None = None
    close_after_response: str | None = None  # why the connection closes once answered
    # After a SaslHandshake v0 the SASL tokens come as raw frames without a Kafka header.
    raw_tokens: bool = False
    # time.monotonic() before which the connection's next request waits: a quota throttle
    # (KIP-219 mutes the channel after the throttled answer).
    mute_until: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def plaintext(cls, client_host: str = "", listener: str = "PLAINTEXT") -> Session:
        """A session on a PLAINTEXT listener (tests and in-process callers)."""
        return cls(listener, SecurityProtocol.PLAINTEXT, client_host, authenticated=True)

    @property
    def needs_sasl(self) -> bool:
        """True while requests other than the SASL ones must not be served."""
        return self.protocol.uses_sasl and not self.authenticated

    @property
    def address(self) -> str:
        return f"{self.client_host}:{self.client_port}"
