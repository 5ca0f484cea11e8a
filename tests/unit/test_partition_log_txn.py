"""The local engine keeps transactions with the log: markers close transactions, the last
stable offset bounds read_committed reads at a batch boundary, aborted transactions are
queried and pruned with the log start offset, everything is rebuilt the same after a clean
close and after a crash without snapshots, and the cleaner never passes the first unstable
offset and removes aborted transactions' records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from strom.config.broker import BrokerConfig
from strom.protocol.batch_header import read_batch_header
from strom.protocol.control_batch import ABORT, COMMIT, control_type
from strom.protocol.record_builder import build_batch
from strom.protocol.records import iter_records
from strom.storage.api import AppendBatch, InvalidProducerEpoch, ReadResult
from strom.storage.local import LocalEngine, LocalPartitionLog
from strom.storage.local.producer_snapshots import list_snapshots, snapshot_path
from strom.storage.producer_state import BatchMetadata, ProducerStateManager
from tests.unit.batch_factory import (
    TRANSACTIONAL,
    batch,
    crash_engine,
    read_all,
    region_bytes,
    split_batches,
)

T0 = 1_000_000


def make_engine(path: Path, **settings: str) -> LocalEngine:
    return LocalEngine(path, BrokerConfig.build(path, "localhost", 0, settings))


async def open_partition(path: Path, configs: dict[str, str] | None = None
                         ) -> tuple[LocalEngine, LocalPartitionLog]:
    """An opened engine on `path` and its partition t-0 (topic "t" created with `configs`
    unless None: reopening)."""
    engine = make_engine(path)
    await engine.open()
    if configs is not None:
        await engine.create_topic("t", 1, configs)
    return engine, engine.partition("t", 0)


def delete_snapshots(directory: Path) -> None:
    for offset in list_snapshots(directory):
        snapshot_path(directory, offset).unlink()


def run(path: Path, configs: dict[str, str],
        body: Callable[[LocalEngine, LocalPartitionLog], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        engine, plog = await open_partition(path, configs)
        try:
            return await body(engine, plog)
        finally:
            await engine.close()

    return asyncio.run(main())


def tx(pid: int, seq: int, count: int = 1, epoch: int = 0, value_size: int = 10
       ) -> AppendBatch:
    return batch(count, producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                 attributes=TRANSACTIONAL, base_timestamp=T0, value_size=value_size)


def keyed_tx(pid: int, seq: int, key: bytes, value: bytes, epoch: int = 0, ts: int = T0
             ) -> AppendBatch:
    data = bytearray(build_batch([(key, value, (), ts)], producer_id=pid,
                                 producer_epoch=epoch, base_sequence=seq, transactional=True))
    return AppendBatch(data, 1, ts, ts)


def last_batches(state: ProducerStateManager) -> dict[int, tuple[int, BatchMetadata]]:
    """Each producer's epoch and last batch: what survives a rebuild from a cleaned log."""
    return {pid: (epoch, batches[-1]) for pid, (epoch, batches) in state.entries().items()}


def offsets(result: ReadResult) -> list[tuple[int, int]]:
    out = []
    for b in split_batches(region_bytes(result)):
        h = read_batch_header(b)
        out.append((h.base_offset, h.last_offset))
    return out


def state_of(plog: LocalPartitionLog) -> ProducerStateManager:
    state = plog.producer_state
    return state


def test_markers_lso_and_read_committed(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await plog.append([batch(2)])  # 0-1, no producer
        assert plog.last_stable_offset == plog.high_watermark == 2
        await plog.append([tx(1, 0, 2)])  # 2-3
        await plog.append([tx(2, 0)])  # 4
        await plog.append([tx(1, 2)])  # 5
        assert plog.last_stable_offset == 2 and plog.high_watermark == 6
        committed = await plog.read(0, 10**6, True, committed=True)
        assert offsets(committed) == [(0, 1)] and committed.last_stable_offset == 2
        assert committed.high_watermark == 6
        assert offsets(await plog.read(0, 10**6, True)) == [(0, 1), (2, 3), (4, 4), (5, 5)]
        assert (await plog.read(2, 10**6, True, committed=True)).size == 0
        result = await plog.append_marker(1, 0, commit=True)  # 6
        assert result.base_offset == result.last_offset == 6
        assert plog.last_stable_offset == 4
        committed = await plog.read(0, 10**6, True, committed=True)
        assert offsets(committed) == [(0, 1), (2, 3)] and committed.last_stable_offset == 4
        await plog.append_marker(2, 0, commit=False)  # 7
        assert plog.last_stable_offset == plog.high_watermark == 8
        assert offsets(await plog.read(3, 10**6, True, committed=True))[-1] == (7, 7)
        assert plog.aborted_transactions(0, 8) == [(2, 4)]
        assert plog.aborted_transactions(8, 9) == []
        kinds = [control_type(b) for b in await read_all(plog, 6)]
        assert kinds == [COMMIT, ABORT]
        # a new epoch fences older markers; nothing is appended for them
        await plog.append([tx(1, 0, epoch=1)])  # 8
        with pytest.raises(InvalidProducerEpoch, match="epoch 0"):
            await plog.append_marker(1, 0, commit=True)
        assert plog.log_end_offset == 9 and plog.last_stable_offset == 8

    run(tmp_path, {}, body)


def test_read_committed_stops_at_the_lso_across_segments(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        for _ in range(10):
            await plog.append([batch(1, value_size=100)])
        await plog.append([tx(1, 0, value_size=100)])  # 10
        for _ in range(10):
            await plog.append([batch(1, value_size=100)])
        assert plog.segment_count > 2 and plog.last_stable_offset == 10
        seen = [o for o, _ in offsets(await plog.read(0, 10**6, True, committed=True))]
        assert seen == list(range(10))
        assert (await plog.read(5, 100, True, committed=True)).size > 0  # min one batch
        await plog.append_marker(1, 0, commit=True)
        assert len(offsets(await plog.read(0, 10**6, True, committed=True))) == 22

    run(tmp_path, {"segment.bytes": "700"}, body)


def test_flush_messages_one_keeps_lso_below_hw(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await plog.append([tx(1, 0)])
        await plog.append_marker(1, 0, commit=True)
        assert plog.high_watermark == plog.last_stable_offset == 2 == plog.recovery_point

    run(tmp_path, {"flush.messages": "1"}, body)


async def _fill(plog: LocalPartitionLog) -> None:
    """Interleaved transactions over several segments: aborted, committed and one open."""
    seq = {1: 0, 2: 0, 3: 0}
    for round_ in range(6):
        for pid in (1, 2):
            await plog.append([tx(pid, seq[pid], 2)])
            seq[pid] += 2
        await plog.append([batch(1, value_size=50)])
        await plog.append_marker(1, 0, commit=round_ % 2 == 0)
        await plog.append_marker(2, 0, commit=round_ % 3 == 0)
    await plog.append([tx(3, 0)])


def test_reopen_and_crash_rebuild_the_same_transactions(tmp_path: Path) -> None:
    async def main() -> None:
        engine, plog = await open_partition(tmp_path, {"segment.bytes": "600"})
        await _fill(plog)
        image = state_of(plog).txn_image()
        lso, end = plog.last_stable_offset, plog.log_end_offset
        aborted = plog.aborted_transactions(0, end)
        assert len(aborted) == 7 and image[0] == {3: lso} and plog.segment_count > 3
        await engine.close()
        for reopen in ("clean", "crash", "no snapshots"):
            engine, plog = await open_partition(tmp_path)
            assert state_of(plog).txn_image() == image, reopen
            assert plog.last_stable_offset == lso
            assert plog.aborted_transactions(0, end) == aborted
            await plog.flush()
            await crash_engine(engine)
            if reopen == "crash":
                delete_snapshots(tmp_path / "t-0")

    asyncio.run(main())


def test_log_start_offset_prunes_aborted_transactions(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await _fill(plog)
        end = plog.log_end_offset
        before = plog.aborted_transactions(0, end)
        ranges = state_of(plog).aborted_ranges()
        cut = ranges[2][2] + 1  # just past the third aborted transaction's marker
        await plog.delete_records_before(cut)
        assert before == sorted(((pid, first) for pid, first, _ in ranges), key=lambda a: a[1])
        assert plog.aborted_transactions(0, end) == sorted(
            ((pid, first) for pid, first, _ in ranges[3:]), key=lambda a: a[1])
        assert plog.last_stable_offset == state_of(plog).first_unstable_offset()
        await plog.delete_records_before(end)  # past the open transaction's first offset
        assert plog.aborted_transactions(0, end) == []
        assert plog.last_stable_offset == plog.log_start_offset == end

    run(tmp_path, {"segment.bytes": "600"}, body)


# -- the log cleaner -------------------------------------------------------------------------

COMPACT = {"cleanup.policy": "compact", "segment.bytes": "300",
           "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "1000"}


def records_of(batches: list[bytes]) -> list[tuple[int, bytes | None, bytes | None]]:
    out = []
    for b in batches:
        h = read_batch_header(b)
        if not h.is_control:
            out.extend((h.base_offset + r.offset_delta, r.key, r.value) for r in iter_records(b))
    return out


def test_cleaner_drops_aborted_records_and_stops_at_the_lso(tmp_path: Path) -> None:
    async def body(engine: LocalEngine, plog: LocalPartitionLog) -> None:
        await plog.append([keyed_tx(1, 0, b"a", b"committed")])  # 0
        await plog.append_marker(1, 0, commit=True)  # 1
        await plog.append([keyed_tx(1, 1, b"a", b"aborted")])  # 2: must not hide offset 0
        await plog.append([keyed_tx(1, 2, b"b", b"aborted")])  # 3
        await plog.append_marker(1, 0, commit=False)  # 4
        await plog.append([keyed_tx(2, 0, b"c", b"open-1")])  # 5: opens a transaction
        for i in range(8):
            await plog.append([keyed_tx(3, i, b"c", b"v%d" % i)])
            await plog.append_marker(3, 0, commit=True)
        await plog.flush()
        unstable = plog.last_stable_offset
        assert unstable == 5 and plog.segment_count > 4
        assert await engine.run_cleaner(T0 + 10_000) == 1
        batches = await read_all(plog)
        survivors = records_of(batches)
        assert (0, b"a", b"committed") in survivors
        assert all(value != b"aborted" for _, _, value in survivors)
        assert (5, b"c", b"open-1") in survivors  # past the LSO: untouched
        assert all(o >= 5 for o, key, _ in survivors if key == b"c")
        assert engine.cleaner.first_dirty_offset(plog) <= unstable
        expected = 0
        for b in batches:  # still contiguous, markers kept
            h = read_batch_header(b)
            assert h.base_offset == expected
            expected = h.next_offset
        assert sum(read_batch_header(b).is_control for b in batches) == 10
        assert plog.aborted_transactions(0, plog.log_end_offset) == [(1, 2)]
        # once the transaction is decided the rest gets cleaned
        await plog.append_marker(2, 0, commit=True)
        for i in range(8, 12):
            await plog.append([keyed_tx(3, i, b"d", b"v%d" % i)])
        await plog.flush()
        assert await engine.run_cleaner(T0 + 20_000) == 1
        survivors = records_of(await read_all(plog))
        assert [r for r in survivors if r[1] == b"c"] == [(20, b"c", b"v7")]

    run(tmp_path, COMPACT, body)


def test_cleaner_keeps_each_producers_last_batch_header(tmp_path: Path) -> None:
    """Kafka's RETAIN_EMPTY: a producer's last batch that loses all its records stays as a
    header, so a rebuild from the log (no snapshot) still knows the producer's sequence."""

    async def main() -> None:
        engine, plog = await open_partition(tmp_path, COMPACT)
        now = int(time.time() * 1000)  # the rebuild expires producers idle for a day
        idem = bytearray(build_batch([(b"a", b"old", (), now)], producer_id=7,
                                     producer_epoch=0, base_sequence=0))
        await plog.append([AppendBatch(idem, 1, now, now)])  # 0: producer 7's last batch
        await plog.append([keyed_tx(8, 0, b"b", b"x", ts=now)])  # 1
        await plog.append([keyed_tx(8, 1, b"b", b"y", ts=now)])  # 2: producer 8's last batch
        await plog.append_marker(8, 0, commit=False)  # 3
        for i in range(12):
            data = bytearray(build_batch([(b"a", b"v%d" % i, (), T0)]))
            await plog.append([AppendBatch(data, 1, T0, T0)])
        await plog.flush()
        assert await engine.run_cleaner(now + 10_000) == 1
        batches = {read_batch_header(b).base_offset: b for b in await read_all(plog)}
        for offset, pid, seq in ((0, 7, 0), (2, 8, 1)):
            h = read_batch_header(batches[offset])
            assert (h.records_count, h.producer_id, h.base_sequence) == (0, pid, seq)
        assert read_batch_header(batches[2]).is_transactional
        assert read_batch_header(batches[1]).producer_id == -1  # not the last: dropped
        live = last_batches(state_of(plog))
        image = state_of(plog).txn_image()
        await plog.flush()
        await crash_engine(engine)
        delete_snapshots(tmp_path / "t-0")
        engine, plog = await open_partition(tmp_path)
        assert last_batches(state_of(plog)) == live
        # the pass pruned the aborted transaction (none of its records is left); rebuilt from
        # the log it starts at its first batch left, the empty header, and its marker is kept
        assert image[1] == ()
        assert plog.aborted_transactions(0, plog.log_end_offset) == [(8, 2)]
        assert state_of(plog).first_unstable_offset() is None
        await engine.close()

    asyncio.run(main())
