"""Seeds recorded from real clients: the request frames confluent-kafka and kafka-python send,
captured at the start of a run by a recording proxy in front of the broker (nothing is stored
in the repository).

The proxy is strom.testing's FaultProxy, which forwards Kafka frames and rewrites the broker's
advertised address so clients stay on the proxy; a tap on the client side of each connection
keeps the bytes the client sent, cut into frames afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
import uuid
import warnings
from collections.abc import Callable
from typing import Any

from confluent_kafka.admin import ConfigResource

from bench.fuzz import clients
from bench.fuzz.clients import CheckFailed, Deadline
from strom.testing.fault_proxy import FaultProxy, PendingRequests

log = logging.getLogger("bench.fuzz")


class _Tap:
    """The StreamReader surface FaultProxy reads requests through, keeping a copy."""

    def __init__(self, reader: asyncio.StreamReader, sink: bytearray) -> None:
        self._reader = reader
        self._sink = sink

    async def readexactly(self, n: int) -> bytes:
        data = await self._reader.readexactly(n)
        self._sink += data
        return data


class RecordingProxy(FaultProxy):
    """A FaultProxy that also keeps every request stream clients send through it."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.streams: list[bytearray] = []

    async def _requests(self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter,
                        pending: PendingRequests) -> None:
        sink = bytearray()
        self.streams.append(sink)
        tap: Any = _Tap(reader, sink)
        await super()._requests(tap, upstream, pending)

    def frames(self) -> list[bytes]:
        """Every complete request frame seen (with its size prefix), duplicates removed."""
        seen: dict[bytes, None] = {}
        for stream in self.streams:
            pos = 0
            while pos + 4 <= len(stream):
                size = struct.unpack_from(">i", stream, pos)[0]
                if size < 0 or pos + 4 + size > len(stream):
                    break
                seen.setdefault(bytes(stream[pos:pos + 4 + size]))
                pos += 4 + size
        return list(seen)


def _workflows(bootstrap: str, tag: str) -> list[tuple[str, Callable[[Deadline], None]]]:
    topic = f"rec-{tag}"
    runs: list[tuple[str, Callable[[Deadline], None]]] = [
        ("admin", lambda d: clients.admin_round_trip(bootstrap, f"rec-admin-{tag}", d)),
        ("topic", lambda d: clients.create_topic(clients.admin(bootstrap), topic, 2, d)),
        ("group+idempotent", lambda d: clients.group_round_trip(
            bootstrap, topic, f"rec-g-{tag}", d, enable_idempotence=True)),
        ("transaction", lambda d: clients.txn_round_trip(
            bootstrap, f"rec-t-{tag}", topic, f"rec-tg-{tag}", f"rec-tx-{tag}", d)),
        ("describe", lambda d: _describe(bootstrap, topic)),
    ]
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        runs.append((codec, lambda d, c=codec: clients.produce(
            bootstrap, topic, 3, d, compression_type=c)))
    runs.append(("kafka-python", lambda d: _kafka_python(bootstrap, topic, tag, d)))
    return runs


def _describe(bootstrap: str, topic: str) -> None:
    admin = clients.admin(bootstrap)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    admin.describe_configs([resource])[resource].result(timeout=10)
    admin.list_consumer_groups().result(timeout=10)
    admin.describe_cluster().result(timeout=10)


def _kafka_python(bootstrap: str, topic: str, tag: str, deadline: Deadline) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.admin import KafkaAdminClient, NewTopic
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip",
                             request_timeout_ms=10000)
    for i in range(3):
        producer.send(topic, value=f"kp{i}".encode(), partition=0)
    producer.flush(timeout=max(deadline.left(), 1))
    producer.close(timeout=5)
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"rec-kp-{tag}",
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=500)
    with contextlib.closing(consumer):
        while deadline.left() > 0 and not consumer.poll(timeout_ms=200, max_records=10):
            pass
        consumer.commit()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    with contextlib.closing(admin):
        admin.create_topics([NewTopic(f"rec-kp-{tag}", 1, 1)])
        admin.delete_topics([f"rec-kp-{tag}"])


def record(host: str, port: int, budget_s: float) -> tuple[list[bytes], list[str], list[str]]:
    """Runs every client workflow through a recording proxy; returns the frames, the
    workflows that failed (their partial traffic is kept) and the names the clients used."""
    tag = uuid.uuid4().hex[:8]
    failed: list[str] = []
    with RecordingProxy(host, port) as proxy:
        runs = _workflows(proxy.bootstrap_servers, tag)
        start = time.monotonic()
        for name, run in runs:
            per_run = max(3.0, (budget_s - (time.monotonic() - start)) / 2)
            try:
                run(Deadline(per_run))
            except (CheckFailed, Exception) as exc:  # recording is best effort
                log.info("recording %s failed: %s", name, exc)
                failed.append(f"{name}: {exc}")
        time.sleep(0.2)
        frames = proxy.frames()
    names = [f"rec-{kind}{tag}" for kind in ("", "g-", "t-", "tg-", "tx-", "kp-", "admin-")]
    return frames, failed, names
