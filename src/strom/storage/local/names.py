"""The names the local engine derives from topic names, each within the file system's limit.

Kafka allows topic names of up to 249 characters of `[a-zA-Z0-9._-]`; every name derived from
one (`<topic>-<partition>` directories, `<topic>.json` metadata, delete directories, temp files)
must fit NAME_MAX bytes, or the topic could be created but not deleted (or not created).
"""

from __future__ import annotations

import re
import uuid
from typing import Final

from strom.storage.local.files import NAME_MAX

DELETE_DIR_SUFFIX: Final = "-delete"
PARTITION_DIR: Final = re.compile(r"^(.+)-(\d+)$")
_TOPIC_NAME: Final = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


def check_topic_name(name: str) -> None:
    if not _TOPIC_NAME.match(name) or name in (".", ".."):
        raise ValueError(f"invalid topic name {name!r}")


def check_partition_count(name: str, partitions: int) -> None:
    """`<topic>-<partition>` must fit a file name: with a 249-character name (Kafka's
    longest), up to 100,000 partitions."""
    if partitions < 1:
        raise ValueError(f"a topic needs at least one partition, not {partitions}")
    if len(f"{name}-{partitions - 1}") > NAME_MAX:
        raise ValueError(f"{partitions} partitions are too many for a topic name of "
                         f"{len(name)} characters (partition directories are named "
                         f"<topic>-<partition>, at most {NAME_MAX} characters)")


def delete_dir_name(topic: str, partition: int) -> str:
    """`<topic>-<p>.<32 hex>-delete`, the topic part shortened so that the name fits
    NAME_MAX (Kafka's LocalLog.logDeleteDirName)."""
    suffix = f"-{partition}.{uuid.uuid4().hex}{DELETE_DIR_SUFFIX}"
    return topic[:NAME_MAX - len(suffix)] + suffix
