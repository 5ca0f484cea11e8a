"""Property: under random interleaved transactions (committed and aborted) of a few producers,
plain writes, cleaning passes at advancing times (delete horizons pass), clean restarts and
crashes with or without the producer state snapshots, the log stays contiguous; a
read_committed reader never gets an aborted record, and once nothing is open it sees each
key's latest committed value; the state rebuilt at open has exactly the transactions open that
are open; and finally, with everything old and cleaned repeatedly, markers whose transactions
lost all their data are gone and the aborted list is empty."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from strom.protocol.batch_header import read_batch_header
from strom.protocol.record_builder import build_batch
from strom.storage.api import AppendBatch
from strom.storage.local import LocalEngine, LocalPartitionLog
from strom.storage.local.producer_snapshots import list_snapshots, snapshot_path
from tests.unit.batch_factory import crash_engine, read_all
from tests.unit.test_cleaner_txn_markers import check_contiguous, consume
from tests.unit.test_partition_log_txn import T0, keyed_tx, make_engine, state_of

PRODUCERS = (1, 2, 3)
KEYS = [b"k%d" % i for i in range(4)]

data_op = st.tuples(st.just("data"), st.sampled_from(PRODUCERS), st.integers(0, len(KEYS) - 1))
end_op = st.tuples(st.just("end"), st.sampled_from(PRODUCERS), st.booleans())
plain_op = st.tuples(st.just("plain"), st.integers(0, len(KEYS) - 1), st.integers(1, 6))
clean_op = st.tuples(st.just("clean"), st.integers(0, 1500))
reopen_op = st.tuples(st.just("reopen"), st.sampled_from(["clean", "crash", "no snapshots"]))
operations = st.lists(st.one_of(data_op, data_op, end_op, end_op, plain_op, clean_op, clean_op,
                                reopen_op), min_size=1, max_size=40)


@dataclass
class Model:
    committed: dict[bytes, tuple[int, bytes]] = field(default_factory=dict)  # key -> latest
    open_txns: dict[int, list[tuple[int, bytes, bytes]]] = field(default_factory=dict)
    aborted_values: set[bytes] = field(default_factory=set)
    sequences: dict[int, int] = field(default_factory=dict)
    counter: int = 0
    markers: int = 0

    def value(self) -> bytes:
        self.counter += 1
        return b"v%d" % self.counter

    def commit(self, records: list[tuple[int, bytes, bytes]]) -> None:
        for offset, key, value in records:
            if key not in self.committed or self.committed[key][0] < offset:
                self.committed[key] = (offset, value)


async def check(plog: LocalPartitionLog, model: Model) -> None:
    check_contiguous(await read_all(plog), plog.log_end_offset)
    firsts = [records[0][0] for records in model.open_txns.values()]
    assert state_of(plog).first_unstable_offset() == min(firsts, default=None)
    assert plog.last_stable_offset == min(firsts, default=plog.high_watermark)
    seen = await consume(plog, 0, max_bytes=400)
    assert not {v for _, _, v in seen} & model.aborted_values
    if not model.open_txns:
        view = {k: v for _, k, v in seen if k is not None}
        assert view == {k: v for k, (_, v) in model.committed.items()}


async def reopen(engine: LocalEngine, data_dir: Path, how: str) -> LocalEngine:
    if how == "clean":
        await engine.close()
    else:
        await engine.partition("t", 0).flush()
        await crash_engine(engine)
    if how == "no snapshots":
        for offset in list_snapshots(data_dir / "t-0"):
            snapshot_path(data_dir / "t-0", offset).unlink()
    engine = make_engine(data_dir)
    await engine.open()
    return engine


async def apply(engine: LocalEngine, model: Model, op: tuple[object, ...], now: int) -> int:
    plog = engine.partition("t", 0)
    if op[0] == "data":
        pid, key = int(op[1]), KEYS[int(op[2])]  # type: ignore[call-overload]
        value = model.value()
        seq = model.sequences.get(pid, 0)
        model.sequences[pid] = seq + 1
        offset = plog.log_end_offset
        await plog.append([keyed_tx(pid, seq, key, value, ts=now)])
        model.open_txns.setdefault(pid, []).append((offset, key, value))
    elif op[0] == "end":
        pid, commit = int(op[1]), bool(op[2])  # type: ignore[call-overload]
        await plog.append_marker(pid, 0, commit=commit)  # an empty transaction if none open
        model.markers += 1
        records = model.open_txns.pop(pid, [])
        if commit:
            model.commit(records)
        else:
            model.aborted_values.update(v for _, _, v in records)
    elif op[0] == "plain":
        key = KEYS[int(op[1])]  # type: ignore[call-overload]
        for _ in range(int(op[2])):  # type: ignore[call-overload]
            value = model.value()
            offset = plog.log_end_offset
            data = bytearray(build_batch([(key, value + b"." * 40, (), now)]))
            await plog.append([AppendBatch(data, 1, now, now)])
            model.commit([(offset, key, value + b"." * 40)])
    elif op[0] == "clean":
        now += int(op[1])  # type: ignore[call-overload]
        await plog.flush()
        await engine.run_cleaner(now)
    return now


async def scenario(data_dir: Path, ops: list[tuple[object, ...]], segment_bytes: int,
                   retention: int) -> None:
    configs = {"cleanup.policy": "compact", "segment.bytes": str(segment_bytes),
               "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": str(retention)}
    engine = make_engine(data_dir)
    await engine.open()
    await engine.create_topic("t", 1, configs)
    model = Model()
    now = T0
    for op in ops:
        if op[0] == "reopen":
            engine = await reopen(engine, data_dir, str(op[1]))
        else:
            now = await apply(engine, model, op, now)
        if op[0] in ("clean", "reopen"):
            await check(engine.partition("t", 0), model)
    await finish(engine, data_dir, model, now, retention)


async def finish(engine: LocalEngine, data_dir: Path, model: Model, now: int,
                 retention: int) -> None:
    # close what is open, then everything gets old: passes with rolls in between (newer
    # snapshots) until the markers of emptied transactions are gone
    for pid in list(model.open_txns):
        now = await apply(engine, model, ("end", pid, False), now)
    for i in range(8):
        plog = engine.partition("t", 0)
        for j in range(4):
            await plog.append([AppendBatch(bytearray(build_batch(
                [(b"f%d" % j, b"x" * 300, (), now)])), 1, now, now)])
        model.commit([(plog.log_end_offset - 4 + j, b"f%d" % j, b"x" * 300) for j in range(4)])
        now += retention + 1
        await plog.flush()
        await engine.run_cleaner(now)
        await check(plog, model)
        if i == 3:
            engine = await reopen(engine, data_dir, "no snapshots")
            await check(engine.partition("t", 0), model)
    plog = engine.partition("t", 0)
    assert plog.aborted_transactions(0, plog.log_end_offset) == []
    check_markers(await read_all(plog), plog.segments[-1].base_offset, model)
    await engine.close()


def check_markers(batches: list[bytes], end: int, model: Model) -> None:
    """Below `end` (all cleaned), every marker left still has data of its transaction."""
    open_data: set[int] = set()
    for b in batches:
        h = read_batch_header(b)
        if h.base_offset >= end:
            break
        if h.is_control:
            assert h.producer_id in open_data
            open_data.discard(h.producer_id)
        elif h.is_transactional:
            open_data.add(h.producer_id)
    event("markers removed" if sum(read_batch_header(b).is_control for b in batches)
          < model.markers else "no marker removed")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, segment_bytes=st.integers(200, 700),
       retention=st.sampled_from([0, 500, 1000]))
def test_transactions_stay_right_under_compaction(ops: list[tuple[object, ...]],
                                                  segment_bytes: int, retention: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp), ops, segment_bytes, retention))
