"""Storage and transactions: what the engines count while metrics are on (`StorageMeters`,
the engine's `MeterSlot.meter`: plain numbers, bumped on the event loop) and what is read at
scrape time (the transaction coordinator's open transactions and ended-transaction counts, the
partitions' producer-id states)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from strom.broker.coordinator_runtime import ShardStatus
from strom.broker.txn_runtime import TransactionRuntime
from strom.observability.metrics import Histogram

# An append: 20 µs (the file engine, no fsync) to 10 s (a PostgreSQL commit behind an outage).
STORAGE_BUCKETS: Final = (0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                          0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class StorageMeters:
    """Appends, flushes, cleaner runs, retention deletions and storage errors
    (strom.storage.meter.StorageMeter; the produce and fetch handlers' storage errors come
    through TopicMeters.storage_error)."""

    def __init__(self) -> None:
        self.append = Histogram(STORAGE_BUCKETS)
        self.flush = Histogram(STORAGE_BUCKETS)
        self.cleaner_runs = 0
        self.cleaner_removed_bytes = 0
        self.retention: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        # Once per partition of each Produce: the histogram's own method, one call less.
        self.appended: Callable[[float], None] = self.append.observe

    def flushed(self, seconds: float) -> None:
        self.flush.observe(seconds)

    def cleaned(self, removed_bytes: int) -> None:
        self.cleaner_runs += 1
        self.cleaner_removed_bytes += removed_bytes

    def retention_deleted(self, reason: str, count: int) -> None:
        self.retention[reason] = self.retention.get(reason, 0) + count

    def failed(self, operation: str) -> None:
        self.errors[operation] = self.errors.get(operation, 0) + 1


class StorageFamilies:
    def __init__(self) -> None:
        self.append = HistogramMetricFamily(
            "strom_storage_append_seconds", "An append to a partition's log, until written "
            "(and durable where the engine waits: an fsync with flush.messages=1, a "
            "PostgreSQL commit); Produce, transaction markers and coordinator writes.")
        self.flush = HistogramMetricFamily(
            "strom_storage_flush_seconds", "An fsync of a segment (local engine) or a group "
            "commit of appends (PostgreSQL engine).")
        self.cleaner_runs = CounterMetricFamily(
            "strom_log_cleaner_runs", "Partitions the log cleaner compacted (one per "
            "partition cleaned).")
        self.cleaner_bytes = CounterMetricFamily(
            "strom_log_cleaner_removed_bytes", "Bytes the log cleaner's compactions removed.")
        self.retention = CounterMetricFamily(
            "strom_log_retention_deletions", "Segments (local engine) or batch rows "
            "(PostgreSQL engine) retention deleted, by reason: time (retention.ms), size "
            "(retention.bytes), log_start (below a DeleteRecords' log start offset).",
            labels=("reason",))
        self.errors = CounterMetricFamily(
            "strom_storage_errors", "Storage failures, by operation: Produce appends "
            "(append) and Fetch reads (read) answered KAFKA_STORAGE_ERROR, failed fsyncs "
            "(flush).",
            labels=("operation",))

    def all(self) -> list[Metric]:
        return [self.append, self.flush, self.cleaner_runs, self.cleaner_bytes,
                self.retention, self.errors]


class StorageMetersCollector(Collector):
    def __init__(self, meters: StorageMeters, handler_errors: Mapping[str, int]) -> None:
        """`handler_errors`: the storage errors the produce and fetch handlers counted."""
        self.meters = meters
        self.handler_errors = handler_errors

    def describe(self) -> Iterator[Metric]:
        return iter(StorageFamilies().all())

    def collect(self) -> Iterator[Metric]:
        f = StorageFamilies()
        m = self.meters
        m.append.add_to(f.append, [])
        m.flush.add_to(f.flush, [])
        f.cleaner_runs.add_metric([], m.cleaner_runs)
        f.cleaner_bytes.add_metric([], m.cleaner_removed_bytes)
        for reason, count in sorted(m.retention.items()):
            f.retention.add_metric([reason], count)
        errors = dict(m.errors)
        for operation, count in self.handler_errors.items():
            errors[operation] = errors.get(operation, 0) + count
        for operation, count in sorted(errors.items()):
            f.errors.add_metric([operation], count)
        return iter(f.all())


class TransactionFamilies:
    def __init__(self) -> None:
        self.producer_ids = GaugeMetricFamily(
            "strom_producer_ids_active", "Producer-id states (idempotent and transactional "
            "producers not yet expired) this broker holds for its partitions, summed over "
            "them.")
        self.open = GaugeMetricFamily(
            "strom_transactions_open", "Transactions under way (Ongoing, or ending: "
            "markers being written) whose coordinator is this broker.")
        self.ended = CounterMetricFamily(
            "strom_transactions", "Transactions this broker's coordinator completed, by "
            "result (commit, abort: by EndTxn or by the coordinator).", labels=("result",))
        self.timeouts = CounterMetricFamily(
            "strom_transaction_timeouts", "Transactions the coordinator aborted because "
            "their transaction.timeout.ms passed.")

    def all(self) -> list[Metric]:
        return [self.producer_ids, self.open, self.ended, self.timeouts]


class TransactionCollector(Collector):
    def __init__(self, transactions: TransactionRuntime,
                 producer_ids: Callable[[], int]) -> None:
        """`producer_ids`: the producer-id states of the partitions, as of the last
        storage refresh."""
        self.transactions = transactions
        self.producer_ids = producer_ids

    def describe(self) -> Iterator[Metric]:
        return iter(TransactionFamilies().all())

    def collect(self) -> Iterator[Metric]:
        f = TransactionFamilies()
        f.producer_ids.add_metric([], self.producer_ids())
        f.open.add_metric([], sum(shard.core.open_transactions()
                                  for shard in self.transactions.runtime.shards()
                                  if shard.status is ShardStatus.ACTIVE))
        counts = self.transactions.counts
        f.ended.add_metric(["commit"], counts.committed)
        f.ended.add_metric(["abort"], counts.aborted)
        f.timeouts.add_metric([], counts.timed_out)
        return iter(f.all())
