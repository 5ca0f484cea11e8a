"""The group coordinator keeps answering when `__consumer_offsets` disappears under it: the
topic is created again and commits land there."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from strom.testing import EmbeddedBroker
from tests.integration.conftest import create_topic, unique_name


def test_commit_after_offsets_topic_was_deleted() -> None:
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        topic = create_topic(bootstrap, unique_name("resilience"))
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.delete_topics(["__consumer_offsets"])["__consumer_offsets"].result(10)
        group = unique_name("group")
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "enable.auto.commit": False})
        try:
            c.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)
            committed = c.committed([TopicPartition(topic, 0)], timeout=10)
        finally:
            c.close()
        assert committed[0].offset == 7
        assert "__consumer_offsets" in broker.server.engine.topics()
        broker.restart()
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        try:
            assert c.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 7
        finally:
            c.close()
