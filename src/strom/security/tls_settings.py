"""A TLS listener's settings, by Kafka's names, read and checked (no file is opened here).

``TlsSettings.from_settings(get)`` reads, for one listener (the caller resolves
``listener.name.<x>.`` prefixes in ``get``):

- ``ssl.keystore.type``: PEM (the default here: strom reads no JKS or PKCS12 keystore);
- ``ssl.keystore.location``: a PEM file with the private key and the certificate chain
  (leaf first), or inline ``ssl.keystore.key`` and ``ssl.keystore.certificate.chain``;
- ``ssl.key.password``: the password of an encrypted key;
- ``ssl.truststore.type`` (PEM) and ``ssl.truststore.location`` (a PEM file of CA
  certificates) or inline ``ssl.truststore.certificates``;
- ``ssl.client.auth``: none (the default), requested or required;
- ``ssl.enabled.protocols`` (default ``TLSv1.2,TLSv1.3``; nothing older is accepted) and
  ``ssl.protocol`` (TLS, TLSv1.2 or TLSv1.3: checked, without effect on a listener, as with
  Kafka's brokers where the enabled protocols decide);
- ``ssl.cipher.suites``: IANA names (``TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384``) of the usual
  TLS 1.2 suites, OpenSSL names or cipher strings (``ECDHE-RSA-AES256-GCM-SHA384``), and the
  TLS 1.3 names. As in Kafka, a list without a TLS 1.3 suite disables TLS 1.3 and one without
  a TLS 1.2 suite disables TLS 1.2. Python's ssl cannot choose among the TLS 1.3 suites:
  naming any of OpenSSL's three default ones enables those three;
- ``ssl.principal.mapping.rules`` (default DEFAULT).

``ssl.keystore.password`` and ``ssl.truststore.password`` are refused, as Kafka refuses them
for PEM stores.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Final, Literal

from strom.config.topic import ConfigError
from strom.security.principal_rules import PrincipalMapper

ClientAuth = Literal["none", "requested", "required"]

VERSIONS: Final = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
PROTOCOLS: Final = ("TLS", "TLSv1.2", "TLSv1.3")
DEFAULT_ENABLED_PROTOCOLS: Final = "TLSv1.2,TLSv1.3"
DEFAULT_PROTOCOL: Final = "TLSv1.3"

# OpenSSL's default TLS 1.3 suites (always enabled with TLS 1.3: Python cannot change them)
TLS13_DEFAULT_SUITES: Final = frozenset({
    "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256", "TLS_AES_128_GCM_SHA256",
})
TLS13_OTHER_SUITES: Final = frozenset({"TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"})

# IANA names of TLS 1.2 suites: key exchange and authentication, then cipher and MAC
_IANA_KEY_EXCHANGE: Final = {
    "ECDHE_ECDSA": "ECDHE-ECDSA-", "ECDHE_RSA": "ECDHE-RSA-", "DHE_RSA": "DHE-RSA-", "RSA": "",
}
_IANA_CIPHER: Final = {
    "AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "CHACHA20_POLY1305_SHA256": "CHACHA20-POLY1305",
    "AES_128_CBC_SHA256": "AES128-SHA256",
    "AES_256_CBC_SHA256": "AES256-SHA256",
    "AES_256_CBC_SHA384": "AES256-SHA384",
    "AES_128_CBC_SHA": "AES128-SHA",
    "AES_256_CBC_SHA": "AES256-SHA",
    "AES_128_CCM": "AES128-CCM",
    "AES_256_CCM": "AES256-CCM",
}
IANA_TO_OPENSSL: Final = {
    f"TLS_{kx}_WITH_{cipher}": f"{prefix}{name}"
    for kx, prefix in _IANA_KEY_EXCHANGE.items()
    for cipher, name in _IANA_CIPHER.items()
}


class TlsConfigError(ConfigError):
    """A TLS setting, or a file it names, that cannot be used; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """One listener's TLS settings, checked (the files they name are read by TlsContext)."""

    keystore_location: str | None = None
    keystore_key: str | None = field(default=None, repr=False)
    keystore_certificate_chain: str | None = None
    key_password: str | None = field(default=None, repr=False)
    truststore_location: str | None = None
    truststore_certificates: str | None = None
    client_auth: ClientAuth = "none"
    enabled_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    protocol: str = DEFAULT_PROTOCOL
    cipher_suites: tuple[str, ...] = ()
    principal_mapping_rules: str = "DEFAULT"
    mapper: PrincipalMapper = field(default_factory=PrincipalMapper.parse, compare=False,
                                    repr=False)

    @classmethod
    def from_settings(cls, get: Callable[[str], str | None]) -> TlsSettings:
        """The settings `get(name)` gives (None: unset); TlsConfigError for a bad one."""

        def value(name: str) -> str | None:
            text = get(name)
            return text if text is not None and text.strip() else None

        for name in ("ssl.keystore.type", "ssl.truststore.type"):
            store_type = (value(name) or "PEM").strip()
            if store_type.upper() != "PEM":
                raise TlsConfigError(
                    f"{name}={store_type}: only PEM keystores are supported: convert with "
                    "openssl (a PKCS12 file: `openssl pkcs12 -in store.p12 -out store.pem`; a "
                    "JKS file: first `keytool -importkeystore -deststoretype PKCS12`)")
        for name, use in (("ssl.keystore.password", "ssl.key.password for an encrypted key"),
                          ("ssl.truststore.password", "nothing: PEM certificates are public")):
            if value(name) is not None:
                raise TlsConfigError(f"{name} is not used with PEM stores: remove it "
                                     f"(and use {use})")
        location, key, chain = _keystore(value)
        trust_location = value("ssl.truststore.location")
        trust_inline = value("ssl.truststore.certificates")
        if trust_location and trust_inline:
            raise TlsConfigError("set ssl.truststore.location or ssl.truststore.certificates, "
                                 "not both")
        client_auth = _client_auth(value("ssl.client.auth"))
        if client_auth != "none" and not (trust_location or trust_inline):
            raise TlsConfigError(
                f"ssl.client.auth={client_auth} needs a truststore to check client "
                "certificates with: set ssl.truststore.location (a PEM file of CA certificates)")
        protocol = (value("ssl.protocol") or DEFAULT_PROTOCOL).strip()
        if protocol not in PROTOCOLS:
            raise TlsConfigError(f"ssl.protocol={protocol}: use one of {', '.join(PROTOCOLS)}")
        enabled = _enabled_protocols(value("ssl.enabled.protocols") or DEFAULT_ENABLED_PROTOCOLS)
        suites = tuple(s.strip() for s in (value("ssl.cipher.suites") or "").split(",")
                       if s.strip())
        rules = value("ssl.principal.mapping.rules") or "DEFAULT"
        try:
            mapper = PrincipalMapper.parse(rules)
        except ConfigError as exc:
            raise TlsConfigError(str(exc)) from None
        settings = cls(location, key, chain, value("ssl.key.password"), trust_location,
                       trust_inline, client_auth, enabled, protocol, suites, rules, mapper)
        settings.versions()  # checks the suites against the protocols
        return settings

    @property
    def watched_files(self) -> tuple[str, ...]:
        """The files these settings name (a change to one is a certificate reload)."""
        return tuple(p for p in (self.keystore_location, self.truststore_location) if p)

    @property
    def verify_mode(self) -> ssl.VerifyMode:
        return {"none": ssl.CERT_NONE, "requested": ssl.CERT_OPTIONAL,
                "required": ssl.CERT_REQUIRED}[self.client_auth]

    def openssl_ciphers(self) -> str | None:
        """The OpenSSL cipher string of the TLS 1.2 suites (None: OpenSSL's defaults)."""
        tls12 = [IANA_TO_OPENSSL.get(s, s) for s in self.cipher_suites
                 if s not in TLS13_DEFAULT_SUITES]
        return ":".join(tls12) or None

    def versions(self) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
        """(minimum, maximum) TLS version: the enabled protocols that have a cipher suite."""
        usable = set(self.enabled_protocols)
        if self.cipher_suites:
            for suite in self.cipher_suites:
                _check_suite(suite)
            if not TLS13_DEFAULT_SUITES.intersection(self.cipher_suites):
                usable.discard("TLSv1.3")
            if not self.openssl_ciphers():
                usable.discard("TLSv1.2")
            if not usable:
                raise TlsConfigError(
                    f"ssl.cipher.suites names no suite for the enabled protocols "
                    f"({', '.join(self.enabled_protocols)}): add one (e.g. "
                    "TLS_AES_256_GCM_SHA384 for TLSv1.3, "
                    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 for TLSv1.2)")
        ordered = sorted(VERSIONS[p] for p in usable)
        return ordered[0], ordered[-1]


def _keystore(value: Callable[[str], str | None]) -> tuple[str | None, str | None, str | None]:
    location = value("ssl.keystore.location")
    key = value("ssl.keystore.key")
    chain = value("ssl.keystore.certificate.chain")
    if location and (key or chain):
        raise TlsConfigError("set ssl.keystore.location or ssl.keystore.key with "
                             "ssl.keystore.certificate.chain, not both")
    if bool(key) != bool(chain):
        missing = "ssl.keystore.certificate.chain" if key else "ssl.keystore.key"
        raise TlsConfigError(f"inline PEM keystores need ssl.keystore.key and "
                             f"ssl.keystore.certificate.chain: set {missing} too")
    if not (location or key):
        raise TlsConfigError("a TLS listener needs its certificate: set ssl.keystore.location "
                             "(a PEM file with the private key and the certificate chain; "
                             "`strom certs create` makes one for development)")
    return location, key, chain


def _client_auth(text: str | None) -> ClientAuth:
    auth = (text or "none").strip().lower()
    if auth == "none":
        return "none"
    if auth == "requested":
        return "requested"
    if auth == "required":
        return "required"
    raise TlsConfigError(f"ssl.client.auth={text}: use none, requested or required")


def _enabled_protocols(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    for name in names:
        if name not in VERSIONS:
            raise TlsConfigError(f"ssl.enabled.protocols: {name} is not supported: use "
                                 "TLSv1.2 and/or TLSv1.3")
    if not names:
        raise TlsConfigError("ssl.enabled.protocols is empty: use TLSv1.2,TLSv1.3")
    return names


@cache
def _check_suite(suite: str) -> None:
    """TlsConfigError unless OpenSSL offers the suite (or Python's ssl can enable it)."""
    if suite in TLS13_DEFAULT_SUITES:
        return
    if suite in TLS13_OTHER_SUITES:
        raise TlsConfigError(f"ssl.cipher.suites: {suite} cannot be enabled (Python's ssl "
                             f"offers only {', '.join(sorted(TLS13_DEFAULT_SUITES))} for "
                             "TLSv1.3)")
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        scratch.set_ciphers(IANA_TO_OPENSSL.get(suite, suite))
    except ssl.SSLError:
        raise TlsConfigError(f"ssl.cipher.suites: {suite} is not a cipher suite "
                             f"{ssl.OPENSSL_VERSION} offers (use IANA names such as "
                             "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 or OpenSSL names such "
                             "as ECDHE-RSA-AES256-GCM-SHA384)") from None
