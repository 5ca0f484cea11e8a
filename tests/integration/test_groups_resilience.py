"""The group coordinator keeps its `__consumer_offsets`: a client cannot delete it, and commits
keep landing there."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from strom.testing import EmbeddedBroker
from tests.integration.conftest import create_topic, unique_name


def test_commit_after_a_refused_deletion_of_the_offsets_topic() -> None:
    """__consumer_offsets belongs to the group coordinator: DeleteTopics is refused and
    commits keep working, also after a restart."""
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        topic = create_topic(bootstrap, unique_name("resilience"))
        admin = AdminClient({"bootstrap.servers": bootstrap})
        refused = admin.delete_topics(["__consumer_offsets"])["__consumer_offsets"]
        with pytest.raises(KafkaException) as error:
            refused.result(10)
        assert error.value.args[0].code() == KafkaError.TOPIC_EXCEPTION
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
