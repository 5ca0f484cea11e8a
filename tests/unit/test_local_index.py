"""OffsetIndex, TimeIndex, offset checkpoints and the topic store, in isolation."""

from __future__ import annotations

import uuid
from pathlib import Path

from strom.storage.api import TopicInfo
from strom.storage.local.checkpoint import (
    format_offset_checkpoint,
    read_offset_checkpoint,
    write_offset_checkpoint,
)
from strom.storage.local.offset_index import OffsetIndex
from strom.storage.local.time_index import TimeIndex, peek_last_entry
from strom.storage.local.topic_store import TopicStore


def test_offset_index_lookup_and_kafka_format(tmp_path: Path) -> None:
    index = OffsetIndex(max_entries=3)
    for rel, pos in [(5, 100), (9, 250), (20, 900), (30, 1200)]:
        index.append(rel, pos)
    assert len(index) == 3 and index.is_full  # the 4th entry is dropped, not an error
    assert [index.lookup(o) for o in (0, 4, 5, 8, 9, 19, 20, 10**6)] == [
        0, 0, 100, 100, 250, 250, 900, 900]
    assert [index.position_floor(p) for p in (0, 99, 100, 899, 5000)] == [0, 0, 100, 250, 900]
    assert index.to_bytes()[:8] == (5).to_bytes(4, "big") + (100).to_bytes(4, "big")
    index.save(tmp_path / "x.index")
    loaded = OffsetIndex.load(tmp_path / "x.index", 10, max_relative_offset=21,
                              segment_size=901)
    assert loaded is not None and list(loaded.offsets) == [5, 9, 20]
    assert list(loaded.positions) == [100, 250, 900]
    index.truncate_to_position(250)
    assert list(index.positions) == [100]


def test_offset_index_validation() -> None:
    def raw(*pairs: tuple[int, int]) -> bytes:
        return b"".join(o.to_bytes(4, "big") + p.to_bytes(4, "big", signed=True)
                        for o, p in pairs)

    ok = raw((1, 10), (2, 20))
    assert OffsetIndex.from_bytes(ok, 10, 3, 21) is not None
    assert OffsetIndex.from_bytes(b"", 10, 3, 21) is not None
    assert OffsetIndex.from_bytes(ok[:-1], 10, 3, 21) is None  # partial entry
    assert OffsetIndex.from_bytes(ok, 10, 2, 21) is None  # offset past the segment
    assert OffsetIndex.from_bytes(ok, 10, 3, 20) is None  # position past the file
    assert OffsetIndex.from_bytes(raw((2, 10), (1, 20)), 10, 3, 21) is None
    assert OffsetIndex.from_bytes(raw((1, 20), (2, 10)), 10, 3, 21) is None
    assert OffsetIndex.from_bytes(raw((1, -5), (2, 10)), 10, 3, 21) is None


def test_time_index(tmp_path: Path) -> None:
    index = TimeIndex(max_entries=2)
    index.maybe_append(-1, 0)  # no timestamp: ignored
    index.maybe_append(100, 1)
    index.maybe_append(100, 2)  # not larger: ignored
    index.maybe_append(300, 5)
    index.maybe_append(400, 6)  # full
    index.maybe_append(500, 7, skip_full_check=True)  # the final entry on roll/close
    assert list(index.timestamps) == [100, 300, 500] and list(index.offsets) == [1, 5, 7]
    assert [index.offset_before(t) for t in (50, 100, 101, 300, 301, 10**9)] == [
        None, None, 1, 1, 5, 7]
    path = tmp_path / "x.timeindex"
    index.save(path)
    assert path.stat().st_size == 36
    assert peek_last_entry(path, 8) == (500, 7)
    assert peek_last_entry(path, 7) is None
    loaded = TimeIndex.load(path, 2, 8)
    assert loaded is not None and list(loaded.timestamps) == [100, 300, 500]
    assert TimeIndex.load(path, 2, 7) is None
    assert TimeIndex.from_bytes(path.read_bytes()[:-3], 2, 8) is None
    swapped = path.read_bytes()[12:24] + path.read_bytes()[:12]
    assert TimeIndex.from_bytes(swapped, 2, 8) is None
    (tmp_path / "empty.timeindex").write_bytes(b"")
    assert peek_last_entry(tmp_path / "empty.timeindex", 8) == (-1, -1)
    assert peek_last_entry(tmp_path / "missing.timeindex", 8) is None


def test_offset_checkpoint_format(tmp_path: Path) -> None:
    entries = {("b", 1): 7, ("a", 0): 12}
    assert format_offset_checkpoint(entries) == b"0\n2\na 0 12\nb 1 7\n"
    path = tmp_path / "cp"
    write_offset_checkpoint(path, entries)
    assert read_offset_checkpoint(path) == entries
    assert read_offset_checkpoint(tmp_path / "missing") == {}
    path.write_bytes(b"0\n3\na 0 12\n")
    assert read_offset_checkpoint(path) == {}  # malformed: ignored with a warning
    path.write_bytes(b"1\n0\n")
    assert read_offset_checkpoint(path) == {}


def test_topic_store_round_trip(tmp_path: Path) -> None:
    store = TopicStore(tmp_path)
    assert store.load() == {}
    info = TopicInfo("t.x", uuid.uuid4(), 3, {"retention.ms": "5"})
    store.save(info)
    (tmp_path / "__topics" / "broken.json").write_text("{not json")
    (tmp_path / "__topics" / "other.json").write_bytes(
        (tmp_path / "__topics" / "t.x.json").read_bytes())  # names another topic
    (tmp_path / "__topics" / "y.json.tmp").write_text("{}")
    assert store.load() == {"t.x": info}
    assert not (tmp_path / "__topics" / "y.json.tmp").exists()
    store.remove("t.x")
    store.remove("t.x")
    assert "t.x" not in store.load()
