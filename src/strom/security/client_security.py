"""How strom's own Kafka connections secure themselves: TLS and SASL for a broker reaching its
peers over the inter-broker listener, and for the CLI commands that speak the protocol
themselves (`strom quota`, `strom cluster`), from the settings each is given.

    security = from_client_settings({"security.protocol": "SASL_SSL", ...})  # librdkafka's
    security = inter_broker(config)                                          # Kafka's broker
    connection = await security.open(host, port, client_id, connect_timeout_s=10,
                                     request_timeout_s=30)
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Final

from strom.config.broker import BrokerConfig
from strom.config.topic import ConfigError
from strom.protocol.client import Authenticate, KafkaConnection
from strom.security import jaas
from strom.security.sasl_client import CLIENT_MECHANISMS, SaslCredentials, authenticate
from strom.security.session import SecurityProtocol
from strom.security.tls_material import load, read_keystore, read_truststore
from strom.security.tls_settings import TlsSettings

_TRUE: Final = frozenset({"true", "1", "yes", "on"})


@dataclass(frozen=True, slots=True)
class ClientSecurity:
    protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    tls: ssl.SSLContext | None = None
    sasl: SaslCredentials | None = None

    @property
    def authenticate(self) -> Authenticate | None:
        return None if self.sasl is None else partial(authenticate, credentials=self.sasl)

    async def open(self, host: str, port: int, client_id: str, *, connect_timeout_s: float,
                   request_timeout_s: float, peer: str | None = None) -> KafkaConnection:
        """A negotiated (and authenticated) connection; PeerUnavailable (SaslError when the
        login is refused)."""
        return await KafkaConnection.open(
            host, port, client_id, connect_timeout_s=connect_timeout_s,
            request_timeout_s=request_timeout_s, peer=peer, tls=self.tls,
            authenticate=self.authenticate)


def _protocol(text: str, where: str) -> SecurityProtocol:
    try:
        return SecurityProtocol(text.strip().upper() or "PLAINTEXT")
    except ValueError:
        raise ConfigError(f"{where}={text}: use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
                          ) from None


def _mechanism(text: str, where: str) -> str:
    mechanism = text.strip().upper()
    if mechanism not in CLIENT_MECHANISMS:
        raise ConfigError(f"{where}={text or '(unset)'}: strom's own connections log in with "
                          f"{', '.join(CLIENT_MECHANISMS)}")
    return mechanism


def from_client_settings(settings: Mapping[str, str]) -> ClientSecurity:
    """From librdkafka's names (what `-X KEY=VALUE` gives the CLI): security.protocol,
    sasl.mechanism(s), sasl.username, sasl.password, ssl.ca.location, ssl.ca.pem,
    ssl.certificate.location, ssl.key.location, ssl.key.password,
    enable.ssl.certificate.verification, ssl.endpoint.identification.algorithm. ConfigError
    saying what to fix."""
    protocol = _protocol(settings.get("security.protocol", ""), "security.protocol")
    tls = None
    if protocol.uses_tls:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        verify = settings.get("enable.ssl.certificate.verification", "true").lower() in _TRUE
        tls.check_hostname = verify and settings.get(
            "ssl.endpoint.identification.algorithm", "https").strip().lower() == "https"
        if not verify:
            tls.verify_mode = ssl.CERT_NONE
        try:
            if settings.get("ssl.ca.location") or settings.get("ssl.ca.pem"):
                location = settings.get("ssl.ca.location") or None
                tls.load_verify_locations(cafile=location, cadata=settings.get("ssl.ca.pem"))
            else:
                tls.load_default_certs()
            if settings.get("ssl.certificate.location"):
                tls.load_cert_chain(settings["ssl.certificate.location"],
                                    settings.get("ssl.key.location") or None,
                                    password=settings.get("ssl.key.password") or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot read the TLS files given (ssl.ca.location, "
                              f"ssl.certificate.location, ssl.key.location): {exc}") from None
    sasl = None
    if protocol.uses_sasl:
        mechanism = _mechanism(settings.get("sasl.mechanism")
                               or settings.get("sasl.mechanisms", ""), "sasl.mechanism")
        username, password = settings.get("sasl.username"), settings.get("sasl.password")
        if not username or password is None:
            raise ConfigError("SASL needs -X sasl.username=NAME and -X sasl.password=PASSWORD")
        sasl = SaslCredentials(mechanism, username, password)
    return ClientSecurity(protocol, tls, sasl)


def inter_broker(config: BrokerConfig) -> ClientSecurity:
    """How this broker connects to the others: the inter-broker listener's protocol; over TLS
    its keystore as client certificate and its truststore (else the system's CAs) to check
    theirs; over SASL sasl.mechanism.inter.broker.protocol with the user of the listener's
    JAAS config. ConfigError saying what to set."""
    listener = config.inter_broker_listener()
    protocol = _protocol(config.protocol_of(listener), "listener.security.protocol.map")
    tls = None
    if protocol.uses_tls:
        def get(name: str) -> str | None:
            return config.for_listener(listener, name) or None

        settings = TlsSettings.from_settings(get)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.minimum_version, tls.maximum_version = settings.versions()
        tls.check_hostname = config.for_listener(
            listener, "ssl.endpoint.identification.algorithm").strip().lower() == "https"
        truststore = read_truststore(settings)
        # The listener's own certificate is the broker's client certificate (for listeners
        # that require one; `strom certs create` makes broker certificates for both uses).
        load(tls, read_keystore(settings), truststore, settings)
        if truststore is None:
            tls.load_default_certs()
    sasl = None
    if protocol.uses_sasl:
        where = "sasl.mechanism.inter.broker.protocol"
        mechanism = _mechanism(config.get(where), where)
        prefix = f"listener.name.{listener.lower()}."
        setting = next((name for name in (f"{prefix}{mechanism.lower()}.sasl.jaas.config",
                                          f"{prefix}sasl.jaas.config", "sasl.jaas.config")
                        if config.settings.get(name)), None)
        if setting is None:
            raise ConfigError(
                f"the inter-broker listener {listener} is {protocol}: set the broker's own "
                f"user in {prefix}{mechanism.lower()}.sasl.jaas.config (e.g. "
                f"{jaas.MODULES[mechanism]} required username=\"broker\" "
                "password=\"...\";), and create that user (strom user set)")
        username, password = jaas.credentials(config.settings[setting], mechanism, setting)
        sasl = SaslCredentials(mechanism, username, password)
    return ClientSecurity(protocol, tls, sasl)
