"""ProducerStateManager answers produce attempts as Kafka 3.x's ProducerStateManager does
(duplicates, sequence gaps, epochs, unknown producers, wrap-around, expiry), survives a snapshot
round trip, rejects damaged snapshots, and the local engine keeps it in step with the log:
rebuilt from snapshots and the log at open, after clean and unclean shutdowns."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from strom.config.broker import BrokerConfig
from strom.storage.local.engine import LocalEngine
from strom.storage.local.producer_snapshots import list_snapshots
from strom.storage.producer_state import (
    INT32_MAX,
    INVALID_PRODUCER_EPOCH,
    OUT_OF_ORDER_SEQUENCE_NUMBER,
    ProducerStateManager,
    Verdict,
    last_sequence,
)
from tests.unit.batch_factory import Header, batch, crash_engine


def add(state: ProducerStateManager, pid: int, epoch: int, seq: int, offset: int,
        count: int = 1, ts: int = 1000) -> None:
    state.apply_batch(Header(pid, epoch, seq, offset, count - 1, ts))


def check(state: ProducerStateManager, pid: int, epoch: int, seq: int, count: int = 1):  # type: ignore[no-untyped-def]
    return state.check(pid, epoch, seq, last_sequence(seq, count - 1))


def test_unknown_producer_is_accepted_at_any_sequence() -> None:
    state = ProducerStateManager()
    assert check(state, 7, 0, 0).verdict is Verdict.APPEND
    assert check(state, 7, 0, 42).verdict is Verdict.APPEND  # Kafka 3.x: no UNKNOWN_PRODUCER_ID


def test_in_sequence_duplicate_gap() -> None:
    state = ProducerStateManager()
    add(state, 1, 0, 0, 100, count=3)
    assert check(state, 1, 0, 3).verdict is Verdict.APPEND
    dup = check(state, 1, 0, 0, count=3)
    assert dup.verdict is Verdict.DUPLICATE and dup.error_code == 0
    assert dup.duplicate is not None and dup.duplicate.first_offset == 100
    assert dup.duplicate.last_offset == 102
    gap = check(state, 1, 0, 5)
    assert gap.verdict is Verdict.REJECT and gap.error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
    # a batch overlapping a retained one without matching it exactly is out of order too
    assert check(state, 1, 0, 1, count=2).error_code == OUT_OF_ORDER_SEQUENCE_NUMBER


def test_only_the_last_five_batches_are_deduplicated() -> None:
    state = ProducerStateManager()
    for i in range(7):
        add(state, 1, 0, i, 10 + i)
    assert check(state, 1, 0, 0).error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
    assert check(state, 1, 0, 1).error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
    for i in range(2, 7):
        result = check(state, 1, 0, i)
        assert result.verdict is Verdict.DUPLICATE
        assert result.duplicate is not None and result.duplicate.first_offset == 10 + i


def test_epochs() -> None:
    state = ProducerStateManager()
    add(state, 1, 3, 0, 0, count=5)
    old = check(state, 1, 2, 5)
    assert old.verdict is Verdict.REJECT and old.error_code == INVALID_PRODUCER_EPOCH
    assert check(state, 1, 2, 0, count=5).error_code == INVALID_PRODUCER_EPOCH  # no dup: epoch
    assert check(state, 1, 4, 5).error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
    assert check(state, 1, 4, 0).verdict is Verdict.APPEND
    add(state, 1, 4, 0, 5)
    assert check(state, 1, 3, 5).error_code == INVALID_PRODUCER_EPOCH
    assert check(state, 1, 4, 0).verdict is Verdict.DUPLICATE  # the new epoch's batches only
    assert check(state, 1, 4, 1).verdict is Verdict.APPEND


def test_sequence_wraps_at_int_max() -> None:
    assert last_sequence(INT32_MAX - 1, 3) == 1
    assert last_sequence(INT32_MAX, 0) == INT32_MAX
    state = ProducerStateManager()
    add(state, 1, 0, INT32_MAX - 2, 0, count=3)  # ends at INT32_MAX
    assert check(state, 1, 0, 0).verdict is Verdict.APPEND
    add(state, 9, 0, INT32_MAX - 1, 0, count=4)  # seqs MAX-1, MAX, 0, 1
    assert state.entry(9) is not None and state.entry(9).last_seq == 1  # type: ignore[union-attr]
    assert check(state, 9, 0, 2).verdict is Verdict.APPEND
    assert check(state, 9, 0, INT32_MAX - 1, count=4).verdict is Verdict.DUPLICATE


def test_expiry_uses_the_last_batch_timestamp() -> None:
    state = ProducerStateManager(producer_id_expiration_ms=1000)
    add(state, 1, 0, 0, 0, ts=5000)
    add(state, 2, 0, 0, 1, ts=5500)
    assert state.expire(5999) == 0
    assert state.expire(6000) == 1
    assert state.entry(1) is None and state.entry(2) is not None
    assert check(state, 1, 0, 17).verdict is Verdict.APPEND  # forgotten: any sequence


def test_control_and_anonymous_batches() -> None:
    state = ProducerStateManager()
    state.apply_batch(Header(-1, -1, -1, 0, 4))
    assert len(state) == 0
    add(state, 1, 0, 0, 5)
    state.apply_batch(Header(1, 1, -1, 6, 0, is_control=True))  # a marker bumps the epoch
    assert state.entry(1) is not None and state.entry(1).epoch == 1  # type: ignore[union-attr]
    assert check(state, 1, 0, 1).error_code == INVALID_PRODUCER_EPOCH


def test_snapshot_round_trip_and_damage() -> None:
    state = ProducerStateManager()
    for pid in range(3):
        for i in range(pid + 4):
            add(state, pid, pid, i * 2, 100 * pid + i * 2, count=2, ts=i)
    data = state.snapshot()
    other = ProducerStateManager()
    other.load_snapshot(data)
    assert other.entries() == state.entries()
    ProducerStateManager().load_snapshot(ProducerStateManager().snapshot())
    for damaged in (data[:-1], data[:10], data[:12] + bytes([data[12] ^ 1]) + data[13:],
                    b"XXXX" + data[4:], data + b"\0"):
        with pytest.raises(ValueError):
            ProducerStateManager().load_snapshot(damaged)


# -- the local engine keeps producer state with the log ------------------------------------


def make_engine(path: Path, **settings: str) -> LocalEngine:
    return LocalEngine(path, BrokerConfig.build(path, "localhost", 0, settings))


def idem(pid: int, seq: int, count: int = 2, epoch: int = 0):  # type: ignore[no-untyped-def]
    return batch(count, producer_id=pid, producer_epoch=epoch, base_sequence=seq,
                 base_timestamp=int(time.time() * 1000), value_size=100)


def state_of(engine: LocalEngine, topic: str) -> ProducerStateManager:
    state = engine.partition(topic, 0).producer_state
    return state


def test_engine_rebuilds_state_after_clean_and_unclean_shutdowns(tmp_path: Path) -> None:
    async def run() -> None:
        engine = make_engine(tmp_path, **{"log.segment.bytes": "1000"})
        await engine.open()
        await engine.create_topic("t", 1, {})
        plog = engine.partition("t", 0)
        await plog.append([batch(3)])  # no producer id
        for i in range(12):
            await plog.append([idem(1, 2 * i)])
            await plog.append([idem(2, 2 * i, epoch=3)])
        live = state_of(engine, "t").entries()
        assert live[1][1][-1].last_offset == plog.log_end_offset - 3
        assert plog.segment_count > 2
        await engine.close()
        snapshots = list_snapshots(tmp_path / "t-0")
        assert len(snapshots) == 2 and snapshots[-1] == plog.log_end_offset

        engine = make_engine(tmp_path)
        await engine.open()
        assert state_of(engine, "t").entries() == live
        plog = engine.partition("t", 0)
        await plog.append([idem(1, 24)])
        live = state_of(engine, "t").entries()
        await plog.flush()
        await crash_engine(engine)  # no snapshot at the log end: replayed from an older one

        engine = make_engine(tmp_path)
        await engine.open()
        assert state_of(engine, "t").entries() == live
        await engine.close()
        for offset in list_snapshots(tmp_path / "t-0"):
            (tmp_path / "t-0" / f"{offset:020d}.snapshot").write_bytes(b"garbage")
        engine = make_engine(tmp_path)  # damaged snapshots: the whole log is replayed
        await engine.open()
        assert state_of(engine, "t").entries() == live
        await engine.close()

    asyncio.run(run())


def test_snapshots_past_the_recovered_log_end_are_deleted(tmp_path: Path) -> None:
    async def run() -> None:
        engine = make_engine(tmp_path)
        await engine.open()
        await engine.create_topic("t", 1, {})
        plog = engine.partition("t", 0)
        await plog.append([idem(1, 0)])
        await engine.close()
        (tmp_path / "t-0" / f"{99:020d}.snapshot").write_bytes(
            ProducerStateManager().snapshot())
        engine = make_engine(tmp_path)
        await engine.open()
        assert 99 not in list_snapshots(tmp_path / "t-0")
        assert state_of(engine, "t").entry(1) is not None
        await engine.close()

    asyncio.run(run())


def test_producer_ids_are_reserved_durably(tmp_path: Path) -> None:
    async def run() -> list[int]:
        firsts = []
        for _ in range(2):
            engine = make_engine(tmp_path)
            await engine.open()
            firsts.append(await engine.reserve_producer_ids(1000))
            firsts.append(await engine.reserve_producer_ids(10))
            await engine.close()
        return firsts

    assert asyncio.run(run()) == [0, 1000, 1010, 2010]


def test_concurrent_produces_of_one_batch_append_it_once(tmp_path: Path) -> None:
    """The broker's check and the append run without a suspension in between."""
    from strom.broker.handlers.produce import append_partition
    from strom.broker.state import Broker

    async def run() -> None:
        config = BrokerConfig.build(tmp_path, "127.0.0.1", 0, {"flush.messages": "1"})
        engine = LocalEngine(tmp_path, config)
        await engine.open()
        try:
            broker = Broker(config, engine)
            await engine.create_topic("t", 1, {})
            data = bytes(idem(5, 0, count=4).data)
            outcomes = await asyncio.gather(*(append_partition(broker, "t", 0, data, 9)
                                              for _ in range(8)))
            assert {(o.error.value, o.base_offset) for o in outcomes} == {(0, 0)}
            assert engine.partition("t", 0).log_end_offset == 4
        finally:
            await engine.close()

    asyncio.run(run())


def test_retention_checks_expire_idle_producers(tmp_path: Path) -> None:
    async def run() -> None:
        engine = make_engine(tmp_path)
        await engine.open()
        await engine.create_topic("t", 1, {})
        await engine.partition("t", 0).append([idem(1, 0)])
        assert len(state_of(engine, "t")) == 1
        await engine.run_retention(int(time.time() * 1000) + 86_400_000 + 10_000)
        assert len(state_of(engine, "t")) == 0
        await engine.close()

    asyncio.run(run())


def test_active_producers_lists_epoch_and_last_batch() -> None:
    state = ProducerStateManager()
    assert state.active_producers() == []
    add(state, 7, 0, 0, 0, count=3, ts=1000)
    add(state, 7, 0, 3, 3, count=2, ts=2000)
    add(state, 9, 2, 0, 5, count=1, ts=1500)
    listed = {p.producer_id: p for p in state.active_producers()}
    assert set(listed) == {7, 9}
    assert (listed[7].epoch, listed[7].last_sequence, listed[7].last_timestamp) == (0, 4, 2000)
    assert (listed[9].epoch, listed[9].last_sequence, listed[9].last_timestamp) == (2, 0, 1500)
    state.expire(1500 + state.producer_id_expiration_ms)
    assert [p.producer_id for p in state.active_producers()] == [7]
