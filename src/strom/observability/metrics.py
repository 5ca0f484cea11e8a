"""The broker's metrics in their own CollectorRegistry (never prometheus-client's global one).

Hot path: the connection looks up one `ApiMeters` per request by its (API key, version),
whose label children are bound once; the produce and fetch handlers reach `TopicMeters`
through `Broker.meter` (None while metrics are off). What does not change per request
(offsets, sizes, connections, throttles) is read at scrape time by collectors
(strom.observability.collectors). docs/metrics.md lists every metric.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.process_collector import ProcessCollector

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


class ApiMeters:
    """One API at one version: its label children, bound once."""

    __slots__ = ("_errors", "_errors_counter", "api", "api_key", "handle", "queue",
                 "request_bytes", "requests", "response_bytes", "send")

    def __init__(self, metrics: BrokerMetrics, api_key: int, api: str, version: str) -> None:
        self.api_key = api_key
        self.api = api
        self.requests = metrics.requests.labels(api, version)
        self.queue = metrics.queue_seconds.labels(api)
        self.handle = metrics.handle_seconds.labels(api)
        self.send = metrics.send_seconds.labels(api)
        self.request_bytes = metrics.request_bytes.labels(api)
        self.response_bytes = metrics.response_bytes.labels(api)
        self._errors_counter = metrics.request_errors
        self._errors: dict[int, Any] = {}

    def error(self, code: int) -> None:
        child = self._errors.get(code)
        if child is None:
            child = self._errors[code] = self._errors_counter.labels(self.api, error_name(code))
        child.inc()

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
    """Messages and bytes in (Produce) and bytes out (Fetch) per topic and partition
    (strom.broker.meter.TopicMeter)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("topic", "partition")
        self.messages_in = Counter("strom_topic_messages_in", "Records appended by Produce.",
                                   labels, registry=registry)
        self.bytes_in = Counter("strom_topic_bytes_in", "Bytes of record batches appended by "
                                "Produce.", labels, registry=registry)
        self.bytes_out = Counter("strom_topic_bytes_out", "Bytes of record batches in Fetch "
                                 "answers.", labels, registry=registry)
        self._in: dict[str, dict[int, tuple[Any, Any]]] = {}
        self._out: dict[str, dict[int, Any]] = {}

    def produced(self, topic: str, partition: int, records: int, size: int) -> None:
        parts = self._in.get(topic)
        if parts is None:
            parts = self._in[topic] = {}
        children = parts.get(partition)
        if children is None:
            label = str(partition)
            children = parts[partition] = (self.messages_in.labels(topic, label),
                                           self.bytes_in.labels(topic, label))
        children[0].inc(records)
        children[1].inc(size)

    def fetched(self, topic: str, partition: int, size: int) -> None:
        parts = self._out.get(topic)
        if parts is None:
            parts = self._out[topic] = {}
        child = parts.get(partition)
        if child is None:
            child = parts[partition] = self.bytes_out.labels(topic, str(partition))
        child.inc(size)

    def forget_topics(self, alive: Callable[[str], bool]) -> None:
        """Drops the series of topics that no longer exist (called at scrape time)."""
        for cache, counters in ((self._in, (self.messages_in, self.bytes_in)),
                                (self._out, (self.bytes_out,))):
            for topic in [t for t in cache if not alive(t)]:
                for partition in cache.pop(topic):
                    for counter in counters:
                        counter.remove(topic, str(partition))


class BrokerMetrics:
    """Every metric of one broker; `registry` is what /metrics renders."""

    def __init__(self, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter("strom_requests", "Requests received, by API and version.",
                                ("api", "version"), registry=registry)
        self.request_errors = Counter(
            "strom_request_errors", "Error codes in answers (top-level; Produce and Fetch "
            "also per partition), by API and Kafka error name.", ("api", "error"),
            registry=registry)
        self.queue_seconds = Histogram(
            "strom_request_queue_seconds", "From the request read off the socket until its "
            "handling starts.", ("api",), buckets=LATENCY_BUCKETS, registry=registry)
        self.handle_seconds = Histogram(
            "strom_request_handle_seconds", "Decoding, handling (with its waits) and encoding "
            "the answer.", ("api",), buckets=LATENCY_BUCKETS, registry=registry)
        self.send_seconds = Histogram(
            "strom_request_send_seconds", "Writing the answer to the socket until drained.",
            ("api",), buckets=LATENCY_BUCKETS, registry=registry)
        self.request_bytes = Counter("strom_request_bytes", "Bytes of requests (frames with "
                                     "their size prefix).", ("api",), registry=registry)
        self.response_bytes = Counter("strom_response_bytes", "Bytes of answers sent (frames "
                                      "with their size prefix).", ("api",), registry=registry)
        self.loop_lag_seconds = Histogram(
            "strom_event_loop_lag_seconds", "How late the event loop ran a callback scheduled "
            "by the lag probe.", buckets=LOOP_LAG_BUCKETS, registry=registry)
        self.topics = TopicMeters(registry)
        if process:
            ProcessCollector(registry=registry)
        self._apis: dict[int, ApiMeters] = {}

    def api(self, api_key: int, version: int) -> ApiMeters:
        """The meters of a request; an API strom does not serve, or a version it does not
        serve, share one set of labels each (so a client cannot make series without bound)."""
        key = (api_key << 16) | (version & 0xFFFF)
        found = self._apis.get(key)
        if found is not None:
            return found
        spec = REGISTRY.get(api_key)
        if spec is None:
            name, label, cache = UNKNOWN_API, UNSUPPORTED_VERSION, False
        elif not spec.min_version <= version <= spec.max_version:
            name, label, cache = spec.name, UNSUPPORTED_VERSION, False
        else:
            name, label, cache = spec.name, str(version), True
        meters = ApiMeters(self, api_key, name, label)
        if cache:
            self._apis[key] = meters
        return meters

    def api_of(self, frame: bytes) -> ApiMeters:
        """The meters of a request frame (its header's API key and version)."""
        return self.api(int.from_bytes(frame[0:2], "big", signed=True),
                        int.from_bytes(frame[2:4], "big", signed=True))
