"""strom.streams' runtime on a real broker: a global table restored before processing and kept
up to date while the application runs (and restored from its checkpoint on a restart), standby
replicas that make a task's move to another instance restore only the changelog's tail, and
interactive queries across two instances (metadata for a key, the HTTP endpoint's redirect),
and a table re-grouped and counted through its repartition topic."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from strom.streams import (
    Consumed,
    Grouped,
    Materialized,
    Produced,
    Serdes,
    State,
    StreamsApp,
    StreamsBuilder,
    Topology,
)
from strom.streams.thread import RestoreProgress
from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    DEADLINE_S,
    STREAMS_BROKER_SETTINGS,
    create_topic,
    producer,
    unique_name,
)
from tests.integration.test_streams_app import (
    expected_counts,
    produce_lines,
    read_latest,
    wait_running,
    wordcount,
)

pytestmark = pytest.mark.slow  # runs first: see tests/conftest.py

S = Serdes.String()


@pytest.fixture(scope="module")
def streams_broker() -> Iterator[EmbeddedBroker]:
    """With the initial rebalance delay: the tests of two instances have them share the tasks."""
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture(scope="module")
def single_instance_broker() -> Iterator[EmbeddedBroker]:
    """For one instance at a time: no initial rebalance delay (STREAMS_BROKER_SETTINGS)."""
    with EmbeddedBroker(settings=STREAMS_BROKER_SETTINGS) as broker:
        yield broker


def wait_for(condition: Any, what: str, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Progress:
    """A restore listener that keeps every report."""

    def __init__(self) -> None:
        self.reports: list[RestoreProgress] = []
        self._lock = threading.Lock()

    def __call__(self, progress: RestoreProgress) -> None:
        with self._lock:
            self.reports.append(progress)

    def of(self, *, task: str | None = None, standby: bool = False) -> list[RestoreProgress]:
        with self._lock:
            return [r for r in self.reports if r.standby is standby
                    and (task is None or r.task_id == task)]


# -- global tables -------------------------------------------------------------------------


def global_join_topology(orders: str, products: str, out: str) -> Topology:
    builder = StreamsBuilder()
    catalogue = builder.global_table(products, Consumed(S, S), Materialized("products"))
    (builder.stream(orders, consumed=Consumed(S, S))
     .join(catalogue, lambda _order, line: line.split(":")[0],
           lambda line, price: f"{line}@{price}")
     .to(out, Produced(S, S)))
    return builder.build()


def produce_pairs(bootstrap: str, topic: str, pairs: list[tuple[str, str | None]]) -> None:
    p = producer(bootstrap)
    for key, value in pairs:
        p.produce(topic, key=key.encode(), value=None if value is None else value.encode())
    assert p.flush(DEADLINE_S) == 0


def test_a_stream_joins_a_global_table_kept_up_to_date(single_instance_broker: EmbeddedBroker,
                                                       tmp_path: Path) -> None:
    bootstrap = single_instance_broker.bootstrap_servers
    orders, products, out = unique_name("orders"), unique_name("products"), unique_name("out")
    create_topic(bootstrap, orders, 2)
    create_topic(bootstrap, products, 3)  # any count: a global table is read whole
    create_topic(bootstrap, out, 2)
    produce_pairs(bootstrap, products, [(f"p{i}", str(100 + i)) for i in range(30)])
    # Orders waiting when the application starts: a task processing them before the global
    # store is full would drop them (an inner join).
    produce_pairs(bootstrap, orders, [(f"o{i}", f"p{i}:1") for i in range(30)])
    config = {"application.id": unique_name("global"), "bootstrap.servers": bootstrap,
              "processing.guarantee": "exactly_once_v2", "state.dir": str(tmp_path),
              "commit.interval.ms": 200}
    progress = Progress()
    app = StreamsApp(global_join_topology(orders, products, out), config,
                     restore_listener=progress)
    app.start()
    try:
        wait_running(app)
        # Restored before any task ran: every partition read to its end, every product there.
        restored = progress.of(task="global")
        assert sorted(r.partition for r in restored) == [0, 1, 2]
        assert sum(r.restored for r in restored) == 30
        want = {f"o{i}": f"p{i}:1@{100 + i}" for i in range(30)}
        assert read_latest(bootstrap, out, 2, want) == want
        # Updates while it runs: new prices, a product deleted (the inner join drops its
        # orders), a new product.
        produce_pairs(bootstrap, products, [(f"p{i}", str(200 + i)) for i in range(10)]
                      + [("p29", None), ("p30", "130")])
        store = app.store("products")
        wait_for(lambda: store.get("p9") == "209" and store.get("p30") == "130"
                 and store.get("p29") is None, "the global store's updates")
        produce_pairs(bootstrap, orders, [("o100", "p0:2"), ("o101", "p29:1"),
                                          ("o102", "p30:3"), ("o103", "p15:1")])
        want.update({"o100": "p0:2@200", "o102": "p30:3@130", "o103": "p15:1@115"})
        assert read_latest(bootstrap, out, 2, want) == want
        assert len(list(store.all())) == 30  # 30 products, one deleted, one new
    finally:
        assert app.close(DEADLINE_S)
    assert app.failure is None
    # Again in the same state directory: the persistent global store goes on from its
    # checkpoint (nothing to restore), then follows the topic again.
    progress = Progress()
    app = StreamsApp(global_join_topology(orders, products, out), config,
                     restore_listener=progress)
    app.start()
    try:
        assert app.global_thread is not None
        wait_for(app.global_thread.ready.is_set, "the global stores' restoration")
        assert sum(r.restored for r in progress.of(task="global")) == 0
        assert app.store("products").get("p9") == "209"
        produce_pairs(bootstrap, products, [("p9", "309")])
        wait_for(lambda: app.store("products").get("p9") == "309", "an update after a restart")
    finally:
        assert app.close(DEADLINE_S)
    assert app.failure is None


# -- standby replicas ----------------------------------------------------------------------

STORE = "word-counts-store"
PARTITIONS = 4


def word_lines(start: int, count: int, per_line: int = 50) -> list[str]:
    words = [f"w{i}" for i in range(start, start + count)]
    return [" ".join(words[i:i + per_line]) for i in range(0, len(words), per_line)]


def word_count_app(broker: EmbeddedBroker, app_id: str, state_dir: Path,
                   listener: Progress | None = None, **settings: Any) -> StreamsApp:
    config = {"application.id": app_id, "bootstrap.servers": broker.bootstrap_servers,
              "processing.guarantee": "exactly_once_v2", "state.dir": str(state_dir),
              "commit.interval.ms": 200, **settings}
    return StreamsApp(wordcount.topology(), config, restore_listener=listener)


def stateful(tasks: list[str]) -> list[str]:
    return [t for t in tasks if t.startswith("1_")]  # the count's sub-topology


def changelog_end(bootstrap: str, topic: str, partition: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("ends")})
    try:
        return int(c.get_watermark_offsets(TopicPartition(topic, partition),
                                           timeout=DEADLINE_S)[1])
    finally:
        c.close()


def start_two(apps: list[StreamsApp]) -> None:
    """Both running, each with some of the count's tasks."""
    for app in apps:
        app.start()
    wait_for(lambda: all(a.state is State.RUNNING and stateful(a.tasks) for a in apps)
             and sum(len(stateful(a.tasks)) for a in apps) == PARTITIONS,
             "two instances sharing the tasks", 3 * DEADLINE_S)


def test_a_standby_takes_over_a_task_restoring_only_the_tail(streams_broker: EmbeddedBroker,
                                                             tmp_path: Path) -> None:
    bootstrap = streams_broker.bootstrap_servers
    app_id = unique_name("standby")
    source, sink = unique_name("words"), unique_name("counts")
    create_topic(bootstrap, source, PARTITIONS)
    create_topic(bootstrap, sink, PARTITIONS)
    wordcount.INPUT, wordcount.OUTPUT = source, sink
    progress = Progress()
    a = word_count_app(streams_broker, app_id, tmp_path / "a", progress,
                       **{"num.standby.replicas": 1})
    b = word_count_app(streams_broker, app_id, tmp_path / "b", **{"num.standby.replicas": 1})
    try:
        start_two([a, b])
        # Each keeps standbys of the other's stateful tasks (and of none of its own).
        wait_for(lambda: a.standby_tasks == stateful(b.tasks)
                 and b.standby_tasks == stateful(a.tasks), "the standbys' placement")
        lines = word_lines(0, 2000)
        produce_lines(bootstrap, source, lines)
        assert read_latest(bootstrap, sink, PARTITIONS, expected_counts(lines)) == \
            expected_counts(lines)
        moving = stateful(b.tasks)
        # A word of b's: a's standby holds it, but a's store (its active tasks) does not.
        word = next(w for w in (f"w{i}" for i in range(2000))
                    if a.metadata_for_key(STORE, w, S).task_id in moving)
        assert (a.store(STORE).get(word), b.store(STORE).get(word)) == (None, 1)
        changelog = f"{app_id}-{STORE}-changelog"
        ends = {t: changelog_end(bootstrap, changelog, int(t[2:])) for t in moving}
        assert a.standbys is not None
        wait_for(lambda: all(a.standbys.offsets().get(t, {}).get((changelog, int(t[2:])), 0) >= end
                             for t, end in ends.items()), "a's standbys to catch up")
        # A stale query (Kafka's enableStaleStores) reads the standby's copy.
        assert a.store(STORE, stale=True).get(word) == 1
        assert a.store(STORE).get(word) is None
        # The standbys' catching up is reported too (standby=True).
        assert set(moving) <= {r.task_id for r in progress.of(standby=True)}
        before = len(progress.of())
        assert b.close(DEADLINE_S)
        assert b.failure is None
        wait_for(lambda: all(a.serving(t) for t in moving) and not a.standby_tasks,
                 "a to take over b's tasks", 3 * DEADLINE_S)
        promoted = [r for r in progress.of()[before:] if r.task_id in moving]
        assert sorted(r.task_id for r in promoted) == sorted(moving)
        # b held about half of the 2000 words' counts; a restored only what its standbys
        # had not read yet (nothing, or the last commit's records).
        tail = sum(r.restored for r in promoted)
        assert sum(ends.values()) > 800
        assert tail < sum(ends.values()) / 20, [(r.task_id, r.restored) for r in promoted]
        more = [*word_lines(0, 500), "w1999 w1999"]
        produce_lines(bootstrap, source, more)
        assert read_latest(bootstrap, sink, PARTITIONS, expected_counts(lines + more)) == \
            expected_counts(lines + more)
        assert a.store(STORE).get("w1999") == 3
        assert a.store(STORE).get(word) == (2 if int(word[1:]) < 500 else 1)
    finally:
        assert a.close(DEADLINE_S)
        b.close(DEADLINE_S)
    assert a.failure is None


# -- interactive queries across instances --------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> tuple[int, Any, str | None]:
    """(status, JSON body, Location) of a GET that does not follow redirects."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=DEADLINE_S) as response:
            return response.status, json.loads(response.read()), None
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), error.headers.get("Location")


def test_a_key_asked_of_the_wrong_instance_finds_the_right_one(streams_broker: EmbeddedBroker,
                                                               tmp_path: Path) -> None:
    bootstrap = streams_broker.bootstrap_servers
    app_id = unique_name("iq")
    source, sink = unique_name("words"), unique_name("counts")
    create_topic(bootstrap, source, PARTITIONS)
    create_topic(bootstrap, sink, PARTITIONS)
    wordcount.INPUT, wordcount.OUTPUT = source, sink
    config = {"application.id": app_id, "bootstrap.servers": bootstrap,
              "processing.guarantee": "at_least_once", "commit.interval.ms": 200}
    # a: an HTTP endpoint on any free port (its address becomes its application.server); b:
    # one at the application.server it is given.
    a = StreamsApp(wordcount.topology(), {**config, "state.dir": str(tmp_path / "a")},
                   http=("127.0.0.1", 0))
    b = StreamsApp(wordcount.topology(), {
        **config, "state.dir": str(tmp_path / "b"), "application.server.http": "true",
        "application.server": f"127.0.0.1:{free_port()}"})
    apps = [a, b]
    try:
        start_two(apps)
        lines = word_lines(0, 200, per_line=20)
        produce_lines(bootstrap, source, lines)
        assert read_latest(bootstrap, sink, PARTITIONS, expected_counts(lines)) == \
            expected_counts(lines)
        by_endpoint = {app.endpoint: app for app in apps}
        assert None not in by_endpoint and len(by_endpoint) == 2
        # Both instances know both, with their endpoints and tasks.
        for app in apps:
            wait_for(lambda app=app: sorted((m.endpoint, m.active_tasks)
                                            for m in app.all_metadata())
                     == sorted((x.endpoint, tuple(x.tasks)) for x in apps),
                     "every instance's metadata")
        # Every word: both instances name the same holder, which has it; the other has not.
        for i in range(200):
            word = f"w{i}"
            found = {app.metadata_for_key(STORE, word, S) for app in apps}
            assert len(found) == 1
            (where,) = found
            holder = by_endpoint[where.active]
            other = b if holder is a else a
            assert where.task_id in holder.tasks
            assert (holder.store(STORE).get(word), other.store(STORE).get(word)) == (1, None)
        # Over HTTP: asked at the wrong instance, redirected to the right one, which answers.
        word = next(f"w{i}" for i in range(200)
                    if a.metadata_for_key(STORE, f"w{i}", S).active == b.endpoint)
        status, body, location = get(f"http://{a.endpoint}/stores/{STORE}/{word}")
        assert (status, body["instance"]) == (307, b.endpoint)
        assert location == f"http://{b.endpoint}/stores/{STORE}/{word}"
        with urllib.request.urlopen(f"http://{a.endpoint}/stores/{STORE}/{word}",
                                    timeout=DEADLINE_S) as followed:
            assert json.loads(followed.read()) == {"store": STORE, "key": word, "value": 1}
        assert get(f"http://{b.endpoint}/stores/{STORE}/nothing-here")[0] in (307, 404)
        status, listed, _ = get(f"http://{b.endpoint}/instances")
        assert status == 200
        assert sorted(m["endpoint"] for m in listed) == sorted(by_endpoint)
    finally:
        for app in apps:
            assert app.close(DEADLINE_S)
    assert a.failure is None and b.failure is None


# -- a re-grouped table ----------------------------------------------------------------------


def test_a_table_regrouped_and_counted(single_instance_broker: EmbeddedBroker,
                                       tmp_path: Path) -> None:
    """Users per region from a table of user -> region, through the repartition topic (two
    partitions, as the table's): moves decrement one region and increment another, deletions
    decrement."""
    bootstrap = single_instance_broker.bootstrap_servers
    users, out = unique_name("users"), unique_name("per-region")
    create_topic(bootstrap, users, 2)
    create_topic(bootstrap, out, 2)
    builder = StreamsBuilder()
    (builder.table(users, Consumed(S, S))
     .group_by(lambda user, region: (region, user), Grouped(S, S, "by-region"))
     .count(Materialized("per-region"))
     .to_stream().map_values(str).to(out, Produced(S, S)))
    app_id = unique_name("regroup")
    config = {"application.id": app_id, "bootstrap.servers": bootstrap,
              "processing.guarantee": "exactly_once_v2", "state.dir": str(tmp_path),
              "commit.interval.ms": 200}
    app = StreamsApp(builder.build(), config)
    app.start()
    try:
        wait_running(app)
        produce_pairs(bootstrap, users, [(f"u{i}", "eu" if i % 3 else "us") for i in range(30)])
        want = {"eu": "20", "us": "10"}
        assert read_latest(bootstrap, out, 2, want) == want
        produce_pairs(bootstrap, users, [("u1", "us"), ("u2", "asia"), ("u3", None),
                                         ("u4", "eu"), ("nobody", None)])
        want = {"eu": "18", "us": "10", "asia": "1"}  # u1, u2 move, u3 (us) leaves, u4 stays
        assert read_latest(bootstrap, out, 2, want) == want
        store = app.store("per-region")
        wait_for(lambda: store.get("eu") == 18 and store.get("asia") == 1, "the store")
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("meta")})
        try:
            topics = c.list_topics(timeout=DEADLINE_S).topics
        finally:
            c.close()
        assert len(topics[f"{app_id}-by-region-repartition"].partitions) == 2
        assert len(topics[f"{app_id}-per-region-changelog"].partitions) == 2
    finally:
        assert app.close(DEADLINE_S)
    assert app.failure is None
