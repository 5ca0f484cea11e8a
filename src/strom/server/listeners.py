"""The broker's listeners: one server per `listeners` entry, speaking its security protocol
(TLS for SSL and SASL_SSL, from the listener's ssl.* settings), and the session each
connection starts with (who the client is before any SASL exchange)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass

from strom.config.broker import BrokerConfig
from strom.config.listeners import ListenerAddress
from strom.security.principal import ANONYMOUS, KafkaPrincipal
from strom.security.session import SecurityProtocol, Session
from strom.security.tls import TlsContext, TlsSettings

log = logging.getLogger(__name__)

TLS_HANDSHAKE_TIMEOUT_S = 10.0


@dataclass
class Listener:
    address: ListenerAddress
    protocol: SecurityProtocol
    tls: TlsContext | None
    port: int = 0  # once bound

    @property
    def name(self) -> str:
        return self.address.name

    @classmethod
    def from_config(cls, config: BrokerConfig, address: ListenerAddress) -> Listener:
        """Raises ValueError (TlsConfigError, ConfigError) with what to fix."""
        protocol = SecurityProtocol(config.protocol_of(address.name))
        tls = None
        if protocol.uses_tls:
            def get(name: str) -> str | None:
                return config.for_listener(address.name, name) or None

            tls = TlsContext(TlsSettings.from_settings(get), f"listener {address.name}")
        return cls(address, protocol, tls, address.port)

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return None if self.tls is None else self.tls.context

    def session(self, writer: asyncio.StreamWriter) -> Session:
        """A new connection's session: PLAINTEXT and SSL connections are authenticated at
        once (as ANONYMOUS, or the principal of an SSL client's certificate); SASL ones once
        their SASL exchange succeeds. Raises ValueError (NoMatchingRule) when no
        ssl.principal.mapping.rules rule applies to the certificate (Kafka then refuses the
        client)."""
        peer = writer.get_extra_info("peername")
        host, port = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else (str(peer), 0)
        principal: KafkaPrincipal = ANONYMOUS
        if self.protocol is SecurityProtocol.SSL and self.tls is not None:
            ssl_object = writer.get_extra_info("ssl_object")
            name = None if ssl_object is None else self.tls.principal(ssl_object)
            if name is not None:
                principal = KafkaPrincipal("User", name)
        return Session(self.name, self.protocol, host, port, principal,
                       authenticated=not self.protocol.uses_sasl)
