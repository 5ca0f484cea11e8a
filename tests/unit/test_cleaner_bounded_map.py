"""The log cleaner's offset map is bounded by log.cleaner.dedupe.buffer.size: its entries are
counted honestly (a tracemalloc peak stays within the budget), a full map ends inside a batch
and the rest is cleaned by later passes, a budget too small for one entry is refused at start
and, if set anyway, still makes progress one key per pass."""

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
    ENTRY_OVERHEAD_BYTES,
    MAX_ENTRY_BYTES,
    OffsetMap,
    entry_bytes,
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


def test_a_buffer_too_small_for_one_entry_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"log\.cleaner\.dedupe\.buffer\.size"):
        LogCleaner(tmp_path, 1 << 20, MAX_ENTRY_BYTES - 1)
    assert LogCleaner(tmp_path, 1 << 20, MAX_ENTRY_BYTES).dedupe_buffer_bytes == MAX_ENTRY_BYTES


def test_entries_cost_their_dict_share_int_and_rounded_key() -> None:
    assert entry_bytes(0) == entry_bytes(15) == ENTRY_OVERHEAD_BYTES + 48
    assert entry_bytes(16) == ENTRY_OVERHEAD_BYTES + 64
    assert MAX_ENTRY_BYTES == entry_bytes(33) == ENTRY_OVERHEAD_BYTES + 80
    omap = OffsetMap(2 * entry_bytes(2) + MAX_ENTRY_BYTES)
    assert omap.put(b"k1", 1) and omap.put(b"k2", 2)
    assert omap.put(b"x" * 100, 3)  # stored as a 33-byte digest
    assert omap.used_bytes == omap.budget_bytes
    assert not omap.put(b"k3", 4)  # a new key does not fit: nothing changes
    assert omap.get(b"k3") == -1 and len(omap) == 3
    assert omap.put(b"k1", 5) and omap.get(b"k1") == 5  # a known key always does
    assert omap.get(b"x" * 100) == 3
    assert OffsetMap(0).put(b"k", 0)  # the first key always goes in


@pytest.mark.parametrize("key_length", [2, 12, 32, 200])
def test_a_full_map_uses_no_more_memory_than_its_budget(key_length: int) -> None:
    budget = 4 * 1024 * 1024
    keys = [i.to_bytes(key_length, "big") for i in range(budget // ENTRY_OVERHEAD_BYTES)]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        omap = OffsetMap(budget)
        for i, key in enumerate(keys):
            if not omap.put(key, 2**31 + i):
                break
        else:
            raise AssertionError("the map never filled up")
        peak = tracemalloc.get_traced_memory()[1] - base  # the dict, ints and any digests
    finally:
        tracemalloc.stop()
    stored_keys = len(omap) * (33 + key_length) if key_length <= 32 else 0  # made above
    assert budget * 0.5 < peak + stored_keys <= budget


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
