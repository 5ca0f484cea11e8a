"""The log cleaner and transactions: a COMMIT/ABORT marker gets a delete horizon once its
transaction has no data batch left, goes only after that horizon (and once every producer
state snapshot on disk postdates the pass that pruned it), never while a data batch of its
transaction is in the log; aborted transactions whose records are gone leave the producer
state; read_committed readers see exactly the committed records; and a rebuild from the log
without snapshots leaves no transaction open (LSO == HW)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from strom.protocol.batch_header import read_batch_header
from strom.protocol.control_batch import ABORT, control_type
from strom.protocol.record_builder import build_batch
from strom.protocol.record_rewrite import delete_horizon_ms
from strom.protocol.records import iter_records
from strom.storage.api import AppendBatch
from strom.storage.local import LocalPartitionLog
from strom.storage.local.cleaner_txn import NOTHING, PrunedPasses
from strom.storage.local.producer_snapshots import list_snapshots
from strom.storage.producer_state import ProducerStateManager
from tests.unit.batch_factory import crash_engine, read_all, region_bytes, split_batches
from tests.unit.test_partition_log_txn import (
    COMPACT,
    T0,
    delete_snapshots,
    keyed_tx,
    open_partition,
    state_of,
)

Rec = tuple[int, bytes | None, bytes | None]


async def plain(plog: LocalPartitionLog, key: bytes, value: bytes) -> None:
    data = bytearray(build_batch([(key, value, (), T0)]))
    await plog.append([AppendBatch(data, 1, T0, T0)])


async def filler(plog: LocalPartitionLog, count: int, tag: str) -> None:
    """Records of their own keys: they survive, and roll segments (and take snapshots)."""
    for i in range(count):
        await plain(plog, f"{tag}{i}".encode(), b"filler" * 8)
    await plog.flush()


def markers(batches: Sequence[bytes]) -> dict[int, bytes]:
    return {read_batch_header(b).base_offset: b for b in batches
            if read_batch_header(b).is_control}


def check_contiguous(batches: Sequence[bytes], end: int) -> None:
    expected = 0
    for b in batches:
        h = read_batch_header(b)
        assert h.base_offset == expected
        expected = h.next_offset
    assert expected == end


def read_committed_view(batches: Sequence[bytes], aborted: Sequence[tuple[int, int]],
                        start: int) -> list[Rec]:
    """What a Kafka consumer in read_committed delivers from a fetch at `start` (its
    CompletedFetch: aborted producers from the listed first offsets until their ABORT
    marker; control batches and records below `start` skipped)."""
    queue = sorted(aborted, key=lambda a: a[1])
    aborted_pids: set[int] = set()
    out: list[Rec] = []
    for b in batches:
        h = read_batch_header(b)
        if h.producer_id >= 0:
            while queue and queue[0][1] <= h.last_offset:
                aborted_pids.add(queue.pop(0)[0])
            if h.is_control:
                if h.records_count and control_type(b) == ABORT:
                    aborted_pids.discard(h.producer_id)
                continue
            if h.is_transactional and h.producer_id in aborted_pids:
                continue
        out.extend((h.base_offset + r.offset_delta, r.key, r.value) for r in iter_records(b)
                   if h.base_offset + r.offset_delta >= start)
    return out


async def consume(plog: LocalPartitionLog, start: int, max_bytes: int = 10**6) -> list[Rec]:
    """Fetches read_committed from `start` to the LSO as a broker answers and a client reads."""
    seen: list[Rec] = []
    position = start
    while position < plog.last_stable_offset:
        result = await plog.read(position, max_bytes, True, committed=True)
        batches = split_batches(region_bytes(result))
        upper = read_batch_header(batches[-1]).next_offset
        aborted = plog.aborted_transactions(position, upper)
        seen.extend(read_committed_view(batches, aborted, position))
        position = upper
    return seen


async def write_transactions(plog: LocalPartitionLog) -> None:
    """0 a=old (p1) 1 COMMIT | 2 b=aborted (p2) 3 ABORT | 4 c=kept (p3) 5 COMMIT |
    6 a=new (p1) 7 COMMIT | 8 d=new (p2) 9 COMMIT: the transactions at 0 and 2 lose all
    their data (superseded / aborted, and not their producer's last batch); the one at 4
    keeps its record."""
    for pid, seq, key, value, commit in ((1, 0, b"a", b"old", True),
                                         (2, 0, b"b", b"aborted", False),
                                         (3, 0, b"c", b"kept", True),
                                         (1, 1, b"a", b"new", True),
                                         (2, 1, b"d", b"new", True)):
        await plog.append([keyed_tx(pid, seq, key, value)])
        await plog.append_marker(pid, 0, commit=commit)


def test_markers_go_after_their_horizon_once_their_transaction_is_empty(tmp_path: Path) -> None:
    async def main() -> None:
        engine, plog = await open_partition(tmp_path, COMPACT)
        await write_transactions(plog)
        await filler(plog, 12, "f")
        assert plog.aborted_transactions(0, 10) == [(2, 2)]
        now = T0 + 10_000
        assert await engine.run_cleaner(now) == 1
        kept = markers(await read_all(plog))
        assert sorted(kept) == [1, 3, 5, 7, 9]
        horizons = {o: delete_horizon_ms(read_batch_header(b)) for o, b in kept.items()}
        assert horizons == {1: now + 1000, 3: now + 1000, 5: None, 7: None, 9: None}
        assert control_type(kept[3]) == ABORT and read_batch_header(kept[3]).is_transactional
        # the aborted transaction's records are gone: it left the producer state
        assert plog.aborted_transactions(0, plog.log_end_offset) == []
        assert state_of(plog).txn_image() == ({}, ())

        # past the horizon, but the snapshots on disk predate the pruning pass: kept, and
        # the partition is not due again because of it
        assert max(list_snapshots(plog.directory)) <= plog.log_end_offset
        assert await engine.run_cleaner(now + 2000) == 1
        assert sorted(markers(await read_all(plog))) == [1, 3, 5, 7, 9]
        assert await engine.run_cleaner(now + 3000) == 0

        await filler(plog, 12, "g")  # rolls: newer snapshots, taken after the pruning
        assert min(list_snapshots(plog.directory)) > 10
        assert await engine.run_cleaner(now + 3000) == 1
        batches = await read_all(plog)
        assert sorted(markers(batches)) == [5, 7, 9]
        check_contiguous(batches, plog.log_end_offset)
        gone = [read_batch_header(b) for b in batches if read_batch_header(b).base_offset <= 3]
        assert all(h.producer_id == -1 and h.records_count == 0 for h in gone)
        assert plog.last_stable_offset == plog.high_watermark
        view = {key: value for _, key, value in await consume(plog, 0)}
        assert (view[b"a"], view[b"c"], view[b"d"]) == (b"new", b"kept", b"new")
        assert b"b" not in view
        await engine.close()

        # a rebuild from the log alone: no transaction open, nothing aborted
        delete_snapshots(tmp_path / "t-0")
        engine, plog = await open_partition(tmp_path)
        assert state_of(plog).first_unstable_offset() is None
        assert plog.last_stable_offset == plog.high_watermark == plog.log_end_offset
        assert plog.aborted_transactions(0, plog.log_end_offset) == []
        await engine.close()

    asyncio.run(main())


def test_a_marker_whose_transaction_keeps_a_batch_stays(tmp_path: Path) -> None:
    """Producer 8's aborted transaction ends with its last batch, kept as an empty header
    (RETAIN_EMPTY): its marker must stay however late, or a rebuild without snapshots would
    find the transaction open and the last stable offset would stick there."""

    async def main() -> None:
        engine, plog = await open_partition(tmp_path, COMPACT)
        await plog.append([keyed_tx(8, 0, b"b", b"x")])  # 0
        await plog.append([keyed_tx(8, 1, b"b", b"y")])  # 1: producer 8's last batch
        await plog.append_marker(8, 0, commit=False)  # 2
        await plog.append([keyed_tx(9, 0, b"c", b"z")])  # 3: producer 9's last batch
        await plog.append_marker(9, 0, commit=True)  # 4
        await filler(plog, 12, "f")
        for step in range(4):
            await engine.run_cleaner(T0 + 10_000 * (step + 1))
            await filler(plog, 8, f"g{step}")
        batches = await read_all(plog)
        assert sorted(markers(batches))[:2] == [2, 4]
        for marker in (2, 4):
            assert delete_horizon_ms(read_batch_header(markers(batches)[marker])) is None
        header = read_batch_header(batches[1])
        assert (header.base_offset, header.records_count, header.producer_id) == (1, 0, 8)
        assert plog.aborted_transactions(0, plog.log_end_offset) == []
        hw = plog.high_watermark
        await plog.flush()
        await crash_engine(engine)
        delete_snapshots(tmp_path / "t-0")
        engine, plog = await open_partition(tmp_path)
        assert plog.last_stable_offset == plog.high_watermark == hw
        assert state_of(plog).first_unstable_offset() is None
        await engine.close()

    asyncio.run(main())


def test_read_committed_never_sees_aborted_records_across_cleanings(tmp_path: Path) -> None:
    async def main() -> None:
        engine, plog = await open_partition(tmp_path, COMPACT)
        committed: dict[bytes, bytes] = {}
        now = T0
        for round_ in range(6):
            for i in range(6):
                pid = 20 + i % 3
                key = b"k%d" % ((round_ + i) % 4)
                value = b"r%d-%d" % (round_, i)
                commit = (round_ + i) % 3 != 0
                seq = state_of(plog).entry(pid)
                next_seq = 0 if seq is None or not seq.batches else seq.last_seq + 1
                await plog.append([keyed_tx(pid, next_seq, key, value)])
                await plog.append_marker(pid, 0, commit=commit)
                if commit:
                    committed[key] = value
            await filler(plog, 4, f"f{round_}-")
            now += 700
            await engine.run_cleaner(now)
            for start in range(0, plog.log_end_offset, 5):
                seen = await consume(plog, start, max_bytes=200)
                assert all(_committed(v) for _, _, v in seen if v and v[:1] == b"r")
            view = {k: v for _, k, v in await consume(plog, 0) if k and k[:1] == b"k"}
            assert view == committed
        assert plog.last_stable_offset == plog.high_watermark
        assert len(markers(await read_all(plog))) < 36  # markers of emptied txns went
        await engine.close()

    asyncio.run(main())


def _committed(value: bytes) -> bool:
    round_, i = (int(x) for x in value[1:].split(b"-"))
    return (round_ + i) % 3 != 0


def test_a_stale_snapshot_brings_back_pruned_entries_harmlessly(tmp_path: Path) -> None:
    """A snapshot taken before the pruning pass lists the aborted transaction again after a
    restart; its marker is still in the log (it cannot go before newer snapshots exist), so
    readers are right, and the next pass prunes it again."""

    async def main() -> None:
        engine, plog = await open_partition(tmp_path, COMPACT)
        await write_transactions(plog)
        await filler(plog, 12, "f")
        assert await engine.run_cleaner(T0 + 10_000) == 1
        assert plog.aborted_transactions(0, plog.log_end_offset) == []
        await crash_engine(engine)  # the newest snapshot predates the pass
        engine, plog = await open_partition(tmp_path)
        assert plog.aborted_transactions(0, plog.log_end_offset) == [(2, 2)]
        view = {k: v for _, k, v in await consume(plog, 0)}
        assert b"b" not in view and view[b"d"] == b"new"
        await filler(plog, 12, "g")
        assert await engine.run_cleaner(T0 + 20_000) == 1
        assert plog.aborted_transactions(0, plog.log_end_offset) == []
        assert 3 in markers(await read_all(plog))  # the pass after a restart cannot drop it
        await filler(plog, 12, "h")
        assert await engine.run_cleaner(T0 + 30_000) == 1
        assert 3 not in markers(await read_all(plog))
        await engine.close()

    asyncio.run(main())


def test_drop_bound_needs_snapshots_newer_than_a_pruning_pass() -> None:
    passes = PrunedPasses()
    state, reopened = ProducerStateManager(), ProducerStateManager()
    tp = ("t", 0)
    assert passes.drop_below(tp, state, [100]) == NOTHING
    passes.pruned(tp, state, 50, 40)  # (log end, map end) of a pass
    passes.pruned(tp, state, 90, 70)
    passes.pruned(tp, state, 90, 80)  # no append since the last pass: the entries merge
    assert passes.drop_below(tp, state, []) == NOTHING
    assert passes.drop_below(tp, state, [50, 120]) == NOTHING
    assert passes.drop_below(tp, state, [60, 120]) == 40
    assert passes.drop_below(tp, state, [91]) == 80
    assert passes.drop_below(tp, reopened, [91]) == NOTHING
    passes.pruned(tp, reopened, 95, 93)  # a reopened partition starts over
    assert passes.drop_below(tp, state, [200]) == NOTHING
    assert passes.drop_below(tp, reopened, [200]) == 93
    passes.forget_topic("t")
    assert passes.drop_below(tp, reopened, [200]) == NOTHING
