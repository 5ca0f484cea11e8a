"""A task moving between live workers of a distributed strom connect cluster runs in one
place at a time (Kafka's KIP-415: revoked in one assignment, assigned in the next): the
worker losing it stops it and writes its last offsets before the one gaining it starts it
from them, so a source's records are neither repeated nor skipped by the move."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.connect_worker import wait_for
from tests.integration.test_connect_distributed import (  # noqa: F401  (fixtures)
    Cluster,
    DistributedWorker,
    broker_settings,
    cluster_factory,
    create,
    free_port,
    read_topic,
    running_on,
)

pytestmark = pytest.mark.slow


def test_a_task_moving_to_a_joining_worker_stops_before_it_starts_there(
        cluster_factory: Callable[..., Cluster], new_topic: Callable[..., str],  # noqa: F811
        tmp_path: Path) -> None:
    # Offsets flushed only every minute, and a stop waits for the poll under way (0.7 s): a
    # task started elsewhere before its old instance stopped and wrote its last offsets
    # would count again from the start.
    cluster = cluster_factory(1, {"offset.flush.interval.ms": "60000"})
    topic = new_topic(partitions=1)
    first = cluster.workers[0]
    create(first, "counter", {
        "connector.class": "tests.integration.connect_keyed_plugins:KeyedCountingSource",
        "tasks.max": "2", "topic": topic, "poll.delay.ms": "700"})
    wait_for(lambda: running_on(first, "counter", 2) == {first.id}, 60,
             "both tasks on the first worker")
    time.sleep(3)  # each task counts a few
    joiner = DistributedWorker(first.props, free_port(), tmp_path / "joiner.log")
    cluster.workers.append(joiner)
    joiner.start()
    wait_for(joiner.up, 60, "the second worker serving")
    wait_for(lambda: running_on(first, "counter", 2) == {first.id, joiner.id}, 60,
             "one task on each worker")
    time.sleep(3)  # the moved task counts on where it runs now
    assert first.request("DELETE", "/connectors/counter")[0] == 204
    counts: dict[str, list[int]] = defaultdict(list)
    for key, value in read_topic(cluster.broker.bootstrap_servers, topic):
        counts[key].append(int(value))
    assert sorted(counts) == ["0", "1"]
    for task, values in counts.items():
        repeated = sorted({v for v in values if values.count(v) > 1})
        assert not repeated, f"task {task} counted {repeated} twice: {cluster.logs()}"
        assert sorted(values) == list(range(1, len(values) + 1)), f"task {task} skipped"
