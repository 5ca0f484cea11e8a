"""KIP-848 consumer groups survive a clean broker restart: the group's epochs, members and
assignments are replayed from `__consumer_offsets`, so librdkafka `group.protocol=consumer`
members keep heartbeating with their member epochs, keep their partitions without a new
assignment (no revoke, assign or lost callback) and go on consuming every record exactly once
with synchronous commits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, create_topic, unique_name
from tests.integration.group_clients import (
    GROUP_BROKER_SETTINGS,
    Consumed,
    Member,
    close_all,
    drain,
    kip848_member,
    produce_spread,
    settle,
)

PARTITIONS = 4
SETTINGS = {**GROUP_BROKER_SETTINGS, "group.consumer.heartbeat.interval.ms": "300",
            "group.consumer.session.timeout.ms": "6000"}


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(settings=SETTINGS, data_dir=tmp_path / "data") as running:
        yield running


@pytest.fixture
def members() -> Iterator[list[Member]]:
    made: list[Member] = []
    yield made
    close_all(made)


def describe(bootstrap: str, group: str) -> Any:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_consumer_groups([group], request_timeout=10)[group].result(
        timeout=DEADLINE_S)


def test_members_keep_their_partitions_across_a_restart(broker: EmbeddedBroker,
                                                        members: list[Member]) -> None:
    bootstrap = broker.bootstrap_servers
    topic = create_topic(bootstrap, unique_name("kip848-restart"), partitions=PARTITIONS)
    group = unique_name("kip848-restart")
    log: list[Consumed] = []
    produce_spread(bootstrap, topic, 40, 0, PARTITIONS)
    for name in ("a", "b"):
        members.append(kip848_member(name, bootstrap, group, topic, log))
    spread = settle(members, range(PARTITIONS))
    assert all(len(parts) == 2 for parts in spread.values())
    drain(members, lambda: len(log) >= 40)
    before = describe(bootstrap, group)
    assert before.state == ConsumerGroupState.STABLE
    ids_before = {m.member_id for m in before.members}
    seen = {m.name: len(m.events) for m in members}
    consumed_before = len(log)

    broker.restart()

    produce_spread(bootstrap, topic, 40, 40, PARTITIONS)
    drain(members, lambda: len(log) >= 80, linger_s=1.0)
    # The same members hold the same partitions; no callback fired since the restart.
    assert {m.name: m.partitions() for m in members} == spread
    assert {m.name: m.events[seen[m.name]:] for m in members} == {m.name: [] for m in members}
    after = describe(bootstrap, group)
    assert after.state == ConsumerGroupState.STABLE
    assert {m.member_id for m in after.members} == ids_before
    assert {m.member_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
            for m in after.members} == {m.member_id: sorted(
                tp.partition for tp in m.assignment.topic_partitions) for m in before.members}
    # Every record exactly once; since the restart, each by the member owning its partition.
    assert sorted((r.partition, r.offset) for r in log) == [
        (p, o) for p in range(PARTITIONS) for o in range(20)]
    owner = {p: name for name, parts in spread.items() for p in parts}
    assert all(owner[r.partition] == r.member for r in log[consumed_before:])
