"""strom.connect.metrics without a broker: the collector over fake workers and tasks (which
series each kind of task has, one-hot status gauges, partitions without a known lag, the
rebalance gauges, a registry per worker), and the error counts of the KIP-298 operator."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from strom.connect.errors import DataException, RetriableException
from strom.connect.metrics import (
    STATES,
    ConnectCollector,
    Histogram,
    PartitionNumbers,
    RebalanceState,
    SinkTaskMetrics,
    SourceTaskMetrics,
    TaskMetrics,
    WorkerCounts,
    make_registry,
)
from strom.connect.tolerance import (
    ErrorSettings,
    ProcessingContext,
    RetryWithToleranceOperator,
    Stage,
    ToleranceExceeded,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class FakeTask:
    connector: str
    task_id: int
    metrics: TaskMetrics
    state: str = "RUNNING"
    errors: RetryWithToleranceOperator = field(
        default_factory=lambda: RetryWithToleranceOperator(ErrorSettings(), "c", 0))
    partitions: dict[tuple[str, int], PartitionNumbers] = field(default_factory=dict)
    active: int = 0

    def partition_numbers(self) -> Mapping[tuple[str, int], PartitionNumbers]:
        return self.partitions

    def records_active(self) -> int:
        return self.active


@dataclass
class FakeConnector:
    name: str
    state: str = "RUNNING"


@dataclass
class FakeWorker:
    connectors: list[FakeConnector] = field(default_factory=list)
    tasks: list[FakeTask] = field(default_factory=list)
    counts: WorkerCounts = field(default_factory=WorkerCounts)

    def connector_views(self) -> list[FakeConnector]:
        return self.connectors

    def task_views(self) -> list[FakeTask]:
        return self.tasks


def samples(collector: ConnectCollector) -> Samples:
    text = generate_latest(make_registry(collector)).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    histogram = Histogram((0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 2.0):
        histogram.observe(seconds)
    assert histogram.counts == [2, 1, 1]
    assert histogram.total == pytest.approx(2.65)


def test_source_and_sink_tasks_have_their_own_series() -> None:
    source = SourceTaskMetrics()
    source.records_polled, source.records_written, source.records_dropped = 10, 6, 1
    source.commits = 3
    source.poll_batch_seconds.observe(0.02)
    sink = SinkTaskMetrics()
    sink.records_read, sink.records_put, sink.commit_skips = 8, 7, 2
    sink_task = FakeTask("out", 1, sink, active=5, partitions={
        ("t", 0): PartitionNumbers(lag=4, committed=12), ("t", 1): PartitionNumbers(None, None)})
    sink_task.errors.records_skipped = 1
    worker = FakeWorker([FakeConnector("in"), FakeConnector("out", "PAUSED")],
                        [FakeTask("in", 0, source), sink_task], WorkerCounts(2, 0, 3, 1))
    s = samples(ConnectCollector(worker))
    src, snk = labels(connector="in", task="0"), labels(connector="out", task="1")
    assert s[("strom_connect_source_records_polled_total", src)] == 10
    assert s[("strom_connect_source_records_written_total", src)] == 6
    assert s[("strom_connect_source_records_active", src)] == 3  # 10 - 6 written - 1 dropped
    assert s[("strom_connect_source_poll_batch_seconds_count", src)] == 1
    assert s[("strom_connect_source_poll_batch_seconds_bucket", src | {("le", "0.025")})] == 1
    assert s[("strom_connect_source_poll_batch_seconds_bucket", src | {("le", "0.01")})] == 0
    assert s[("strom_connect_offset_commits_total", src)] == 3
    assert ("strom_connect_sink_records_read_total", src) not in s
    assert s[("strom_connect_sink_records_read_total", snk)] == 8
    assert s[("strom_connect_sink_records_put_total", snk)] == 7
    assert s[("strom_connect_sink_records_active", snk)] == 5
    assert s[("strom_connect_offset_commit_skips_total", snk)] == 2
    assert s[("strom_connect_task_records_skipped_total", snk)] == 1
    assert s[("strom_connect_task_records_skipped_total", src)] == 0
    assert ("strom_connect_source_records_polled_total", snk) not in s
    part0 = snk | {("topic", "t"), ("partition", "0")}
    assert s[("strom_connect_sink_partition_lag", part0)] == 4
    assert s[("strom_connect_sink_partition_committed_offset", part0)] == 12
    part1 = snk | {("topic", "t"), ("partition", "1")}
    assert ("strom_connect_sink_partition_lag", part1) not in s  # unknown: no series
    assert s[("strom_connect_worker_connectors", labels())] == 2
    assert s[("strom_connect_worker_tasks", labels())] == 2
    assert s[("strom_connect_worker_connector_startup_attempts_total", labels())] == 2
    assert s[("strom_connect_worker_task_startup_attempts_total", labels())] == 3
    assert s[("strom_connect_worker_task_startup_failures_total", labels())] == 1
    out_states = {state: s[("strom_connect_connector_status",
                            labels(connector="out", state=state))] for state in STATES}
    assert out_states == {state: float(state == "PAUSED") for state in STATES}
    assert ("strom_connect_worker_rebalancing", labels()) not in s


def test_an_unknown_state_still_shows_and_a_removed_task_is_gone() -> None:
    task = FakeTask("c", 0, SinkTaskMetrics(), state="DESTROYED")
    worker = FakeWorker([], [task])
    collector = ConnectCollector(worker)
    s = samples(collector)
    assert s[("strom_connect_task_status", labels(connector="c", task="0",
                                                  state="DESTROYED"))] == 1
    assert s[("strom_connect_task_status", labels(connector="c", task="0",
                                                  state="RUNNING"))] == 0
    worker.tasks.clear()
    assert not [key for key in samples(collector) if ("connector", "c") in key[1]]


def test_rebalance_gauges_and_registries_apart() -> None:
    one = ConnectCollector(FakeWorker(), lambda: RebalanceState(3, True, 7, False))
    two = ConnectCollector(FakeWorker(tasks=[FakeTask("x", 0, SourceTaskMetrics())]))
    s = samples(one)
    assert s[("strom_connect_worker_rebalances_completed_total", labels())] == 3
    assert s[("strom_connect_worker_rebalancing", labels())] == 1
    assert s[("strom_connect_worker_assignment_generation", labels())] == 7
    assert s[("strom_connect_worker_leader", labels())] == 0
    assert s[("strom_connect_worker_tasks", labels())] == 0
    assert samples(two)[("strom_connect_worker_tasks", labels())] == 1


def test_operator_counts_retries_failures_errors_and_skips() -> None:
    settings = ErrorSettings(tolerance_all=True, retry_timeout_ms=10_000, retry_delay_max_ms=1,
                             log_enable=True)
    operator = RetryWithToleranceOperator(settings, "c", 0)
    attempts = iter([RetriableException("busy"), RetriableException("busy"), None])

    def flaky() -> str:
        error = next(attempts)
        if error is not None:
            raise error
        return "ok"

    def bad() -> str:
        raise DataException("no")

    context = ProcessingContext("c", 0)
    assert asyncio.run(operator.execute(Stage.VALUE_CONVERTER, "X", flaky, context)) == (
        True, "ok")
    assert (operator.record_failures, operator.retries, operator.record_errors) == (2, 2, 0)
    assert asyncio.run(operator.execute(Stage.VALUE_CONVERTER, "X", bad, context)) == (
        False, None)
    assert (operator.record_failures, operator.record_errors, operator.records_skipped,
            operator.errors_logged) == (3, 1, 1, 1)
    strict = RetryWithToleranceOperator(ErrorSettings(), "c", 0)
    with pytest.raises(ToleranceExceeded):
        asyncio.run(strict.execute(Stage.VALUE_CONVERTER, "X", bad, context))
    assert (strict.record_failures, strict.record_errors, strict.records_skipped) == (1, 1, 0)
