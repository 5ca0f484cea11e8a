"""Error handling on a real broker: records that cannot be read or processed go to the
dead-letter queue (KIP-1034) in the application's transactions (exactly-once) while the others
are processed, and an application whose dead-letter-queue topic is missing does not start."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from strom.streams import (
    Consumed,
    Produced,
    Serdes,
    State,
    StreamsApp,
    StreamsBuilder,
    Topology,
)
from strom.streams.errors import (
    HEADER_EXCEPTION,
    HEADER_MESSAGE,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_TOPIC,
)
from strom.streams.internal_topics import TopicLayoutError
from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    DEADLINE_S,
    STREAMS_BROKER_SETTINGS,
    create_topic,
    produce_all,
    producer,
    unique_name,
)


@pytest.fixture(scope="module")
def streams_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(settings=STREAMS_BROKER_SETTINGS) as broker:
        yield broker


def topology(source: str, sink: str) -> Topology:
    b = StreamsBuilder()
    (b.stream(source, consumed=Consumed(Serdes.String(), Serdes.Json()))
     .map_values(lambda order: {**order, "each": order["total"] / order["quantity"]})
     .to(sink, Produced(Serdes.String(), Serdes.Json())))
    return b.build()


def read(bootstrap: str, topic: str, partitions: int, count: int) -> list[Message]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("read"),
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got: list[Message] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while len(got) < count and time.monotonic() < deadline:
            got += [m for m in c.consume(100, 0.2) if m.error() is None]
    finally:
        c.close()
    return got


def test_dead_letter_queue_on_a_broker(streams_broker: EmbeddedBroker, tmp_path: Path
                                       ) -> None:
    bootstrap = streams_broker.bootstrap_servers
    source, sink, dead = unique_name("orders"), unique_name("priced"), unique_name("dlq")
    create_topic(bootstrap, source, 2)
    create_topic(bootstrap, sink, 2)
    config: dict[str, Any] = {
        "application.id": unique_name("dlq-app"), "bootstrap.servers": bootstrap,
        "processing.guarantee": "exactly_once_v2", "state.dir": str(tmp_path),
        "errors.dead.letter.queue.topic.name": dead,
        "deserialization.exception.handler": "LogAndContinue",
        "processing.exception.handler": "LogAndContinue"}
    with pytest.raises(TopicLayoutError, match=f"dead-letter queue topic {dead} .*create it"):
        StreamsApp(topology(source, sink), config).start()
    create_topic(bootstrap, dead, 1)

    records = [{"key": b"o1", "value": json.dumps({"total": 10, "quantity": 4}).encode()},
               {"key": b"o2", "value": b"{not json", "headers": [("origin", b"shop-2")]},
               {"key": b"o3", "value": json.dumps({"total": 10, "quantity": 0}).encode()},
               {"key": b"o4", "value": json.dumps({"total": 9, "quantity": 3}).encode()}]
    delivered = produce_all(producer(bootstrap), source, records)
    where = {m.key(): (m.partition(), m.offset(), m.timestamp()[1]) for m in delivered.acked}
    app = StreamsApp(topology(source, sink), config)
    app.start()
    try:
        results = read(bootstrap, sink, 2, 2)
        assert {m.key(): json.loads(m.value() or b"") for m in results} == {
            b"o1": {"total": 10, "quantity": 4, "each": 2.5},
            b"o4": {"total": 9, "quantity": 3, "each": 3.0}}
        letters = sorted(read(bootstrap, dead, 1, 2), key=lambda m: m.key() or b"")
        assert [(m.key(), m.value()) for m in letters] == [
            (b"o2", b"{not json"), (b"o3", records[2]["value"])]
        headers = [{k: (v or b"").decode() for k, v in m.headers() or []} for m in letters]
        for key, letter, found in zip((b"o2", b"o3"), letters, headers, strict=True):
            partition, offset, timestamp = where[key]
            assert letter.timestamp()[1] == timestamp
            assert (found[HEADER_TOPIC], found[HEADER_PARTITION], found[HEADER_OFFSET]) == (
                source, str(partition), str(offset))
        assert headers[0]["origin"] == "shop-2"
        assert headers[0][HEADER_EXCEPTION] == "strom.streams.serdes.SerializationError"
        assert headers[0][HEADER_MESSAGE].startswith(f"{source}: not JSON")
        assert headers[1][HEADER_EXCEPTION] == "ZeroDivisionError"
        assert app.state is State.RUNNING and app.failure is None
    finally:
        assert app.close(DEADLINE_S)
    assert app.failure is None


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once_v2"])
def test_a_record_the_broker_refuses(streams_broker: EmbeddedBroker, tmp_path: Path,
                                     guarantee: str) -> None:
    """At-least-once: LogAndContinue skips it (and processing goes on); exactly-once: the
    transaction fails, and so does the application (it does not retry for ever)."""
    bootstrap = streams_broker.bootstrap_servers
    source, sink = unique_name("in"), unique_name("out")
    create_topic(bootstrap, source, 1)
    create_topic(bootstrap, sink, 1, {"max.message.bytes": "2000"})
    b = StreamsBuilder()
    (b.stream(source, consumed=Consumed(Serdes.String(), Serdes.String()))
     .map_values(lambda v: v * 1000 if v == "big" else v)
     .to(sink, Produced(Serdes.String(), Serdes.String())))
    app = StreamsApp(b.build(), {
        "application.id": unique_name("refused"), "bootstrap.servers": bootstrap,
        "processing.guarantee": guarantee, "state.dir": str(tmp_path),
        "commit.interval.ms": 100,  # a commit's flush brings the producer's reports
        "default.production.exception.handler": "LogAndContinue"})
    app.start()
    try:
        produce_all(producer(bootstrap), source, [{"key": b"k", "value": b"big"}])
        deadline = time.monotonic() + DEADLINE_S
        if guarantee == "exactly_once_v2":
            while app.failure is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert app.state is State.ERROR
            assert "Message size too large" in str(app.failure)
            return
        while not any(t.collector.skipped for t in app.threads):
            assert time.monotonic() < deadline and app.failure is None, app.failure
            time.sleep(0.05)
        produce_all(producer(bootstrap), source, [{"key": b"k", "value": b"small"}])
        assert [m.value() for m in read(bootstrap, sink, 1, 1)] == [b"small"]
        assert app.failure is None
    finally:
        app.close(DEADLINE_S)
