"""The topics a consumer group subscribes to, read from its members' protocol metadata.

Kafka parses every version with the v0 schema (topics, user data), the prefix all later
versions keep, and gives up on the whole group if any member's metadata does not parse: the
group then counts as subscribed to every topic.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable

from kio.schema.consumer_protocol_subscription.v0.data import ConsumerProtocolSubscription

from strom.protocol.safe_decoder import DecodeError, decode

log = logging.getLogger(__name__)


def subscription_topics(metadata: bytes) -> frozenset[str] | None:
    """The topics in one member's consumer-protocol subscription, or None if unreadable."""
    if len(metadata) < 2 or struct.unpack_from(">h", metadata)[0] < 0:
        return None
    try:
        subscription, _ = decode(ConsumerProtocolSubscription, metadata, 2)
    except DecodeError as exc:
        log.warning("unreadable consumer protocol subscription: %s", exc)
        return None
    return frozenset(subscription.topics)


def subscribed_topics(metadatas: Iterable[bytes]) -> frozenset[str] | None:
    topics: set[str] = set()
    for metadata in metadatas:
        member_topics = subscription_topics(metadata)
        if member_topics is None:
            return None
        topics |= member_topics
    return frozenset(topics)
