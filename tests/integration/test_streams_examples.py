"""The example applications (examples/streams) run as their users run them, `python
examples/streams/NAME.py --bootstrap-servers HOST:PORT` (exactly-once, their default), against a
real broker: a few records in, their results read back (read_committed), then SIGTERM, after
which each must stop cleanly (exit status 0)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    DEADLINE_S,
    STREAMS_BROKER_SETTINGS,
    create_topic,
    producer,
    unique_name,
)

EXAMPLES = Path(__file__).parents[2] / "examples" / "streams"
SRC = Path(__file__).parents[2] / "src"
PARTITIONS = 2


@pytest.fixture(scope="module")
def streams_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(settings=STREAMS_BROKER_SETTINGS) as broker:
        yield broker


class Example:
    """An example's process; `stop()` sends SIGTERM and returns its exit status."""

    def __init__(self, name: str, bootstrap: str, tmp_path: Path) -> None:
        self.log = tmp_path / f"{name}.log"
        self.application_id = unique_name(name)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])}
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(EXAMPLES / f"{name}.py"), "--bootstrap-servers", bootstrap,
                 "--application-id", self.application_id, "--state-dir", str(tmp_path / "state"),
                 "--partitions", str(PARTITIONS)],
                stdout=out, stderr=subprocess.STDOUT, env=env)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the example did not stop on SIGTERM:\n{self.output()}"
                                 ) from None


def produce(bootstrap: str, topic: str, records: list[tuple[str | None, Any, int]]) -> None:
    # Keys partitioned as Java clients and strom.streams partition them (murmur2): a join
    # finds a table's row in the partition its key hashes to.
    p = producer(bootstrap, partitioner="murmur2_random")
    for key, value, timestamp in records:
        p.produce(topic, key=None if key is None else key.encode(),
                  value=None if value is None else json.dumps(value).encode(),
                  timestamp=timestamp)
    assert p.flush(DEADLINE_S) == 0


class Reader:
    """Reads JSON records from one topic (read_committed), keeping the latest per key."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("read"),
                                  "isolation.level": "read_committed",
                                  "enable.auto.commit": False})
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        self.latest: dict[str, Any] = {}
        self.records: list[tuple[str, Any]] = []

    def until(self, want: dict[str, Any], example: Example) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE_S
        while self.latest != want and time.monotonic() < deadline:
            assert example.process.poll() is None, f"the example stopped:\n{example.output()}"
            for message in self.consumer.consume(100, 0.2):
                if message.error() is None:
                    key = (message.key() or b"").decode()
                    raw = message.value()
                    value = None if raw is None else json.loads(raw)
                    self.records.append((key, value))
                    self.latest[key] = value
        return self.latest

    def close(self) -> None:
        self.consumer.close()


def wait_committed(bootstrap: str, example: Example, topic: str) -> None:
    """Until the application has committed (processed) everything in `topic`."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": example.application_id,
                  "enable.auto.commit": False})
    try:
        ends = [c.get_watermark_offsets(TopicPartition(topic, p), 10)[1]
                for p in range(PARTITIONS)]
        deadline = time.monotonic() + DEADLINE_S
        while True:
            committed = c.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 10)
            if [max(tp.offset, 0) for tp in committed] == ends:
                return
            assert time.monotonic() < deadline, f"{topic} not processed:\n{example.output()}"
            assert example.process.poll() is None, f"the example stopped:\n{example.output()}"
            time.sleep(0.1)
    finally:
        c.close()


def iso(ms: int) -> str:
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def topics(bootstrap: str, *names: str) -> None:
    for name in names:
        create_topic(bootstrap, name, PARTITIONS)


def test_pageviews_example_end_to_end(streams_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bootstrap = streams_broker.bootstrap_servers
    topics(bootstrap, "pageviews", "pageviews-per-minute", "pageviews-sessions")
    base = 1_700_000_040_000  # a minute's start
    views = [("alice", "/", 0), ("bob", "/", 5_000), ("alice", "/cart", 20_000),
             ("alice", "/pay", 70_000),
             # 10 minutes on: closes (by event time) the first sessions of both users,
             # each view in its own user's task.
             ("alice", "/", 670_000), ("bob", "/", 670_000)]
    produce(bootstrap, "pageviews", [
        # Keyed by user, as a producer keeps each user's views in order.
        (user, {"user": user, "page": page, "timestamp": base + t}, base + t)
        for user, page, t in views])
    example = Example("pageviews", bootstrap, tmp_path)
    counts, sessions = (Reader(bootstrap, "pageviews-per-minute"),
                        Reader(bootstrap, "pageviews-sessions"))
    try:
        def minute(user: str, start: int, count: int) -> tuple[str, Any]:
            start += base
            return (f"{user}@{start}-{start + 60_000}", {
                "user": user, "start": iso(start), "end": iso(start + 60_000), "views": count})

        want_counts = dict([minute("alice", 0, 2), minute("bob", 0, 1), minute("alice", 60_000, 1),
                            minute("alice", 660_000, 1), minute("bob", 660_000, 1)])
        assert counts.until(want_counts, example) == want_counts

        def session(user: str, start: int, end: int, pages: list[str]) -> tuple[str, Any]:
            start, end = start + base, end + base
            return (f"{user}@{start}-{end}", {"user": user, "start": iso(start),
                                              "end": iso(end), "views": len(pages),
                                              "pages": pages})

        want_sessions = dict([session("alice", 0, 70_000, ["/", "/cart", "/pay"]),
                              session("bob", 5_000, 5_000, ["/"])])
        assert sessions.until(want_sessions, example) == want_sessions
        assert len(sessions.records) == 2  # each session once, when it is over
    finally:
        counts.close()
        sessions.close()
        status = example.stop()
    assert status == 0, example.output()


def test_orders_example_end_to_end(streams_broker: EmbeddedBroker, tmp_path: Path) -> None:
    bootstrap = streams_broker.bootstrap_servers
    topics(bootstrap, "customers", "products", "orders", "orders-with-customers",
           "orders-enriched")
    ada, pen, ink = {"name": "Ada"}, {"name": "Pen", "price": 1.5}, {"name": "Ink", "price": 4}
    produce(bootstrap, "customers", [("c1", ada, 1_000)])
    produce(bootstrap, "products", [("p1", pen, 1_000), ("p2", ink, 1_000)])
    example = Example("orders", bootstrap, tmp_path)
    # The tables first: a task processes the records it has fetched, it does not wait for
    # those of a table partition not fetched yet (Kafka's max.task.idle.ms).
    wait_committed(bootstrap, example, "customers")
    produce(bootstrap, "orders", [
        ("o1", {"customer": "c1", "product": "p1", "quantity": 3}, 2_000),
        ("o2", {"customer": "c9", "product": "p2", "quantity": 1}, 2_001),
        ("o3", {"customer": "c1", "product": "p3", "quantity": 1}, 2_002)])
    with_customers = Reader(bootstrap, "orders-with-customers")
    enriched = Reader(bootstrap, "orders-enriched")

    def order(order_id: str, customer_id: str, product_id: str, quantity: int,
              customer: Any) -> dict[str, Any]:
        return {"order_id": order_id, "customer_id": customer_id, "product_id": product_id,
                "quantity": quantity, "customer": customer}

    o1, o2 = order("o1", "c1", "p1", 3, ada), order("o2", "c9", "p2", 1, None)
    try:
        want = {"o1": o1, "o2": o2, "o3": order("o3", "c1", "p3", 1, ada)}
        assert with_customers.until(want, example) == want
        want = {"o1": {**o1, "product": pen, "total": 4.5},
                "o2": {**o2, "product": ink, "total": 4}}  # o3: no product p3
        assert enriched.until(want, example) == want
        # A new price reaches the product's orders through the foreign-key join.
        produce(bootstrap, "products", [("p1", {**pen, "price": 2}, 3_000)])
        want["o1"] = {**o1, "product": {**pen, "price": 2}, "total": 6}
        assert enriched.until(want, example) == want
    finally:
        with_customers.close()
        enriched.close()
        status = example.stop()
    assert status == 0, example.output()
