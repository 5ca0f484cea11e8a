"""`strom certs`: development CA, broker and client certificates, and the CLI around them."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from strom.cli.main import cli
from strom.security.certs import (
    CertsError,
    create_ca,
    create_certificate,
    load_ca,
    load_or_create_ca,
)
from strom.security.tls import TlsContext, TlsSettings
from tests.unit.tls_handshake import connect


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_ca_and_certificates(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    broker = create_certificate(tmp_path, ca, "localhost", ["localhost", "127.0.0.1", "::1"],
                                name="broker")
    alice = create_certificate(tmp_path, ca, "alice", client=True)
    for name in ("ca.pem", "ca-key.pem", "broker.pem", "broker-cert.pem", "broker-key.pem",
                 "alice.pem", "alice-cert.pem", "alice-key.pem"):
        assert (tmp_path / name).is_file(), name
    for key_file in ("ca-key.pem", "broker.pem", "broker-key.pem", "alice.pem",
                     "alice-key.pem"):
        assert mode(tmp_path / key_file) == 0o600, key_file
    assert mode(tmp_path / "ca.pem") == 0o644
    assert mode(tmp_path / "broker-cert.pem") == 0o644

    ca_cert = load_cert(tmp_path / "ca.pem")
    assert ca_cert.subject.rfc4514_string() == "CN=strom-dev-ca"
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca

    cert = load_cert(broker.cert_path)
    assert cert.subject.rfc4514_string() == "CN=localhost"
    assert cert.issuer == ca_cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                        ipaddress.ip_address("::1")]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}

    client = load_cert(alice.cert_path)
    assert client.subject.rfc4514_string() == "CN=alice"
    assert list(client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH]
    # the keystore: the PKCS#8 key, then the certificate
    keystore = broker.keystore.read_bytes()
    assert keystore.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert keystore.endswith(broker.cert_path.read_bytes())


def test_keystore_serves_and_client_certificate_names_its_holder(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    broker = create_certificate(tmp_path, ca, "localhost", ["localhost"], name="broker",
                                password="pw")
    create_certificate(tmp_path, ca, "orders-service", client=True, password="pw")
    tls = TlsContext(TlsSettings.from_settings({
        "ssl.keystore.location": str(broker.keystore), "ssl.key.password": "pw",
        "ssl.truststore.location": str(tmp_path / "ca.pem"), "ssl.client.auth": "required",
    }.get))
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cafile=tmp_path / "ca.pem")
    client.load_cert_chain(tmp_path / "orders-service-cert.pem",
                           tmp_path / "orders-service-key.pem", password="pw")
    conn = connect(tls.context, client)
    assert tls.principal(conn.server) == "CN=orders-service"


def test_encrypted_keys(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    issued = create_certificate(tmp_path, ca, "bob", client=True, password="pw")
    key = issued.key_path.read_bytes()
    assert key.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert serialization.load_pem_private_key(key, b"pw") is not None


def test_reuses_the_ca(tmp_path: Path) -> None:
    made, created = load_or_create_ca(tmp_path)
    again, created_again = load_or_create_ca(tmp_path)
    assert created and not created_again
    assert again.certificate == made.certificate
    assert load_ca(tmp_path).certificate == made.certificate


def test_errors(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    with pytest.raises(CertsError, match="cannot name the certificate's files"):
        create_certificate(tmp_path, ca, "a b", client=True)
    with pytest.raises(CertsError, match="neither a host name nor an IP address"):
        create_certificate(tmp_path, ca, "x", ["bad host"], name="x")
    (tmp_path / "ca-key.pem").unlink()
    with pytest.raises(CertsError, match="without its pair"):
        load_or_create_ca(tmp_path)


def test_cli_create(tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    result = CliRunner().invoke(cli, ["certs", "create", "--dir", str(directory),
                                      "--client", "alice", "--password", "pw"])
    assert result.exit_code == 0, result.output
    out = result.output
    for name in ("ca.pem", "ca-key.pem", "broker.pem", "broker-cert.pem", "broker-key.pem",
                 "alice.pem", "alice-cert.pem", "alice-key.pem"):
        assert str(directory / name) in out
        assert (directory / name).exists()
    assert "CA certificate (new)" in out
    assert f"--set ssl.keystore.location={directory / 'broker.pem'}" in out
    assert "--set ssl.client.auth=required" in out
    assert "--set ssl.key.password=pw" in out
    assert f"ssl.certificate.location={directory / 'alice-cert.pem'}" in out
    assert f"ssl.key.location={directory / 'alice-key.pem'}" in out
    assert "security.protocol=SSL" in out
    san = load_cert(directory / "broker-cert.pem").extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert len(san.get_values_for_type(x509.IPAddress)) == 2

    again = CliRunner().invoke(cli, ["certs", "create", "--dir", str(directory),
                                     "--broker-host", "kafka.internal"])
    assert again.exit_code == 0, again.output
    assert "CA certificate (existing)" in again.output
    assert "ssl.client.auth" not in again.output
    assert load_cert(directory / "broker-cert.pem").issuer == load_cert(
        directory / "ca.pem").subject
    assert "kafka.internal:9093" in again.output


def test_cli_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["certs", "create", "--dir", str(tmp_path),
                                      "--client", "no good"])
    assert result.exit_code == 1
    assert "cannot name the certificate's files" in result.output
    assert not (tmp_path / "ca.pem").exists()  # nothing written before the check
    result = CliRunner().invoke(cli, ["certs", "create", "--dir", str(tmp_path),
                                      "--client", "broker"])
    assert result.exit_code == 1
    assert "would overwrite the broker's files" in result.output
