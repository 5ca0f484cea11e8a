"""strom.streams' runtime on a real broker: a global table restored before processing and kept
up to date while the application runs (and restored from its checkpoint on a restart), standby
replicas that make a task's move to another instance restore only the changelog's tail, and
interactive queries across two instances (metadata for a key, the HTTP endpoint's redirect)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strom.streams import (
    Consumed,
    Materialized,
    Produced,
    Serdes,
    StreamsApp,
    StreamsBuilder,
    Topology,
)
from strom.streams.thread import RestoreProgress
from strom.testing import EmbeddedBroker
from tests.integration.conftest import DEADLINE_S, create_topic, producer, unique_name
from tests.integration.test_streams_app import (
    read_latest,
    wait_running,
)

S = Serdes.String()


@pytest.fixture(scope="module")
def streams_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
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


def test_a_stream_joins_a_global_table_kept_up_to_date(streams_broker: EmbeddedBroker,
                                                      tmp_path: Path) -> None:
    bootstrap = streams_broker.bootstrap_servers
    orders, products, out = unique_name("orders"), unique_name("products"), unique_name("out")
    create_topic(bootstrap, orders, 2)
    create_topic(bootstrap, products, 3)  # any count: a global table is read whole
    create_topic(bootstrap, out, 2)
    produce_pairs(bootstrap, products, [(f"p{i}", str(100 + i)) for i in range(30)])
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
        produce_pairs(bootstrap, orders, [(f"o{i}", f"p{i}:1") for i in range(30)])
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
