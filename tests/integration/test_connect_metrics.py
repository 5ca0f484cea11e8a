"""The connect worker's `/metrics` (strom.connect.metrics) against a real broker: a FileStream
source and sink count what they poll, write, read and put, commit offsets, and the sink's lag
grows while it is paused and falls to 0 once it catches up; a tolerant sink counts its errors,
skipped records and dead letter queue sends; a deleted connector's series are gone; a
distributed worker adds its rebalance metrics. The exposition is parsed with prometheus_client's
parser."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from strom.testing import EmbeddedBroker
from tests.integration.conftest import produce_all, producer, unique_name
from tests.integration.connect_worker import ConnectWorker, wait_for
from tests.integration.group_clients import GROUP_BROKER_SETTINGS
from tests.integration.test_connect_distributed import (  # noqa: F401 - a fixture
    Cluster,
    cluster_factory,
    create,
    running_on,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(GROUP_BROKER_SETTINGS)


@pytest.fixture
def worker(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[ConnectWorker]:
    props = {"bootstrap.servers": broker.bootstrap_servers,
             "key.converter": "org.apache.kafka.connect.storage.StringConverter",
             "value.converter": "org.apache.kafka.connect.storage.StringConverter",
             "offset.storage.file.filename": str(tmp_path / "offsets"),
             "offset.flush.interval.ms": "200"}
    with ConnectWorker(props) as running:
        yield running


def fetch(url: str) -> tuple[str, str]:
    """(Content-Type, body) of GET url/metrics."""
    with urllib.request.urlopen(url + "/metrics", timeout=30) as response:
        assert response.status == 200
        return response.headers["Content-Type"], response.read().decode()


def scrape(url: str) -> Samples:
    """Every sample of /metrics: (sample name, labels) -> value."""
    _, text = fetch(url)
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def task_value(samples: Samples, name: str, connector: str, **labels: str) -> float | None:
    return value(samples, name, connector=connector, task="0", **labels)


def series_of(samples: Samples, connector: str) -> list[str]:
    return sorted(name for name, labels in samples if ("connector", connector) in labels)


def status(worker: ConnectWorker, name: str) -> tuple[str, list[str]]:
    code, body = worker.request("GET", f"/connectors/{name}/status")
    assert code == 200, body
    return body["connector"]["state"], [t["state"] for t in body["tasks"]]


def test_file_source_and_sink_counts_lag_and_deletion(worker: ConnectWorker,
                                                      tmp_path: Path) -> None:
    content_type, _ = fetch(worker.url)
    assert content_type == CONTENT_TYPE_LATEST
    assert value(scrape(worker.url), "strom_connect_worker_tasks") == 0
    source, sink, topic = unique_name("src"), unique_name("sink"), unique_name("lines")
    lines, out = tmp_path / "in.txt", tmp_path / "out.txt"
    first = [f"line-{i}" for i in range(25)]
    lines.write_text("".join(f"{line}\n" for line in first))
    code, body = worker.request("POST", "/connectors", {"name": source, "config": {
        "connector.class": "FileStreamSource", "file": str(lines), "topic": topic}})
    assert code == 201, body
    code, body = worker.request("POST", "/connectors", {"name": sink, "config": {
        "connector.class": "FileStreamSink", "file": str(out), "topics": topic}})
    assert code == 201, body
    wait_for(lambda: out.exists() and out.read_text().splitlines() == first,
             what="the lines in the sink file")

    def settled() -> Samples | None:
        s = scrape(worker.url)
        sink_committed = task_value(s, "strom_connect_sink_partition_committed_offset", sink,
                                    topic=topic, partition="0")
        ok = (task_value(s, "strom_connect_source_records_written_total", source) == 25
              and sink_committed == 25
              and task_value(s, "strom_connect_sink_partition_lag", sink, topic=topic,
                             partition="0") == 0)
        return s if ok else None

    s = wait_for(settled, what="the records written, read and committed")
    assert task_value(s, "strom_connect_source_records_polled_total", source) == 25
    assert task_value(s, "strom_connect_source_records_active", source) == 0
    assert task_value(s, "strom_connect_source_poll_batch_seconds_count", source) >= 1
    assert task_value(s, "strom_connect_offset_commits_total", source) >= 1
    assert task_value(s, "strom_connect_offset_commit_failures_total", source) == 0
    assert task_value(s, "strom_connect_sink_records_read_total", sink) == 25
    assert task_value(s, "strom_connect_sink_records_put_total", sink) == 25
    assert task_value(s, "strom_connect_sink_records_active", sink) == 0
    assert task_value(s, "strom_connect_sink_put_batch_seconds_count", sink) >= 1
    assert task_value(s, "strom_connect_offset_commits_total", sink) >= 1
    assert task_value(s, "strom_connect_offset_commit_seconds_count", sink) >= 1
    assert task_value(s, "strom_connect_task_record_errors_total", sink) == 0
    # Source tasks have no sink series and the other way round.
    assert task_value(s, "strom_connect_sink_records_read_total", source) is None
    assert task_value(s, "strom_connect_source_records_polled_total", sink) is None
    assert value(s, "strom_connect_worker_connectors") == 2
    assert value(s, "strom_connect_worker_tasks") == 2
    assert value(s, "strom_connect_worker_task_startup_attempts_total") == 2
    assert value(s, "strom_connect_worker_task_startup_failures_total") == 0
    assert value(s, "strom_connect_worker_connector_startup_attempts_total") == 2
    assert value(s, "strom_connect_connector_status", connector=sink, state="RUNNING") == 1
    assert value(s, "strom_connect_connector_status", connector=sink, state="FAILED") == 0
    assert task_value(s, "strom_connect_task_status", source, state="RUNNING") == 1
    assert value(s, "strom_connect_worker_rebalancing") is None  # standalone

    # Paused, the sink reads nothing: what the source writes meanwhile is its lag.
    code, _ = worker.request("PUT", f"/connectors/{sink}/pause")
    assert code == 202
    wait_for(lambda: status(worker, sink) == ("PAUSED", ["PAUSED"]), what="paused")
    # A fetch in flight at the pause may still bring the consumer a newer high watermark;
    # after fetch.wait.max.ms none does, and the lag must come from the broker.
    time.sleep(1.5)
    more = [f"more-{i}" for i in range(7)]
    with lines.open("a") as f:
        f.write("".join(f"{line}\n" for line in more))
    s = wait_for(lambda: (s := scrape(worker.url)) and task_value(
        s, "strom_connect_source_records_written_total", source) == 32 and s,
        what="the source writing the new lines")
    assert task_value(s, "strom_connect_sink_partition_lag", sink, topic=topic,
                      partition="0") == 7
    assert task_value(s, "strom_connect_sink_records_read_total", sink) == 25
    assert task_value(s, "strom_connect_task_status", sink, state="PAUSED") == 1
    assert task_value(s, "strom_connect_task_status", sink, state="RUNNING") == 0

    code, _ = worker.request("PUT", f"/connectors/{sink}/resume")
    assert code == 202
    s = wait_for(lambda: (s := scrape(worker.url)) and task_value(
        s, "strom_connect_sink_partition_lag", sink, topic=topic, partition="0") == 0
        and task_value(s, "strom_connect_sink_partition_committed_offset", sink, topic=topic,
                       partition="0") == 32 and s, what="the sink catching up")
    assert task_value(s, "strom_connect_sink_records_read_total", sink) == 32
    assert task_value(s, "strom_connect_sink_records_put_total", sink) == 32
    assert out.read_text().splitlines() == first + more

    # A deleted connector leaves no series behind.
    for name in (source, sink):
        code, _ = worker.request("DELETE", f"/connectors/{name}")
        assert code == 204
    s = scrape(worker.url)
    assert series_of(s, source) == [] and series_of(s, sink) == []
    assert value(s, "strom_connect_worker_tasks") == 0
    assert value(s, "strom_connect_worker_connectors") == 0


POISON = [b"{not json", b'{"unterminated": ']


def test_tolerated_errors_and_the_dead_letter_queue(worker: ConnectWorker,
                                                    broker: EmbeddedBroker,
                                                    tmp_path: Path) -> None:
    name, topic, dlq = unique_name("dlq"), unique_name("in"), unique_name("dlq-topic")
    out = tmp_path / "sink.txt"
    delivered = produce_all(producer(broker.bootstrap_servers), topic, [
        {"value": b'"good-1"'}, {"value": POISON[0]}, {"value": b'"good-2"'},
        {"value": POISON[1]}, {"value": b'"good-3"'}])
    assert not delivered.failed
    code, body = worker.request("POST", "/connectors", {"name": name, "config": {
        "connector.class": "FileStreamSink", "file": str(out), "topics": topic,
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "false",
        "errors.tolerance": "all", "errors.log.enable": "true",
        "errors.deadletterqueue.topic.name": dlq,
        "errors.deadletterqueue.topic.replication.factor": "1"}})
    assert code == 201, body
    wait_for(lambda: out.exists() and out.read_text().splitlines()
             == ["good-1", "good-2", "good-3"], what="the good records in the sink file")

    def counted() -> Samples | None:
        s = scrape(worker.url)
        done = task_value(s, "strom_connect_task_dlq_produce_requests_total", name) == 2
        return s if done else None

    s = wait_for(counted, what="two records sent to the dead letter queue")
    assert task_value(s, "strom_connect_task_record_failures_total", name) == 2
    assert task_value(s, "strom_connect_task_record_errors_total", name) == 2
    assert task_value(s, "strom_connect_task_records_skipped_total", name) == 2
    assert task_value(s, "strom_connect_task_errors_logged_total", name) == 2
    assert task_value(s, "strom_connect_task_retries_total", name) == 0
    assert task_value(s, "strom_connect_task_dlq_produce_failures_total", name) == 0
    assert task_value(s, "strom_connect_sink_records_read_total", name) == 5
    assert task_value(s, "strom_connect_sink_records_put_total", name) == 3
    assert task_value(s, "strom_connect_task_status", name, state="RUNNING") == 1


def test_distributed_worker_metrics(cluster_factory: Callable[..., Cluster],  # noqa: F811
                                    tmp_path: Path) -> None:
    cluster = cluster_factory(1)
    [node] = cluster.workers
    name, topic = unique_name("src"), unique_name("lines")
    lines = tmp_path / "in.txt"
    lines.write_text("".join(f"line-{i}\n" for i in range(10)))
    create(node, name, {"connector.class": "FileStreamSource", "file": str(lines),
                        "topic": topic})
    wait_for(lambda: running_on(node, name, 1), 60, "the connector running")
    content_type, _ = fetch(node.url)
    assert content_type == CONTENT_TYPE_LATEST

    def written() -> Samples | None:
        s = scrape(node.url)
        return s if task_value(s, "strom_connect_source_records_written_total",
                               name) == 10 else None

    s = wait_for(written, 60, "the lines written")
    assert task_value(s, "strom_connect_source_records_polled_total", name) == 10
    assert value(s, "strom_connect_worker_rebalances_completed_total") >= 1
    assert value(s, "strom_connect_worker_assignment_generation") >= 1
    assert value(s, "strom_connect_worker_rebalancing") == 0
    assert value(s, "strom_connect_worker_leader") == 1
    assert value(s, "strom_connect_worker_tasks") == 1
    assert value(s, "strom_connect_connector_status", connector=name, state="RUNNING") == 1
    code, _ = node.request("DELETE", f"/connectors/{name}")
    assert code == 204
    wait_for(lambda: series_of(scrape(node.url), name) == [], 60, "the series gone")
