"""Client quotas with real clients: a producer limited to N bytes/s measures within 20% of N
over 10 s and is told to back off (throttle_time_ms, KIP-219), while an unthrottled client on
the same broker is not slowed; a consumer's byte rate likewise; quotas set and listed with
`strom quota` and Describe/AlterClientQuotas' checks; an IP's connection creation rate."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from strom.cli.main import cli
from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, create_topic, unique_name
from tests.integration.raw_client import RawClient

RATE = 256 * 1024  # bytes/s
# Short windows: the first burst a new client may send is (num - 1) windows of its quota.
SETTINGS = {"quota.window.num": "3", "quota.window.size.seconds": "1"}
VALUE = b"v" * 1000


@pytest.fixture(scope="module")
def quota_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(settings=dict(SETTINGS)) as broker:
        yield broker


def cli_ok(*args: str) -> str:
    done = CliRunner().invoke(cli, list(args))
    assert done.exit_code == 0, done.output
    return done.output


def produce_for(bootstrap: str, topic: str, client_id: str, seconds: float,
                throttles: list[int]) -> list[tuple[float, int]]:
    """Produces as fast as allowed for `seconds`; (time, bytes) of each acknowledgement."""
    acked: list[tuple[float, int]] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is None:
            acked.append((time.monotonic(), len(msg.value())))

    p = Producer({"bootstrap.servers": bootstrap, "client.id": client_id, "linger.ms": 5,
                  "batch.size": 16384, "queue.buffering.max.kbytes": 1024,
                  "throttle_cb": lambda event: throttles.append(
                      int(event.throttle_time * 1000)),
                  "on_delivery": on_delivery})
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            p.produce(topic, VALUE)
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    p.purge()
    p.flush(5)
    return acked


def rate_between(acked: list[tuple[float, int]], start: float, end: float) -> float:
    return sum(size for t, size in acked if start <= t < end) / (end - start)


@pytest.mark.slow
def test_a_producer_is_held_to_its_byte_rate_and_others_are_not(
        quota_broker: EmbeddedBroker) -> None:
    b = ["-b", quota_broker.bootstrap_servers]
    cli_ok("quota", "set", "--client-id", "slow", "--producer-byte-rate", str(RATE), *b)
    assert "slow" in cli_ok("quota", "list", *b)
    topic = create_topic(quota_broker.bootstrap_servers, unique_name("quota"))
    throttles: list[int] = []
    fast_throttles: list[int] = []
    fast: list[list[tuple[float, int]]] = []
    other = threading.Thread(target=lambda: fast.append(produce_for(
        quota_broker.bootstrap_servers, topic, "fast", 6.0, fast_throttles)))
    begin = time.monotonic()
    other.start()
    slow = produce_for(quota_broker.bootstrap_servers, topic, "slow", 14.0, throttles)
    other.join()
    measured = rate_between(slow, begin + 4.0, begin + 14.0)
    print(f"throttled client: {measured / 1024:.0f} KiB/s for a quota of {RATE / 1024:.0f}; "
          f"unthrottled: {rate_between(fast[0], begin, begin + 6.0) / 1024:.0f} KiB/s; "
          f"throttle_time_ms seen {len(throttles)} times, max {max(throttles, default=0)}")
    assert 0.8 * RATE <= measured <= 1.2 * RATE
    assert throttles and max(throttles) > 0
    assert not fast_throttles
    assert rate_between(fast[0], begin, begin + 6.0) > 4 * RATE


def test_a_consumer_is_held_to_its_byte_rate(quota_broker: EmbeddedBroker) -> None:
    b = ["-b", quota_broker.bootstrap_servers]
    topic = create_topic(quota_broker.bootstrap_servers, unique_name("quota-c"))
    p = Producer({"bootstrap.servers": quota_broker.bootstrap_servers, "linger.ms": 20,
                  "batch.size": 16 * 1024})  # answers of a few batches, not one large one
    for _ in range(6000):  # ~6 MB: far more than the consumer may read in the test
        try:
            p.produce(topic, VALUE)
        except BufferError:
            p.poll(0.05)
            p.produce(topic, VALUE)
    assert p.flush(DEADLINE_S) == 0
    cli_ok("quota", "set", "--user", "ANONYMOUS", "--client-id", "reader",
           "--consumer-byte-rate", str(RATE), *b)
    c = Consumer({"bootstrap.servers": quota_broker.bootstrap_servers, "client.id": "reader",
                  "group.id": unique_name("g"), "enable.auto.commit": False,
                  "max.partition.fetch.bytes": 64 * 1024})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    got: list[tuple[float, int]] = []
    begin = time.monotonic()
    while time.monotonic() < begin + 12.0:
        msg = c.poll(0.1)
        if msg is not None and msg.error() is None:
            got.append((time.monotonic(), len(msg.value() or b"")))
    c.close()
    measured = rate_between(got, begin + 3.0, begin + 12.0)
    print(f"throttled consumer: {measured / 1024:.0f} KiB/s for {RATE / 1024:.0f}")
    # As in Kafka, the answer that would cross the quota is not sent (an empty throttled
    # answer instead), so the consumer is held as closely as a producer.
    assert 0.8 * RATE <= measured <= 1.2 * RATE


def test_request_percentage_counts_work_not_waits(quota_broker: EmbeddedBroker) -> None:
    """A client whose requests keep the broker busy beyond 1% of a thread is throttled; a
    consumer long-polling an empty topic under the same quota is not (its waits are not
    work, as Kafka's purgatory is not)."""
    bootstrap = quota_broker.bootstrap_servers
    b = ["-b", bootstrap]
    topic = create_topic(bootstrap, unique_name("quota-idle"))
    for client_id in ("busy", "poller"):
        cli_ok("quota", "set", "--client-id", client_id, "--request-percentage", "1", *b)
    poller_throttles: list[int] = []
    c = Consumer({"bootstrap.servers": bootstrap, "client.id": "poller",
                  "group.id": unique_name("g"), "fetch.wait.max.ms": 500,
                  "throttle_cb": lambda event: poller_throttles.append(
                      int(event.throttle_time * 1000))})
    c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    end = time.monotonic() + 4.0
    while time.monotonic() < end:  # about 8 long polls of 500 ms: 100% of wall time
        assert c.poll(0.2) is None
    c.close()
    busy_throttles: list[int] = []
    admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": "busy",
                         "throttle_cb": lambda event: busy_throttles.append(
                             int(event.throttle_time * 1000))})
    end = time.monotonic() + DEADLINE_S
    while not busy_throttles and time.monotonic() < end:
        admin.list_topics(timeout=DEADLINE_S)
        admin.poll(0)
    print(f"request_percentage 1: long-polling consumer throttled {len(poller_throttles)} "
          f"times; busy admin client throttled up to {max(busy_throttles, default=0)} ms")
    assert busy_throttles and max(busy_throttles) > 0
    assert not poller_throttles


def test_quota_checks_and_deletion(quota_broker: EmbeddedBroker) -> None:
    b = ["-b", quota_broker.bootstrap_servers]
    done = CliRunner().invoke(cli, ["quota", "set", "--ip", "10.0.0.1",
                                    "--producer-byte-rate", "5", *b])
    assert done.exit_code == 1 and "not a quota of ip" in done.output
    done = CliRunner().invoke(cli, ["quota", "set", "--user", "u", "--producer-byte-rate",
                                    "1.5", *b])
    assert done.exit_code == 1 and "whole number" in done.output
    cli_ok("quota", "set", "--default", "user", "--request-percentage", "50", *b)
    assert "user=<default>" in cli_ok("quota", "list", "--default", "user", *b)
    cli_ok("quota", "delete", "--default", "user", *b)
    assert "user=<default>" not in cli_ok("quota", "list", *b)
    done = CliRunner().invoke(cli, ["quota", "delete", "--user", "nobody", *b])
    assert done.exit_code == 1 and "no such quota" in done.output


def test_an_ips_connection_creation_rate_is_limited() -> None:
    with EmbeddedBroker(settings=dict(SETTINGS)) as broker:
        cli_ok("quota", "set", "--ip", "127.0.0.1", "--connection-creation-rate", "2",
               "-b", broker.bootstrap_servers)
        refused = 0
        for _ in range(12):
            with RawClient(broker.port) as raw:
                if raw.is_closed_by_peer(0.3):
                    refused += 1
        assert refused >= 6, refused


def test_controller_mutation_rate_refuses_topics_beyond_it(
        quota_broker: EmbeddedBroker) -> None:
    """KIP-599: CreateTopics v6+ refuses the topics that come once the client's partition
    mutation rate is over its quota (THROTTLING_QUOTA_EXCEEDED) and asks it to back off."""
    from datetime import timedelta

    from kio.schema.create_topics.v7.request import CreatableTopic, CreateTopicsRequest
    from kio.static.primitive import i16, i32

    cli_ok("quota", "set", "--client-id", "raw-test", "--controller-mutation-rate", "2",
           "-b", quota_broker.bootstrap_servers)
    names = [unique_name("mut") for _ in range(6)]
    with RawClient(quota_broker.port) as raw:
        answer = raw.request(CreateTopicsRequest(
            topics=tuple(CreatableTopic(name=n, num_partitions=i32(2),
                                        replication_factor=i16(1), assignments=(), configs=())
                         for n in names),
            timeout=timedelta(seconds=10)))
    codes = [int(t.error_code) for t in answer.topics]
    print(f"CreateTopics under a 2 partitions/s quota: {codes}, throttle {answer.throttle_time}")
    assert codes[0] == 0 and 89 in codes  # THROTTLING_QUOTA_EXCEEDED
    created = set(topics_of(quota_broker))
    assert {n for n, c in zip(names, codes, strict=True) if c == 0} <= created
    assert not {n for n, c in zip(names, codes, strict=True) if c == 89} & created
    assert answer.throttle_time.total_seconds() > 0


def topics_of(broker: EmbeddedBroker) -> list[str]:
    from confluent_kafka.admin import AdminClient

    return list(AdminClient({"bootstrap.servers": broker.bootstrap_servers})
                .list_topics(timeout=10).topics)
