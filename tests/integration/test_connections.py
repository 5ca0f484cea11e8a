"""Many connections at once, each pipelining requests, get every response in request order; a
slow long-polling fetch on one connection does not hold up another; the `strom_broker` pytest
fixture gives a working broker."""

from __future__ import annotations

import struct
import threading
import time
from datetime import timedelta

from confluent_kafka import Producer
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.fetch.v12.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.metadata.v12.request import MetadataRequest, MetadataRequestTopic
from kio.static.primitive import i8, i32, i64

from strom.testing import EmbeddedBroker
from tests.integration.raw_client import RawClient

CONNECTIONS = 40
PIPELINED = 25


def metadata(name: str) -> MetadataRequest:
    return MetadataRequest(topics=(MetadataRequestTopic(topic_id=None, name=name),),
                           allow_auto_topic_creation=True,
                           include_topic_authorized_operations=False)


def pipeline(port: int, worker: int, errors: list[str]) -> None:
    try:
        with RawClient(port) as client:
            client.request(ApiVersionsRequest(client_software_name="t",
                                              client_software_version="1"))
            frames = b"".join(client.frame(metadata(f"conn-{worker % 4}"), correlation_id=1000 + i)
                              for i in range(PIPELINED))
            client.send_raw(frames)
            for i in range(PIPELINED):
                frame = client.recv_frame()
                correlation_id = struct.unpack_from(">i", frame, 0)[0]
                if correlation_id != 1000 + i:
                    errors.append(f"worker {worker}: got {correlation_id}, expected {1000 + i}")
                    return
    except Exception as exc:  # reported by the test thread
        errors.append(f"worker {worker}: {exc!r}")


def test_many_pipelining_connections_get_ordered_answers(strom_broker: EmbeddedBroker) -> None:
    errors: list[str] = []
    threads = [threading.Thread(target=pipeline, args=(strom_broker.port, n, errors))
               for n in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert not any(thread.is_alive() for thread in threads)


def long_poll(topic: str, wait_ms: int) -> FetchRequest:
    return FetchRequest(
        replica_id=i32(-1), max_wait=timedelta(milliseconds=wait_ms), min_bytes=i32(1),
        max_bytes=i32(1 << 20), isolation_level=i8(0), session_id=i32(0),
        session_epoch=i32(-1),
        topics=(FetchTopic(topic=topic, partitions=(FetchPartition(
            partition=i32(0), current_leader_epoch=i32(-1), fetch_offset=i64(0),
            log_start_offset=i64(-1), partition_max_bytes=i32(1 << 20)),)),),
        forgotten_topics_data=(), rack_id="")


def test_long_poll_waits_for_data_and_wakes_on_append(strom_broker: EmbeddedBroker) -> None:
    topic = "long-poll"
    with RawClient(strom_broker.port) as poller, RawClient(strom_broker.port) as other:
        poller.request(metadata(topic))
        started = time.monotonic()
        poller.send_raw(poller.frame(long_poll(topic, 10_000)))
        # Another connection is served while the fetch waits.
        assert other.request(metadata(topic)).topics[0].error_code == 0
        time.sleep(0.3)
        producer = Producer({"bootstrap.servers": strom_broker.bootstrap_servers})
        producer.produce(topic, b"wake up", partition=0)
        assert producer.flush(10) == 0
        answer = poller.read_response(1, 12)
        elapsed = time.monotonic() - started
        part = answer.responses[0].partitions[0]
        assert part.error_code == 0 and part.high_watermark == 1
        assert b"wake up" in part.records
        assert 0.3 <= elapsed < 5, elapsed


def test_long_poll_returns_empty_after_max_wait(strom_broker: EmbeddedBroker) -> None:
    topic = "long-poll-empty"
    with RawClient(strom_broker.port) as poller:
        poller.request(metadata(topic))
        started = time.monotonic()
        answer = poller.request(long_poll(topic, 400))
        elapsed = time.monotonic() - started
        assert answer.responses[0].partitions[0].records in (b"", None)
        assert 0.35 <= elapsed < 3, elapsed


def test_connections_per_ip_are_limited_with_overrides() -> None:
    """max.connections.per.ip: the connection beyond the limit is closed at once, and a freed
    slot is usable again; max.connections.per.ip.overrides raises it for one address."""
    with EmbeddedBroker(settings={"max.connections.per.ip": "2"}) as broker:
        first, second = RawClient(broker.port), RawClient(broker.port)
        try:
            for raw in (first, second):
                raw.request(ApiVersionsRequest(client_software_name="t",
                                               client_software_version="1"))
            with RawClient(broker.port) as third:
                assert third.is_closed_by_peer()
            first.close()
            time.sleep(0.2)
            with RawClient(broker.port) as again:
                again.request(ApiVersionsRequest(client_software_name="t",
                                                 client_software_version="1"))
        finally:
            first.close()
            second.close()
    settings = {"max.connections.per.ip": "1",
                "max.connections.per.ip.overrides": "127.0.0.1:3"}
    with EmbeddedBroker(settings=settings) as broker:
        held = [RawClient(broker.port) for _ in range(3)]
        try:
            for raw in held:
                raw.request(ApiVersionsRequest(client_software_name="t",
                                               client_software_version="1"))
            with RawClient(broker.port) as fourth:
                assert fourth.is_closed_by_peer()
        finally:
            for raw in held:
                raw.close()
