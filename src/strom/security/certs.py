"""Development certificates: a CA, a broker certificate and client certificates (RSA 2048).

For trying TLS and mutual TLS locally, not for production. Files written into a directory:

- ``ca.pem`` (the CA certificate: the truststore of brokers and clients) and ``ca-key.pem``;
- per certificate NAME: ``NAME.pem``, Kafka's PEM keystore (the PKCS#8 private key, encrypted
  when a password is given, followed by the certificate: ``ssl.keystore.location``), and the
  same split in ``NAME-cert.pem`` and ``NAME-key.pem`` (librdkafka's
  ``ssl.certificate.location`` and ``ssl.key.location``).

Files holding a key are mode 0600. Every file is replaced atomically, so a broker watching its
keystore never reads one half written.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DAYS: Final = 365
CA_NAME: Final = "strom-dev-ca"
CA_CERT: Final = "ca.pem"
CA_KEY: Final = "ca-key.pem"
KEY_MODE: Final = 0o600
CERT_MODE: Final = 0o644
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_RESERVED: Final = frozenset({"ca", "ca-key"})
_CLOCK_SKEW: Final = datetime.timedelta(hours=1)


class CertsError(ValueError):
    """A certificate that cannot be made; the message says what to do."""


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """The CA that signs the development certificates, and where its files are."""

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey
    cert_path: Path
    key_path: Path


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate signed by the CA and the files holding it."""

    name: str
    common_name: str
    keystore: Path
    cert_path: Path
    key_path: Path
    hosts: tuple[str, ...]
    client: bool
    not_after: datetime.datetime


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Writes `path` atomically with `mode` (the file is never readable by others first)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "wb") as file:
            os.fchmod(file.fileno(), mode)
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _name(common_name: str) -> x509.Name:
    try:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    except ValueError as exc:
        raise CertsError(f"{common_name!r} cannot be a certificate name: {exc}") from None


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: rsa.RSAPrivateKey, password: str | None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password
        else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption)


def create_ca(directory: Path | str, name: str = CA_NAME,
              days: int = DEFAULT_DAYS) -> CertificateAuthority:
    """A new CA in `directory` (ca.pem, ca-key.pem), replacing one there."""
    if days < 1:
        raise CertsError(f"a CA valid for {days} days is no use: give at least 1")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = _name(name)
    now = _now()
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    ca = CertificateAuthority(certificate, key, directory / CA_CERT, directory / CA_KEY)
    _write(ca.key_path, _key_pem(key, None), KEY_MODE)
    _write(ca.cert_path, _pem(certificate), CERT_MODE)
    return ca


def load_ca(directory: Path | str) -> CertificateAuthority:
    """The CA of `directory` (ca.pem and ca-key.pem); CertsError if they cannot be used."""
    directory = Path(directory)
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    except OSError as exc:
        raise CertsError(f"cannot read the CA in {directory}: {exc.strerror or exc} (give "
                         "another directory, or remove ca.pem and ca-key.pem for a new CA)"
                         ) from None
    except (TypeError, ValueError) as exc:
        raise CertsError(f"the CA in {directory} cannot be used ({exc}): remove ca.pem and "
                         "ca-key.pem for a new CA") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertsError(f"{key_path} is not an RSA key: remove ca.pem and ca-key.pem for a "
                         "new CA")
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != certificate.public_key().public_bytes(
            der, spki):
        raise CertsError(f"{key_path} is not the key of {cert_path}: remove both for a new CA")
    if certificate.not_valid_after_utc <= _now():
        raise CertsError(f"the CA in {cert_path} has expired: remove ca.pem and ca-key.pem "
                         "for a new CA")
    return CertificateAuthority(certificate, key, cert_path, key_path)


def load_or_create_ca(directory: Path | str, name: str = CA_NAME,
                      days: int = DEFAULT_DAYS) -> tuple[CertificateAuthority, bool]:
    """The CA of `directory`, made if there is none; (CA, whether it was made)."""
    directory = Path(directory)
    present = [p.name for p in (directory / CA_CERT, directory / CA_KEY) if p.exists()]
    if len(present) == 1:
        raise CertsError(f"{directory} holds {present[0]} without its pair: restore it, or "
                         "remove it for a new CA")
    if present:
        return load_ca(directory), False
    return create_ca(directory, name, days), True


def check_name(name: str) -> str:
    """`name` if it can name a certificate's files (NAME.pem...); CertsError otherwise."""
    if not _NAME.fullmatch(name) or name in _RESERVED:
        raise CertsError(f"{name!r} cannot name the certificate's files: use letters, digits, "
                         "'.', '_' and '-' (and not ca)")
    return name


def _alternative_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        host = host.strip().strip("[]")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        if not host or not host.isascii() or not re.fullmatch(r"[A-Za-z0-9*._-]+", host):
            raise CertsError(f"{host!r} is neither a host name nor an IP address (write "
                             "international names in their xn-- form)")
        names.append(x509.DNSName(host))
    return names


def create_certificate(directory: Path | str, ca: CertificateAuthority, common_name: str,
                       hosts: Sequence[str] = (), client: bool = False,
                       password: str | None = None, days: int = DEFAULT_DAYS,
                       name: str | None = None) -> IssuedCertificate:
    """A certificate for CN=`common_name` signed by `ca`, written as NAME.pem (keystore),
    NAME-cert.pem and NAME-key.pem (NAME: `name`, else the common name). `hosts` (DNS names
    and IP addresses) are its subject alternative names. A client certificate is for client
    authentication only; a server one for both (brokers are clients of each other)."""
    name = check_name(name or common_name)
    if days < 1:
        raise CertsError(f"a certificate valid for {days} days is no use: give at least 1")
    directory = Path(directory)
    now = _now()
    not_after = min(now + datetime.timedelta(days=days), ca.certificate.not_valid_after_utc)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    ca_public = ca.certificate.public_key()
    assert isinstance(ca_public, rsa.RSAPublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=True,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public),
                       critical=False)
    )
    alternative = _alternative_names(hosts)
    if alternative:
        builder = builder.add_extension(x509.SubjectAlternativeName(alternative),
                                        critical=False)
    certificate = builder.sign(ca.key, hashes.SHA256())
    key_pem, cert_pem = _key_pem(key, password), _pem(certificate)
    issued = IssuedCertificate(name, common_name, directory / f"{name}.pem",
                               directory / f"{name}-cert.pem", directory / f"{name}-key.pem",
                               tuple(hosts), client, not_after)
    directory.mkdir(parents=True, exist_ok=True)
    _write(issued.keystore, key_pem + cert_pem, KEY_MODE)
    _write(issued.key_path, key_pem, KEY_MODE)
    _write(issued.cert_path, cert_pem, CERT_MODE)
    return issued
