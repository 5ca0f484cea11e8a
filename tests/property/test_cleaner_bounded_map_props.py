"""Property: the offset map (a table of digests and offsets) answers exactly as a dict that
refuses new keys beyond its capacity; and with an offset map that holds only a few keys, a
dirty section with more keys (also within a single batch) is cleaned over several passes, and
after every pass the log is exactly what a model of Kafka's bounded map says: the map takes
the dirty records in order until a new key does not fit, ends there (maybe inside a batch),
and of the records below that end only those the map does not supersede remain, at their
offsets; finally each key's latest record."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from strom.protocol.compression import GZIP, LZ4, NONE, SNAPPY, ZSTD
from strom.storage.local import LocalEngine, LocalPartitionLog
from strom.storage.local.cleaner_map import OffsetMap
from tests.unit.batch_factory import read_all
from tests.unit.test_log_cleaner import (
    T0,
    Rec,
    check_contiguous,
    engine_for,
    keyed,
    latest_per_key,
    map_bytes,
    parse,
)

KEYS = [b"k%d" % i for i in range(12)]
MAP_KEYS = [b"", b"k", b"K" * 16, b"K" * 17, b"x" * 300, *[b"m%d" % i for i in range(60)]]
MAX_PASSES = 400

batch = st.tuples(st.lists(st.integers(0, len(KEYS) - 1), min_size=1, max_size=15),
                  st.sampled_from([NONE, NONE, GZIP, SNAPPY, LZ4, ZSTD]))
rounds = st.lists(st.lists(batch, min_size=1, max_size=8), min_size=1, max_size=3)


def model_pass(log: list[Rec], first_dirty: int, end: int,
               capacity: int) -> tuple[list[Rec], int]:
    """(the records after one pass, the map's end) for a map of `capacity` keys."""
    mapped: dict[bytes | None, int] = {}
    map_end = end
    for offset, key, _ in log:
        if first_dirty <= offset < end:
            if key not in mapped and len(mapped) >= capacity:
                map_end = offset
                break
            mapped[key] = offset
    return [r for r in log if r[0] >= map_end or mapped.get(r[1], -1) <= r[0]], map_end


async def clean_until_done(engine: LocalEngine, plog: LocalPartitionLog,
                           capacity: int) -> int:
    """Passes until none is due, each checked against the model; returns how many ran."""
    for passes in range(MAX_PASSES):
        first_dirty = engine.cleaner.first_dirty_offset(plog)
        end = plog.segments[-1].base_offset
        before = parse(await read_all(plog))
        expected, map_end = model_pass(before, first_dirty, end, capacity)
        if not await engine.run_cleaner(T0 + 10_000):
            assert first_dirty >= end  # only a clean log is not due
            return passes
        batches = await read_all(plog)
        check_contiguous(batches, plog.log_start_offset, plog.log_end_offset)
        assert parse(batches) == expected
        assert engine.cleaner.first_dirty_offset(plog) == map_end
    raise AssertionError(f"still cleaning after {MAX_PASSES} passes")


async def scenario(data_dir: Path, configs: dict[str, str], capacity: int,
                   batches_by_round: list[list[tuple[list[int], int]]]) -> None:
    engine = engine_for(data_dir)
    await engine.open()
    try:
        await engine.create_topic("c", 1, configs)
        engine.cleaner.dedupe_buffer_bytes = map_bytes(capacity)
        plog = engine.partition("c", 0)
        history: list[Rec] = []
        passes = 0
        for written in batches_by_round:
            for keys, codec in written:
                recs = [(KEYS[k], b"v%d" % (len(history) + i)) for i, k in enumerate(keys)]
                result = await plog.append([keyed(recs, T0, compression=codec)])
                history += [(result.base_offset + i, k, v) for i, (k, v) in enumerate(recs)]
            await plog.flush()
            passes += await clean_until_done(engine, plog, capacity)
        end = plog.segments[-1].base_offset
        assert parse(await read_all(plog)) == latest_per_key(history, end)
        event("several passes" if passes > len(batches_by_round) else "one pass a round")
    finally:
        await engine.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches_by_round=rounds, capacity=st.integers(1, 5),
       segment_bytes=st.integers(150, 700))
def test_a_bounded_map_cleans_over_passes_as_the_model_says(
        batches_by_round: list[list[tuple[list[int], int]]], capacity: int,
        segment_bytes: int) -> None:
    configs = {"cleanup.policy": "compact", "segment.bytes": str(segment_bytes),
               "min.cleanable.dirty.ratio": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp), configs, capacity, batches_by_round))


map_ops = st.lists(st.tuples(st.booleans(), st.sampled_from(MAP_KEYS),
                             st.integers(0, 2**63 - 2)), max_size=300)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 70), ops=map_ops)
def test_the_offset_map_answers_as_a_dict_with_a_capacity(
        capacity: int, ops: list[tuple[bool, bytes, int]]) -> None:
    omap = OffsetMap(map_bytes(capacity))
    model: dict[bytes, int] = {}
    for is_put, key, offset in ops:
        if is_put:
            fits = key in model or len(model) < capacity
            assert omap.put(key, offset) == fits
            if fits:
                model[key] = offset
        assert omap.get(key) == model.get(key, -1)
        assert len(omap) == len(model)
    assert [omap.get(key) for key in MAP_KEYS] == [model.get(key, -1) for key in MAP_KEYS]
