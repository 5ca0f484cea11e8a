"""TLS listener contexts: real handshakes in memory (ssl.MemoryBIO), no sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from strom.security.certs import (
    CertificateAuthority,
    IssuedCertificate,
    create_ca,
    create_certificate,
)
from strom.security.principal_rules import NoMatchingRule, PrincipalMapper
from strom.security.tls import (
    TlsConfigError,
    TlsContext,
    TlsSettings,
    principal_from_certificate,
)
from tests.unit.tls_handshake import Refused, connect

# --- certificates -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: CertificateAuthority
    broker: IssuedCertificate
    alice: IssuedCertificate
    other_ca: CertificateAuthority
    mallory: IssuedCertificate  # a client certificate of the other CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = create_ca(directory)
    broker = create_certificate(directory, ca, "localhost", ["localhost", "127.0.0.1"],
                                name="broker")
    alice = create_certificate(directory, ca, "alice", client=True)
    other_dir = directory / "other"
    other_ca = create_ca(other_dir, "other-ca")
    mallory = create_certificate(other_dir, other_ca, "mallory", client=True)
    return Pki(directory, ca, broker, alice, other_ca, mallory)


def settings(pki: Pki, **overrides: str) -> TlsSettings:
    values = {"ssl.keystore.location": str(pki.broker.keystore),
              "ssl.truststore.location": str(pki.ca.cert_path)}
    values.update({k.replace("_", "."): v for k, v in overrides.items()})
    return TlsSettings.from_settings(values.get)


def client_context(pki: Pki, cert: IssuedCertificate | None = None,
                   maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=pki.ca.cert_path)
    if cert is not None:
        context.load_cert_chain(cert.cert_path, cert.key_path)
    if maximum is not None:
        context.maximum_version = maximum
    return context


# --- handshakes ---------------------------------------------------------------------------


def test_tls13_handshake(pki: Pki) -> None:
    tls = TlsContext(settings(pki))
    conn = connect(tls.context, client_context(pki))
    assert conn.server.version() == "TLSv1.3"
    assert conn.server_certificate_cn == "CN=localhost"
    assert tls.principal(conn.server) is None  # no client certificate: ANONYMOUS


def test_tls12_handshake(pki: Pki) -> None:
    tls = TlsContext(settings(pki))
    conn = connect(tls.context, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2))
    assert conn.server.version() == "TLSv1.2"
    assert conn.server_certificate_cn == "CN=localhost"


def test_tls11_client_is_refused(pki: Pki) -> None:
    tls = TlsContext(settings(pki))
    client = client_context(pki)
    with warnings.catch_warnings():  # Python deprecates these versions, rightly
        warnings.simplefilter("ignore", DeprecationWarning)
        client.minimum_version = ssl.TLSVersion.TLSv1
        client.maximum_version = ssl.TLSVersion.TLSv1_1
    client.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 sends TLS 1.1 hellos only so
    with pytest.raises(Refused) as refused, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        connect(tls.context, client)
    assert refused.value.side == "server"
    assert "UNSUPPORTED_PROTOCOL" in str(refused.value.error)


def test_tls13_only_refuses_tls12(pki: Pki) -> None:
    tls = TlsContext(settings(pki, ssl_enabled_protocols="TLSv1.3"))
    with pytest.raises(Refused) as refused:
        connect(tls.context, client_context(pki, maximum=ssl.TLSVersion.TLSv1_2))
    assert refused.value.side == "server"


def test_client_auth_required_without_certificate_fails(pki: Pki) -> None:
    tls = TlsContext(settings(pki, ssl_client_auth="required"))
    with pytest.raises(Refused) as refused:
        connect(tls.context, client_context(pki))
    assert refused.value.side == "server"
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in str(refused.value.error)


@pytest.mark.parametrize("maximum", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_client_auth_required_with_certificate(pki: Pki, maximum: ssl.TLSVersion) -> None:
    tls = TlsContext(settings(pki, ssl_client_auth="required"))
    conn = connect(tls.context, client_context(pki, pki.alice, maximum))
    assert tls.principal(conn.server) == "CN=alice"


def test_principal_mapping_rules_apply(pki: Pki) -> None:
    tls = TlsContext(settings(pki, ssl_client_auth="required",
                              ssl_principal_mapping_rules="RULE:^CN=(.*)$/svc-$1/U,DEFAULT"))
    conn = connect(tls.context, client_context(pki, pki.alice))
    assert tls.principal(conn.server) == "SVC-ALICE"


def test_client_auth_requested(pki: Pki) -> None:
    tls = TlsContext(settings(pki, ssl_client_auth="requested"))
    with_cert = connect(tls.context, client_context(pki, pki.alice))
    assert tls.principal(with_cert.server) == "CN=alice"
    without = connect(tls.context, client_context(pki))
    assert tls.principal(without.server) is None


@pytest.mark.parametrize("auth", ["required", "requested"])
def test_certificate_of_another_ca_is_refused(pki: Pki, auth: str) -> None:
    tls = TlsContext(settings(pki, ssl_client_auth=auth))
    with pytest.raises(Refused) as refused:
        connect(tls.context, client_context(pki, pki.mallory))
    assert refused.value.side == "server"
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value.error)


def test_no_server_name_still_gets_the_certificate(pki: Pki) -> None:
    """Clients connecting by IP address send no SNI: the callback runs all the same."""
    tls = TlsContext(settings(pki))
    client = client_context(pki)
    client.check_hostname = False
    conn = connect(tls.context, client, server_hostname=None)
    assert conn.server_certificate_cn == "CN=localhost"


def test_cipher_suites_by_iana_name(pki: Pki) -> None:
    tls = TlsContext(settings(pki, ssl_cipher_suites="TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"))
    conn = connect(tls.context, client_context(pki))
    # no TLS 1.3 suite named: TLS 1.3 is off, as in Kafka
    assert conn.server.version() == "TLSv1.2"
    cipher = conn.server.cipher()
    assert cipher is not None and cipher[0] == "ECDHE-RSA-AES256-GCM-SHA384"


def test_inline_pem_keystore_and_truststore(pki: Pki) -> None:
    tls = TlsContext(TlsSettings.from_settings({
        "ssl.keystore.key": pki.broker.key_path.read_text(),
        "ssl.keystore.certificate.chain": pki.broker.cert_path.read_text(),
        "ssl.truststore.certificates": pki.ca.cert_path.read_text(),
        "ssl.client.auth": "required",
    }.get))
    conn = connect(tls.context, client_context(pki, pki.alice))
    assert conn.server_certificate_cn == "CN=localhost"
    assert tls.principal(conn.server) == "CN=alice"
    assert tls.settings.watched_files == ()


# --- encrypted keys -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def locked(pki: Pki) -> IssuedCertificate:
    return create_certificate(pki.directory, pki.ca, "localhost", ["localhost"],
                              password="s3cret", name="locked")


def test_encrypted_key_with_the_right_password(pki: Pki, locked: IssuedCertificate) -> None:
    assert b"ENCRYPTED PRIVATE KEY" in locked.keystore.read_bytes()
    tls = TlsContext(settings(pki, ssl_keystore_location=str(locked.keystore),
                              ssl_key_password="s3cret"))
    assert connect(tls.context, client_context(pki)).server_certificate_cn == "CN=localhost"


def test_encrypted_key_with_a_wrong_password(pki: Pki, locked: IssuedCertificate) -> None:
    with pytest.raises(TlsConfigError, match=r"ssl.key.password") as error:
        TlsContext(settings(pki, ssl_keystore_location=str(locked.keystore),
                            ssl_key_password="wrong"))
    assert str(locked.keystore) in str(error.value)
    assert "wrong" not in str(error.value)


def test_encrypted_key_without_password(pki: Pki, locked: IssuedCertificate) -> None:
    with pytest.raises(TlsConfigError, match=r"is encrypted: set ssl.key.password"):
        TlsContext(settings(pki, ssl_keystore_location=str(locked.keystore)))


def test_password_for_a_plain_key(pki: Pki) -> None:
    with pytest.raises(TlsConfigError, match=r"not encrypted: remove ssl.key.password"):
        TlsContext(settings(pki, ssl_key_password="s3cret"))


# --- construction errors ------------------------------------------------------------------


def test_missing_keystore_file(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(TlsConfigError, match=f"ssl.keystore.location: cannot read {missing}"):
        TlsContext(settings(pki, ssl_keystore_location=str(missing)))


def test_key_not_matching_certificate(pki: Pki, tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(pki.alice.key_path.read_bytes() + pki.broker.cert_path.read_bytes())
    with pytest.raises(TlsConfigError, match="does not belong to its first certificate"):
        TlsContext(settings(pki, ssl_keystore_location=str(mixed)))


def test_keystore_without_key(pki: Pki, tmp_path: Path) -> None:
    certs_only = tmp_path / "certs.pem"
    certs_only.write_bytes(pki.broker.cert_path.read_bytes())
    with pytest.raises(TlsConfigError, match="holds no private keys"):
        TlsContext(settings(pki, ssl_keystore_location=str(certs_only)))


def test_truststore_without_certificates(pki: Pki, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here\n")
    with pytest.raises(TlsConfigError, match=r"ssl.truststore.location: .* holds no certificate"):
        TlsContext(settings(pki, ssl_truststore_location=str(empty)))


@pytest.mark.parametrize(("values", "message"), [
    ({"ssl.keystore.location": "k.pem", "ssl.keystore.type": "JKS"},
     "only PEM keystores are supported: convert with openssl"),
    ({"ssl.keystore.location": "k.pem", "ssl.truststore.type": "PKCS12"},
     "only PEM keystores are supported"),
    ({}, "needs its certificate: set ssl.keystore.location"),
    ({"ssl.keystore.location": "k.pem", "ssl.keystore.key": "x"}, "not both"),
    ({"ssl.keystore.key": "x"}, "set ssl.keystore.certificate.chain too"),
    ({"ssl.keystore.location": "k.pem", "ssl.keystore.password": "x"},
     "ssl.keystore.password is not used with PEM"),
    ({"ssl.keystore.location": "k.pem", "ssl.client.auth": "required"}, "needs a truststore"),
    ({"ssl.keystore.location": "k.pem", "ssl.client.auth": "maybe"},
     "use none, requested or required"),
    ({"ssl.keystore.location": "k.pem", "ssl.enabled.protocols": "TLSv1.1,TLSv1.2"},
     "TLSv1.1 is not supported"),
    ({"ssl.keystore.location": "k.pem", "ssl.protocol": "SSLv3"}, "ssl.protocol=SSLv3"),
    ({"ssl.keystore.location": "k.pem", "ssl.cipher.suites": "TLS_NO_SUCH_SUITE"},
     "TLS_NO_SUCH_SUITE is not a cipher suite"),
    ({"ssl.keystore.location": "k.pem", "ssl.cipher.suites": "TLS_AES_128_CCM_8_SHA256"},
     "cannot be enabled"),
    ({"ssl.keystore.location": "k.pem", "ssl.enabled.protocols": "TLSv1.3",
      "ssl.cipher.suites": "ECDHE-RSA-AES256-GCM-SHA384"}, "names no suite"),
    ({"ssl.keystore.location": "k.pem", "ssl.principal.mapping.rules": "RULE:x"},
     "ssl.principal.mapping.rules: invalid rule"),
])
def test_bad_settings(values: dict[str, str], message: str) -> None:
    with pytest.raises(TlsConfigError, match=message):
        TlsSettings.from_settings(values.get)


def test_settings_defaults_and_secrets() -> None:
    tls = TlsSettings.from_settings({"ssl.keystore.location": "k.pem",
                                     "ssl.key.password": "hunter2",
                                     "ssl.client.auth": "", "ssl.cipher.suites": " "}.get)
    assert tls.client_auth == "none"
    assert tls.verify_mode == ssl.CERT_NONE
    assert tls.versions() == (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3)
    assert tls.protocol == "TLSv1.3"
    assert tls.openssl_ciphers() is None
    assert tls.watched_files == ("k.pem",)
    assert "hunter2" not in repr(tls)


# --- reload -------------------------------------------------------------------------------


def replace_file(path: Path, data: bytes) -> None:
    """As a certificate tool would: a new file moved over the old one."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@pytest.fixture
def live(pki: Pki, tmp_path: Path) -> tuple[TlsContext, Path, Path]:
    keystore = tmp_path / "live.pem"
    truststore = tmp_path / "trust.pem"
    keystore.write_bytes(pki.broker.keystore.read_bytes())
    truststore.write_bytes(pki.ca.cert_path.read_bytes())
    tls = TlsContext(settings(pki, ssl_keystore_location=str(keystore),
                              ssl_truststore_location=str(truststore),
                              ssl_client_auth="requested"), label="SSL listener")
    return tls, keystore, truststore


@pytest.fixture(scope="module")
def renewed(pki: Pki) -> IssuedCertificate:
    return create_certificate(pki.directory / "renewed", pki.ca, "renewed.localhost",
                              ["localhost"], name="broker")


def test_reload_serves_the_new_certificate(
        pki: Pki, live: tuple[TlsContext, Path, Path], renewed: IssuedCertificate,
        caplog: pytest.LogCaptureFixture) -> None:
    tls, keystore, _ = live
    assert tls.maybe_reload() is False  # nothing changed
    before = connect(tls.context, client_context(pki))
    old = tls.current
    replace_file(keystore, renewed.keystore.read_bytes())
    with caplog.at_level(logging.INFO, logger="strom.security.tls"):
        assert tls.maybe_reload() is True
    assert tls.current is not old
    assert [r.levelname for r in caplog.records] == ["INFO"]
    assert "SSL listener: reloaded" in caplog.text and "CN=renewed.localhost" in caplog.text
    assert connect(tls.context, client_context(pki)).server_certificate_cn == (
        "CN=renewed.localhost")
    client = client_context(pki)
    client.check_hostname = False
    assert connect(tls.context, client, server_hostname=None).server_certificate_cn == (
        "CN=renewed.localhost")
    # the old inner context is untouched: it still serves the old certificate, and the
    # connection made before the reload goes on with it
    assert connect(old, client_context(pki)).server_certificate_cn == "CN=localhost"
    before.exchange()
    assert before.server.context is old
    assert tls.maybe_reload() is False


def test_reload_of_the_truststore(pki: Pki, live: tuple[TlsContext, Path, Path]) -> None:
    tls, _, truststore = live
    with pytest.raises(Refused):
        connect(tls.context, client_context(pki, pki.mallory))
    replace_file(truststore, pki.other_ca.cert_path.read_bytes())
    assert tls.maybe_reload() is True
    conn = connect(tls.context, client_context(pki, pki.mallory))
    assert tls.principal(conn.server) == "CN=mallory"
    with pytest.raises(Refused):
        connect(tls.context, client_context(pki, pki.alice))


def test_half_written_keystore_keeps_the_old_context(
        pki: Pki, live: tuple[TlsContext, Path, Path], renewed: IssuedCertificate,
        caplog: pytest.LogCaptureFixture) -> None:
    tls, keystore, _ = live
    old = tls.current
    data = renewed.keystore.read_bytes()
    keystore.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.INFO, logger="strom.security.tls"):
        assert tls.maybe_reload() is False
    assert tls.current is old
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "keeping the current certificates" in caplog.text and str(keystore) in caplog.text
    assert connect(tls.context, client_context(pki)).server_certificate_cn == "CN=localhost"
    assert tls.maybe_reload() is False  # the same broken file is not retried
    keystore.write_bytes(data)
    assert tls.maybe_reload() is True
    assert connect(tls.context, client_context(pki)).server_certificate_cn == (
        "CN=renewed.localhost")


def test_removed_keystore_keeps_the_old_context(
        pki: Pki, live: tuple[TlsContext, Path, Path]) -> None:
    tls, keystore, _ = live
    keystore.unlink()
    assert tls.maybe_reload() is False
    assert connect(tls.context, client_context(pki)).server_certificate_cn == "CN=localhost"


def test_watch_reloads(pki: Pki, live: tuple[TlsContext, Path, Path],
                       renewed: IssuedCertificate) -> None:
    tls, keystore, _ = live
    old = tls.current

    async def main() -> None:
        task = asyncio.create_task(tls.watch(0.01))
        await asyncio.sleep(0.03)
        replace_file(keystore, renewed.keystore.read_bytes())
        for _ in range(200):
            if tls.current is not old:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert tls.current is not old


# --- principals ---------------------------------------------------------------------------


def test_principal_from_certificate(pki: Pki) -> None:
    certificate = x509.load_pem_x509_certificate(pki.alice.cert_path.read_bytes())
    der = certificate.public_bytes(Encoding.DER)
    assert principal_from_certificate(der, PrincipalMapper.parse("DEFAULT")) == "CN=alice"
    assert principal_from_certificate(None, PrincipalMapper.parse("DEFAULT")) is None
    with pytest.raises(NoMatchingRule):
        principal_from_certificate(der, PrincipalMapper.parse("RULE:^OU=(.*)$/$1/"))



def test_a_server_name_that_is_not_ascii_is_refused_with_a_log_line(
        pki: Pki, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """Python's ssl module cannot decode such a name and reports it as an "Exception ignored"
    traceback on stderr; the handshake fails (right), and strom logs one line instead."""
    tls = TlsContext(settings(pki))
    client = client_context(pki).wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(),
                                          server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    assert b"localhost" in hello
    incoming = ssl.MemoryBIO()
    incoming.write(hello.replace(b"localhost", b"localho\xff\xff"))
    server = tls.context.wrap_bio(incoming, ssl.MemoryBIO(), server_side=True)
    with caplog.at_level(logging.INFO, logger="strom.security.tls"), \
            pytest.raises(ssl.SSLError):
        server.do_handshake()
    assert "Exception ignored" not in capsys.readouterr().err
    assert any("not ASCII" in record.getMessage() for record in caplog.records)
