"""The pure parts of the operations metrics: retention deletions attributed to their reasons,
the timestamp of the record at an offset (across markers, compacted gaps, compression), the
time lag's bounded and cached reads (and below the log start), the transaction coordinator's
ended and timed-out counts and open transactions, storage errors counted by the fetch handler
and merged with the engine's, and the rebalances (generations, group epochs) groups count."""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.core import Metric

from strom.broker.coordinator_runtime import ShardStatus
from strom.broker.handlers.fetch import read_failure
from strom.coordinator.group.coordinator import GroupCoordinator
from strom.coordinator.group.model import CommitRequest, GroupConfig, OffsetCommit
from strom.coordinator.transaction import (
    TransactionConfig,
    TransactionCoordinator,
    TransactionCounts,
)
from strom.observability.operations import StorageMeters, StorageMetersCollector
from strom.observability.time_lag import (
    MAX_READS_PER_REFRESH,
    TimeLag,
    lag_seconds,
    record_timestamp,
)
from strom.protocol.compression import GZIP
from strom.protocol.record_builder import build_batch
from strom.storage.api import LogDirFailure, PartitionOffsets, ReadResult, UnknownTopic
from strom.storage.meter import retention_reasons
from tests.unit.test_consumer_group_protocol import CONFIG, beat, hb
from tests.unit.test_group_coordinator import Harness

# -- retention reasons ------------------------------------------------------------------


@pytest.mark.parametrize(("log_start", "by_size", "by_time", "expected"), [
    (0, 0, 3, {"time": 3}),
    (0, 2, 0, {"size": 2}),
    (0, 4, 3, {"time": 3, "size": 1}),
    (5, 4, 3, {"time": 3, "size": 1, "log_start": 1}),
    (2, 0, 0, {"log_start": 2}),
    (0, 0, 0, {}),
])
def test_retention_reasons_in_kafkas_order(log_start: int, by_size: int, by_time: int,
                                           expected: dict[str, int]) -> None:
    reasons = retention_reasons(log_start, by_size, by_time)
    assert reasons == expected
    assert sum(reasons.values()) == max(log_start, by_size, by_time)


# -- the record at an offset ------------------------------------------------------------


def batch(base: int, stamps: list[int], **extra: Any) -> bytes:
    return build_batch([(None, b"v", (), ts) for ts in stamps], base_offset=base, **extra)


def test_record_timestamp_inside_a_batch() -> None:
    data = batch(10, [1000, 1005, 1010]) + batch(13, [2000])
    assert record_timestamp(data, 10) == 1000
    assert record_timestamp(data, 11) == 1005
    assert record_timestamp(data, 12) == 1010
    assert record_timestamp(data, 13) == 2000


def test_record_timestamp_in_a_compressed_batch() -> None:
    assert record_timestamp(batch(0, [100, 200, 300], compression=GZIP), 2) == 300


def test_record_timestamp_skips_markers_and_gaps() -> None:
    marker = build_batch([(b"\x00\x00\x00\x00", b"", (), 50)], base_offset=5, control=True)
    data = marker + batch(8, [700])  # offsets 6 and 7 compacted away
    assert record_timestamp(data, 5) == 700
    assert record_timestamp(data, 6) == 700


def test_record_timestamp_of_log_append_time_and_nothing() -> None:
    assert record_timestamp(batch(0, [1, 2], log_append_time=9000), 1) == 9000
    assert record_timestamp(b"", 0) is None
    assert record_timestamp(batch(0, [1])[:-5], 0) is None  # a partial batch


def test_lag_seconds_is_never_negative() -> None:
    assert lag_seconds(1_000, 61_000) == 60.0
    assert lag_seconds(70_000, 61_000) == 0.0


# -- the time lag's reads ---------------------------------------------------------------


class FakeLog:
    def __init__(self, engine: FakeEngine, topic: str) -> None:
        self.engine = engine
        self.topic = topic

    async def offsets(self) -> PartitionOffsets:
        start = self.engine.log_start
        return PartitionOffsets(start, 100, 100, 100)

    async def read(self, offset: int, max_bytes: int, min_one_batch: bool,
                   committed: bool = False) -> ReadResult:
        self.engine.reads.append((self.topic, offset))
        if self.engine.failing:
            raise LogDirFailure("the disk went")
        return ReadResult([batch(offset, [offset * 1000])], 1, 100, 0)


class FakeEngine:
    def __init__(self) -> None:
        self.reads: list[tuple[str, int]] = []
        self.failing = False
        self.log_start = 0

    def partition(self, topic: str, index: int) -> FakeLog:
        if topic == "gone":
            raise UnknownTopic(topic)
        return FakeLog(self, topic)


def groups_with(commits: dict[str, dict[str, int]]) -> Any:
    """A group runtime with one loaded shard: each group's committed offsets of topics'
    partition 0."""
    core = GroupCoordinator(GroupConfig())
    for group, offsets in commits.items():
        core.commit_offsets(CommitRequest(group, -1, "", None, tuple(
            OffsetCommit(topic, 0, offset, -1, None) for topic, offset in offsets.items())), 0)
    shard = SimpleNamespace(status=ShardStatus.ACTIVE, core=core)
    return SimpleNamespace(runtime=SimpleNamespace(shards=lambda: [shard]))


def test_time_lag_reads_each_offset_once_and_is_0_at_the_end() -> None:
    engine = FakeEngine()
    groups = groups_with({"g": {"a": 5, "b": 100}, "h": {"a": 5}})
    ends = {("a", 0): 100, ("b", 0): 100}
    lag = TimeLag(groups, engine, lambda: ends, lambda: 65_000)  # type: ignore[arg-type]
    asyncio.run(lag.refresh())
    assert lag.lags == {("g", "a", 0): 60.0, ("g", "b", 0): 0.0, ("h", "a", 0): 60.0}
    assert engine.reads == [("a", 5)]  # one read for both groups; none at the end
    asyncio.run(lag.refresh())
    assert engine.reads == [("a", 5)]  # cached


def test_time_lag_below_the_log_start_is_the_oldest_records() -> None:
    engine = FakeEngine()
    engine.log_start = 20  # retention deleted what the group did not consume
    lag = TimeLag(groups_with({"g": {"a": 5}}), engine,  # type: ignore[arg-type]
                  lambda: {("a", 0): 100}, lambda: 80_000)
    asyncio.run(lag.refresh())
    assert engine.reads == [("a", 20)]
    assert lag.lags == {("g", "a", 0): 60.0}


def test_time_lag_reads_are_bounded_per_refresh() -> None:
    engine = FakeEngine()
    topics = {f"t{i:03}": 1 for i in range(MAX_READS_PER_REFRESH + 10)}
    ends = {(t, 0): 10 for t in topics}
    lag = TimeLag(groups_with({"g": topics}), engine, lambda: ends,  # type: ignore[arg-type]
                  lambda: 0)
    asyncio.run(lag.refresh())
    assert len(engine.reads) == MAX_READS_PER_REFRESH
    assert len(lag.lags) == MAX_READS_PER_REFRESH
    asyncio.run(lag.refresh())  # the rest, and no read again
    assert len(engine.reads) == len(topics)
    assert len(lag.lags) == len(topics)


def test_time_lag_without_a_record_has_no_series_and_is_read_again() -> None:
    engine = FakeEngine()
    engine.failing = True
    ends = {("a", 0): 100, ("gone", 0): 100}
    lag = TimeLag(groups_with({"g": {"a": 5, "gone": 1}}), engine,  # type: ignore[arg-type]
                  lambda: ends, lambda: 0)
    asyncio.run(lag.refresh())
    assert lag.lags == {}
    engine.failing = False
    asyncio.run(lag.refresh())
    assert lag.lags == {("g", "a", 0): 0.0}  # read again: the record is from the future
    assert engine.reads == [("a", 5), ("a", 5)]


# -- transactions -----------------------------------------------------------------------


def test_transaction_counts_commits_aborts_and_timeouts() -> None:
    ids = itertools.count(1000)
    counts = TransactionCounts()
    core = TransactionCoordinator(TransactionConfig(allocate_producer_id=lambda: next(ids)),
                                  counts)
    step = core.init_producer_id("tx", 1000, -1, -1, 0)
    pid, epoch = step.result.producer_id, step.result.producer_epoch
    core.add_partitions("tx", pid, epoch, [("t", 0)], 0)
    assert core.open_transactions() == 1
    markers = core.end_txn("tx", pid, epoch, True, 10).markers
    assert core.open_transactions() == 1  # ending: markers being written
    assert (counts.committed, counts.aborted) == (0, 0)
    core.markers_written("tx", markers[0].producer_id, markers[0].producer_epoch, 20)
    assert (core.open_transactions(), counts.committed, counts.aborted) == (0, 1, 0)
    epoch = markers[0].producer_epoch
    core.end_txn("tx", pid, epoch, False, 30)  # nothing added: completes at once
    assert (counts.committed, counts.aborted, counts.timed_out) == (1, 1, 0)
    core.add_partitions("tx", pid, epoch + 1, [("t", 0)], 40)
    core.tick(1000)
    assert counts.timed_out == 0  # not past its timeout yet
    markers = core.tick(1041).markers
    assert counts.timed_out == 1
    core.markers_written("tx", markers[0].producer_id, markers[0].producer_epoch, 1050)
    assert (core.open_transactions(), counts.committed, counts.aborted,
            counts.timed_out) == (0, 1, 2, 1)


# -- storage errors ---------------------------------------------------------------------


class Counted:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fetched(self, topic: str, partition: int, size: int) -> None: ...

    def storage_error(self, operation: str) -> None:
        self.errors.append(operation)


def test_a_failed_read_counts_a_storage_error_but_a_moved_partition_does_not() -> None:
    meter = Counted()
    read_failure(LogDirFailure("the disk went"), "t", 0, meter)
    read_failure(OSError("EIO"), "t", 0, meter)
    read_failure(UnknownTopic("t"), "t", 0, meter)
    assert meter.errors == ["read", "read"]


def samples_of(families: list[Metric], name: str) -> dict[str, float]:
    family = next(f for f in families if f.name == name)
    return {",".join(s.labels.values()): s.value for s in family.samples}


def test_storage_errors_of_the_engine_and_of_the_handlers_add_up() -> None:
    meters = StorageMeters()
    meters.failed("flush")
    meters.failed("append")
    meters.retention_deleted("time", 2)
    meters.retention_deleted("time", 1)
    meters.cleaned(300)
    collector = StorageMetersCollector(meters, {"append": 2, "read": 1})
    families = list(collector.collect())
    assert samples_of(families, "strom_storage_errors") == {
        "append": 3, "flush": 1, "read": 1}
    assert samples_of(families, "strom_log_retention_deletions") == {"time": 3}
    assert samples_of(families, "strom_log_cleaner_runs") == {"": 1}
    assert samples_of(families, "strom_log_cleaner_removed_bytes") == {"": 300}


# -- group rebalances -------------------------------------------------------------------


def test_rebalances_count_classic_generations() -> None:
    h = Harness()
    a, b = h.stable_group(2)
    assert h.c.rebalances("g") == 1
    h.new_member()  # a third member: a rebalance that ends when all rejoin
    h.join(a)
    step = h.join(b)
    assert step.result is not None and step.result.generation_id == 2
    assert h.c.rebalances("g") == 2
    assert h.c.rebalances("unknown") == 0


def test_rebalances_count_kip848_group_epochs() -> None:
    coord = GroupCoordinator(CONFIG)
    assert hb(coord, beat("a", 0)).member_epoch == 1
    assert coord.rebalances("g") == 1
    assert hb(coord, beat("b", 0)).member_epoch == 2
    assert coord.rebalances("g") == 2
    hb(coord, beat("b", 2, owned=()))  # a heartbeat that changes nothing
    assert coord.rebalances("g") == 2
