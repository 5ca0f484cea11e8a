"""strom.streams applications on a real broker (its local log, and the PostgreSQL engine): the
word count (examples/streams) at at-least-once and exactly-once, a restart restoring the
counts from the changelog or from a checkpoint, with confluent-kafka reading the results
(read_committed)."""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from strom.streams import State, StreamsApp, StreamsError
from strom.testing import EmbeddedBroker
from tests.integration import streams_windowed_app as windowed_app
from tests.integration.conftest import (
    DEADLINE_S,
    STREAMS_BROKER_SETTINGS,
    create_topic,
    producer,
    unique_name,
)

pytestmark = pytest.mark.slow  # runs first: see tests/conftest.py

EXAMPLE = Path(__file__).parents[2] / "examples" / "streams" / "wordcount.py"
LINES = ["the quick brown fox", "jumps over the lazy dog", "The dog sleeps"]


def load_example() -> ModuleType:
    # The examples' folder on sys.path, as `python examples/streams/wordcount.py` puts it
    # there: the example imports its shared runner (_runner.py) from it.
    if str(EXAMPLE.parent) not in sys.path:
        sys.path.append(str(EXAMPLE.parent))
    spec = importlib.util.spec_from_file_location("wordcount_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


wordcount = load_example()


# The client library against strom's local log and against the PostgreSQL engine.
STORAGE_ENGINES = ("file", "postgresql")


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(STREAMS_BROKER_SETTINGS)


@pytest.fixture(scope="module")
def streams_broker(broker: EmbeddedBroker) -> EmbeddedBroker:
    return broker


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
        metrics = app.metrics()
        (thread,) = metrics["threads"].values()
        words = sum(int(c) for c in expected_counts(LINES).values())
        # Each line once, each word once more (after the repartition topic).
        assert thread["process-total"] == len(LINES) + words
        assert thread["commit-total"] >= 1 and thread["commit-latency-max-ms"] > 0
        assert sorted(metrics["tasks"]) == ["0_0", "0_1", "0_2", "1_0", "1_1", "1_2"]
        assert sum(t["process-total"] for t in metrics["tasks"].values()) == len(LINES) + words
        assert all(set(t["records-lag"].values()) <= {0} for t in metrics["tasks"].values())
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
    # The same instance again: its RocksDB stores are still there and restore only what came
    # after their checkpoint (nothing).
    restored: list[int] = []
    app = StreamsApp(wordcount.topology(), app_config(streams_broker, app_id, tmp_path,
                                                      guarantee, "b"),
                     restore_listener=lambda progress: restored.append(progress.restored))
    app.start()
    try:
        wait_running(app)
        assert app.store("word-counts-store").get("the") == 4
    finally:
        assert app.close(DEADLINE_S)
    assert len(restored) == 3  # a store per task
    assert sum(restored) == 0  # a clean close checkpointed them (exactly-once too)


def records_in(bootstrap: str, topic: str, partitions: int) -> int:
    """How many records `topic` holds (written outside transactions: no markers)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("count")})
    try:
        return sum(high - low for low, high in (
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in range(partitions)))
    finally:
        c.close()


@pytest.mark.parametrize("cache_bytes", [None, 0])
def test_the_record_cache_writes_a_key_once_per_commit(
        streams_broker: EmbeddedBroker, tmp_path: Path, cache_bytes: int | None) -> None:
    """With a commit interval longer than the run, a word counted several times is written
    to the changelog and the output once (at the commit of the close); with
    statestore.cache.max.bytes=0, once per update."""
    bootstrap = streams_broker.bootstrap_servers
    app_id = unique_name("wc-cache")
    source, sink = unique_name("words"), unique_name("counts")
    create_topic(bootstrap, source, 3)
    create_topic(bootstrap, sink, 3)
    wordcount.INPUT, wordcount.OUTPUT = source, sink
    lines = LINES * 5
    words = sum(int(c) for c in expected_counts(lines).values())
    config = {**app_config(streams_broker, app_id, tmp_path, "at_least_once"),
              "commit.interval.ms": 600_000}
    if cache_bytes is not None:
        config["statestore.cache.max.bytes"] = cache_bytes
    app = StreamsApp(wordcount.topology(), config)
    app.start()
    try:
        wait_running(app)
        produce_lines(bootstrap, source, lines)
        deadline = time.monotonic() + DEADLINE_S
        # (the thread's own metrics: app.metrics() asks the consumers for the lag, which
        # can take long before a first commit)
        (thread,) = app.threads
        while time.monotonic() < deadline:  # every line and every word processed
            if thread.metrics.process_total >= len(lines) + words:
                break
            time.sleep(0.1)
        assert thread.metrics.process_total == len(lines) + words
        snapshot = thread.metrics.snapshot()
        assert ("record-cache-hit-ratio" in snapshot) is (cache_bytes is None)
        assert thread.metrics.commit_total == 0  # nothing written yet but the repartitions
    finally:
        assert app.close(DEADLINE_S)  # commits: the caches are flushed
    assert app.failure is None
    want = expected_counts(lines)
    assert read_latest(bootstrap, sink, 3, want) == want
    changelog = records_in(bootstrap, f"{app_id}-word-counts-store-changelog", 3)
    output = records_in(bootstrap, sink, 3)
    if cache_bytes == 0:
        assert changelog == output == words  # every update
    else:
        assert changelog == output == len(want) < words  # each word once


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once_v2"])
def test_a_close_whose_commit_fails_leaves_no_checkpoint(tmp_path: Path, guarantee: str
                                                         ) -> None:
    """A clean close checkpoints the stores (under both guarantees; the next start restores
    nothing); a close whose last commit fails writes no checkpoint (one past writes that
    were not committed would keep them): the next start restores from the changelog."""
    with EmbeddedBroker(settings=STREAMS_BROKER_SETTINGS) as broker:
        bootstrap = broker.bootstrap_servers
        app_id = unique_name("wc-close")
        source, sink = unique_name("words"), unique_name("counts")
        create_topic(bootstrap, source, 2)
        create_topic(bootstrap, sink, 2)
        wordcount.INPUT, wordcount.OUTPUT = source, sink
        sent: list[str] = []

        def run(lines: list[str], fail_last_commit: bool, exact: bool = True) -> list[int]:
            restored: list[int] = []
            app = StreamsApp(wordcount.topology(),
                             app_config(broker, app_id, tmp_path, guarantee),
                             restore_listener=lambda progress: restored.append(
                                 progress.restored))
            app.start()
            try:
                wait_running(app)
                produce_lines(bootstrap, source, lines)
                sent.extend(lines)
                assert not exact or read_latest(bootstrap, sink, 2, expected_counts(sent)) == \
                    expected_counts(sent)
                if fail_last_commit:
                    (thread,) = app.threads
                    commit, close = thread.commit, thread.close
                    closing = threading.Event()

                    def failing_commit() -> None:  # the one the close makes
                        if closing.is_set():
                            raise StreamsError("the last commit fails (injected)")
                        commit()

                    def closing_close() -> None:
                        closing.set()
                        close()
                    thread.commit = failing_commit  # type: ignore[method-assign]
                    thread.close = closing_close  # type: ignore[method-assign]
            finally:
                assert app.close(DEADLINE_S)
            return restored

        def checkpoints() -> dict[str, str]:
            return {p.parent.name: p.read_text()
                    for p in (tmp_path / "a" / app_id).glob("*/.checkpoint")}

        run(LINES, fail_last_commit=False)
        clean = checkpoints()
        assert sorted(clean) == ["1_0", "1_1"]  # the counting tasks' stores
        assert sum(run(["more words"], fail_last_commit=True)) == 0  # from the checkpoints
        if guarantee == "at_least_once":
            assert checkpoints() == clean  # the previous one stays, none is written
        else:
            assert checkpoints() == {}  # removed while the tasks ran, none written
        # The counts written before the failed commit are restored from the changelog (at
        # least once: the input whose offsets were not committed is counted again).
        assert sum(run([], fail_last_commit=False,
                       exact=guarantee != "at_least_once")) >= 2


def read_all(bootstrap: str, topic: str, partitions: int, want: set[str]
             ) -> dict[str, list[str]]:
    """Every value written per key (read_committed), once every key of `want` is there (and
    a second more, for anything written twice)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("read"),
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    seen: dict[str, list[str]] = {}

    def consume(timeout: float) -> None:
        for msg in c.consume(500, timeout):
            if msg.error() is None:
                seen.setdefault((msg.key() or b"").decode(), []).append(
                    (msg.value() or b"").decode())

    deadline = time.monotonic() + DEADLINE_S
    try:
        while not want <= seen.keys() and time.monotonic() < deadline:
            consume(0.2)
        consume(1.0)
    finally:
        c.close()
    return seen


@pytest.mark.parametrize(("guarantee", "idle_ms"), [("at_least_once", None),
                                                     ("exactly_once_v2", 800)])
def test_windows_emitted_on_close_are_not_emitted_again_after_a_restart(
        streams_broker: EmbeddedBroker, storage_engine: str, tmp_path: Path, guarantee: str,
        idle_ms: int | None) -> None:
    """A windowed count emitting on window close, stopped and started again as another
    instance (its store restored from the changelog): the windows it had emitted are not
    emitted again, as its committed processor metadata says. With wall-clock closing, the
    windows are emitted by a punctuation after the records' offsets were committed: the
    metadata is committed all the same."""
    if storage_engine != "file":
        pytest.skip("the storage engine makes no difference here")
    bootstrap = streams_broker.bootstrap_servers
    app_id = unique_name("win")
    source, sink = unique_name("clicks"), unique_name("click-counts")
    create_topic(bootstrap, source, 3)
    create_topic(bootstrap, sink, 3)
    windowed_app.INPUT, windowed_app.OUTPUT = source, sink
    base = int(time.time()) * 1000

    def produce(records: list[tuple[str, int]]) -> None:
        p = producer(bootstrap)
        for key, window_offset in records:
            p.produce(source, key=key.encode(), value=b"x", partition=0,
                      timestamp=base + window_offset)
        assert p.flush(DEADLINE_S) == 0

    def start(instance: str) -> StreamsApp:
        app = StreamsApp(windowed_app.topology(idle_ms),
                         app_config(streams_broker, app_id, tmp_path, guarantee, instance))
        app.start()
        wait_running(app)
        return app

    first = ["a@" + str(base), "a@" + str(base + 1000), "a@" + str(base + 2000)]
    app = start("a")
    try:
        produce([("a", 5), ("a", 7), ("a", 1500), ("a", 2100), ("a", 2200), ("a", 2300)])
        if idle_ms is None:
            produce([("closer", 3000)])
        # else: the wall clock closes [2000, 3000) once the stream time has stood still
        assert read_all(bootstrap, sink, 3, set(first)) == {
            first[0]: ["2"], first[1]: ["1"], first[2]: ["3"]}
    finally:
        assert app.close(DEADLINE_S)
    assert app.failure is None
    app = start("b")
    try:
        want = {first[0]: ["2"], first[1]: ["1"], first[2]: ["3"]}
        if idle_ms is None:
            produce([("a", 3500), ("a", 5000)])  # 5000 closes [3000, 4000)
            window = "a@" + str(base + 3000)
            want["closer@" + str(base + 3000)] = ["1"]
        else:  # the wall clock has closed the windows up to now: a record after them
            produce([("a", 60_500)])
            window = "a@" + str(base + 60_000)
        want[window] = ["1"]
        assert read_all(bootstrap, sink, 3, {window}) == want
    finally:
        assert app.close(DEADLINE_S)
    assert app.failure is None
