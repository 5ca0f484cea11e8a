"""Review findings on the transaction runtime (broker/txn_runtime.py on the coordinator
runtime), run against a real LocalEngine and Broker without a network."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from strom.broker.coordinator_runtime import CoordinatorError, ShardStatus
from strom.broker.handlers.produce import append_partition
from strom.broker.state import Broker
from strom.broker.txn_runtime import MARKER_RETRY_S, TXN_TOPIC
from strom.config.broker import BrokerConfig
from strom.coordinator.transaction import TransactionSnapshot
from strom.coordinator.transaction.model import TxnState
from strom.protocol.batch_header import read_batch_header
from strom.protocol.messages import ErrorCode
from strom.protocol.record_builder import build_batch
from strom.storage.api import AppendBatch, StorageError, chunks_bytes
from strom.storage.local.engine import LocalEngine

TOPIC = "data"


def now_ms() -> int:
    return int(time.time() * 1000)


async def open_broker(path: Path) -> Broker:
    config = BrokerConfig.build(path, "localhost", 0, {
        "transaction.state.log.num.partitions": "1", "offsets.topic.num.partitions": "1"})
    engine = LocalEngine(path, config)
    await engine.open()
    broker = Broker(config, engine)
    await broker.groups.start()
    await broker.transactions.start()
    if TOPIC not in engine.topics():
        await engine.create_topic(TOPIC, 1, {})
    return broker


async def close_broker(broker: Broker) -> None:
    await broker.transactions.stop()
    await broker.groups.stop()
    await broker.engine.close()


def run(path: Path, body: Callable[[Broker], Awaitable[None]]) -> None:
    async def main() -> None:
        broker = await open_broker(path)
        try:
            await body(broker)
        finally:
            await close_broker(broker)

    asyncio.run(main())


def snapshot(broker: Broker) -> dict[str, TransactionSnapshot]:
    """The state of the one shard of __transaction_state."""
    return broker.transactions.runtime.shard(0).core.snapshot()


async def reloaded(broker: Broker) -> None:
    """What a failed append does: the shard replays its log; waits until it is served."""
    runtime = broker.transactions.runtime
    runtime.revert(runtime.shard(0))
    assert runtime.status(0) is ShardStatus.LOADING
    while runtime.status(0) is ShardStatus.LOADING:
        await asyncio.sleep(0.01)
    assert runtime.status(0) is ShardStatus.ACTIVE


async def begin(broker: Broker, transactional_id: str, timeout_ms: int = 60_000,
                ) -> tuple[int, int]:
    """InitProducerId, AddPartitionsToTxn(data-0) and one transactional batch there."""
    runtime = broker.transactions
    init = await runtime.write(transactional_id, lambda core, now: core.init_producer_id(
        transactional_id, timeout_ms, now_ms=now))
    assert init.error == 0, init
    pid, epoch = init.producer_id, init.producer_epoch
    added = await runtime.write(transactional_id, lambda core, now: core.add_partitions(
        transactional_id, pid, epoch, [(TOPIC, 0)], now))
    assert added.error == 0, added
    data = build_batch([(None, b"v", [], now_ms())], producer_id=pid, producer_epoch=epoch,
                       base_sequence=0, transactional=True)
    outcome = await append_partition(broker, TOPIC, 0, data, 9, transactional_id)
    assert outcome.error == 0, outcome
    return pid, epoch


def fail_next_txn_append(broker: Broker) -> list[int]:
    """The next append to __transaction_state-0 raises a StorageError (once)."""
    plog = broker.engine.partition(TXN_TOPIC, 0)
    original = plog.append
    failures: list[int] = []

    async def append(batches: Any) -> Any:
        if not failures:
            failures.append(1)
            raise StorageError("injected: disk hiccup")
        return await original(batches)

    plog.append = append  # type: ignore[method-assign]
    return failures


def test_a_failed_append_reloads_the_shard_so_timeouts_still_abort(tmp_path: Path) -> None:
    """After an append to __transaction_state fails, the shard reloads from its log by
    itself, else (with no further transactional request) an abandoned transaction is never
    timed out and its partition's LSO stays stuck forever. The failed call gets the error
    Kafka maps a storage error to (NOT_COORDINATOR)."""

    async def body(broker: Broker) -> None:
        await begin(broker, "t1", timeout_ms=200)
        plog = broker.engine.partition(TOPIC, 0)
        assert plog.last_stable_offset == 0
        failures = fail_next_txn_append(broker)
        runtime = broker.transactions
        try:
            await runtime.write("t2", lambda core, now: core.init_producer_id(
                "t2", 60_000, now_ms=now))
            raise AssertionError("the injected failure did not happen")
        except CoordinatorError as exc:
            assert exc.error == ErrorCode.not_coordinator
        assert failures == [1]
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and plog.last_stable_offset == 0:
            await asyncio.sleep(0.1)
        assert plog.last_stable_offset == plog.log_end_offset, "the LSO never advanced"
        states = snapshot(broker)
        assert states["t1"].state is TxnState.COMPLETE_ABORT
        assert "t2" not in states  # its record was never written

    run(tmp_path, body)


def test_a_reload_stops_the_marker_writers_of_the_old_state(tmp_path: Path) -> None:
    """A reload asks again for the markers of every transaction in Prepare*; a writer started
    before it must stop, or the partition gets the marker twice (and with transaction
    version 1, where the next transaction has the same epoch, a late second COMMIT could end
    that next transaction)."""

    async def body(broker: Broker) -> None:
        pid, epoch = await begin(broker, "t1")
        plog = broker.engine.partition(TOPIC, 0)
        original = plog.append_marker
        calls: list[int] = []
        blocked = asyncio.Event()

        async def append_marker(*args: Any, **kwargs: Any) -> Any:
            calls.append(1)
            if not blocked.is_set():
                raise StorageError("injected: marker write fails until unblocked")
            return await original(*args, **kwargs)

        plog.append_marker = append_marker  # type: ignore[method-assign]
        runtime = broker.transactions
        ended = await runtime.write("t1", lambda core, now: core.end_txn(
            "t1", pid, epoch, True, now, bump_epoch=False))
        assert ended.error == 0
        while not calls:
            await asyncio.sleep(0.01)
        await reloaded(broker)  # PrepareCommit found, markers requested again
        blocked.set()
        deadline = time.monotonic() + 5
        while (time.monotonic() < deadline
               and snapshot(broker)["t1"].state is not TxnState.COMPLETE_COMMIT):
            await asyncio.sleep(0.05)
        assert snapshot(broker)["t1"].state is TxnState.COMPLETE_COMMIT
        await asyncio.sleep(MARKER_RETRY_S[0] * 4)  # give a stale writer time to write
        markers = [h for h in await batch_headers(plog) if h.is_control]
        assert len(markers) == 1, markers
        assert plog.last_stable_offset == plog.log_end_offset

    run(tmp_path, body)


async def batch_headers(plog: Any) -> list[Any]:
    result = await plog.read(0, 1 << 20, True)
    data = chunks_bytes(result.chunks)
    headers, pos = [], 0
    while pos < len(data):
        header = read_batch_header(data, pos)
        headers.append(header)
        pos += header.size
    return headers


def test_an_unreadable_transaction_log_does_not_stop_the_broker(tmp_path: Path) -> None:
    """A record __transaction_state cannot decode: the broker starts and serves everything
    else; transactional requests get COORDINATOR_NOT_AVAILABLE (as Kafka answers while it
    cannot load a transaction log partition)."""

    async def write_garbage(broker: Broker) -> None:
        await broker.transactions.own(create=True)  # creates the topic
        stamp = now_ms()
        data = bytearray(build_batch([(b"\x7f\x7fnot a key", b"junk", [], stamp)]))
        await broker.engine.partition(TXN_TOPIC, 0).append(
            [AppendBatch(data, 1, stamp, stamp)])

    async def reopened(broker: Broker) -> None:
        runtime = broker.transactions
        assert runtime.runtime.status(0) is ShardStatus.FAILED
        try:
            await runtime.write("t", lambda core, now: core.init_producer_id(
                "t", 60_000, now_ms=now))
            raise AssertionError("an unreadable log was loaded")
        except CoordinatorError as exc:
            assert exc.error == ErrorCode.coordinator_not_available
        plain = build_batch([(None, b"v", [], now_ms())])
        outcome = await append_partition(broker, TOPIC, 0, plain, 9)
        assert outcome.error == 0

    run(tmp_path, write_garbage)
    run(tmp_path, reopened)


def test_a_reload_sees_appends_still_waiting_for_their_fsync(tmp_path: Path,
                                                            monkeypatch: Any) -> None:
    """With flush.messages=1 the high watermark waits for the fsync; a reload must not read
    the log while an answered (or about to be answered) state record is below the log end
    but above the high watermark, or the reloaded state forgets it."""
    import os

    from strom.storage.local import flush

    slow = asyncio.Event()
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if slow.is_set():
            time.sleep(0.3)
        real_fsync(fd)

    monkeypatch.setattr(flush.os, "fsync", fsync)

    async def body(broker: Broker) -> None:
        runtime = broker.transactions
        early = await runtime.write("early", lambda core, now: (  # producer ids at hand
            core.init_producer_id("early", 60_000, now_ms=now)))
        assert early.error == 0
        slow.set()
        init = asyncio.ensure_future(runtime.write("late", lambda core, now: (
            core.init_producer_id("late", 60_000, now_ms=now))))
        await asyncio.sleep(0.05)  # the record is written, its fsync in flight
        await reloaded(broker)
        assert "late" in snapshot(broker)
        assert (await init).error == 0

    async def main() -> None:
        config = BrokerConfig.build(tmp_path, "localhost", 0, {
            "transaction.state.log.num.partitions": "1", "offsets.topic.num.partitions": "1",
            "flush.messages": "1"})
        engine = LocalEngine(tmp_path, config)
        await engine.open()
        broker = Broker(config, engine)
        await broker.groups.start()
        await broker.transactions.start()
        try:
            await body(broker)
        finally:
            await close_broker(broker)

    asyncio.run(main())
