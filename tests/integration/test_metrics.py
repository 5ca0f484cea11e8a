"""A broker started with http.listeners serves /metrics, /healthz and /readyz on its own
loop: producing N records of a known size and reading them back moves the per-API and
per-partition counters by exactly what was sent, the offset gauges show the log, every
metric served is documented in docs/metrics.md (and every documented one is served), and a
broker without the setting keeps no metrics and serves no HTTP; `strom serve --http` too."""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    DEADLINE_S,
    consume_partitions,
    consumer,
    producer,
    unique_name,
)

N = 12
VALUE_BYTES = 200
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return {"http.listeners": "127.0.0.1:0", "group.initial.rebalance.delay.ms": "0"}


def get(address: str, path: str, method: str = "GET") -> tuple[int, bytes, str]:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Content-Type") or ""
    finally:
        conn.close()


def scrape(broker: EmbeddedBroker) -> tuple[Samples, set[str]]:
    """Every sample by (name, labels), and the names of the families served."""
    status, body, content_type = get(broker.http_address, "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    samples: Samples = {}
    names = set()
    for family in text_string_to_metric_families(body.decode()):
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, names


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_health_and_readiness(broker: EmbeddedBroker) -> None:
    assert get(broker.http_address, "/healthz")[:2] == (200, b"ok\n")
    status, body, content_type = get(broker.http_address, "/readyz")
    assert (status, content_type) == (200, "application/json")
    assert b'"ready": true' in body
    status, body, _ = get(broker.http_address, "/healthz", "HEAD")
    assert (status, body) == (200, b"")
    assert get(broker.http_address, "/nothing")[0] == 404


def test_produce_and_fetch_move_the_counters(broker: EmbeddedBroker,
                                             new_topic: Callable[..., str]) -> None:
    topic = new_topic(partitions=2)
    before, _ = scrape(broker)
    p = producer(broker.bootstrap_servers, linger_ms=0, compression_type="none")
    for i in range(N):  # one Produce request each
        p.produce(topic, value=bytes([i]) * VALUE_BYTES, partition=0)
        assert p.flush(DEADLINE_S) == 0
    messages = consume_partitions(broker.bootstrap_servers, topic)
    assert len(messages) == N
    after, _ = scrape(broker)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    produce_versions = {dict(labels)["version"] for name, labels in after
                        if name == "strom_requests_total" and dict(labels)["api"] == "Produce"}
    assert sum(moved("strom_requests_total", api="Produce", version=v)
               for v in produce_versions) == N
    assert moved("strom_request_handle_seconds_count", api="Produce") == N
    assert moved("strom_request_queue_seconds_count", api="Produce") == N
    assert moved("strom_request_bytes_total", api="Produce") > N * VALUE_BYTES
    assert moved("strom_response_bytes_total", api="Fetch") > N * VALUE_BYTES
    assert sum(v for (name, labels), v in after.items()
               if name == "strom_requests_total" and dict(labels)["api"] == "Fetch") >= 1
    part = {"topic": topic, "partition": "0"}
    assert value(after, "strom_topic_messages_in_total", **part) == N
    size = value(after, "strom_log_size_bytes", **part)
    assert N * VALUE_BYTES < size < N * (VALUE_BYTES + 100)
    assert value(after, "strom_topic_bytes_in_total", **part) == size
    assert value(after, "strom_topic_bytes_out_total", **part) == size
    assert value(after, "strom_log_end_offset", **part) == N
    assert value(after, "strom_log_high_watermark", **part) == N
    assert value(after, "strom_log_start_offset", **part) == 0
    assert value(after, "strom_log_segments", **part) == 1
    empty = {"topic": topic, "partition": "1"}
    assert value(after, "strom_log_end_offset", **empty) == 0
    assert ("strom_topic_messages_in_total", frozenset(empty.items())) not in after
    assert value(after, "strom_connections", listener="PLAINTEXT") >= 1
    assert value(after, "process_resident_memory_bytes") > 0


def test_fetch_errors_are_counted_by_name(broker: EmbeddedBroker, topic: str) -> None:
    before, _ = scrape(broker)
    c = consumer(broker.bootstrap_servers)
    try:
        c.assign([TopicPartition(topic, 0, 1000)])  # past the end: OFFSET_OUT_OF_RANGE
        deadline = time.monotonic() + DEADLINE_S
        while True:
            msg = c.poll(0.2)
            if msg is not None and msg.error() is not None and msg.error().code() in (
                    KafkaError.OFFSET_OUT_OF_RANGE, KafkaError._AUTO_OFFSET_RESET):
                break
            assert time.monotonic() < deadline, "no OFFSET_OUT_OF_RANGE seen"
    finally:
        c.close()
    after, _ = scrape(broker)
    labels = {"api": "Fetch", "error": "OFFSET_OUT_OF_RANGE"}
    assert (value(after, "strom_request_errors_total", **labels)
            > value(before, "strom_request_errors_total", **labels))


def test_loop_lag_is_probed(broker: EmbeddedBroker) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while value(scrape(broker)[0], "strom_event_loop_lag_seconds_count") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_consumer_group_state_members_and_lag(broker: EmbeddedBroker, topic: str) -> None:
    group = unique_name("group")
    p = producer(broker.bootstrap_servers)
    for i in range(5):
        p.produce(topic, value=b"%d" % i)
    assert p.flush(DEADLINE_S) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        seen = 0
        deadline = time.monotonic() + DEADLINE_S
        while seen < 5:
            assert time.monotonic() < deadline, f"read {seen} of 5"
            msg = c.poll(0.2)
            if msg is not None and msg.error() is None:
                seen += 1
        c.commit(asynchronous=False)
        for i in range(3):
            p.produce(topic, value=b"more %d" % i)
        assert p.flush(DEADLINE_S) == 0
        samples, _ = scrape(broker)
        part = {"group": group, "topic": topic, "partition": "0"}
        assert value(samples, "strom_consumer_group_committed_offset", **part) == 5
        assert value(samples, "strom_consumer_group_lag", **part) == 3
        assert value(samples, "strom_consumer_group_members", group=group) == 1
        assert value(samples, "strom_consumer_group_state", group=group, state="Stable") == 1
    finally:
        c.close()


def documented() -> set[str]:
    text = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, re.MULTILINE))


def test_every_served_metric_is_documented(broker: EmbeddedBroker, topic: str) -> None:
    p = producer(broker.bootstrap_servers)
    p.produce(topic, value=b"x")
    assert p.flush(DEADLINE_S) == 0
    consume_partitions(broker.bootstrap_servers, topic)
    _, served = scrape(broker)
    names = documented()
    # prometheus-client's `_created` timestamps of counters and histograms are families of
    # their own in the text format.
    created = {n for n in served if n.endswith("_created")
               and ({n[:-8], n[:-8] + "_total"} & names)}
    assert served - created == names


def test_without_the_setting_nothing_is_kept_or_served() -> None:
    with EmbeddedBroker(storage="memory:") as plain:
        assert plain.server.metrics is None
        assert plain.server.broker is not None and plain.server.broker.meter is None
        assert plain.server.http_ports == []
        with pytest.raises(RuntimeError, match="no HTTP listener"):
            _ = plain.http_address


@pytest.fixture
def serve_with_http(tmp_path: Path) -> Iterator[str]:
    """`python -m strom serve --http 127.0.0.1:0`; yields the HTTP HOST:PORT it printed."""
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "strom", "serve", "--storage",
                                 "memory:", "--listen", "127.0.0.1:0", "--http",
                                 "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            found = re.search(r"metrics on http://(\S+)/metrics\n", log_path.read_text())
            if found:
                break
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        yield found.group(1)
    finally:
        proc.terminate()
        proc.wait(15)


def test_strom_serve_http(serve_with_http: str) -> None:
    assert get(serve_with_http, "/readyz")[0] == 200
    status, body, _ = get(serve_with_http, "/metrics")
    assert status == 200
    assert b"strom_connections{" in body
