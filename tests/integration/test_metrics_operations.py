"""The operations metrics on a real broker with http.listeners: transactions committed,
aborted and timed out move their counters by exactly one each and the open gauge returns to
0; an idempotent producer shows in the producer ids; appends are timed; the cleaner's runs and
retention's deletions are counted; a second member joining counts a rebalance; the time lag
is the age of the record at the committed offset, and 0 once the group is caught up. On the
local engine and on PostgreSQL (where retention deletes batch rows, one per Produce here)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, producer, unique_name
from tests.integration.test_metrics import Samples, scrape, value

HOUR_MS = 3_600_000
STORAGE_ENGINES = ("file", "postgresql")  # the engines that keep storage meters


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return {"http.listeners": "127.0.0.1:0", "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.backoff.ms": "200", "log.retention.check.interval.ms": "200"}


def samples(broker: EmbeddedBroker) -> Samples:
    return scrape(broker)[0]


def wait_until(broker: EmbeddedBroker, check: Callable[[Samples], bool], what: str) -> Samples:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = samples(broker)
        if check(found):
            return found
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.2)


def transactional(broker: EmbeddedBroker, timeout_ms: int = 60_000) -> Producer:
    p = Producer({"bootstrap.servers": broker.bootstrap_servers,
                  "transactional.id": unique_name("txn"), "linger.ms": 0,
                  "transaction.timeout.ms": timeout_ms,
                  "socket.timeout.ms": min(timeout_ms, 60_000)})
    p.init_transactions(DEADLINE_S)
    return p


def txn_counts(found: Samples) -> tuple[float, float, float, float]:
    return (value(found, "strom_transactions_total", result="commit"),
            value(found, "strom_transactions_total", result="abort"),
            value(found, "strom_transaction_timeouts_total"),
            value(found, "strom_transactions_open"))


def test_a_commit_and_an_abort_count_once_each(broker: EmbeddedBroker, topic: str) -> None:
    p = transactional(broker)
    commits, aborts, timeouts, _ = txn_counts(samples(broker))
    p.begin_transaction()
    p.produce(topic, value=b"committed")
    assert p.flush(DEADLINE_S) == 0
    assert txn_counts(samples(broker))[3] == 1  # open while it runs
    p.commit_transaction(DEADLINE_S)
    p.begin_transaction()
    p.produce(topic, value=b"aborted")
    assert p.flush(DEADLINE_S) == 0
    p.abort_transaction(DEADLINE_S)
    after = wait_until(broker, lambda s: txn_counts(s)[3] == 0, "no transaction open")
    assert txn_counts(after) == (commits + 1, aborts + 1, timeouts, 0)
    # Both batches and both markers were appended (and timed).
    assert value(after, "strom_storage_append_seconds_count") >= 4


def test_a_transaction_past_its_timeout_counts_a_timeout(broker: EmbeddedBroker,
                                                         topic: str) -> None:
    p = transactional(broker, timeout_ms=1000)
    commits, aborts, timeouts, _ = txn_counts(samples(broker))
    p.begin_transaction()
    p.produce(topic, value=b"left open")
    assert p.flush(DEADLINE_S) == 0
    after = wait_until(broker, lambda s: txn_counts(s)[2] > timeouts, "a timeout")
    after = wait_until(broker, lambda s: txn_counts(s)[3] == 0, "no transaction open")
    assert txn_counts(after) == (commits, aborts + 1, timeouts + 1, 0)


def test_an_idempotent_producer_is_an_active_producer_id(broker: EmbeddedBroker,
                                                         topic: str) -> None:
    before = samples(broker)
    p = producer(broker.bootstrap_servers, **{"enable.idempotence": True})
    p.produce(topic, value=b"once")
    assert p.flush(DEADLINE_S) == 0
    after = samples(broker)
    assert (value(after, "strom_producer_ids_active")
            == value(before, "strom_producer_ids_active") + 1)
    assert (value(after, "strom_storage_append_seconds_count")
            >= value(before, "strom_storage_append_seconds_count") + 1)


def test_a_cleaner_run_is_counted(broker: EmbeddedBroker, new_topic: Callable[..., str]
                                  ) -> None:
    topic = new_topic(config={"cleanup.policy": "compact", "segment.bytes": "1024",
                              "min.cleanable.dirty.ratio": "0.01"})
    runs = value(samples(broker), "strom_log_cleaner_runs_total")
    p = producer(broker.bootstrap_servers, linger_ms=0, compression_type="none")
    for i in range(40):  # the same 4 keys over and over: several segments to compact
        p.produce(topic, key=b"k%d" % (i % 4), value=bytes([i]) * 100)
        assert p.flush(DEADLINE_S) == 0
    after = wait_until(broker, lambda s: value(s, "strom_log_cleaner_runs_total") > runs,
                       "a cleaner run")
    assert value(after, "strom_log_cleaner_removed_bytes_total") > 0


def test_retention_deletions_are_counted_by_reason(broker: EmbeddedBroker,
                                                   new_topic: Callable[..., str]) -> None:
    topic = new_topic(config={"retention.ms": str(HOUR_MS), "segment.bytes": "1024"})
    before = samples(broker)
    deleted = value(before, "strom_log_retention_deletions_total", reason="time")
    flushes = value(before, "strom_storage_flush_seconds_count")
    p = producer(broker.bootstrap_servers, linger_ms=0, compression_type="none")
    old = int(time.time() * 1000) - 2 * HOUR_MS
    for i in range(3):  # expired records, a segment each
        p.produce(topic, value=bytes([i]) * 900, timestamp=old + i)
        assert p.flush(DEADLINE_S) == 0
    p.produce(topic, value=b"fresh" * 180)  # rolls the last expired segment
    assert p.flush(DEADLINE_S) == 0
    after = wait_until(broker, lambda s: value(s, "strom_log_retention_deletions_total",
                                               reason="time") >= deleted + 3,
                       "3 segments deleted")
    # Rolled segments were fsynced (local engine); the appends committed (PostgreSQL).
    assert value(after, "strom_storage_flush_seconds_count") >= flushes + 3


def group_consumer(broker: EmbeddedBroker, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group,
                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                     "session.timeout.ms": 6000, "heartbeat.interval.ms": 200})


def poll_until(consumers: list[Consumer], done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        assert time.monotonic() < deadline, f"never: {what}"
        for c in consumers:
            c.poll(0.1)


def test_a_second_member_counts_a_rebalance(broker: EmbeddedBroker,
                                            new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=2)
    group = unique_name("group")
    first = group_consumer(broker, group)
    second = group_consumer(broker, group)
    try:
        first.subscribe([topic])
        poll_until([first], lambda: len(first.assignment()) == 2, "the first assignment")
        rebalances = value(samples(broker), "strom_consumer_group_rebalances_total",
                           group=group)
        assert rebalances >= 1
        second.subscribe([topic])
        poll_until([first, second], lambda: len(second.assignment()) == 1,
                   "the second member's assignment")
        after = samples(broker)
        assert value(after, "strom_consumer_group_rebalances_total", group=group) > rebalances
        assert value(after, "strom_consumer_group_members", group=group) == 2
    finally:
        first.close()
        second.close()


def test_time_lag_is_the_age_of_the_record_at_the_committed_offset(
        broker: EmbeddedBroker, topic: str) -> None:
    now_ms = int(time.time() * 1000)
    stamps = [now_ms - 600_000 + i * 60_000 for i in range(5)]  # 10 to 6 minutes ago
    p = producer(broker.bootstrap_servers, linger_ms=0)
    for i, stamp in enumerate(stamps):
        p.produce(topic, value=b"%d" % i, timestamp=stamp)
    assert p.flush(DEADLINE_S) == 0
    group = unique_name("group")
    c = group_consumer(broker, group)
    try:
        c.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
        labels = {"group": group, "topic": topic, "partition": "0"}
        found = samples(broker)
        expected = time.time() - stamps[2] / 1000
        lag = value(found, "strom_consumer_group_time_lag_seconds", **labels)
        assert abs(lag - expected) < 5, (lag, expected)
        c.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
        found = samples(broker)
        assert ("strom_consumer_group_time_lag_seconds",
                frozenset(labels.items())) in found
        assert value(found, "strom_consumer_group_time_lag_seconds", **labels) == 0
    finally:
        c.close()
