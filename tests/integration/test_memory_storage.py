"""A broker on the in-memory engine (`--storage memory:`) serves real clients like the local
one: idempotent and transactional producers, read_committed consumers and consumer groups;
and `strom serve --storage memory:` says that nothing survives a restart, which holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from strom.testing import EmbeddedBroker
from tests.integration.broker_process import serve_process
from tests.integration.conftest import (
    DEADLINE_S,
    consume_partitions,
    create_topic,
    produce_all,
    producer,
    unique_name,
)
from tests.integration.group_clients import GROUP_BROKER_SETTINGS

PARTITIONS = (0, 1, 2)


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(settings=GROUP_BROKER_SETTINGS, storage="memory:") as running:
        yield running


def test_an_idempotent_producer_and_a_consumer_group(broker: EmbeddedBroker) -> None:
    bootstrap = broker.bootstrap_servers
    topic = create_topic(bootstrap, unique_name("mem"), len(PARTITIONS))
    p = producer(bootstrap, enable_idempotence=True, acks="all")
    delivered = produce_all(p, topic, [{"value": b"%d" % n, "partition": n % 3}
                                       for n in range(600)])
    assert not delivered.failed and len(delivered.acked) == 600
    group = unique_name("mem-group")
    seen: list[bytes] = []
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        while len(seen) < 600:
            msg = c.poll(DEADLINE_S)
            assert msg is not None and msg.error() is None, msg
            seen.append(msg.value())
        c.commit(asynchronous=False)
        committed = c.committed([TopicPartition(topic, n) for n in PARTITIONS], timeout=DEADLINE_S)
    finally:
        c.close()
    assert sorted(seen, key=int) == [b"%d" % n for n in range(600)]
    assert sorted(tp.offset for tp in committed) == [200, 200, 200]


def test_transactions_and_read_committed(broker: EmbeddedBroker) -> None:
    bootstrap = broker.bootstrap_servers
    topic = create_topic(bootstrap, unique_name("mem-txn"), 1)
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": unique_name("mem-tx")})
    p.init_transactions(DEADLINE_S)
    for commit in (True, False, True):
        p.begin_transaction()
        p.produce(topic, b"committed" if commit else b"aborted")
        assert p.flush(DEADLINE_S) == 0  # on the broker before the abort (else purged)
        if commit:
            p.commit_transaction(DEADLINE_S)
        else:
            p.abort_transaction(DEADLINE_S)
    committed = consume_partitions(bootstrap, topic, isolation_level="read_committed")
    assert [m.value() for m in committed] == [b"committed", b"committed"]
    everything = consume_partitions(bootstrap, topic, isolation_level="read_uncommitted")
    assert [m.value() for m in everything] == [b"committed", b"aborted", b"committed"]


def test_serve_memory_keeps_nothing_across_a_restart(tmp_path: Path) -> None:
    log_path = tmp_path / "broker.log"
    topic = unique_name("mem-gone")
    with serve_process(None, log_path, storage="memory:") as (_, bootstrap):
        create_topic(bootstrap, topic, 1)
        assert topic in AdminClient({"bootstrap.servers": bootstrap}).list_topics(
            timeout=DEADLINE_S).topics
    assert "in memory: nothing survives a restart" in log_path.read_text()
    with serve_process(None, log_path, storage="memory:") as (_, bootstrap):
        topics = AdminClient({"bootstrap.servers": bootstrap}).list_topics(
            timeout=DEADLINE_S).topics
        assert topic not in topics
