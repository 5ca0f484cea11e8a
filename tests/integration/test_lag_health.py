"""Consumer-lag health on a real broker (docs/operations.md, "Consumer-lag health"): windows of
3 commits (lag.health.window.commits) fed by OffsetCommit; a group keeping up is OK, one whose
lag only grows is WARN and, once it stops committing, STOP (ERR); one that commits an older
offset is REWIND; strom_consumer_group_status shows it, and `strom group health` evaluates the
same groups from the client side (table and JSON)."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from confluent_kafka import Consumer, TopicPartition

from strom.cli.main import cli
from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, producer, unique_name
from tests.integration.test_metrics import Samples, scrape, value

SPACING_S = 2.0  # between commits: the window spans 2 * SPACING_S (the WARN scrape must come
# within that of the last commit, on a loaded CI machine too)


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return {"http.listeners": "127.0.0.1:0", "lag.health.window.commits": "3",
            "lag.health.min.distance.ms": "0"}


def produce(broker: EmbeddedBroker, topic: str, n: int) -> None:
    p = producer(broker.bootstrap_servers, linger_ms=0)
    for i in range(n):
        p.produce(topic, value=bytes([i % 256]), partition=0)
    assert p.flush(DEADLINE_S) == 0


def committer(broker: EmbeddedBroker, group: str) -> Consumer:
    """A simple group's client: commits offsets without joining."""
    return Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group,
                     "enable.auto.commit": False})


def commit(c: Consumer, topic: str, offset: int) -> None:
    c.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)


def statuses(samples: Samples, group: str) -> dict[str, float]:
    return {s: value(samples, "strom_consumer_group_status", group=group, status=s)
            for s in ("OK", "WARN", "ERR")}


def partition_status(samples: Samples, group: str, topic: str) -> str:
    found = [dict(labels)["status"] for (name, labels), v in samples.items()
             if name == "strom_consumer_group_partition_status" and v == 1
             and dict(labels)["group"] == group and dict(labels)["topic"] == topic]
    assert len(found) == 1, found
    return found[0]


def test_keeping_up_is_ok(broker: EmbeddedBroker, topic: str) -> None:
    group = unique_name("ok")
    produce(broker, topic, 10)
    c = committer(broker, group)
    try:
        for _ in range(3):
            commit(c, topic, 10)
    finally:
        c.close()
    samples, _ = scrape(broker)
    assert statuses(samples, group) == {"OK": 1, "WARN": 0, "ERR": 0}
    assert partition_status(samples, group, topic) == "OK"


def test_falling_behind_is_warn_then_stop(broker: EmbeddedBroker, topic: str) -> None:
    group = unique_name("behind")
    c = committer(broker, group)
    try:
        for i in range(3):  # lag 4, 8, 12: the consumer moves, but slower than the producer
            produce(broker, topic, 5)
            commit(c, topic, i + 1)
            if i < 2:
                time.sleep(SPACING_S)
    finally:
        c.close()
    samples, _ = scrape(broker)
    assert statuses(samples, group) == {"OK": 0, "WARN": 1, "ERR": 0}
    assert partition_status(samples, group, topic) == "WARN"
    produce(broker, topic, 5)  # the producer goes on, the consumer commits no more
    time.sleep(2 * SPACING_S + 0.3)
    samples, _ = scrape(broker)
    assert statuses(samples, group) == {"OK": 0, "WARN": 0, "ERR": 1}
    assert partition_status(samples, group, topic) == "STOP"


def test_committing_an_older_offset_is_rewind(broker: EmbeddedBroker, topic: str) -> None:
    group = unique_name("rewind")
    produce(broker, topic, 30)
    c = committer(broker, group)
    try:
        for offset in (10, 20, 5):
            commit(c, topic, offset)
    finally:
        c.close()
    samples, _ = scrape(broker)
    assert statuses(samples, group)["ERR"] == 1
    assert partition_status(samples, group, topic) == "REWIND"


def test_deleted_group_forgets_its_history(broker: EmbeddedBroker, topic: str) -> None:
    group = unique_name("gone")
    produce(broker, topic, 3)
    c = committer(broker, group)
    try:
        commit(c, topic, 3)
    finally:
        c.close()
    assert broker.server.broker is not None
    history = broker.server.broker.groups.lag_history
    assert group in history.groups()
    result = CliRunner().invoke(cli, ["group", "delete", group, "-b", broker.bootstrap_servers])
    assert result.exit_code == 0, result.output
    assert group not in history.groups()


def test_strom_group_health_samples_from_the_client(broker: EmbeddedBroker, topic: str) -> None:
    ok, stalled = unique_name("cli-ok"), unique_name("cli-stall")
    produce(broker, topic, 10)
    for group, offset in ((ok, 10), (stalled, 4)):
        c = committer(broker, group)
        try:
            commit(c, topic, offset)
        finally:
            c.close()
    runner = CliRunner()
    args = ["group", "health", ok, stalled, "--samples", "3", "--interval", "0.05",
            "-b", broker.bootstrap_servers]
    result = runner.invoke(cli, [*args, "--output", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    by_group = {g["group"]: g for g in document["groups"]}
    assert by_group[ok]["status"] == "OK"
    assert by_group[stalled]["status"] == "ERR"
    [partition] = by_group[stalled]["partitions"]
    assert (partition["status"], partition["lag"], partition["offset"]) == ("STALL", 6, 4)
    assert partition["last_commit_age_ms"] >= 100  # unmoved over 3 samples 50 ms apart
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert ok in result.stdout and "STALL" in result.stdout
    assert "offset unchanged for" in result.stdout
