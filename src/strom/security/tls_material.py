"""The PEM key material a TLS listener serves with: read, checked and loaded into OpenSSL.

A keystore is Kafka's PEM keystore: one private key (PKCS#8, encrypted with
``ssl.key.password`` or not; PKCS#1 and SEC1 keys are accepted too) and the certificate chain,
leaf first, in one file (``ssl.keystore.location``) or inline (``ssl.keystore.key`` and
``ssl.keystore.certificate.chain``). A truststore is a PEM file of CA certificates. Each
problem is a TlsConfigError naming the setting and the file, never a secret.
"""

from __future__ import annotations

import datetime
import os
import re
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from strom.security.dn import subject_name
from strom.security.tls_settings import TlsConfigError, TlsSettings

_BLOCK: Final = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL)
_KEY_LABELS: Final = frozenset({b"PRIVATE KEY", b"ENCRYPTED PRIVATE KEY", b"RSA PRIVATE KEY",
                                b"EC PRIVATE KEY"})


@dataclass(frozen=True, slots=True)
class Keystore:
    """A checked private key (as given: encrypted or not) and its certificate chain."""

    key_pem: bytes = field(repr=False)
    chain_pem: bytes
    subject: str
    not_after: datetime.datetime


@dataclass(frozen=True, slots=True)
class Truststore:
    """Checked CA certificates."""

    cadata: str
    count: int


def _blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    return [(m.group(1), m.group(0)) for m in _BLOCK.finditer(data)]


def _read(path: str, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None


def read_keystore(settings: TlsSettings) -> Keystore:
    """The listener's key and chain; TlsConfigError saying what to fix."""
    if settings.keystore_location:
        where = settings.keystore_location
        setting = "ssl.keystore.location"
        blocks = _blocks(_read(where, setting))
        key_blocks = [b for label, b in blocks if label in _KEY_LABELS]
        cert_blocks = [b for label, b in blocks if label == b"CERTIFICATE"]
        key_setting = chain_setting = setting
    else:
        where = "the inline PEM"
        key_setting, chain_setting = "ssl.keystore.key", "ssl.keystore.certificate.chain"
        key_blocks = [b for label, b in _blocks((settings.keystore_key or "").encode())
                      if label in _KEY_LABELS]
        chain = (settings.keystore_certificate_chain or "").encode()
        cert_blocks = [b for label, b in _blocks(chain) if label == b"CERTIFICATE"]
    if len(key_blocks) != 1:
        found = "no" if not key_blocks else str(len(key_blocks))
        raise TlsConfigError(f"{key_setting}: {where} holds {found} private keys, expected one "
                             "(a PEM PRIVATE KEY block)")
    if not cert_blocks:
        raise TlsConfigError(f"{chain_setting}: {where} holds no certificate, expected the "
                             "certificate chain as PEM CERTIFICATE blocks, leaf first")
    key_pem = key_blocks[0]
    key = _private_key(key_pem, settings.key_password, key_setting, where)
    certificates = [_certificate(block, chain_setting, where, n)
                    for n, block in enumerate(cert_blocks, 1)]
    leaf = certificates[0]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != leaf.public_key().public_bytes(der, spki):
        subject = subject_name(leaf.public_bytes(der))
        raise TlsConfigError(f"{key_setting}: the private key in {where} does not belong to "
                             f"its first certificate ({subject}): put the certificate issued "
                             "for this key first")
    return Keystore(key_pem, b"".join(cert_blocks), subject_name(leaf.public_bytes(der)),
                    leaf.not_valid_after_utc)


def _private_key(block: bytes, password: str | None, setting: str,
                 where: str) -> PrivateKeyTypes:
    encrypted = block.startswith(b"-----BEGIN ENCRYPTED") or b"Proc-Type: 4,ENCRYPTED" in block
    if encrypted and password is None:
        raise TlsConfigError(f"ssl.key.password: the private key in {where} is encrypted: set "
                             "ssl.key.password")
    if password is not None and not encrypted:
        raise TlsConfigError(f"ssl.key.password is set but the private key in {where} is not "
                             "encrypted: remove ssl.key.password")
    try:
        return serialization.load_pem_private_key(
            block, password.encode() if password is not None else None)
    except ValueError:
        if encrypted:
            raise TlsConfigError(f"ssl.key.password does not decrypt the private key in "
                                 f"{where}: check the password") from None
        raise TlsConfigError(f"{setting}: the private key in {where} cannot be read "
                             "(damaged or not a PEM private key)") from None
    except UnsupportedAlgorithm as exc:
        raise TlsConfigError(f"{setting}: the private key in {where} uses an unsupported "
                             f"algorithm: {exc}") from None


def _certificate(block: bytes, setting: str, where: str, number: int) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(block)
    except ValueError as exc:
        raise TlsConfigError(f"{setting}: certificate {number} in {where} cannot be read: "
                             f"{exc}") from None


def read_truststore(settings: TlsSettings) -> Truststore | None:
    """The CA certificates client certificates are checked against (None: no truststore)."""
    if settings.truststore_location:
        setting = "ssl.truststore.location"
        where = settings.truststore_location
        data = _read(where, setting)
    elif settings.truststore_certificates:
        setting = where = "ssl.truststore.certificates"
        data = settings.truststore_certificates.encode()
    else:
        return None
    blocks = [block for label, block in _blocks(data) if label == b"CERTIFICATE"]
    if not blocks:
        raise TlsConfigError(f"{setting}: {where} holds no certificate, expected CA "
                             "certificates as PEM CERTIFICATE blocks")
    for number, block in enumerate(blocks, 1):
        _certificate(block, setting, where, number)
    return Truststore(b"".join(blocks).decode("ascii"), len(blocks))


def load(context: ssl.SSLContext, keystore: Keystore, truststore: Truststore | None,
         settings: TlsSettings) -> None:
    """Puts the key material into an SSLContext (through a private temporary file: Python's
    ssl reads keys from files only; the key is written as given, encrypted or not)."""
    where = settings.keystore_location or "ssl.keystore.key"
    with tempfile.TemporaryDirectory(prefix="strom-tls-") as private:
        path = os.path.join(private, "keystore.pem")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(keystore.chain_pem + keystore.key_pem)
        try:
            context.load_cert_chain(path, password=settings.key_password)
        except ssl.SSLError as exc:
            raise TlsConfigError(f"OpenSSL refuses the key or certificates of {where}: "
                                 f"{exc.reason or exc}") from None
    if truststore is not None:
        try:
            context.load_verify_locations(cadata=truststore.cadata)
        except ssl.SSLError as exc:
            raise TlsConfigError(f"OpenSSL refuses the CA certificates of "
                                 f"{settings.truststore_location or 'ssl.truststore.certificates'}"
                                 f": {exc.reason or exc}") from None
