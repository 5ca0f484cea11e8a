"""The connect worker's metrics: Kafka Connect's JMX metrics (connector-task-metrics,
source-task-metrics, sink-task-metrics, task-error-metrics, connect-worker-metrics and
connect-worker-rebalance-metrics) under Prometheus names, served at the worker's `/metrics`.

Hot path: the task loops bump plain integer attributes of a `SourceTaskMetrics` /
`SinkTaskMetrics` (once per batch where there is a batch) and of their error operator; nothing
is locked and no dict is looked up per record. `ConnectCollector` reads them, and the tasks
the worker runs now, at scrape time: a stopped or deleted task's series are gone with it.
Each worker has its own CollectorRegistry (never prometheus-client's global one), so several
workers in one process stay apart. docs/connect.md ("Metrics") lists every metric.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from prometheus_client.core import Metric

PREFIX: Final = "strom_connect_"
# Batch and commit times: 1 ms to 60 s.
BATCH_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0, 30.0, 60.0)
# Every state a status gauge reports (one series each, 1 for the current one).
STATES: Final = ("UNASSIGNED", "RUNNING", "PAUSED", "STOPPED", "FAILED", "RESTARTING")
TASK_LABELS: Final = ["connector", "task"]
PARTITION_LABELS: Final = ["connector", "task", "topic", "partition"]


class Histogram:
    """Bucket counts (not cumulative; the last one is +Inf) and the sum of what was seen."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = BATCH_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: upper bounds are inclusive
        self.total += value

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        buckets = []
        running = 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            buckets.append((bound, running))
        family.add_metric(labels, buckets, self.total)


class TaskMetrics:
    """connector-task-metrics: offset commits (and their time)."""

    __slots__ = ("commit_failures", "commit_seconds", "commit_skips", "commits")

    def __init__(self) -> None:
        self.commits = 0
        self.commit_failures = 0
        self.commit_skips = 0
        self.commit_seconds = Histogram()


class SourceTaskMetrics(TaskMetrics):
    """source-task-metrics. Active records: polled, not yet written nor dropped."""

    __slots__ = ("poll_batch_seconds", "records_dropped", "records_polled", "records_written")

    def __init__(self) -> None:
        super().__init__()
        self.records_polled = 0
        self.records_written = 0
        self.records_dropped = 0  # dropped by a transform or predicate, or failed and tolerated
        self.poll_batch_seconds = Histogram()

    @property
    def records_active(self) -> int:
        return max(0, self.records_polled - self.records_written - self.records_dropped)


class SinkTaskMetrics(TaskMetrics):
    """sink-task-metrics (the per-partition numbers are the task's, see `SinkPartitions`)."""

    __slots__ = ("put_batch_seconds", "records_put", "records_read")

    def __init__(self) -> None:
        super().__init__()
        self.records_read = 0
        self.records_put = 0
        self.put_batch_seconds = Histogram()


class ErrorCounts(Protocol):
    """task-error-metrics, as RetryWithToleranceOperator keeps them."""
    record_failures: int
    record_errors: int
    records_skipped: int
    retries: int
    errors_logged: int
    dlq_requests: int
    dlq_failures: int


class Partition(Protocol):
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class PartitionNumbers:
    """A sink task's partition at scrape time; None where unknown."""
    lag: int | None
    committed: int | None


class TaskView(Protocol):
    """What the collector reads of a worker task (strom.connect.worker.WorkerTask)."""
    connector: str
    task_id: int

    @property
    def state(self) -> str: ...

    @property
    def metrics(self) -> TaskMetrics: ...

    @property
    def errors(self) -> ErrorCounts: ...  # the RetryWithToleranceOperator

    def partition_numbers(self) -> Mapping[tuple[str, int], PartitionNumbers]: ...

    def records_active(self) -> int: ...  # a sink task's (a source's are its metrics')


class ConnectorView(Protocol):
    name: str

    @property
    def state(self) -> str: ...


@dataclass(slots=True)
class WorkerCounts:
    """connect-worker-metrics' startup counts (restarts are startups too)."""
    connector_startup_attempts: int = 0
    connector_startup_failures: int = 0
    task_startup_attempts: int = 0
    task_startup_failures: int = 0


@dataclass(frozen=True, slots=True)
class RebalanceState:
    """connect-worker-rebalance-metrics of a distributed worker."""
    completed: int
    rebalancing: bool
    generation: int
    leader: bool


class WorkerView(Protocol):
    counts: WorkerCounts

    def connector_views(self) -> Iterable[ConnectorView]: ...

    def task_views(self) -> Iterable[TaskView]: ...


def _counter(name: str, doc: str, labels: list[str] | None = None) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, labels=TASK_LABELS if labels is None
                               else labels)


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, labels=TASK_LABELS if labels is None
                             else labels)


def _histogram(name: str, doc: str) -> HistogramMetricFamily:
    return HistogramMetricFamily(PREFIX + name, doc, labels=TASK_LABELS)


def _states(family: GaugeMetricFamily, labels: list[str], state: str) -> None:
    for known in STATES:
        family.add_metric([*labels, known], 1.0 if known == state else 0.0)
    if state not in STATES:
        family.add_metric([*labels, state], 1.0)


# (attribute of the SourceTaskMetrics / SinkTaskMetrics, metric name, help)
SOURCE_COUNTERS: Final = (
    ("records_polled", "source_records_polled",
     "Records the source task's poll() returned (Kafka's source-record-poll-total)."),
    ("records_written", "source_records_written",
     "Records written to Kafka (acknowledged) after transforms and predicates (Kafka's "
     "source-record-write-total)."),
)
SINK_COUNTERS: Final = (
    ("records_read", "sink_records_read",
     "Records the sink task's consumer read from Kafka (Kafka's sink-record-read-total)."),
    ("records_put", "sink_records_put",
     "Records handed to put() after converters and transforms (Kafka's "
     "sink-record-send-total)."),
)
COMMIT_COUNTERS: Final = (
    ("commits", "offset_commits",
     "Offset commits completed (Kafka's offset-commit-completion-total)."),
    ("commit_failures", "offset_commit_failures",
     "Offset commits that failed (Kafka's offset-commit-failure-percentage as a count)."),
    ("commit_skips", "offset_commit_skips",
     "Sink offset commits skipped: nothing to commit for the assigned partitions (Kafka's "
     "offset-commit-skip-total)."),
)
ERROR_COUNTERS: Final = (
    ("record_failures", "task_record_failures",
     "Failed attempts at processing a record, retries included (Kafka's "
     "total-record-failures)."),
    ("record_errors", "task_record_errors",
     "Records whose processing failed once retries were exhausted, tolerated or not (Kafka's "
     "total-record-errors)."),
    ("records_skipped", "task_records_skipped",
     "Records skipped because of an error under errors.tolerance=all (Kafka's "
     "total-records-skipped)."),
    ("retries", "task_retries",
     "Operations retried after a RetriableException (Kafka's total-retries)."),
    ("errors_logged", "task_errors_logged",
     "Errors written to the log, errors.log.enable=true (Kafka's total-errors-logged)."),
    ("dlq_requests", "task_dlq_produce_requests",
     "Records sent to the dead letter queue (Kafka's deadletterqueue-produce-requests)."),
    ("dlq_failures", "task_dlq_produce_failures",
     "Records the dead letter queue failed to take (Kafka's "
     "deadletterqueue-produce-failures)."),
)


class ConnectCollector(Collector):
    """The worker's connectors and tasks, as they are at scrape time."""

    def __init__(self, worker: WorkerView,
                 rebalance: Callable[[], RebalanceState] | None = None) -> None:
        self.worker = worker
        self.rebalance = rebalance

    def collect(self) -> Iterator[Metric]:
        connectors = list(self.worker.connector_views())
        tasks = list(self.worker.task_views())
        yield from self._worker(connectors, tasks)
        yield from self._tasks(tasks)
        if self.rebalance is not None:
            yield from self._rebalance(self.rebalance())

    def _worker(self, connectors: list[ConnectorView], tasks: list[TaskView]
                ) -> Iterator[Metric]:
        counts = self.worker.counts
        count = GaugeMetricFamily(PREFIX + "worker_connectors",
                                  "Connectors this worker runs (Kafka's connector-count).")
        count.add_metric([], len(connectors))
        yield count
        count = GaugeMetricFamily(PREFIX + "worker_tasks",
                                  "Tasks this worker runs (Kafka's task-count).")
        count.add_metric([], len(tasks))
        yield count
        for attr, name, doc in (
                ("connector_startup_attempts", "worker_connector_startup_attempts",
                 "Connector starts, restarts included (Kafka's "
                 "connector-startup-attempts-total)."),
                ("connector_startup_failures", "worker_connector_startup_failures",
                 "Connector starts that failed (Kafka's connector-startup-failure-total)."),
                ("task_startup_attempts", "worker_task_startup_attempts",
                 "Task starts, restarts included (Kafka's task-startup-attempts-total)."),
                ("task_startup_failures", "worker_task_startup_failures",
                 "Task starts that failed before the task ran (Kafka's "
                 "task-startup-failure-total).")):
            counter = CounterMetricFamily(PREFIX + name, doc)
            counter.add_metric([], getattr(counts, attr))
            yield counter
        status = _gauge("connector_status", "1 for the connector's state, 0 for the others "
                        "(Kafka's connector-metrics status).", ["connector", "state"])
        for connector in connectors:
            _states(status, [connector.name], connector.state)
        yield status
        status = _gauge("task_status", "1 for the task's state, 0 for the others (Kafka's "
                        "connector-task-metrics status).", [*TASK_LABELS, "state"])
        for task in tasks:
            _states(status, [task.connector, str(task.task_id)], task.state)
        yield status

    def _tasks(self, tasks: list[TaskView]) -> Iterator[Metric]:
        sources = [t for t in tasks if isinstance(t.metrics, SourceTaskMetrics)]
        sinks = [t for t in tasks if isinstance(t.metrics, SinkTaskMetrics)]
        for group, counters in ((sources, SOURCE_COUNTERS), (sinks, SINK_COUNTERS),
                                (tasks, COMMIT_COUNTERS)):
            for attr, name, doc in counters:
                counter = _counter(name, doc)
                for task in group:
                    counter.add_metric(_labels(task), getattr(task.metrics, attr))
                yield counter
        for attr, name, doc in ERROR_COUNTERS:
            counter = _counter(name, doc)
            for task in tasks:
                counter.add_metric(_labels(task), getattr(task.errors, attr))
            yield counter
        for group, attr, name, doc in (
                (sources, "poll_batch_seconds", "source_poll_batch_seconds",
                 "Time of the source task's poll() calls that returned records (Kafka's "
                 "poll-batch-avg/max-time-ms)."),
                (sinks, "put_batch_seconds", "sink_put_batch_seconds",
                 "Time of the sink task's put() calls (Kafka's put-batch-avg/max-time-ms)."),
                (tasks, "commit_seconds", "offset_commit_seconds",
                 "Time of the offset commits (Kafka's offset-commit-avg/max-time-ms).")):
            histogram = _histogram(name, doc)
            for task in group:
                getattr(task.metrics, attr).add_to(histogram, _labels(task))
            yield histogram
        for group, name, doc in (
                (sources, "source_records_active",
                 "Records polled and not yet written to Kafka (Kafka's "
                 "source-record-active-count)."),
                (sinks, "sink_records_active",
                 "Records read and not yet committed (Kafka's sink-record-active-count).")):
            gauge = _gauge(name, doc)
            for task in group:
                metrics = task.metrics
                gauge.add_metric(_labels(task), metrics.records_active
                                 if isinstance(metrics, SourceTaskMetrics)
                                 else task.records_active())
            yield gauge
        yield from self._partitions(sinks)

    @staticmethod
    def _partitions(sinks: list[TaskView]) -> Iterator[Metric]:
        lag = _gauge("sink_partition_lag", "The high watermark of an assigned partition minus "
                     "the position of the sink task's consumer (the consumer's records-lag).",
                     PARTITION_LABELS)
        committed = _gauge("sink_partition_committed_offset", "The offset the sink task last "
                           "committed for an assigned partition (the next one to read).",
                           PARTITION_LABELS)
        for task in sinks:
            for (topic, partition), numbers in sorted(task.partition_numbers().items()):
                labels = [*_labels(task), topic, str(partition)]
                if numbers.lag is not None:
                    lag.add_metric(labels, numbers.lag)
                if numbers.committed is not None:
                    committed.add_metric(labels, numbers.committed)
        yield lag
        yield committed

    @staticmethod
    def _rebalance(state: RebalanceState) -> Iterator[Metric]:
        for name, doc, value in (
                ("worker_rebalances_completed", "Assignments of the cluster this worker "
                 "applied (Kafka's completed-rebalances-total).", state.completed),):
            counter = CounterMetricFamily(PREFIX + name, doc)
            counter.add_metric([], value)
            yield counter
        for name, doc, value in (
                ("worker_rebalancing", "1 while the worker's group rebalances or it waits for "
                 "an assignment that names it (Kafka's rebalancing).", int(state.rebalancing)),
                ("worker_assignment_generation", "The generation of the cluster's assignment "
                 "this worker applied last (Kafka's epoch).", state.generation),
                ("worker_leader", "1 while this worker leads the cluster (Kafka's "
                 "leader-name).", int(state.leader))):
            gauge = GaugeMetricFamily(PREFIX + name, doc)
            gauge.add_metric([], value)
            yield gauge


def _labels(task: TaskView) -> list[str]:
    return [task.connector, str(task.task_id)]


def make_registry(collector: ConnectCollector) -> CollectorRegistry:
    """A registry of the worker's own (not prometheus-client's global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
