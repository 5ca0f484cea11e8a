"""Renders docs/metrics.md from a live registry: `python -m strom.observability.metrics_doc`
(`--write` to update the file; a unit test fails when it is stale).

Every metric is exercised once here so that its labels show in the samples; a metric that
has none after that is an error (add it to `exercise`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from prometheus_client.core import Metric

from strom.broker.coordinator_runtime import ShardStatus
from strom.coordinator.group.coordinator import GroupCoordinator
from strom.coordinator.group.lag_health import Commit, LagHistory
from strom.coordinator.group.model import CommitRequest, GroupConfig, OffsetCommit
from strom.coordinator.transaction import (
    TransactionConfig,
    TransactionCoordinator,
    TransactionCounts,
)
from strom.observability.collectors import PartitionSample, ServerCollector, StorageCollector
from strom.observability.groups import GroupCollector
from strom.observability.metrics import BrokerMetrics
from strom.observability.operations import (
    StorageMeters,
    StorageMetersCollector,
    TransactionCollector,
)

HEADER = """# Metrics

Generated from the broker's registry by `python -m strom.observability.metrics_doc --write`;
a unit test fails when this file is stale.

`strom serve --http HOST:PORT` (or the setting `http.listeners=HOST:PORT,...`) serves, on the
broker's own event loop:

| path | answer |
|---|---|
| `/metrics` | every metric below, in Prometheus' text format (0.0.4) |
| `/healthz` | 200 `ok` while the process serves |
| `/readyz` | 200 once ready (below); else 503 with `{"ready": false, "reason": "..."}` |

Ready means: the broker finished starting, its storage answers (a metadata read within 2 s)
and every coordinator shard it owns (`__consumer_offsets`, `__transaction_state`) is loaded.

GET and HEAD only; any other path is 404. Without `http.listeners` nothing listens and no
metric is kept (the request path pays nothing).

What is measured, and how:
- **Requests** are counted when their handling starts, by API name and version; a version
  strom does not serve is labelled `unsupported`, an API key it does not know `unknown`.
- **Errors** are the error codes of the answers, by Kafka's name (`NOT_LEADER_OR_FOLLOWER`):
  the top-level `error_code` of any API's answer, and for Produce and Fetch also every
  partition's; a request whose handling failed counts the error its answer carries
  (`UNKNOWN_SERVER_ERROR`, or the coordinator's), an unserved version `UNSUPPORTED_VERSION`.
  Per-entity error codes of other APIs (a CreateTopics' topics) are not counted yet.
- **Latency**: *queue* runs from the frame read off the socket until its handling starts
  (waiting behind earlier requests of the connection, and a quota's mute); *handle* is
  decoding, the handler with every wait it makes (a long-polling Fetch, an fsync, a PostgreSQL
  commit) and encoding; *send* is writing the answer until the socket drained. Produce
  requests of one connection overlap, so their queue times are short and their answers wait
  for the ones before them (in *handle* of the later one).
- **Bytes** are whole frames with their 4-byte size prefix.
- **Per partition**: messages and bytes in count appends (not an idempotent producer's
  duplicates); bytes out count the record bytes Fetch answers carry (before a quota throttle
  empties a throttled answer). Offsets, sizes and segment counts are read from the storage at
  scrape time, for the partitions this broker serves; series of deleted topics are dropped.
- **Consumer groups** are read at scrape time from the group coordinator shards this broker
  has loaded: state, members, committed offsets, and the lag of each committed partition
  this broker serves (log end offset minus committed offset; none for partitions another
  broker leads).
- **Consumer-lag health** (`strom_consumer_group_status`, `..._partition_status`) is the
  evaluation of docs/operations.md ("Consumer-lag health") over each group partition's window
  of its last commits, which the coordinator keeps in memory: the group's series carry every
  status (OK, WARN, ERR), 1 for the current one and 0 for the others, so
  `strom_consumer_group_status{status="ERR"} == 1` alerts; a partition has one series, its
  status (OK, WARN, STOP, STALL, REWIND) as the label, value 1.
- **Consumer-group rebalances** count the classic generations and KIP-848 group epochs a
  group began while this broker coordinated it (a coordinator moving starts them again).
  **Time lag** is now minus the timestamp of the record at the committed offset (the first
  data record at or after it), read through the storage at scrape time: cached per (topic,
  partition, offset), at most 100 new reads a scrape (the rest follow at the next); 0 when
  the committed offset is at the high watermark; no series until the record was read.
- **Storage** (the local and PostgreSQL engines; none with `memory:`): *append* times every
  append (Produce, transaction markers, coordinator writes) until written, and durable where
  the engine waits for that; *flush* is an fsync (a rolled segment, or flush.messages /
  flush.ms) on the local engine and a group commit's statement on PostgreSQL. Cleaner runs
  count partitions compacted; retention deletions count segments (local) or batch rows
  (PostgreSQL). Storage errors: appends and reads answered KAFKA_STORAGE_ERROR, and failed
  fsyncs.
- **Transactions** are the transaction coordinator's on this broker: open ones are read at
  scrape time from its loaded shards; commits, aborts and timeouts are counted when a
  transaction completes (its markers written), for the broker's lifetime. Active producer
  ids sum the producer-id states of the partitions this broker serves.
- **Process** metrics (`process_*`) are prometheus-client's process collector (Linux).
- Counts are kept as plain numbers on the event loop (no lock per request) and turned into
  Prometheus families at scrape time, so counters have no `_created` series.

| metric | type | labels | meaning |
|---|---|---|---|
"""


def exercise(metrics: BrokerMetrics) -> None:
    """Touches every metric once, with sample label values."""
    meters = metrics.api(0, 9)
    meters.handled(100, 0.001, 0.001)
    meters.sent(50, 0.001)
    meters.error(6)
    metrics.topics.fetched("topic", 0, 100)
    metrics.loop_lag.observe(0.001)


def sample_groups() -> Any:
    """A group runtime with one loaded shard holding one group that committed an offset."""
    core = GroupCoordinator(GroupConfig())
    core.commit_offsets(CommitRequest("group", -1, "", None,
                                      (OffsetCommit("topic", 0, 0, -1, None),)), 0)
    shard = SimpleNamespace(status=ShardStatus.ACTIVE, core=core)
    history = LagHistory()
    history.record("group", "topic", 0, Commit(0, 0, 1))
    return SimpleNamespace(runtime=SimpleNamespace(shards=lambda: [shard], clock=lambda: 0),
                           lag_history=history)


def sample_storage_meters() -> StorageMeters:
    meters = StorageMeters()
    meters.appended(0.0001)
    meters.flushed(0.001)
    meters.cleaned(100)
    meters.retention_deleted("time", 1)
    meters.failed("flush")
    return meters


def sample_transactions() -> Any:
    """A transaction runtime with one loaded shard and no transaction."""
    core = TransactionCoordinator(TransactionConfig())
    shard = SimpleNamespace(status=ShardStatus.ACTIVE, core=core)
    return SimpleNamespace(runtime=SimpleNamespace(shards=lambda: [shard]),
                           counts=TransactionCounts())


def live_registry() -> BrokerMetrics:
    """A BrokerMetrics with the collectors a broker registers, every metric exercised."""
    metrics = BrokerMetrics()
    storage = StorageCollector(engine=None)  # type: ignore[arg-type]  # never refreshed
    storage.samples = [PartitionSample("topic", 0, 0, 1, 1, 100, 1, 1, 1, 100)]
    metrics.registry.register(storage)
    metrics.registry.register(ServerCollector(lambda: {"PLAINTEXT": 1}, lambda: 0))
    metrics.registry.register(GroupCollector(sample_groups(), storage.log_ends,
                                             time_lags=lambda: {("group", "topic", 0): 1.0}))
    metrics.registry.register(StorageMetersCollector(sample_storage_meters(),
                                                     {"append": 1}))
    metrics.registry.register(TransactionCollector(sample_transactions(),
                                                   storage.producer_ids))
    exercise(metrics)
    return metrics


def exposed_name(family: Metric) -> str:
    return f"{family.name}_total" if family.type == "counter" else family.name


def families() -> list[Metric]:
    found = list(live_registry().registry.collect())
    silent = [f.name for f in found if not f.samples]
    if silent:
        raise AssertionError(f"metrics with no sample (exercise them): {silent}")
    return found


def labels_of(family: Metric) -> list[str]:
    names: list[str] = []
    for sample in family.samples:
        for name in sample.labels:
            if name != "le" and name not in names:
                names.append(name)
    return names


def render() -> str:
    rows = []
    for family in sorted(families(), key=lambda f: f.name):
        labels = ", ".join(f"`{n}`" for n in labels_of(family)) or "—"
        meaning = " ".join(family.documentation.split()).replace("|", "\\|")
        rows.append(f"| `{exposed_name(family)}` | {family.type} | {labels} | {meaning} |")
    return HEADER + "\n".join(rows) + "\n"


def main() -> None:
    text = render()
    if "--write" in sys.argv:
        Path("docs/metrics.md").write_text(text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
