"""Targeted probes, sent once on the fresh broker before anything else, then kept as seeds.

Random generation reaches some states too rarely to rely on, so these well-formed requests go
first, when they matter most:
* Metadata naming the internal topics (with auto-creation allowed) before any group or
  transaction has made the broker create them: a broker must not auto-create them with
  `num.partitions` (the liveness oracle and the state checks then see the damage);
* CreateTopics and Metadata (auto-creation) for names of 200-255 characters, around the
  255-byte file-name limit that partition, delete-marker and metadata file names hit; the
  topics created stay until the end, where every topic must be deletable, also after a
  restart.
Their answers go through the same per-frame checks as every fuzzed frame.
"""

from __future__ import annotations

from typing import Any, Final

from kio.schema.metadata.v1.request import MetadataRequest as MetadataV1
from kio.schema.metadata.v1.request import MetadataRequestTopic as MetadataTopicV1
from kio.schema.metadata.v12.request import MetadataRequest as MetadataV12
from kio.schema.metadata.v12.request import MetadataRequestTopic as MetadataTopicV12

from bench.fuzz import calls, wire
from bench.fuzz.abuse import handshake
from bench.fuzz.wire import Conn

INTERNAL: Final = ("__consumer_offsets", "__transaction_state")
NAME_LENGTHS: Final = (200, 209, 213, 214, 230, 240, 246, 247, 248, 249, 250, 255)
ANSWER_WITHIN_S: Final = 30.0


def probe_requests() -> list[Any]:
    requests: list[Any] = [
        MetadataV1(topics=(MetadataTopicV1(name=INTERNAL[1]),)),
        MetadataV12(topics=tuple(MetadataTopicV12(topic_id=None, name=n) for n in INTERNAL),
                    allow_auto_topic_creation=True, include_topic_authorized_operations=False),
    ]
    for length in NAME_LENGTHS:
        requests.append(calls.create_topics_request(["e" * length], 1))
        requests.append(MetadataV12(topics=(MetadataTopicV12(topic_id=None, name="a" * length),),
                                    allow_auto_topic_creation=True,
                                    include_topic_authorized_operations=False))
    return requests


def probe_frames() -> list[bytes]:
    return [wire.encode_frame(request, 1000 + i) for i, request in enumerate(probe_requests())]


def send(address: tuple[str, int], frames: list[bytes]) -> list[tuple[bytes, bytes | None]]:
    """Each frame on one connection after ApiVersions; (frame, answer or None)."""
    results: list[tuple[bytes, bytes | None]] = []
    conn: Conn | None = None
    for frame in frames:
        if conn is None:
            conn = Conn(address)
            handshake(conn)
        exchange = conn.exchange(frame, ANSWER_WITHIN_S)
        results.append((frame, exchange.response))
        if exchange.response is None:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    return results
