"""Topic metadata: one JSON file per topic, `<data_dir>/__topics/<name>.json`.

    {"version": 1, "name": "orders", "topic_id": "0b5c...", "partitions": 3,
     "configs": {"retention.ms": "3600000"}}

Each file is replaced atomically (temp file, fsync, rename, fsync of the directory), so a
crash leaves either the old or the new metadata. Nothing here runs on the produce path.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Final

from strom.storage.api import TopicInfo
from strom.storage.local.files import TMP_SUFFIX, fsync_dir, unlink_quietly, write_atomic

log = logging.getLogger(__name__)

TOPICS_DIR: Final = "__topics"
_SUFFIX: Final = ".json"
_VERSION: Final = 1


def _encode(info: TopicInfo) -> bytes:
    doc = {"version": _VERSION, "name": info.name, "topic_id": str(info.topic_id),
           "partitions": info.partitions, "configs": dict(info.configs)}
    return json.dumps(doc, indent=2, sort_keys=True).encode("utf-8")


def _decode(data: bytes) -> TopicInfo:
    doc = json.loads(data)
    if doc.get("version") != _VERSION:
        raise ValueError(f"unsupported version {doc.get('version')!r}")
    configs = doc["configs"]
    if not isinstance(configs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in configs.items()):
        raise ValueError("configs must map strings to strings")
    partitions = doc["partitions"]
    if not isinstance(partitions, int) or partitions < 1:
        raise ValueError(f"bad partition count {partitions!r}")
    return TopicInfo(str(doc["name"]), uuid.UUID(doc["topic_id"]), partitions, configs)


class TopicStore:
    """Reads and writes topic metadata files; the blocking methods run off the event loop."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = data_dir / TOPICS_DIR

    def _path(self, name: str) -> Path:
        return self.directory / (name + _SUFFIX)

    def load(self) -> dict[str, TopicInfo]:
        """Every topic; a file that cannot be read is logged and skipped."""
        self.directory.mkdir(parents=True, exist_ok=True)
        topics: dict[str, TopicInfo] = {}
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.endswith(TMP_SUFFIX):
                    unlink_quietly(Path(entry.path))
                    continue
                if not entry.name.endswith(_SUFFIX):
                    continue
                try:
                    with open(entry.path, "rb") as f:
                        info = _decode(f.read())
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    log.error("skipping unreadable topic metadata %s: %s", entry.path, exc)
                    continue
                if entry.name != info.name + _SUFFIX:
                    log.error("skipping %s: it describes topic %r", entry.path, info.name)
                    continue
                topics[info.name] = info
        return topics

    def save(self, info: TopicInfo) -> None:
        write_atomic(self._path(info.name), _encode(info))

    def remove(self, name: str) -> None:
        unlink_quietly(self._path(name))
        fsync_dir(self.directory)
