"""Consumer groups at scrape time: each group's state and members, its committed offsets and
their lag (the partition's log end offset minus the committed offset), read from the group
coordinator shards this broker serves, without touching the request path."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from strom.broker.coordinator_runtime import ShardStatus
from strom.broker.group_runtime import GroupRuntime
from strom.coordinator.group.coordinator import CONSUMER_GROUP_TYPE, GroupCoordinator
from strom.coordinator.group.lag_health import GROUP_STATUSES, LagHistory

# (topic, partition) -> log end offset, for the partitions this broker serves.
LogEnds = Callable[[], Mapping[tuple[str, int], int]]
# (group, topic, partition) -> seconds.
TimeLags = Callable[[], Mapping[tuple[str, str, int], float]]


class GroupFamilies:
    def __init__(self) -> None:
        self.members = GaugeMetricFamily(
            "strom_consumer_group_members", "Members of the consumer group (classic or "
            "KIP-848) whose coordinator this broker is.", labels=("group",))
        self.state = GaugeMetricFamily(
            "strom_consumer_group_state", "1 for the group's state (Stable, "
            "PreparingRebalance, CompletingRebalance, Empty, Dead; KIP-848: Assigning, "
            "Reconciling).", labels=("group", "state"))
        self.committed = GaugeMetricFamily(
            "strom_consumer_group_committed_offset", "The group's committed offset of the "
            "partition.", labels=("group", "topic", "partition"))
        self.lag = GaugeMetricFamily(
            "strom_consumer_group_lag", "The partition's log end offset minus the group's "
            "committed offset (partitions this broker serves).",
            labels=("group", "topic", "partition"))
        self.status = GaugeMetricFamily(
            "strom_consumer_group_status", "The group's consumer-lag health (docs/operations.md"
            "): 1 for its status (OK, WARN, ERR), 0 for the others.",
            labels=("group", "status"))
        self.partition_status = GaugeMetricFamily(
            "strom_consumer_group_partition_status", "1, labelled with the partition's "
            "consumer-lag health (OK, WARN, STOP, STALL, REWIND; docs/operations.md).",
            labels=("group", "topic", "partition", "status"))

        self.rebalances = CounterMetricFamily(
            "strom_consumer_group_rebalances", "Rebalances the group began while this broker "
            "coordinated it: classic generations and KIP-848 group epochs bumped.",
            labels=("group",))
        self.time_lag = GaugeMetricFamily(
            "strom_consumer_group_time_lag_seconds", "How old the record at the group's "
            "committed offset is (now minus its timestamp): the age of the oldest record "
            "not consumed; 0 when caught up (partitions this broker serves).",
            labels=("group", "topic", "partition"))

    def all(self) -> list[Metric]:
        return [self.members, self.state, self.committed, self.lag, self.status,
                self.partition_status, self.rebalances, self.time_lag]


def group_members(core: GroupCoordinator, group_id: str, group_type: str) -> int:
    if group_type == CONSUMER_GROUP_TYPE:
        return sum(len(d.members) for d in core.consumer_describe([group_id]))
    return sum(len(d.members) for d in core.describe([group_id]))


class GroupCollector(Collector):
    def __init__(self, groups: GroupRuntime, log_ends: LogEnds,
                 high_watermarks: LogEnds | None = None,
                 time_lags: TimeLags | None = None) -> None:
        """`high_watermarks`: what the consumer-lag health measures the lag against (the
        log end offsets if not given); `time_lags`: each committed partition's time lag, as
        of the last refresh (strom.observability.time_lag)."""
        self.groups = groups
        self.log_ends = log_ends
        self.high_watermarks = high_watermarks or log_ends
        self.time_lags = time_lags or dict

    def describe(self) -> Iterator[Metric]:
        return iter(GroupFamilies().all())

    def collect(self) -> Iterator[Metric]:
        f = GroupFamilies()
        ends = self.log_ends()
        watermarks = self.high_watermarks()
        now_ms = self.groups.runtime.clock()
        seen: dict[str, list[tuple[str, int]]] = {}
        for shard in self.groups.runtime.shards():
            if shard.status is ShardStatus.ACTIVE:
                seen.update(self.collect_shard(f, shard.core, ends))
        history = self.groups.lag_history
        for group in history.groups():  # offsets deleted or expired, or the shard moved
            if group in seen:
                history.keep(group, seen[group])
            else:
                history.drop_group(group)
        for group in sorted(seen):
            collect_health(f, history, group, watermarks, now_ms)
        for (group, topic, partition), seconds in sorted(self.time_lags().items()):
            f.time_lag.add_metric([group, topic, str(partition)], seconds)
        return iter(f.all())

    @staticmethod
    def collect_shard(f: GroupFamilies, core: GroupCoordinator,
                      ends: Mapping[tuple[str, int], int]) -> dict[str, list[tuple[str, int]]]:
        """The shard's groups' families; returns each group's partitions with offsets."""
        groups: dict[str, list[tuple[str, int]]] = {}
        for listing in core.list_groups():
            group = listing.group_id
            f.state.add_metric([group, listing.state], 1)
            f.members.add_metric([group], group_members(core, group, listing.group_type))
            f.rebalances.add_metric([group], core.rebalances(group))
            _, committed = core.fetch_offsets(group, None)
            for (topic, partition), offset in sorted(committed.items()):
                labels = [group, topic, str(partition)]
                f.committed.add_metric(labels, offset.offset)
                end = ends.get((topic, partition))
                if end is not None and offset.offset >= 0:
                    f.lag.add_metric(labels, max(end - offset.offset, 0))
            groups[group] = list(committed)
        return groups


def collect_health(f: GroupFamilies, history: LagHistory, group: str,
                   watermarks: Mapping[tuple[str, int], int], now_ms: int) -> None:
    """The group's consumer-lag health: its status, and each partition's it has a window of
    commits for."""
    health = history.evaluate(group, watermarks, now_ms)
    for status in GROUP_STATUSES:
        f.status.add_metric([group, str(status)], 1 if status is health.status else 0)
    for p in health.partitions:
        f.partition_status.add_metric([group, p.topic, str(p.partition), str(p.status)], 1)
