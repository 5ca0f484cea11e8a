"""The broker's metrics in their own CollectorRegistry (never prometheus-client's global one).

Hot path: counts are plain Python numbers bumped on the event loop, which is the only thread
that writes them and the one that renders them (the HTTP endpoint runs on the same loop), so
no lock is taken per request (prometheus-client's Counter and Histogram take one per
update). The connection looks up one `ApiMeters` per request by its (API key, version); the
produce and fetch handlers reach `TopicMeters` through `Broker.meter` (None while metrics are
off). `MetricsCollector` turns the numbers into Prometheus families at scrape time; what
does not change per request (offsets, sizes, connections, throttles, and what each
partition appended: the storage engines count that as part of an append) is read then too
(strom.observability.collectors). docs/metrics.md lists every metric.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from strom.broker.registry import REGISTRY
from strom.protocol.messages import ErrorCode

PRODUCE_KEY: Final = 0
FETCH_KEY: Final = 1
# Request latencies: 50 µs to 30 s (a long-polling Fetch waits up to fetch.max.wait.ms).
LATENCY_BUCKETS: Final = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                          0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LOOP_LAG_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                           1.0, 2.5, 5.0)
UNKNOWN_API: Final = "unknown"
UNSUPPORTED_VERSION: Final = "unsupported"


def error_name(code: int) -> str:
    """Kafka's name of an error code (NOT_LEADER_OR_FOLLOWER), or the number if unknown."""
    try:
        return ErrorCode(code).name.upper()
    except ValueError:
        return str(code)


class Histogram:
    """Bucket counts (not cumulative; the last one is +Inf) and the sum of what was seen."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
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


class ApiStats:
    """One API's numbers, whatever the version."""

    __slots__ = ("errors", "handle", "name", "queue", "request_bytes", "response_bytes",
                 "send")

    def __init__(self, name: str) -> None:
        self.name = name
        self.request_bytes = 0
        self.response_bytes = 0
        self.queue = Histogram(LATENCY_BUCKETS)
        self.handle = Histogram(LATENCY_BUCKETS)
        self.send = Histogram(LATENCY_BUCKETS)
        self.errors: dict[int, int] = {}


class ApiMeters:
    """One API at one version: where a request's numbers go."""

    __slots__ = ("api_key", "requests", "stats", "version")

    def __init__(self, api_key: int, stats: ApiStats, version: str) -> None:
        self.api_key = api_key
        self.stats = stats
        self.version = version
        self.requests = 0

    @property
    def api(self) -> str:
        return self.stats.name

    def handled(self, size: int, queued_s: float, handled_s: float) -> None:
        """A request was handled: its frame was `size` bytes, waited `queued_s` after it was
        read, and took `handled_s` (the histograms are bumped here rather than through
        Histogram.observe: one call per request, not four)."""
        self.requests += 1
        stats = self.stats
        stats.request_bytes += size
        queue, handle = stats.queue, stats.handle
        queue.counts[bisect_left(queue.bounds, queued_s)] += 1
        queue.total += queued_s
        handle.counts[bisect_left(handle.bounds, handled_s)] += 1
        handle.total += handled_s

    def sent(self, size: int, seconds: float) -> None:
        stats = self.stats
        stats.response_bytes += size
        send = stats.send
        send.counts[bisect_left(send.bounds, seconds)] += 1
        send.total += seconds

    def error(self, code: int) -> None:
        errors = self.stats.errors
        errors[code] = errors.get(code, 0) + 1

    def count_errors(self, body: Any) -> None:
        """Counts the answer's error codes: the top-level one of any API; for Produce and
        Fetch also each partition's."""
        code = getattr(body, "error_code", 0)
        if code:
            self.error(code)
        if self.api_key == PRODUCE_KEY:
            for topic in body.responses:
                for part in topic.partition_responses:
                    if part.error_code:
                        self.error(part.error_code)
        elif self.api_key == FETCH_KEY:
            for topic in body.responses:
                for part in topic.partitions:
                    if part.error_code:
                        self.error(part.error_code)


class TopicMeters:
    """Bytes out (Fetch) per topic and partition, and the handlers' storage errors
    (strom.broker.meter.TopicMeter); messages and bytes in are the partitions' own counts
    (strom.observability.collectors)."""

    def __init__(self) -> None:
        self.read: dict[str, dict[int, int]] = {}  # bytes
        self.storage_errors: dict[str, int] = {}  # by operation (strom_storage_errors)

    def fetched(self, topic: str, partition: int, size: int) -> None:
        parts = self.read.get(topic)
        if parts is None:
            parts = self.read[topic] = {}
        parts[partition] = parts.get(partition, 0) + size

    def storage_error(self, operation: str) -> None:
        errors = self.storage_errors
        errors[operation] = errors.get(operation, 0) + 1

    def forget_topics(self, alive: Callable[[str], bool]) -> None:
        """Drops the series of topics that no longer exist (called at scrape time)."""
        for topic in [t for t in self.read if not alive(t)]:
            del self.read[topic]


class BrokerMetrics(Collector):
    """Every metric of one broker; `registry` is what /metrics renders."""

    def __init__(self, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._apis: dict[int, ApiMeters] = {}
        self._stats: dict[str, ApiStats] = {}
        self._uncached: dict[tuple[str, str], ApiMeters] = {}
        self._heads: dict[bytes, ApiMeters] = {}  # a frame's first 4 bytes: served ones only
        self.topics = TopicMeters()
        self.loop_lag = Histogram(LOOP_LAG_BUCKETS)
        self.registry.register(self)
        if process:
            ProcessCollector(registry=self.registry)

    def api(self, api_key: int, version: int) -> ApiMeters:
        """The meters of a request; an API strom does not serve, or a version it does not
        serve, share one set of labels each (so a client cannot make series without bound)."""
        key = (api_key << 16) | (version & 0xFFFF)
        found = self._apis.get(key)
        if found is not None:
            return found
        spec = REGISTRY.get(api_key)
        if spec is None:
            name, label = UNKNOWN_API, UNSUPPORTED_VERSION
        elif not spec.min_version <= version <= spec.max_version:
            name, label = spec.name, UNSUPPORTED_VERSION
        else:
            name, label = spec.name, str(version)
        stats = self._stats.get(name)
        if stats is None:
            stats = self._stats[name] = ApiStats(name)
        if label == UNSUPPORTED_VERSION:
            shared = self._uncached.get((name, label))
            if shared is None:
                shared = self._uncached[(name, label)] = ApiMeters(api_key, stats, label)
            return shared
        meters = self._apis[key] = ApiMeters(api_key, stats, label)
        return meters

    def api_of(self, frame: bytes) -> ApiMeters:
        """The meters of a request frame (its header's API key and version), found by the
        frame's first four bytes; only served (API, version) pairs are kept that way."""
        head = frame[0:4]
        found = self._heads.get(head)
        if found is not None:
            return found
        meters = self.api(int.from_bytes(head[0:2], "big", signed=True),
                          int.from_bytes(head[2:4], "big", signed=True))
        if meters.version != UNSUPPORTED_VERSION:
            self._heads[head] = meters
        return meters

    # -- rendering (at scrape time) ----------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        return iter(Families().all())

    def collect(self) -> Iterator[Metric]:
        f = Families()
        for meters in (*self._apis.values(), *self._uncached.values()):
            f.requests.add_metric([meters.api, meters.version], meters.requests)
        for name, stats in self._stats.items():
            for code, count in stats.errors.items():
                f.errors.add_metric([name, error_name(code)], count)
            stats.queue.add_to(f.queue, [name])
            stats.handle.add_to(f.handle, [name])
            stats.send.add_to(f.send, [name])
            f.request_bytes.add_metric([name], stats.request_bytes)
            f.response_bytes.add_metric([name], stats.response_bytes)
        for topic, read in self.topics.read.items():
            for partition, size in read.items():
                f.bytes_out.add_metric([topic, str(partition)], size)
        self.loop_lag.add_to(f.loop_lag, [])
        return iter(f.all())


class Families:
    """The families BrokerMetrics renders, empty."""

    def __init__(self) -> None:
        self.requests = CounterMetricFamily(
            "strom_requests", "Requests received, by API and version.",
            labels=("api", "version"))
        self.errors = CounterMetricFamily(
            "strom_request_errors", "Error codes in answers (top-level; Produce and Fetch "
            "also per partition), by API and Kafka error name.", labels=("api", "error"))
        self.queue = HistogramMetricFamily(
            "strom_request_queue_seconds", "From the request read off the socket until its "
            "handling starts.", labels=("api",))
        self.handle = HistogramMetricFamily(
            "strom_request_handle_seconds", "Decoding, handling (with its waits) and "
            "encoding the answer.", labels=("api",))
        self.send = HistogramMetricFamily(
            "strom_request_send_seconds", "Writing the answer to the socket until drained.",
            labels=("api",))
        self.request_bytes = CounterMetricFamily(
            "strom_request_bytes", "Bytes of requests (frames with their size prefix).",
            labels=("api",))
        self.response_bytes = CounterMetricFamily(
            "strom_response_bytes", "Bytes of answers sent (frames with their size prefix).",
            labels=("api",))
        self.bytes_out = CounterMetricFamily(
            "strom_topic_bytes_out", "Bytes of record batches in Fetch answers.",
            labels=("topic", "partition"))
        self.loop_lag = HistogramMetricFamily(
            "strom_event_loop_lag_seconds", "How late the event loop ran a callback "
            "scheduled by the lag probe.")

    def all(self) -> list[Metric]:
        return [self.requests, self.errors, self.queue, self.handle, self.send,
                self.request_bytes, self.response_bytes, self.bytes_out, self.loop_lag]
