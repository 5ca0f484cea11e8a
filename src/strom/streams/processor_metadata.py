"""Processor metadata (Kafka Streams' ProcessorMetadata): small integers that processors keep
per task, committed with the task's input offsets (in the offset commit's metadata string of
each of its input partitions; under exactly-once in the transaction, with the outputs) and
read back from the committed offsets when the task is created again (after a restart, or on
another instance). The windowed aggregations keep there the close time of their last final
results, so that a restarted task does not emit them again.

The string is JSON, `{"strom.pm":1,"m":{"<key>":<int>,...}}` (the version under the marker
key). Anything else (another client's metadata, an empty string) decodes to None; the offset
commit's metadata limit (offset.metadata.max.bytes, 4096 by default) bounds it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping

log = logging.getLogger(__name__)

MARKER = "strom.pm"
VERSION = 1
MAX_BYTES = 4096  # the broker's default offset.metadata.max.bytes
_warned: set[frozenset[str]] = set()  # the key sets found too large (warned once each)


def encode(metadata: Mapping[str, int]) -> str:
    """The metadata as the commit's metadata string ("" when there is none or it does not
    fit the limit: it is then left out, with a warning)."""
    if not metadata:
        return ""
    text = json.dumps({MARKER: VERSION, "m": dict(sorted(metadata.items()))},
                      separators=(",", ":"), ensure_ascii=True)
    if len(text) > MAX_BYTES:
        keys = frozenset(metadata)
        log.log(logging.DEBUG if keys in _warned else logging.WARNING,
                "the processor metadata (%d bytes) is larger than the offset metadata "
                "limit (%d): not committed", len(text), MAX_BYTES)
        _warned.add(keys)
        return ""
    return text


def decode(text: str | None) -> dict[str, int] | None:
    """The metadata in a committed offset's metadata string; None (with a warning unless the
    string is empty) when it holds none that this version can read."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get(MARKER) != VERSION or \
            not isinstance(data.get("m"), dict):
        log.warning("ignoring offset metadata that is not strom's processor metadata "
                    "(version %d): %.100r", VERSION, text)
        return None
    values = data["m"]
    if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
               for k, v in values.items()):
        log.warning("ignoring processor metadata with values that are not integers: %.100r",
                    text)
        return None
    return dict(values)


def merge(texts: Iterable[str | None]) -> dict[str, int]:
    """The metadata of a task's committed offsets, one per input partition: the largest value
    of each key (a partition not committed since a value grew holds an older one)."""
    merged: dict[str, int] = {}
    for text in texts:
        for key, value in (decode(text) or {}).items():
            merged[key] = max(value, merged.get(key, value))
    return merged
