"""Checks on one response to one (well-formed) request.

* The response echoes the request's correlation id.
* No response carries the broker's data directory (a server path in an error message),
  except DescribeLogDirs, whose answer is the log directories.
* For well-formed requests that name topics, Kafka answers every name it was given, with an
  error code if need be: Metadata (and lists a broker), CreateTopics, DeleteTopics,
  CreatePartitions, and OffsetCommit (every partition). An answer that leaves a topic out
  means the broker failed half-way (an exception swallowed into an empty result).
"""

from __future__ import annotations

import struct
from typing import Any, Final

from bench.fuzz import wire
from strom.protocol.safe_decoder import DecodeError

METADATA: Final = 3
OFFSET_COMMIT: Final = 8
CREATE_TOPICS: Final = 19
DELETE_TOPICS: Final = 20
CREATE_PARTITIONS: Final = 37
DESCRIBE_LOG_DIRS: Final = 35
CHECKED: Final = frozenset({METADATA, OFFSET_COMMIT, CREATE_TOPICS, DELETE_TOPICS,
                            CREATE_PARTITIONS})


def correlation_mismatch(frame: bytes, response: bytes) -> str | None:
    head = wire.frame_header(frame)
    if head is None or len(response) < 4:
        return None
    got = struct.unpack_from(">i", response, 0)[0]
    return None if got == head[2] else f"sent correlation id {head[2]}, answer has {got}"


def _names(entries: Any, attribute: str = "name") -> set[str]:
    return {getattr(e, attribute) for e in entries if getattr(e, attribute) is not None}


def requested(api_key: int, request: Any) -> set[Any] | None:
    """What the answer must cover; None when the request does not name topics."""
    if api_key == METADATA:
        return _names(request.topics) or None if request.topics else None
    if api_key == DELETE_TOPICS:
        if hasattr(request, "topic_names"):
            return set(request.topic_names) or None
        return _names(request.topics) or None
    if api_key in (CREATE_TOPICS, CREATE_PARTITIONS):
        return _names(request.topics) or None
    if api_key == OFFSET_COMMIT:
        return {(_topic(t), p.partition_index) for t in request.topics
                for p in t.partitions} or None
    return None


def answered(api_key: int, response: Any) -> set[Any]:
    if api_key in (METADATA, CREATE_TOPICS):
        return _names(response.topics)
    if api_key == DELETE_TOPICS:
        return _names(response.responses)
    if api_key == CREATE_PARTITIONS:
        return _names(response.results)
    if api_key == OFFSET_COMMIT:
        return {(_topic(t), p.partition_index) for t in response.topics for p in t.partitions}
    return set()


def _topic(entry: Any) -> Any:
    """A topic's name, or its id in versions that name topics by id."""
    return getattr(entry, "name", None) or getattr(entry, "topic_id", None)


def incomplete(frame: bytes, response: bytes) -> str | None:
    """What a well-formed topic-naming request's answer left out; None if complete or n/a."""
    head = wire.frame_header(frame)
    if head is None or head[0] not in CHECKED:
        return None
    request = wire.decode_request(frame)
    if request is None:
        return None
    want = requested(head[0], request)
    if want is None:
        return None
    try:
        body = wire.decode_response(head[0], head[1], response)
    except (DecodeError, ValueError) as exc:
        return f"answer does not decode: {exc}"
    if head[0] == METADATA and not body.brokers:
        return "Metadata answer lists no broker"
    missing = want - answered(head[0], body)
    if missing:
        shown = sorted(str(m)[:60] for m in missing)[:3]
        return f"answer leaves out {len(missing)} of {len(want)}: {', '.join(shown)}"
    return None


def leaks_path(api_key: int, response: bytes, secret: bytes | None) -> bool:
    """The broker's data directory in an answer (DescribeLogDirs names it by design)."""
    return secret is not None and api_key != DESCRIBE_LOG_DIRS and secret in response
