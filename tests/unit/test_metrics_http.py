"""The metrics HTTP endpoint (GET and HEAD of known paths, 404, 405, a bad or oversized
request answered 400 and closed), the event-loop lag probe, and the per-API meters (children
bound once per API and version, unserved versions and unknown APIs sharing one label, error
codes counted from Produce and Fetch answers)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from strom.broker.registry import load_handlers
from strom.observability.http import MAX_LINE_BYTES, HttpEndpoints, HttpResponse
from strom.observability.loop_lag import probe_loop_lag
from strom.observability.metrics import BrokerMetrics, error_name


class FakeWriter:
    def __init__(self) -> None:
        self.data = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.data += data

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass


async def ok() -> HttpResponse:
    return HttpResponse(200, b"fine\n")


async def broken() -> HttpResponse:
    raise RuntimeError("boom")


def request(raw: bytes) -> FakeWriter:
    async def main() -> FakeWriter:
        reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
        reader.feed_data(raw)
        reader.feed_eof()
        writer = FakeWriter()
        endpoints = HttpEndpoints({"/healthz": ok, "/broken": broken})
        await endpoints.on_connect(reader, writer)  # type: ignore[arg-type]
        return writer

    return asyncio.run(main())


def status_and_body(writer: FakeWriter) -> tuple[str, bytes]:
    head, _, body = writer.data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body


def test_get_answers_with_the_body_and_closes() -> None:
    writer = request(b"GET /healthz HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")
    status, body = status_and_body(writer)
    assert status == "HTTP/1.1 200 OK"
    assert body == b"fine\n"
    assert b"Content-Length: 5\r\n" in writer.data
    assert b"Connection: close\r\n" in writer.data
    assert writer.closed


def test_head_has_the_headers_only_and_a_query_is_ignored() -> None:
    writer = request(b"HEAD /healthz?verbose=1 HTTP/1.0\r\n\r\n")
    status, body = status_and_body(writer)
    assert status == "HTTP/1.1 200 OK"
    assert b"Content-Length: 5\r\n" in writer.data
    assert body == b""


def test_unknown_path_is_404_and_other_methods_405() -> None:
    assert status_and_body(request(b"GET /nope HTTP/1.1\r\n\r\n"))[0].endswith("404 Not Found")
    assert status_and_body(request(b"POST /healthz HTTP/1.1\r\n\r\n"))[0].endswith(
        "405 Method Not Allowed")


def test_a_failing_route_is_500() -> None:
    status, _ = status_and_body(request(b"GET /broken HTTP/1.1\r\n\r\n"))
    assert status.endswith("500 Internal Server Error")


def test_bad_requests_get_400_and_a_closed_socket() -> None:
    for raw in (b"\x16\x03\x01\x00\xa5garbage\r\n\r\n", b"GET healthz HTTP/1.1\r\n\r\n",
                b"GET /healthz SPDY/3\r\n\r\n", b"GET /" + b"a" * (2 * MAX_LINE_BYTES)
                + b" HTTP/1.1\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n"):
        writer = request(raw)
        assert status_and_body(writer)[0] == "HTTP/1.1 400 Bad Request", raw[:40]
        assert writer.closed


def test_a_client_leaving_early_gets_nothing() -> None:
    writer = request(b"GET /healthz HTTP/1.1\r\nHost:")
    assert writer.data == b""
    assert writer.closed


def test_loop_lag_probe_sees_a_blocked_loop() -> None:
    async def main() -> list[float]:
        seen: list[float] = []
        task = asyncio.create_task(probe_loop_lag(seen.append, interval_s=0.05))
        await asyncio.sleep(0.12)
        time.sleep(0.25)  # blocks the loop: the probe's sleep ends this much late
        await asyncio.sleep(0.12)
        task.cancel()
        return seen

    seen = asyncio.run(main())
    assert len(seen) >= 3
    assert max(seen) >= 0.15
    assert min(seen) < 0.05


def test_api_meters_are_bound_once_and_bounded() -> None:
    load_handlers()
    metrics = BrokerMetrics(process=False)
    assert metrics.api(0, 9) is metrics.api(0, 9)
    assert metrics.api(0, 9).api == "Produce"
    assert metrics.api_of(b"\x00\x01\x00\x0c\x00\x00\x00\x07").api == "Fetch"
    for version in range(100, 200):  # unserved versions: one series, nothing cached
        metrics.api(0, version).handled(10, 0.0, 0.0)
    metrics.api(999, 1).handled(10, 0.0, 0.0)
    assert len(metrics._apis) == 2
    for version in range(100, 200):  # nor are unserved frames' heads
        assert metrics.api_of(b"\x00\x00" + version.to_bytes(2, "big")).version == "unsupported"
    assert metrics.api_of(b"\x00\x01\x00\x0c\x00\x00\x00\x08") is metrics.api(1, 12)
    assert list(metrics._heads) == [b"\x00\x01\x00\x0c"]
    values = {tuple(s.labels.values()): s.value for f in metrics.registry.collect()
              for s in f.samples if s.name == "strom_requests_total" and s.value}
    assert values == {("Produce", "unsupported"): 100, ("unknown", "unsupported"): 1}


class Obj:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


def test_error_codes_of_produce_and_fetch_answers_are_counted() -> None:
    load_handlers()
    metrics = BrokerMetrics(process=False)
    produce = Obj(responses=[Obj(partition_responses=[Obj(error_code=0), Obj(error_code=6),
                                                      Obj(error_code=6)])])
    fetch = Obj(error_code=0, responses=[Obj(partitions=[Obj(error_code=1)]),
                                         Obj(partitions=[Obj(error_code=0)])])
    metrics.api(0, 9).count_errors(produce)
    metrics.api(1, 12).count_errors(fetch)
    metrics.api(3, 12).count_errors(Obj(error_code=0))
    metrics.api(19, 5).count_errors(Obj(error_code=41))
    errors = {tuple(s.labels.values()): s.value for f in metrics.registry.collect()
              for s in f.samples if s.name == "strom_request_errors_total"}
    assert errors == {("Produce", "NOT_LEADER_OR_FOLLOWER"): 2,
                      ("Fetch", "OFFSET_OUT_OF_RANGE"): 1,
                      ("CreateTopics", "NOT_CONTROLLER"): 1}
    assert error_name(-12345) == "-12345"


def test_histograms_render_cumulative_buckets_with_inclusive_bounds() -> None:
    from prometheus_client.exposition import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    load_handlers()
    metrics = BrokerMetrics(process=False)
    meters = metrics.api(3, 12)
    for seconds in (0.001, 0.001, 0.002, 100.0):
        meters.handled(10, 0.0, seconds)
    text = generate_latest(metrics.registry).decode()
    family = next(f for f in text_string_to_metric_families(text)
                  if f.name == "strom_request_handle_seconds")
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert buckets["0.0005"] == 0
    assert buckets["0.001"] == 2  # le is inclusive
    assert buckets["0.0025"] == 3
    assert buckets["30.0"] == 3
    assert buckets["+Inf"] == 4
    count = next(s.value for s in family.samples if s.name.endswith("_count"))
    total = next(s.value for s in family.samples if s.name.endswith("_sum"))
    assert (count, total) == (4, 100.004)


def test_readiness_says_why_not() -> None:
    from types import SimpleNamespace

    from strom.broker.coordinator_runtime import ShardStatus
    from strom.observability.service import readiness

    shards: list[Any] = []
    answers: list[BaseException | None] = [None]

    async def read_metadata(kind: str) -> dict[str, str]:
        if answers[0] is not None:
            raise answers[0]
        return {}

    runtime = SimpleNamespace(topic="__consumer_offsets", shards=lambda: shards)
    idle = SimpleNamespace(topic="__transaction_state", shards=lambda: [])
    broker: Any = SimpleNamespace(engine=SimpleNamespace(read_metadata=read_metadata),
                                  groups=SimpleNamespace(runtime=runtime),
                                  transactions=SimpleNamespace(runtime=idle))
    assert asyncio.run(readiness(broker, started=False)) == (False, "starting")
    assert asyncio.run(readiness(broker, started=True)) == (True, "ready")
    shards.append(SimpleNamespace(partition=7, status=ShardStatus.LOADING))
    assert asyncio.run(readiness(broker, started=True)) == (
        False, "coordinators not loaded: __consumer_offsets-7 loading")
    answers[0] = OSError("connection refused")
    ready, reason = asyncio.run(readiness(broker, started=True))
    assert not ready
    assert reason == "storage not reachable: connection refused"
