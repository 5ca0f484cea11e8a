"""Two brokers over one PostgreSQL database with PLAINTEXT and SASL_PLAINTEXT listeners: a
SCRAM user created through one broker logs in at the other (the credentials live in the
database), and a client of either listener is told every broker's address on that listener.
Two brokers whose inter-broker listener is SASL_SSL with ACLs on reach each other as their
own super user for a transaction across both."""

from __future__ import annotations

import time
from pathlib import Path

from click.testing import CliRunner
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from strom.cli.main import cli
from strom.security.certs import create_ca, create_certificate
from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, create_topic, unique_name
from tests.integration.test_sasl import round_trip, sasl_conf

SETTINGS = {"listeners": "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
            "broker.heartbeat.interval.ms": "200", "broker.session.timeout.ms": "1500"}


def brokers_seen(conf: dict[str, str]) -> dict[int, int]:
    """node id -> port, as Metadata over `conf`'s listener lists them (both, eventually)."""
    admin = AdminClient(conf)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        seen = {n: b.port for n, b in admin.list_topics(timeout=10).brokers.items()}
        if len(seen) == 2 or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def test_users_and_listeners_are_the_clusters(postgres_url: str) -> None:
    with EmbeddedBroker(settings={**SETTINGS, "node.id": "1"}, storage=postgres_url) as one, \
            EmbeddedBroker(settings={**SETTINGS, "node.id": "2"}, storage=postgres_url) as two:
        admin = AdminClient({"bootstrap.servers": one.bootstrap_servers})
        admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
            "frank", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
            b"pw-frank")])["frank"].result(DEADLINE_S)
        conf = sasl_conf(two, "SCRAM-SHA-512", "frank", "pw-frank")
        ports = {1: int(one.address("SASL_PLAINTEXT").rpartition(":")[2]),
                 2: int(two.address("SASL_PLAINTEXT").rpartition(":")[2])}
        assert brokers_seen(conf) == ports
        plain = {1: one.port, 2: two.port}
        assert brokers_seen({"bootstrap.servers": two.bootstrap_servers}) == plain
        topic = create_topic(one.bootstrap_servers, unique_name("sasl-pg"), 2)
        assert round_trip(conf, topic)
        # PLAIN checks the same store, on the other broker too.
        assert round_trip(sasl_conf(one, "PLAIN", "frank", "pw-frank"), topic)


JAAS = ('org.apache.kafka.common.security.scram.ScramLoginModule required '
        'username="broker" password="pw-broker";')


def test_brokers_reach_each_other_over_sasl_ssl(postgres_url: str, tmp_path: Path) -> None:
    """The inter-broker listener is SASL_SSL with ACLs on: each broker logs in at the other
    as the super user `broker` (SCRAM over TLS, its host name checked), so a transaction
    spanning partitions of both brokers commits (markers and KIP-890 verifications go between
    them) and a read_committed consumer sees it."""
    ca = create_ca(tmp_path)
    create_certificate(tmp_path, ca, "broker", ("127.0.0.1", "localhost"), name="broker")
    for user in ("broker", "admin"):
        done = CliRunner().invoke(cli, ["user", "set", user, "--password", f"pw-{user}",
                                        "--mechanism", "SCRAM-SHA-512",
                                        "--storage", postgres_url])
        assert done.exit_code == 0, done.output
    settings = {
        "listeners": "PLAINTEXT://127.0.0.1:0,SECURE://127.0.0.1:0",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL",
        "inter.broker.listener.name": "SECURE",
        "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
        "listener.name.secure.scram-sha-512.sasl.jaas.config": JAAS,
        "ssl.keystore.location": str(tmp_path / "broker.pem"),
        "ssl.truststore.location": str(tmp_path / "ca.pem"),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:broker;User:admin",
        "broker.heartbeat.interval.ms": "200", "broker.session.timeout.ms": "1500"}
    with EmbeddedBroker(settings={**settings, "node.id": "1"}, storage=postgres_url) as one, \
            EmbeddedBroker(settings={**settings, "node.id": "2"}, storage=postgres_url) as two:
        conf = {"bootstrap.servers": one.address("SECURE"), "security.protocol": "SASL_SSL",
                "ssl.ca.location": str(tmp_path / "ca.pem"), "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "admin", "sasl.password": "pw-admin"}
        assert brokers_seen(conf) == {1: int(one.address("SECURE").rpartition(":")[2]),
                                      2: int(two.address("SECURE").rpartition(":")[2])}
        admin = AdminClient(conf)
        topic = unique_name("sasl-ssl-txn")
        admin.create_topics([NewTopic(topic, 4, 1)])[topic].result(DEADLINE_S)
        deadline = time.monotonic() + DEADLINE_S
        while True:  # the partitions' leases are taken within a heartbeat
            leaders = {p.leader for p in admin.list_topics(topic, timeout=10)
                       .topics[topic].partitions.values()}
            if -1 not in leaders or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert leaders == {1, 2}
        p = Producer({**conf, "transactional.id": unique_name("tid")})
        p.init_transactions(DEADLINE_S)
        p.begin_transaction()
        for partition in range(4):
            p.produce(topic, f"v{partition}".encode(), partition=partition)
        p.commit_transaction(DEADLINE_S)
        c = Consumer({**conf, "group.id": unique_name("g"), "isolation.level": "read_committed",
                      "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        got: list[bytes] = []
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < 4 and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append(msg.value() or b"")
        c.close()
        assert sorted(got) == [b"v0", b"v1", b"v2", b"v3"]
        for broker in (one, two):
            assert broker.server.broker is not None
            assert broker.server.broker.peers.security.sasl is not None
