"""The client side of SASL strom's own connections use (the inter-broker client, the CLI):
SCRAM against the broker's server side, JAAS configs, and the settings that choose TLS and
SASL (librdkafka's for the CLI, Kafka's inter-broker ones for a broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from strom.broker.state import peer_security
from strom.config.broker import SENSITIVE, BrokerConfig
from strom.config.topic import ConfigError
from strom.security import jaas
from strom.security.certs import create_ca, create_certificate
from strom.security.client_security import from_client_settings, inter_broker
from strom.security.principal import AuthenticationFailed
from strom.security.sasl_client import SaslCredentials, ScramClient, plain_token
from strom.security.scram import ScramExchange, credential_from_password
from strom.security.session import SecurityProtocol

SECRET = b"k" * 32


def exchange(mechanism: str, password: str, stored_password: str = "pw"
             ) -> tuple[ScramClient, ScramExchange, bytes]:
    client = ScramClient(mechanism, "broker", password)
    server = ScramExchange(mechanism, SECRET)
    assert server.client_first(client.first()) == "broker"
    server_first = server.server_first(credential_from_password(mechanism, stored_password))
    return client, server, client.final(server_first)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_client_logs_in_and_checks_the_server(mechanism: str) -> None:
    client, server, final = exchange(mechanism, "pw")
    server_final = server.client_final(final)
    assert server.done
    client.verify(server_final)
    with pytest.raises(ValueError, match="signature is wrong"):
        client.verify(b"v=" + b"A" * 88)


def test_scram_client_with_a_wrong_password_is_refused() -> None:
    _client, server, final = exchange("SCRAM-SHA-512", "not-it")
    with pytest.raises(AuthenticationFailed):
        server.client_final(final)


def test_scram_client_refuses_a_server_nonce_that_is_not_its_own() -> None:
    client = ScramClient("SCRAM-SHA-256", "u", "pw", nonce="abc")
    with pytest.raises(ValueError, match="nonce"):
        client.final(b"r=xyz123,s=c2FsdA==,i=4096")
    with pytest.raises(ValueError, match="nonce"):
        client.final(b"r=abc,s=c2FsdA==,i=4096")  # nothing of the server's
    with pytest.raises(ValueError, match="salt or iterations"):
        client.final(b"r=abcdef,i=4096")
    with pytest.raises(ValueError, match="no client-final"):
        client.verify(b"v=x")
    client.final(b"r=abcdef,s=c2FsdA==,i=4096")
    with pytest.raises(ValueError, match="refused the login: invalid-proof"):
        client.verify(b"e=invalid-proof")


def test_plain_token_and_credentials_never_show_the_password() -> None:
    assert plain_token("u", "p") == b"\0u\0p"
    credentials = SaslCredentials("PLAIN", "u", "secret-pw")
    assert "secret-pw" not in repr(credentials)
    with pytest.raises(ValueError, match="OAUTHBEARER"):
        SaslCredentials("OAUTHBEARER", "u", "p")


def test_jaas_configs_as_kafka_writes_them() -> None:
    entry = jaas.parse('org.apache.kafka.common.security.plain.PlainLoginModule required '
                       'username="admin" password="a \\"quoted\\" pw" user_admin="x";')
    assert entry.login_module.endswith("PlainLoginModule") and entry.flag == "required"
    assert entry.options == {"username": "admin", "password": 'a "quoted" pw',
                             "user_admin": "x"}
    scram = ('org.apache.kafka.common.security.scram.ScramLoginModule required\n'
             '  username="broker"\n  password="pw";')
    assert jaas.credentials(scram, "SCRAM-SHA-512", "s") == ("broker", "pw")
    with pytest.raises(ConfigError, match="PlainLoginModule, not"):
        jaas.credentials(scram, "PLAIN", "s")
    with pytest.raises(ConfigError, match="ending with ';'"):
        jaas.parse('ScramLoginModule required username="x"')
    with pytest.raises(ConfigError, match="needs username"):
        jaas.credentials("org.apache.kafka.common.security.scram.ScramLoginModule required;",
                         "SCRAM-SHA-256", "s")


def test_client_settings_choose_tls_and_sasl(tmp_path: Path) -> None:
    assert from_client_settings({}).protocol is SecurityProtocol.PLAINTEXT
    ca = create_ca(tmp_path)
    create_certificate(tmp_path, ca, "alice", client=True)
    security = from_client_settings({
        "security.protocol": "sasl_ssl", "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "u", "sasl.password": "p", "ssl.ca.location": str(tmp_path / "ca.pem"),
        "ssl.certificate.location": str(tmp_path / "alice-cert.pem"),
        "ssl.key.location": str(tmp_path / "alice-key.pem")})
    assert security.tls is not None and security.tls.check_hostname
    assert security.sasl == SaslCredentials("SCRAM-SHA-256", "u", "p")
    unchecked = from_client_settings({"security.protocol": "SSL",
                                      "enable.ssl.certificate.verification": "false"})
    assert unchecked.tls is not None and not unchecked.tls.check_hostname
    with pytest.raises(ConfigError, match=r"sasl\.username"):
        from_client_settings({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN"})
    with pytest.raises(ConfigError, match="GSSAPI"):
        from_client_settings({"security.protocol": "SASL_PLAINTEXT",
                              "sasl.mechanism": "GSSAPI"})
    with pytest.raises(ConfigError, match="use PLAINTEXT, SSL"):
        from_client_settings({"security.protocol": "TLS"})
    with pytest.raises(ConfigError, match="cannot read the TLS files"):
        from_client_settings({"security.protocol": "SSL",
                              "ssl.ca.location": str(tmp_path / "missing.pem")})


def broker_config(tmp_path: Path, **settings: str) -> BrokerConfig:
    ca = create_ca(tmp_path)
    create_certificate(tmp_path, ca, "broker", ("127.0.0.1",), name="broker")
    return BrokerConfig.build(tmp_path / "data", "127.0.0.1", 0, {
        "listeners": "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,INTERNAL:SASL_SSL",
        "inter.broker.listener.name": "INTERNAL",
        "ssl.keystore.location": str(tmp_path / "broker.pem"),
        "ssl.truststore.location": str(tmp_path / "ca.pem"), **settings})


def test_inter_broker_security_from_kafkas_settings(tmp_path: Path) -> None:
    jaas_config = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                   'username="broker" password="pw";')
    config = broker_config(tmp_path, **{
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.internal.scram-sha-512.sasl.jaas.config": jaas_config})
    security = inter_broker(config)
    assert security.protocol is SecurityProtocol.SASL_SSL
    assert security.sasl == SaslCredentials("SCRAM-SHA-512", "broker", "pw")
    assert security.tls is not None and security.tls.check_hostname
    assert "sasl.jaas.config" in SENSITIVE
    # Without the broker's user, or with a mechanism strom's client does not speak: refused.
    with pytest.raises(ConfigError, match=r"listener\.name\.internal\.plain\.sasl\.jaas\.config"):
        inter_broker(broker_config(tmp_path, **{
            "sasl.mechanism.inter.broker.protocol": "PLAIN"}))
    with pytest.raises(ConfigError, match=r"sasl\.mechanism\.inter\.broker\.protocol"):
        inter_broker(broker_config(tmp_path))
    # A PLAINTEXT inter-broker listener needs nothing.
    plain = BrokerConfig.build(tmp_path / "d2", "127.0.0.1", 0, {})
    assert inter_broker(plain).tls is None and inter_broker(plain).sasl is None


def test_a_broker_that_shares_no_storage_needs_no_inter_broker_login(tmp_path: Path) -> None:
    sasl_only = BrokerConfig.build(tmp_path / "d", "127.0.0.1", 0,
                                   {"listeners": "SASL_PLAINTEXT://127.0.0.1:0"})
    assert peer_security(sasl_only) is None
    shared = BrokerConfig.build(tmp_path / "d", "127.0.0.1", 0,
                                {"listeners": "SASL_PLAINTEXT://127.0.0.1:0"},
                                storage="postgresql://strom@127.0.0.1:5432/strom")
    with pytest.raises(ConfigError, match="inter"):
        peer_security(shared)
