"""The log cleaner's offset map is bounded by log.cleaner.dedupe.buffer.size: one table of
24-byte slots allocated at once within the budget (tracemalloc), no larger than the dirty
section can fill, holding Kafka's 0.9 x slots keys of any length; a full map ends inside a
batch and the rest is cleaned by later passes; a budget too small for a map of one key is
refused at start and, if set anyway, still makes progress one key per pass."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from strom.config.broker import BrokerConfig
from strom.config.topic import ConfigError
from strom.protocol.batch_header import read_batch_header
from strom.protocol.compression import ZSTD
from strom.storage.local import LocalEngine, LocalPartitionLog
from strom.storage.local.cleaner import LogCleaner
from strom.storage.local.cleaner_map import (
    DEFAULT_DEDUPE_BUFFER_BYTES,
    LOAD_FACTOR,
    MIN_DEDUPE_BUFFER_BYTES,
    MIN_SLOTS,
    SLOT_BYTES,
    OffsetMap,
    capacity_of,
    slots_for,
)
from tests.unit.batch_factory import read_all
from tests.unit.test_log_cleaner import (
    COMPACT,
    T0,
    Rec,
    check_contiguous,
    keyed,
    latest_per_key,
    map_bytes,
    records,
    run,
    write,
)


def test_the_setting_and_its_kafka_default() -> None:
    assert BrokerConfig().get_int("log.cleaner.dedupe.buffer.size") == 134_217_728
    assert DEFAULT_DEDUPE_BUFFER_BYTES == 134_217_728
    config = BrokerConfig()
    config.set("log.cleaner.dedupe.buffer.size", "1048576")
    assert config.get_int("log.cleaner.dedupe.buffer.size") == 1_048_576


def test_a_buffer_too_small_for_a_map_of_one_key_is_refused(tmp_path: Path) -> None:
    assert MIN_DEDUPE_BUFFER_BYTES == 2 * SLOT_BYTES  # Kafka: slots x load factor must be > 1
    with pytest.raises(ConfigError, match=r"log\.cleaner\.dedupe\.buffer\.size"):
        LogCleaner(tmp_path, 1 << 20, MIN_DEDUPE_BUFFER_BYTES - 1)
    cleaner = LogCleaner(tmp_path, 1 << 20, MIN_DEDUPE_BUFFER_BYTES)
    assert cleaner.dedupe_buffer_bytes == MIN_DEDUPE_BUFFER_BYTES


def test_slots_of_24_bytes_full_at_kafkas_load_factor() -> None:
    assert (SLOT_BYTES, LOAD_FACTOR) == (24, 0.9)
    slots = DEFAULT_DEDUPE_BUFFER_BYTES // SLOT_BYTES
    assert (slots, capacity_of(slots)) == (5_592_405, 5_033_164)  # Kafka's, for 128 MiB
    assert [slots_for(keys) for keys in (0, 1, 2, 3, 9, 10)] == [2, 2, 3, 4, 10, 12]
    for keys in range(1, 3000):  # the fewest slots that hold exactly that many keys
        assert capacity_of(slots_for(keys)) == keys > capacity_of(slots_for(keys) - 1)


def test_a_map_holds_its_capacity_of_keys_of_any_length() -> None:
    omap = OffsetMap(map_bytes(3))
    assert (omap.size_bytes, omap.capacity) == (4 * SLOT_BYTES, 3)
    assert omap.put(b"k1", 1) and omap.put(b"", 0) and omap.put(b"x" * 100, 2**63 - 2)
    assert not omap.put(b"k3", 4)  # a new key does not fit: nothing changes
    assert omap.get(b"k3") == -1 and len(omap) == 3
    assert omap.put(b"k1", 5) and omap.get(b"k1") == 5  # a known key always does
    assert omap.get(b"") == 0 and omap.get(b"x" * 100) == 2**63 - 2
    assert omap.get(b"x" * 99 + b"y") == -1 and omap.get(b"k") == -1


def test_a_map_below_its_minimum_holds_one_key_and_probing_ends() -> None:
    omap = OffsetMap(0)
    assert omap.size_bytes == MIN_SLOTS * SLOT_BYTES and omap.capacity == 1
    assert omap.put(b"k", 7) and not omap.put(b"other", 8)
    assert [omap.get(b"k%d" % i) for i in range(100)] == [-1] * 100  # an empty slot ends it
    assert omap.get(b"k") == 7


def test_a_crowded_map_finds_every_key_and_no_other() -> None:
    keys = [b"key-%d" % i * (1 + i % 7) for i in range(5000)]
    omap = OffsetMap(map_bytes(len(keys)))
    for i, key in enumerate(keys):
        assert omap.put(key, i)
    assert not omap.put(b"one more", 0)
    for i, key in enumerate(keys):
        assert omap.put(key, 2 * i)
    assert [omap.get(key) for key in keys] == [2 * i for i in range(len(keys))]
    assert all(omap.get(b"absent-%d" % i) == -1 for i in range(5000))


def test_the_map_is_no_larger_than_the_dirty_section_can_fill() -> None:
    small = OffsetMap(DEFAULT_DEDUPE_BUFFER_BYTES, max_keys=1000)
    assert (small.size_bytes, small.capacity) == (slots_for(1000) * SLOT_BYTES, 1000)
    assert all(small.put(b"k%d" % i, i) for i in range(1000))
    assert not small.put(b"k1000", 1000)
    assert OffsetMap(map_bytes(10), max_keys=10**9).capacity == 10  # the budget bounds it


@pytest.mark.parametrize("key_length", [3, 200])
def test_a_full_map_takes_its_table_once_within_the_budget(key_length: int) -> None:
    budget = 4 * 1024 * 1024 + 7
    held = capacity_of(budget // SLOT_BYTES)
    keys = [i.to_bytes(key_length, "big") for i in range(held + 1)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        omap = OffsetMap(budget)
        for i, key in enumerate(keys):
            if not omap.put(key, 2**31 + i):
                break
        current, peak = (m - base for m in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    assert len(omap) == held and i == held  # the map was full at its last key
    assert budget - SLOT_BYTES < omap.size_bytes <= budget
    assert omap.size_bytes <= current <= peak < omap.size_bytes + 4096  # nothing per key


def test_one_batch_with_more_keys_than_the_map_holds_is_cleaned_over_passes(
        tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        engine.cleaner.dedupe_buffer_bytes = map_bytes(4)
        recs = [(b"k%d" % (i % 10), b"v%d" % i) for i in range(60)]
        await plog.append([keyed(recs, T0, compression=ZSTD)])
        await plog.append([keyed([(b"z", b"z")], T0)])  # rolls: the big batch is inactive
        await plog.flush()
        history: list[Rec] = [(i, k, v) for i, (k, v) in enumerate(recs)]
        ends = []
        while await engine.run_cleaner(T0 + 10_000):
            ends.append(engine.cleaner.first_dirty_offset(plog))
            batches = await read_all(plog)
            check_contiguous(batches, 0, 61)
            assert read_batch_header(batches[0]).compression == ZSTD
        assert ends == list(range(4, 61, 4))  # 4 new keys a pass, ending inside the batch
        assert await records(plog) == [*latest_per_key(history, 60), (60, b"z", b"z")]

    run(tmp_path, COMPACT, body)


def test_a_map_below_one_entry_still_progresses_a_key_per_pass(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        engine.cleaner.dedupe_buffer_bytes = 0  # below the minimum LogCleaner() accepts
        history = await write(plog, 12, 3)
        active_base = plog.segments[-1].base_offset
        ends = []
        while await engine.run_cleaner(T0 + 10_000):
            ends.append(engine.cleaner.first_dirty_offset(plog))
            assert len(ends) <= active_base
        assert ends == list(range(1, active_base + 1))
        assert await records(plog) == latest_per_key(history, active_base)

    run(tmp_path, COMPACT, body)


def test_the_clean_part_below_a_mid_batch_map_end_loses_superseded_records(
        tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        history = await write(plog, 6, 6)  # k0..k5 at 0..5, one record a batch
        filler = [(b"f", b"F" * 400)]
        await plog.append([keyed(filler, T0)])  # offset 6, alone in a new segment
        await plog.flush()
        assert await engine.run_cleaner(T0 + 10_000) == 1
        assert engine.cleaner.first_dirty_offset(plog) == 6  # 0..5 are clean now
        engine.cleaner.dedupe_buffer_bytes = map_bytes(3)
        recs = [(b"k0", b"x0"), (b"k1", b"x1"), (b"k2", b"x2"), (b"k3", b"x3")]
        await plog.append([keyed(recs, T0, compression=ZSTD)])  # 7..10, a new segment
        await plog.append([keyed(filler, T0)])  # 11, the active segment
        await plog.flush()
        history += [(6, *filler[0]), *[(7 + i, k, v) for i, (k, v) in enumerate(recs)],
                    (11, *filler[0])]
        assert await engine.run_cleaner(T0 + 10_000) == 1
        assert engine.cleaner.first_dirty_offset(plog) == 9  # f, k0, k1 mapped; k2 not
        assert await records(plog) == [r for r in history if r[0] not in (0, 1)]
        assert await engine.run_cleaner(T0 + 10_000) == 1
        assert engine.cleaner.first_dirty_offset(plog) == 11
        assert await records(plog) == latest_per_key(history, 11)
        assert await engine.run_cleaner(T0 + 10_000) == 0

    run(tmp_path, COMPACT, body)


def test_the_engine_gives_the_cleaner_its_dedupe_buffer_setting(tmp_path: Path) -> None:
    config = BrokerConfig.build(tmp_path, "localhost", 0,
                                {"log.cleaner.dedupe.buffer.size": "1048576"})
    engine = LocalEngine(tmp_path, config)
    assert engine.cleaner.dedupe_buffer_bytes == 1_048_576
