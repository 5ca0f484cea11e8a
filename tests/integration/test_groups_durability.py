"""Committed offsets and the groups that own them survive the broker: a clean restart keeps every
group's committed offsets (with their metadata) and the group itself, and with flush.messages=1 a
SIGKILL of the broker loses no offset commit it acknowledged."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka import OFFSET_INVALID, ConsumerGroupState, TopicPartition
from confluent_kafka.admin import AdminClient

from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, create_topic, produce_all, producer, unique_name
from tests.integration.group_clients import (
    GROUP_BROKER_SETTINGS,
    Consumed,
    Member,
    broker_process,
    close_all,
    drain,
    group_consumer,
)


def committed(bootstrap: str, group: str, topic: str,
              partitions: Sequence[int]) -> dict[int, tuple[int, str | None]]:
    """OffsetFetch through a consumer that never joins: partition -> (offset, metadata)."""
    c = group_consumer(bootstrap, group)
    try:
        answer = c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: (tp.offset, tp.metadata) for tp in answer}
    finally:
        c.close()


def fill(bootstrap: str, topic: str, partitions: int, per_partition: int) -> None:
    delivered = produce_all(producer(bootstrap), topic, [
        {"value": f"v{i}".encode(), "partition": i % partitions}
        for i in range(partitions * per_partition)])
    assert not delivered.failed


def consume_all(bootstrap: str, group: str, topic: str, count: int) -> list[Consumed]:
    """One member subscribes, consumes `count` records committing each, and leaves."""
    log: list[Consumed] = []
    member = Member.subscribe("m", bootstrap, group, topic, log)
    try:
        drain([member], lambda: len(log) >= count, linger_s=0.3)
    finally:
        close_all([member])
    return log


def test_clean_restart_keeps_committed_offsets_and_the_group(tmp_path: Path) -> None:
    with EmbeddedBroker(settings=GROUP_BROKER_SETTINGS, data_dir=tmp_path / "data") as b:
        bootstrap = b.bootstrap_servers
        topic = create_topic(bootstrap, unique_name("group-restart"), partitions=3)
        group = unique_name("group-restart")
        fill(bootstrap, topic, 3, 10)
        log = consume_all(bootstrap, group, topic, 30)
        assert sorted((r.partition, r.offset) for r in log) == [
            (p, o) for p in range(3) for o in range(10)]
        # A commit with metadata by a consumer outside any generation (the group is Empty now).
        outsider = group_consumer(bootstrap, group)
        try:
            outsider.commit(offsets=[TopicPartition(topic, 0, 3, "rewound"),
                                     TopicPartition(topic, 1, 10, "kept")],
                            asynchronous=False)
        finally:
            outsider.close()
        before = committed(bootstrap, group, topic, range(3))
        # confluent-kafka shows the empty metadata of a commit without any as None.
        assert before == {0: (3, "rewound"), 1: (10, "kept"), 2: (10, None)}
        # A second group, deleted before the restart, must stay deleted.
        deleted = unique_name("group-deleted")
        consume_all(bootstrap, deleted, topic, 30)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.delete_consumer_groups([deleted], request_timeout=10)[deleted].result(DEADLINE_S)
        assert committed(bootstrap, deleted, topic, range(3)) == dict.fromkeys(
            range(3), (OFFSET_INVALID, None))

        b.restart()

        assert committed(bootstrap, group, topic, range(3)) == before
        assert committed(bootstrap, deleted, topic, range(3)) == dict.fromkeys(
            range(3), (OFFSET_INVALID, None))
        admin = AdminClient({"bootstrap.servers": bootstrap})
        listed = admin.list_consumer_groups(request_timeout=10).result(DEADLINE_S)
        assert group in {g.group_id for g in listed.valid}
        assert deleted not in {g.group_id for g in listed.valid}
        described = admin.describe_consumer_groups([group], request_timeout=10)[group].result(
            DEADLINE_S)
        assert described.state == ConsumerGroupState.EMPTY
        assert described.members == []

        # A member that joins after the restart resumes at the committed offsets.
        fill(bootstrap, topic, 3, 1)
        resumed = consume_all(bootstrap, group, topic, 9)
        assert sorted((r.partition, r.offset) for r in resumed) == [
            (0, o) for o in range(3, 11)] + [(1, 10), (2, 10)]


def test_acknowledged_commits_survive_a_broker_sigkill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    log_path = tmp_path / "broker.log"
    topic = unique_name("group-sigkill")
    group = unique_name("group-sigkill")
    log: list[Consumed] = []
    member: Member | None = None
    try:
        with broker_process(data_dir, log_path, "flush.messages=1") as (proc, bootstrap):
            create_topic(bootstrap, topic, partitions=2)
            fill(bootstrap, topic, 2, 25)
            member = Member.subscribe("m", bootstrap, group, topic, log)
            # Stop part way: every record so far was committed (and acknowledged) one by one,
            # and the member is still in the group when the broker dies.
            drain([member], lambda: len(log) >= 30, linger_s=0)
            last = {p: max(r.offset for r in log if r.partition == p) for p in (0, 1)}
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            port = bootstrap.rsplit(":", 1)[1]
        with broker_process(data_dir, log_path, "flush.messages=1",
                            listen=f"127.0.0.1:{port}") as (_, bootstrap):
            assert committed(bootstrap, group, topic, (0, 1)) == {
                p: (last[p] + 1, None) for p in (0, 1)}
            # The member that lived through the crash goes on from there, skipping nothing.
            drain([member], lambda: len(log) >= 50, linger_s=0.3)
            assert sorted((r.partition, r.offset) for r in log) == [
                (p, o) for p in (0, 1) for o in range(25)]
            # Its membership was durable too: it kept its generation, with no rebalance.
            assert member.events == [("assign", (0, 1))]
            close_all([member])
    finally:
        if member is not None:
            close_all([member])
