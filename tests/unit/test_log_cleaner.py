"""LogCleaner: compaction keeps each key's latest record at its original offset, keeps
tombstones for delete.retention.ms, respects the lag and dirty-ratio settings, leaves the
active segment alone, preserves batch encodings, and survives a crash at every step."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from strom.config.broker import BrokerConfig
from strom.protocol.batch_header import crc_matches, read_batch_header
from strom.protocol.compression import GZIP, LZ4, NONE, SNAPPY, ZSTD
from strom.protocol.control_batch import COMMIT, build_control_batch
from strom.protocol.record_builder import build_batch
from strom.protocol.record_rewrite import DELETE_HORIZON_MASK, delete_horizon_ms
from strom.protocol.records import iter_records
from strom.storage.api import AppendBatch, FileRegion, batch_control_type
from strom.storage.local import LocalEngine, LocalPartitionLog, read_region
from strom.storage.local.cleaner import CRASH_POINTS, CleanTarget
from strom.storage.local.cleaner_map import SLOT_BYTES, slots_for
from strom.storage.local.cleaner_rewrite import group_segments
from tests.unit.batch_factory import (
    append_batch,
    crash_engine,
    make_batch,
    read_all,
    region_bytes,
    split_batches,
)

T0 = 1_000_000  # record timestamps start here; cleaning happens at T0 + something
COMPACT = {"cleanup.policy": "compact", "segment.bytes": "300",
           "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "1000"}

Rec = tuple[int, bytes | None, bytes | None]  # (offset, key, value)


class SimulatedCrash(BaseException):
    """Raised from the cleaner's crash hook: nothing after it runs, as in a crash."""


def keyed(records: Sequence[tuple[bytes | None, bytes | None]], ts: int,
          compression: int = NONE, **kwargs: Any) -> AppendBatch:
    data = bytearray(build_batch([(k, v, (), ts) for k, v in records], compression=compression,
                                 **kwargs))
    return AppendBatch(data, len(records), ts, ts)


def map_bytes(keys: int) -> int:
    """An offset map budget that holds exactly `keys` keys (of any length)."""
    return slots_for(keys) * SLOT_BYTES


def engine_for(path: Path) -> LocalEngine:
    return LocalEngine(path, BrokerConfig.build(path, "localhost", 0, {}))


def parse(batches: Sequence[bytes]) -> list[Rec]:
    out: list[Rec] = []
    for b in batches:
        h = read_batch_header(b)
        out.extend((h.base_offset + r.offset_delta, r.key, r.value) for r in iter_records(b))
    return out


async def records(plog: LocalPartitionLog) -> list[Rec]:
    return parse(await read_all(plog))


def check_contiguous(batches: Sequence[bytes], start: int, end: int) -> None:
    """Batches span start..end-1 without gaps or overlaps and have valid CRCs."""
    expected = start
    for b in batches:
        h = read_batch_header(b)
        assert h.base_offset == expected and crc_matches(b, 0, h)
        expected = h.next_offset
    assert expected == end


def latest_per_key(history: Sequence[Rec], below: int) -> list[Rec]:
    """What full compaction of the offsets below `below` leaves: each key's latest record."""
    latest: dict[bytes | None, int] = {}
    for offset, key, _ in history:
        if offset < below:
            latest[key] = offset
    return [r for r in history if r[0] >= below or latest.get(r[1]) == r[0]]


async def write(plog: LocalPartitionLog, count: int, keys: int, ts: int = T0,
                start: int = 0) -> list[Rec]:
    """`count` single-record batches, key i % keys, then a flush; returns what was written."""
    out: list[Rec] = []
    for i in range(start, start + count):
        key, value = b"k%d" % (i % keys), b"v%d" % i
        result = await plog.append([keyed([(key, value)], ts + i)])
        out.append((result.base_offset, key, value))
    await plog.flush()
    return out


def run(path: Path, configs: dict[str, str],
        body: Callable[[LocalEngine, LocalPartitionLog], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        engine = engine_for(path)
        await engine.open()
        await engine.create_topic("c", 1, configs)
        try:
            return await body(engine, engine.partition("c", 0))
        finally:
            await engine.close()

    return asyncio.run(main())


def test_latest_value_per_key_is_kept_at_its_offset(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        history = await write(plog, 40, 5)
        active_base = plog.segments[-1].base_offset
        assert await engine.run_cleaner(T0 + 10_000) == 1
        batches = await read_all(plog)
        check_contiguous(batches, 0, 40)
        assert parse(batches) == latest_per_key(history, active_base)
        assert plog.size_bytes < 1200 and plog.log_end_offset == 40
        assert engine.cleaner.first_dirty_offset(plog) == active_base
        assert await engine.run_cleaner(T0 + 10_000) == 0  # nothing dirty is left
        # New data makes it dirty again; the second pass also merges the small segments.
        history += await write(plog, 20, 5, start=40)
        before = plog.segment_count
        assert await engine.run_cleaner(T0 + 10_000) == 1
        assert plog.segment_count < before
        assert await records(plog) == latest_per_key(history, plog.segments[-1].base_offset)

    run(tmp_path, COMPACT, body)


def test_active_segment_is_untouched(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await write(plog, 30, 1)
        active = plog.segments[-1]
        before = active.log_path.read_bytes()
        await engine.run_cleaner(T0 + 10_000)
        assert plog.segments[-1] is active and active.log_path.read_bytes() == before
        assert len(parse(split_batches(before))) == len(split_batches(before)) > 1  # all kept

    run(tmp_path, COMPACT, body)


def test_tombstones_are_kept_for_delete_retention_ms(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await plog.append([keyed([(b"gone", b"v")], T0)])
        dead = (await plog.append([keyed([(b"gone", None)], T0 + 1)])).base_offset
        history = [(dead, b"gone", None)] + await write(plog, 20, 3, ts=T0 + 2, start=2)
        now = T0 + 10_000
        assert await engine.run_cleaner(now) == 1
        survivors = await records(plog)
        assert (dead, b"gone", None) in survivors and (0, b"gone", b"v") not in survivors
        tomb = next(b for b in await read_all(plog) if read_batch_header(b).base_offset == dead)
        h = read_batch_header(tomb)
        assert h.attributes & DELETE_HORIZON_MASK and delete_horizon_ms(h) == now + 1000
        assert parse([tomb]) == [(dead, b"gone", None)]  # record timestamp kept
        assert next(iter_records(tomb)).timestamp_delta + h.base_timestamp == T0 + 1
        assert await engine.run_cleaner(now + 999) == 0  # the horizon has not passed yet
        assert await engine.run_cleaner(now + 1000) == 1  # it has: a pass is due
        survivors = await records(plog)
        assert all(key != b"gone" for _, key, _ in survivors)
        assert survivors == [r for r in latest_per_key(history, plog.segments[-1].base_offset)
                             if r[1] != b"gone"]
        check_contiguous(await read_all(plog), 0, plog.log_end_offset)

    run(tmp_path, COMPACT, body)


def test_delete_horizon_survives_a_restart(tmp_path: Path) -> None:
    async def main() -> None:
        engine = engine_for(tmp_path)
        await engine.open()
        await engine.create_topic("c", 1, COMPACT)
        plog = engine.partition("c", 0)
        await plog.append([keyed([(b"gone", None)], T0)])
        await write(plog, 20, 3, start=1)
        assert await engine.run_cleaner(T0 + 5000) == 1
        await engine.close()
        engine = engine_for(tmp_path)
        await engine.open()
        plog = engine.partition("c", 0)
        assert (0, b"gone", None) in await records(plog)
        assert await engine.run_cleaner(T0 + 5999) == 0
        assert await engine.run_cleaner(T0 + 6000) == 1
        assert (0, b"gone", None) not in await records(plog)
        await engine.close()

    asyncio.run(main())


def test_min_compaction_lag_is_respected(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        history = await write(plog, 40, 2)  # timestamps T0 .. T0 + 39
        now = T0 + 20 + 60_000  # records with timestamp > T0 + 20 are within the lag
        assert await engine.run_cleaner(now) == 1
        survivors = await records(plog)
        written = {r[0]: r for r in history}
        for offset, _, _ in set(history) - set(survivors):
            assert written[offset][0] < 21  # only records older than the lag were removed
        end = engine.cleaner.first_dirty_offset(plog)
        assert 0 < end <= 21
        assert survivors == latest_per_key(history, end)
        assert await engine.run_cleaner(now) == 0
        assert await engine.run_cleaner(now + 1000) == 1  # time passed: more is cleanable
        assert engine.cleaner.first_dirty_offset(plog) > end

    run(tmp_path, {**COMPACT, "min.compaction.lag.ms": "60000"}, body)


def test_dirty_ratio_threshold(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await write(plog, 40, 40)  # distinct keys: cleaning removes nothing
        target = CleanTarget(plog)
        assert await engine.run_cleaner(T0) == 1  # no checkpoint yet: all dirty, ratio 1
        await write(plog, 4, 40, start=40)
        todo = await engine.cleaner.survey(target, T0)
        assert todo is None  # a few dirty bytes only: below min.cleanable.dirty.ratio
        await write(plog, 40, 40, start=44)
        todo = await engine.cleaner.survey(target, T0)
        assert todo is not None and todo.dirty_ratio >= 0.5
        assert todo.clean_bytes > 0 and todo.first_dirty > 0

    run(tmp_path, {**COMPACT, "min.cleanable.dirty.ratio": "0.5"}, body)


def test_checkpoint_survives_a_restart(tmp_path: Path) -> None:
    async def main() -> None:
        engine = engine_for(tmp_path)
        await engine.open()
        await engine.create_topic("c", 1, COMPACT)
        await write(engine.partition("c", 0), 30, 3)
        assert await engine.run_cleaner(T0 + 10_000) == 1
        first_dirty = engine.cleaner.first_dirty_offset(engine.partition("c", 0))
        await engine.close()
        assert (tmp_path / "cleaner-offset-checkpoint").read_text() == f"0\n1\nc 0 {first_dirty}\n"
        engine = engine_for(tmp_path)
        await engine.open()
        plog = engine.partition("c", 0)
        assert engine.cleaner.first_dirty_offset(plog) == first_dirty
        assert await engine.run_cleaner(T0 + 10_000) == 0
        await engine.delete_topic("c")
        await engine.create_topic("c", 1, COMPACT)
        assert engine.cleaner.first_dirty_offset(engine.partition("c", 0)) == 0
        await engine.close()

    asyncio.run(main())


def test_max_compaction_lag_forces_a_pass_below_the_ratio(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await write(plog, 40, 3)
        assert await engine.run_cleaner(T0 + 100) == 1
        await write(plog, 3, 3, ts=T0 + 200, start=40)  # a little dirty data
        target = CleanTarget(plog, max_compaction_lag_ms=10_000)
        assert await engine.cleaner.survey(target, T0 + 5000) is None
        assert await engine.cleaner.survey(target, T0 + 10_241) is not None

    run(tmp_path, {**COMPACT, "min.cleanable.dirty.ratio": "0.9"}, body)


@pytest.mark.parametrize("codec", [GZIP, SNAPPY, LZ4, ZSTD])
def test_compressed_batches_keep_codec_producer_and_headers(tmp_path: Path, codec: int) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        for i in range(12):
            recs = [(b"a", b"a%d" % i), (b"b%d" % (i % 2), b"b%d" % i), (None, None)][:2]
            data = bytearray(build_batch(
                [(k, v, [("h", b"%d" % i)], T0 + i) for k, v in recs], compression=codec,
                producer_id=7, producer_epoch=3, base_sequence=2 * i,
                snappy_xerial=codec == SNAPPY))
            await plog.append([AppendBatch(data, 2, T0 + i, T0 + i)])
        await plog.flush()
        before = {read_batch_header(b).base_offset: b for b in await read_all(plog)}
        assert await engine.run_cleaner(T0 + 10_000) == 1
        after = await read_all(plog)
        check_contiguous(after, 0, 24)
        for b in after:
            h = read_batch_header(b)
            if not h.records_count:
                continue  # an empty batch standing for removed records
            old = read_batch_header(before[h.base_offset])
            assert (h.compression, h.producer_id, h.producer_epoch, h.base_sequence,
                    h.last_offset_delta) == (codec, 7, 3, old.base_sequence, 1)
            if codec == SNAPPY:
                assert b[61:69] == b"\x82SNAPPY\x00"
            old_recs = {r.offset_delta: r for r in iter_records(before[h.base_offset])}
            for r in iter_records(b):
                o = old_recs[r.offset_delta]
                assert (r.key, r.value, r.headers) == (o.key, o.value, o.headers)
                assert h.base_timestamp + r.timestamp_delta == T0 + h.base_offset // 2
        history = parse(list(before.values()))
        assert parse(after) == latest_per_key(history, plog.segments[-1].base_offset)

    run(tmp_path, COMPACT, body)


def test_fetch_of_a_compacted_range_returns_only_survivors(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        history = await write(plog, 60, 4)
        await engine.run_cleaner(T0 + 10_000)
        expected = latest_per_key(history, plog.segments[-1].base_offset)
        # A consumer fetches from every offset, skips records below its position and moves
        # to each batch's next offset (how Kafka clients step over compacted gaps).
        for start in range(0, 60, 7):
            seen: list[Rec] = []
            position = start
            while position < plog.log_end_offset:
                result = await plog.read(position, 150, True)
                batches = split_batches(region_bytes(result))
                seen.extend(r for r in parse(batches) if r[0] >= position)
                position = read_batch_header(batches[-1]).next_offset
            assert seen == [r for r in expected if r[0] >= start]

    run(tmp_path, COMPACT, body)


def test_readers_of_replaced_segments_still_read_valid_data(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await write(plog, 30, 2)
        result = await plog.read(0, 10**6, True)
        regions = [c for c in result.chunks if isinstance(c, FileRegion)]
        before = b"".join(read_region(r) for r in regions)
        await engine.run_cleaner(T0 + 10_000)
        assert b"".join(read_region(r) for r in regions) == before  # fds retired, not closed
        assert len(parse(split_batches(before))) == 30 > len(await records(plog))

    run(tmp_path, COMPACT, body)


def test_keyless_records_are_removed_and_control_batches_kept(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await plog.append([append_batch(make_batch(2, base_timestamp=T0))])  # keyless
        marker = build_control_batch(5, 0, True, T0)
        await plog.append([AppendBatch(bytearray(marker), 1, T0, T0)])
        await write(plog, 20, 2, start=3)
        await engine.run_cleaner(T0 + 10_000)
        batches = await read_all(plog)
        assert read_batch_header(batches[0]).records_count == 0  # the keyless ones went
        # The marker is kept; it closed no transaction that has data left, so the first pass
        # stamps its delete horizon (base timestamp, attributes, CRC) as Kafka's does.
        kept = read_batch_header(batches[1])
        assert kept.is_control and kept.producer_id == 5 and kept.records_count == 1
        assert batch_control_type(batches[1]) == batch_control_type(marker) == COMMIT
        check_contiguous(batches, 0, plog.log_end_offset)

    run(tmp_path, COMPACT, body)


def test_a_full_offset_map_spreads_cleaning_over_passes(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        engine.cleaner.dedupe_buffer_bytes = map_bytes(3)
        history = await write(plog, 40, 6)
        ends = []
        while await engine.run_cleaner(T0 + 10_000):
            ends.append(engine.cleaner.first_dirty_offset(plog))
        assert len(ends) > 3 and ends == sorted(ends)
        assert await records(plog) == latest_per_key(history, plog.segments[-1].base_offset)

    run(tmp_path, COMPACT, body)


def test_group_segments_by_size_and_offsets() -> None:
    spans = [(0, 10, 100), (10, 20, 100), (20, 30, 150), (30, 40, 10), (40, 2**31 + 41, 1)]
    assert group_segments(spans, 250) == [range(0, 2), range(2, 4), range(4, 5)]
    assert group_segments(spans, 10**6) == [range(0, 4), range(4, 5)]


def segment_names(plog: LocalPartitionLog) -> list[str]:
    return sorted(os.listdir(plog.directory))


@pytest.mark.parametrize("step", CRASH_POINTS)
def test_a_crash_at_any_step_leaves_old_or_new_segments(tmp_path: Path, step: str) -> None:
    async def main() -> None:
        engine = engine_for(tmp_path)
        await engine.open()
        await engine.create_topic("c", 1, COMPACT)
        plog = engine.partition("c", 0)
        history = await write(plog, 40, 3)
        await engine.run_cleaner(T0 + 10_000)  # small segments now: the next pass merges them
        history += await write(plog, 40, 3, start=40)
        end = plog.segments[-1].base_offset
        old = await records(plog)
        segments_before = plog.segment_count

        def crash(name: str) -> None:
            if name == step:
                raise SimulatedCrash(name)

        engine.cleaner.crash_hook = crash
        with pytest.raises(SimulatedCrash):
            await engine.run_cleaner(T0 + 10_000)
        await crash_engine(engine)
        left = {n.rsplit(".", 1)[-1] for n in os.listdir(tmp_path / "c-0")}
        assert ("cleaned" in left, "swap" in left) == (step == "cleaned",
                                                       step in ("swap", "delete"))

        engine = engine_for(tmp_path)
        await engine.open()
        plog = engine.partition("c", 0)
        assert not any(n.endswith((".cleaned", ".swap")) for n in segment_names(plog))
        after = await records(plog)
        check_contiguous(await read_all(plog), 0, 80)
        assert set(latest_per_key(history, end)) <= set(after) <= set(old)
        swapped = step != "cleaned"  # the first group, several segments, was swapped in
        assert (plog.segment_count < segments_before) == swapped
        await engine.run_cleaner(T0 + 10_000)
        assert await records(plog) == latest_per_key(history, end)
        await engine.close()

    asyncio.run(main())


def test_unreadable_batches_are_kept_and_corrupt_ones_stop_the_cleaning(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        bogus = make_batch(2, base_timestamp=T0, compression=GZIP)  # gzip bit, plain records
        await plog.append([append_batch(bogus)])
        await write(plog, 30, 2, start=2)
        await engine.run_cleaner(T0 + 10_000)
        assert (await read_all(plog))[0][16:] == bytes(bogus)[16:]  # kept byte for byte
        await write(plog, 30, 2, start=32)
        first = plog.segments[0].log_path
        data = bytearray(first.read_bytes())
        data[-1] ^= 0xFF  # a bit flip in a segment the cleaner will read
        first.write_bytes(bytes(data))
        before = [s.log_path.read_bytes() for s in plog.segments]
        assert await engine.run_cleaner(T0 + 10_000) == 0  # CorruptLog: not re-sealed
        assert [s.log_path.read_bytes() for s in plog.segments] == before
        assert await engine.run_cleaner(T0 + 10_000) == 0  # uncleanable until restart

    run(tmp_path, COMPACT, body)


def test_an_infinite_delete_retention_keeps_tombstones(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await plog.append([keyed([(b"gone", None)], T0)])
        await write(plog, 20, 3, start=1)
        assert await engine.run_cleaner(T0 + 10_000) == 1
        tomb = (await read_all(plog))[0]
        assert delete_horizon_ms(read_batch_header(tomb)) == 2**63 - 1
        assert await engine.run_cleaner(2**62) == 0

    run(tmp_path, {**COMPACT, "delete.retention.ms": str(2**63 - 1)}, body)


def test_offset_for_timestamp_ignores_a_delete_horizon(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await plog.append([keyed([(b"a", None), (b"b", b"1")], T0, compression=GZIP)])
        await write(plog, 20, 3, ts=T0 + 10, start=2)
        assert await engine.run_cleaner(T0 + 10_000) == 1
        h = read_batch_header((await read_all(plog))[0])
        assert h.compression == GZIP and delete_horizon_ms(h) == T0 + 11_000
        assert await plog.offset_for_timestamp(T0) == (0, T0)  # not (0, the horizon)

    run(tmp_path, COMPACT, body)


def test_close_stops_a_pass_whose_caller_was_cancelled(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> list[Rec]:
        history = await write(plog, 200, 7)
        task = asyncio.create_task(engine.run_cleaner(T0 + 10_000))
        await asyncio.sleep(0.01)
        task.cancel()  # as the server does at stop; the pass goes on until close()
        with pytest.raises(asyncio.CancelledError):
            await task
        return history

    history = run(tmp_path, COMPACT, body)  # run() closes the engine: it stops the pass

    async def reopen() -> None:
        engine = engine_for(tmp_path)
        await engine.open()
        plog = engine.partition("c", 0)
        check_contiguous(await read_all(plog), 0, 200)
        assert set(latest_per_key(history, 200)) <= set(await records(plog)) <= set(history)
        assert not any(n.endswith((".cleaned", ".swap")) for n in segment_names(plog))
        await engine.close()

    asyncio.run(reopen())
