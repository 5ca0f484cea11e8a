"""strom.streams applications on a real broker: the word count (examples/streams) at
at-least-once and exactly-once, two instances sharing the work, a restart restoring the
counts from the changelog, with confluent-kafka reading the results (read_committed)."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from strom.streams import State, StreamsApp
from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, create_topic, producer, unique_name

EXAMPLE = Path(__file__).parents[2] / "examples" / "streams" / "wordcount.py"
LINES = ["the quick brown fox", "jumps over the lazy dog", "The dog sleeps"]


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wordcount_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


wordcount = load_example()


@pytest.fixture(scope="module")
def streams_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
        yield broker


def expected_counts(lines: list[str]) -> dict[str, str]:
    counts: dict[str, int] = {}
    for line in lines:
        for word in wordcount.WORD.findall(line.lower()):
            counts[word] = counts.get(word, 0) + 1
    return {w: str(c) for w, c in counts.items()}


def read_latest(bootstrap: str, topic: str, partitions: int, want: dict[str, str]
                ) -> dict[str, str]:
    """The latest value per key of `topic` (read_committed) once it equals `want`, or what it
    was at the deadline."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("read"),
                  "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    latest: dict[str, str] = {}
    deadline = time.monotonic() + DEADLINE_S
    try:
        while latest != want and time.monotonic() < deadline:
            for msg in c.consume(500, 0.2):
                if msg.error() is None:
                    latest[(msg.key() or b"").decode()] = (msg.value() or b"").decode()
    finally:
        c.close()
    return latest


def app_config(broker: EmbeddedBroker, app_id: str, tmp_path: Path, guarantee: str,
               instance: str = "a") -> dict[str, Any]:
    return {"application.id": app_id, "bootstrap.servers": broker.bootstrap_servers,
            "processing.guarantee": guarantee, "state.dir": str(tmp_path / instance),
            "commit.interval.ms": 200}


def produce_lines(bootstrap: str, topic: str, lines: list[str]) -> None:
    p = producer(bootstrap)
    for i, line in enumerate(lines):
        p.produce(topic, value=line.encode(), key=str(i).encode())
    assert p.flush(DEADLINE_S) == 0


def wait_running(app: StreamsApp) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while app.state is not State.RUNNING and time.monotonic() < deadline:
        assert app.failure is None, app.failure
        time.sleep(0.05)
    assert app.state is State.RUNNING


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once_v2"])
def test_word_count_counts_and_restores(streams_broker: EmbeddedBroker, tmp_path: Path,
                                        guarantee: str) -> None:
    bootstrap = streams_broker.bootstrap_servers
    app_id = unique_name("wc")
    source, sink = unique_name("words"), unique_name("counts")
    create_topic(bootstrap, source, 3)
    create_topic(bootstrap, sink, 3)
    wordcount.INPUT, wordcount.OUTPUT = source, sink
    app = StreamsApp(wordcount.topology(), app_config(streams_broker, app_id, tmp_path,
                                                      guarantee))
    app.start()
    try:
        wait_running(app)
        produce_lines(bootstrap, source, LINES)
        assert read_latest(bootstrap, sink, 3, expected_counts(LINES)) == \
            expected_counts(LINES)
    finally:
        assert app.close(DEADLINE_S)
    assert app.failure is None
    # A new instance (another state directory: nothing local) restores the counts from the
    # changelog and goes on counting from them.
    more = ["the end"]
    app = StreamsApp(wordcount.topology(), app_config(streams_broker, app_id, tmp_path,
                                                      guarantee, "b"))
    app.start()
    try:
        wait_running(app)
        produce_lines(bootstrap, source, more)
        assert read_latest(bootstrap, sink, 3, expected_counts(LINES + more)) == \
            expected_counts(LINES + more)
        assert app.store("word-counts-store").get("the") == 4
    finally:
        assert app.close(DEADLINE_S)
    assert app.failure is None
