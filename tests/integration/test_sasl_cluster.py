"""Two brokers over one PostgreSQL database with PLAINTEXT and SASL_PLAINTEXT listeners: a
SCRAM user created through one broker logs in at the other (the credentials live in the
database), and a client of either listener is told every broker's address on that listener."""

from __future__ import annotations

import time

from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

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
