"""A produce load that costs its client almost nothing, so the broker is the bottleneck.

librdkafka's producer, driven from a Python loop, spends more CPU building and sending records
than strom spends appending them (at 100 B records the broker uses ~0.4 µs of CPU per record
and the client's loop more than twice that), so with the client on one core and the broker on
another the client decides the rate, and a per-request cost in the broker does not show. This
client sends one pre-built Produce request (v9, acks=1, a batch of `records` records for every
partition of the topic) over and over on one connection, keeping `in_flight` requests
unanswered, and reads only the answers' frame lengths (every 256th answer is decoded and its
error codes checked). Its CPU per request is a socket write and a read: the broker runs flat
out, and what slows it shows in the rate.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from datetime import timedelta

from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.produce.v9.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.static.primitive import i16, i32

from strom.protocol.messages import decode_response, encode_request
from strom.protocol.record_builder import build_batch

CHECK_EVERY = 256


@dataclass(frozen=True)
class RawResult:
    records: int
    requests: int
    seconds: float

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def produce_frame(topic: str, partitions: int, records: int, size: int) -> bytes:
    """One Produce v9 request (acks=1) with a batch of `records` records of `size` bytes for
    each of the topic's partitions."""
    now = int(time.time() * 1000)
    value = bytes(range(256)) * (size // 256 + 1)
    batch = build_batch([(None, value[:size], (), now)] * records)
    body = ProduceRequest(
        transactional_id=None, acks=i16(1), timeout=timedelta(seconds=30),
        topic_data=(TopicProduceData(name=topic, partition_data=tuple(
            PartitionProduceData(index=i32(p), records=batch) for p in range(partitions))),))
    return encode_request(1, "raw-produce", body)


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        buf += chunk
    return bytes(buf)


def _check(frame: bytes) -> None:
    answer = decode_response(0, 9, frame)
    for topic in answer.responses:
        for part in topic.partition_responses:
            if part.error_code.value != 0:
                raise RuntimeError(f"produce answered {part.error_code.name} for "
                                   f"{topic.name}-{part.index}")


def raw_produce_run(host: str, port: int, topic: str, partitions: int, seconds: float,
                    records: int = 100, size: int = 100, in_flight: int = 16) -> RawResult:
    """Produce for `seconds` as fast as the broker answers; returns what it acknowledged."""
    frame = produce_frame(topic, partitions, records, size)
    per_request = records * partitions
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # ApiVersions first, as every client sends it: until then a broker takes small frames
        # only (strom: 64 KiB, the hardening issue's pre-ApiVersions limit).
        sock.sendall(encode_request(0, "raw-produce", ApiVersionsRequest(
            client_software_name="raw-produce", client_software_version="1")))
        (length,) = struct.unpack(">i", _read_exact(sock, 4))
        _read_exact(sock, length)
        for _ in range(in_flight):
            sock.sendall(frame)
        answered = 0
        begin = time.perf_counter()
        deadline = begin + seconds
        sending = True
        outstanding = in_flight
        while outstanding:
            (length,) = struct.unpack(">i", _read_exact(sock, 4))
            answer = _read_exact(sock, length)
            outstanding -= 1
            answered += 1
            if answered % CHECK_EVERY == 1:
                _check(answer)
            if sending and time.perf_counter() < deadline:
                sock.sendall(frame)
                outstanding += 1
            else:
                sending = False
        elapsed = time.perf_counter() - begin
    return RawResult(answered * per_request, answered, elapsed)
