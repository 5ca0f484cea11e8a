"""Reading the topics from the database, and the statements every topic change shares.

Every change to the topics (create, delete, add partitions, configs) moves
`strom_cluster.topics_version` up in the same transaction; every broker compares it with the
version it last read on each heartbeat (or when NOTIFYed) and re-reads the topics when it moved.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Final

from strom.storage.api import TopicInfo

BUMP_VERSION: Final = "UPDATE strom_cluster SET topics_version = topics_version + 1"
VERSION: Final = "SELECT topics_version FROM strom_cluster"
TOPICS: Final = """
SELECT topic_id, name, partitions, configs, replication_factor FROM strom_topic
"""
PARTITIONS: Final = """
SELECT partition_id, topic_id, index, leader_epoch FROM strom_partition
"""


@dataclass(frozen=True, slots=True)
class PartitionRow:
    partition_id: int
    index: int
    leader_epoch: int


@dataclass(frozen=True, slots=True)
class TopicRows:
    info: TopicInfo
    partitions: list[PartitionRow]  # by index


def topic_info(row: Any) -> TopicInfo:
    return TopicInfo(row["name"], row["topic_id"], row["partitions"], json.loads(row["configs"]),
                     row["replication_factor"])


async def read_topics(conn: Any) -> tuple[int, dict[str, TopicRows]]:
    """(the topics' version, every topic with its partitions), read in one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        version = await conn.fetchval(VERSION)
        topics = await conn.fetch(TOPICS)
        partitions = await conn.fetch(PARTITIONS)
    by_topic: dict[uuid.UUID, list[PartitionRow]] = {}
    for p in partitions:
        by_topic.setdefault(p["topic_id"], []).append(
            PartitionRow(p["partition_id"], p["index"], p["leader_epoch"]))
    out = {}
    for t in topics:
        info = topic_info(t)
        rows = sorted(by_topic.get(info.topic_id, []), key=lambda r: r.index)
        out[info.name] = TopicRows(info, rows[:info.partitions])
    return int(version), out
