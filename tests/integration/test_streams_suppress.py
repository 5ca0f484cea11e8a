"""Final results (suppress until the window closes) on a real broker survive a restart: what
the suppression buffered before an instance stopped is restored from the buffer's changelog
by the next one (here with an empty state directory), and emitted once its window closes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from strom.streams import (
    Consumed,
    Produced,
    Serdes,
    StreamsApp,
    StreamsBuilder,
    Suppressed,
    TimeWindows,
    Topology,
)
from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    DEADLINE_S,
    STREAMS_BROKER_SETTINGS,
    create_topic,
    producer,
    unique_name,
)
from tests.integration.test_streams_app import wait_running

pytestmark = pytest.mark.slow  # runs first: see tests/conftest.py

S, L = Serdes.String(), Serdes.Long()
WINDOW_MS = 10_000


def topology(source: str, sink: str) -> Topology:
    builder = StreamsBuilder()
    (builder.stream(source, consumed=Consumed(S, S))
     .group_by_key()
     .windowed_by(TimeWindows.of_size_with_no_grace(WINDOW_MS))
     .count()
     .suppress(Suppressed.until_window_closes())
     .to_stream()
     .map(lambda key, count: (f"{key.key}@{key.window.start}", count))
     .to(sink, Produced(S, L)))
    return builder.build()


def committed(bootstrap: str, group: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (tp,) = c.committed([TopicPartition(topic, 0)], timeout=10)
        return tp.offset
    finally:
        c.close()


def test_buffered_windows_survive_a_restart(tmp_path: Path) -> None:
    with EmbeddedBroker(settings=STREAMS_BROKER_SETTINGS) as broker:
        bootstrap = broker.bootstrap_servers
        app_id = unique_name("suppress")
        source, sink = unique_name("views"), unique_name("final")
        create_topic(bootstrap, source, 1)
        create_topic(bootstrap, sink, 1)
        base = (int(time.time() * 1000) - 120_000) // WINDOW_MS * WINDOW_MS

        def run(instance: str, records: list[tuple[str, int]], until: int) -> None:
            app = StreamsApp(topology(source, sink), {
                "application.id": app_id, "bootstrap.servers": bootstrap,
                "processing.guarantee": "exactly_once_v2",
                "state.dir": str(tmp_path / instance), "commit.interval.ms": 100})
            app.start()
            try:
                wait_running(app)
                p = producer(bootstrap)
                for key, offset_ms in records:
                    p.produce(source, key=key.encode(), value=b"view",
                              timestamp=base + offset_ms)
                assert p.flush(DEADLINE_S) == 0
                deadline = time.monotonic() + DEADLINE_S
                while committed(bootstrap, app_id, source) < until:
                    assert time.monotonic() < deadline, "the input was not committed"
                    time.sleep(0.1)
            finally:
                assert app.close(DEADLINE_S)
            assert app.failure is None

        # Window [base, base + 10 s) is open when the first instance stops.
        run("a", [("a", 1_000), ("a", 2_000), ("b", 3_000)], until=3)
        # Another instance, nothing local: the buffer comes back from its changelog; a record
        # at base + 15 s closes the window.
        run("b", [("c", 15_000)], until=4)

        c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("read"),
                      "isolation.level": "read_committed", "enable.auto.commit": False})
        c.assign([TopicPartition(sink, 0, 0)])
        results: list[tuple[str, int]] = []
        deadline = time.monotonic() + DEADLINE_S
        try:
            while len(results) < 2 and time.monotonic() < deadline:
                for msg in c.consume(100, 0.2):
                    if msg.error() is None:
                        results.append(((msg.key() or b"").decode(),
                                        L.deserialize(sink, msg.value())))
            results.extend(((m.key() or b"").decode(), L.deserialize(sink, m.value()))
                           for m in c.consume(100, 1.0) if m.error() is None)
        finally:
            c.close()
        assert results == [(f"a@{base}", 2), (f"b@{base}", 1)]
