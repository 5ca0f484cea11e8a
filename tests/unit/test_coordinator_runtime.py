"""The coordinator runtime (broker/coordinator_runtime.py) keeps one shard per partition of an
internal topic: unloading a shard answers NOT_COORDINATOR for its groups and transactional ids
while the other shards serve on, a shard still loading answers COORDINATOR_LOAD_IN_PROGRESS,
loading it again at a higher epoch replays its state, stale loads and unloads are ignored, and
nothing of an unloaded shard (parked calls, timers, late writes) reaches the next one. A failed
write reverts the shard to its log. Run over the in-memory engine: the runtime sees only the
StorageEngine/PartitionLog contract."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from strom.broker.coordinator_runtime import (
    CoordinatorError,
    ShardStatus,
    write_error,
)
from strom.broker.handlers.groups import KEY_TYPE_GROUP, KEY_TYPE_TRANSACTION, coordinator_node
from strom.broker.state import Broker
from strom.coordinator.group.model import CommitRequest, JoinRequest, OffsetCommit
from strom.coordinator.internal_topics import OFFSETS_TOPIC, TXN_TOPIC
from strom.coordinator.transaction import TxnState
from strom.protocol.messages import ErrorCode as E
from strom.storage.api import LogDirFailure, StorageError, UnknownTopic
from tests.coordinator_harness import DATA, Clock, eventually, gate, key_on, run


async def commit(broker: Broker, group_id: str, offset: int) -> int:
    """A simple OffsetCommit of data-0; its error (the runtime's, or the partition's)."""
    request = CommitRequest(group_id, -1, "", None, (OffsetCommit(DATA, 0, offset, -1, None),))
    try:
        result = await broker.groups.write(
            group_id, lambda core, now: core.commit_offsets(request, now))
    except CoordinatorError as exc:
        return exc.error
    return result.error or result.partition_errors[0][2]


def committed(broker: Broker, group_id: str) -> int | None:
    offsets = broker.groups.core(group_id).fetch_offsets(group_id, None)[1]
    return None if (DATA, 0) not in offsets else offsets[(DATA, 0)].offset


async def log_end(broker: Broker, topic: str, partition: int) -> int:
    return (await broker.engine.partition(topic, partition).offsets()).log_end


# -- ownership ----------------------------------------------------------------------------

def test_an_unloaded_group_shard_answers_not_coordinator_and_a_reload_replays_it(
        tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        runtime = broker.groups.runtime
        g0, g1 = key_on(0), key_on(1)
        assert await commit(broker, g0, 5) == E.none
        assert await commit(broker, g1, 7) == E.none
        assert runtime.unload(0)
        assert runtime.status(0) is ShardStatus.UNLOADED
        assert await commit(broker, g0, 6) == E.not_coordinator
        with pytest.raises(CoordinatorError) as raised:
            broker.groups.core(g0)
        assert raised.value.error == E.not_coordinator
        assert await coordinator_node(broker, g0, KEY_TYPE_GROUP) == (
            E.coordinator_not_available, "the coordinator is not available", -1)
        # the other shards serve on
        assert await commit(broker, g1, 8) == E.none
        assert committed(broker, g1) == 8
        assert (await coordinator_node(broker, g1, KEY_TYPE_GROUP))[0] == E.none
        # a reload at a higher epoch replays the shard's log
        assert await runtime.load(0, epoch=1)
        assert committed(broker, g0) == 5
        assert await commit(broker, g0, 6) == E.none
        assert (await coordinator_node(broker, g0, KEY_TYPE_GROUP))[0] == E.none

    run(tmp_path, body)


def test_a_loading_shard_answers_load_in_progress_and_stale_epochs_are_ignored(
        tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        runtime = broker.groups.runtime
        g0 = key_on(0)
        assert await commit(broker, g0, 5) == E.none
        assert runtime.unload(0, epoch=0)
        opened = gate(broker.engine.partition(OFFSETS_TOPIC, 0), "read")
        loading = asyncio.ensure_future(runtime.load(0, epoch=2))
        await eventually(lambda: runtime.status(0) is ShardStatus.LOADING)
        assert await commit(broker, g0, 6) == E.coordinator_load_in_progress
        assert broker.groups.owns(g0)  # FindCoordinator points here while it loads
        with pytest.raises(CoordinatorError) as raised:
            broker.groups.listed_cores()
        assert raised.value.error == E.coordinator_load_in_progress
        opened.set()
        assert await loading
        assert committed(broker, g0) == 5
        # stale: a load or unload of an older epoch changes nothing
        assert not await runtime.load(0, epoch=1)
        assert not runtime.unload(0, epoch=1)
        assert runtime.status(0) is ShardStatus.ACTIVE
        assert runtime.unload(0, epoch=2)
        assert not await runtime.load(0, epoch=1)
        assert runtime.status(0) is ShardStatus.UNLOADED

    run(tmp_path, body)


def test_a_parked_join_is_answered_not_coordinator_at_unload_and_its_timer_never_fires(
        tmp_path: Path) -> None:
    """The JoinGroup waits for group.initial.rebalance.delay.ms; the unload answers it, and
    the old shard's rebalance timer writes nothing once the delay passes."""

    async def body(broker: Broker, clock: Clock) -> None:
        runtime = broker.groups.runtime
        g0 = key_on(0)

        def join(member_id: str) -> JoinRequest:
            return JoinRequest(g0, member_id, None, "c", "h", 10_000, 10_000, "consumer",
                               (("range", b""),), require_known_member_id=True)

        first = await broker.groups.write(g0, lambda core, now: core.join(join(""), now))
        assert first.error == E.member_id_required
        parked = asyncio.ensure_future(broker.groups.write(
            g0, lambda core, now: core.join(join(first.member_id), now)))
        await asyncio.sleep(0.05)
        assert not parked.done()
        before = await log_end(broker, OFFSETS_TOPIC, 0)
        assert runtime.unload(0)
        with pytest.raises(CoordinatorError) as raised:
            await asyncio.wait_for(parked, 2)
        assert raised.value.error == E.not_coordinator
        clock.now_ms += 60_000  # well past the rebalance delay
        await asyncio.sleep(0.7)  # more than one turn of the timer loop
        assert await log_end(broker, OFFSETS_TOPIC, 0) == before
        assert await runtime.load(0, epoch=1)
        assert broker.groups.core(g0).describe([g0])[0].error == E.group_id_not_found

    run(tmp_path, body)


def test_a_write_that_finishes_after_the_unload_delivers_nothing_to_the_next_load(
        tmp_path: Path) -> None:
    """The late write's record is in the log (so the next load has it), its caller's parked
    calls were answered at the unload, and the reloaded shard is not the old one."""

    async def body(broker: Broker, clock: Clock) -> None:
        runtime = broker.groups.runtime
        g0 = key_on(0)
        old = runtime.shard(0)
        opened = gate(broker.engine.partition(OFFSETS_TOPIC, 0), "append")
        late = asyncio.ensure_future(commit(broker, g0, 9))
        await asyncio.sleep(0.05)
        assert runtime.unload(0)
        assert not runtime.is_current(old)
        opened.set()
        assert await late == E.none
        assert await runtime.load(0, epoch=1)
        assert runtime.shard(0) is not old
        assert committed(broker, g0) == 9
        assert await commit(broker, g0, 10) == E.none  # the new shard writes on

    run(tmp_path, body)


def test_a_shard_whose_log_cannot_be_read_is_retried(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        runtime = broker.groups.runtime
        g0 = key_on(0)
        assert await commit(broker, g0, 5) == E.none
        assert runtime.unload(0)
        plog = broker.engine.partition(OFFSETS_TOPIC, 0)
        original = plog.read
        failures: list[int] = []

        async def read(*args: Any, **kwargs: Any) -> Any:
            if not failures:
                failures.append(1)
                raise StorageError("injected: unreadable")
            return await original(*args, **kwargs)

        plog.read = read  # type: ignore[method-assign]
        assert not await runtime.load(0, epoch=1)
        assert runtime.status(0) is ShardStatus.FAILED
        assert await commit(broker, g0, 6) == E.coordinator_not_available
        clock.now_ms += 1000  # past the retry delay
        await eventually(lambda: runtime.status(0) is ShardStatus.ACTIVE)
        assert committed(broker, g0) == 5

    run(tmp_path, body)


# -- the failure policy -------------------------------------------------------------------

def test_a_failed_write_reverts_the_shard_to_its_log(tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        runtime = broker.groups.runtime
        g0, g1 = key_on(0), key_on(1)
        assert await commit(broker, g0, 5) == E.none
        plog = broker.engine.partition(OFFSETS_TOPIC, 0)
        original = plog.append
        failures: list[int] = []

        async def append(batches: Any) -> Any:
            if not failures:
                failures.append(1)
                raise LogDirFailure("injected: the disk is gone")
            return await original(batches)

        plog.append = append  # type: ignore[method-assign]
        # the core applied 6 before the write failed: KAFKA_STORAGE_ERROR -> NOT_COORDINATOR
        assert await commit(broker, g0, 6) == E.not_coordinator
        assert await commit(broker, g1, 1) == E.none  # another shard is untouched
        await eventually(lambda: runtime.status(0) is ShardStatus.ACTIVE)
        assert committed(broker, g0) == 5  # reverted to what the log holds
        assert await commit(broker, g0, 7) == E.none
        assert committed(broker, g0) == 7

    run(tmp_path, body)


def test_storage_errors_map_to_the_coordinator_errors_kafka_uses() -> None:
    assert write_error(UnknownTopic("gone")) == E.coordinator_not_available
    assert write_error(LogDirFailure("disk")) == E.not_coordinator
    assert write_error(StorageError("engine")) == E.not_coordinator
    assert write_error(OSError("io")) == E.not_coordinator
    assert write_error(RuntimeError("bug")) == E.unknown_server_error


# -- transactions -------------------------------------------------------------------------

async def init(broker: Broker, transactional_id: str, timeout_ms: int = 60_000) -> Any:
    return await broker.transactions.write(transactional_id, lambda core, now: (
        core.init_producer_id(transactional_id, timeout_ms, now_ms=now)))


def test_an_unloaded_transaction_shard_answers_not_coordinator_and_reloads(
        tmp_path: Path) -> None:
    async def body(broker: Broker, clock: Clock) -> None:
        txns = broker.transactions
        await txns.own(create=True)
        runtime = txns.runtime
        t0, t1 = key_on(0, prefix="tx"), key_on(1, prefix="tx")
        first = await init(broker, t0)
        assert first.error == E.none
        assert runtime.unload(0)
        with pytest.raises(CoordinatorError) as raised:
            await init(broker, t0)
        assert raised.value.error == E.not_coordinator
        assert txns.verify(t0, first.producer_id, first.producer_epoch, [(DATA, 0)]) \
            == E.coordinator_not_available
        with pytest.raises(CoordinatorError):
            await txns.describe(t0)
        assert (await coordinator_node(broker, t0, KEY_TYPE_TRANSACTION))[0] \
            == E.coordinator_not_available
        assert (await init(broker, t1)).error == E.none  # another shard serves on
        assert await runtime.load(0, epoch=1)
        described = await txns.describe(t0)
        assert (described.producer_id, described.producer_epoch) == (
            first.producer_id, first.producer_epoch)
        assert (await init(broker, t0)).producer_epoch == first.producer_epoch + 1

    run(tmp_path, body)


def test_transaction_timeouts_belong_to_their_shard(tmp_path: Path) -> None:
    """An unloaded shard's transaction does not time out (nothing is written for it); once
    loaded again, the new shard's timer aborts it."""

    async def body(broker: Broker, clock: Clock) -> None:
        txns = broker.transactions
        await txns.own(create=True)
        runtime = txns.runtime
        t0 = key_on(0, prefix="tx")
        first = await init(broker, t0, timeout_ms=1000)
        added = await txns.write(t0, lambda core, now: core.add_partitions(
            t0, first.producer_id, first.producer_epoch, [(DATA, 0)], now))
        assert added.error == E.none
        assert runtime.unload(0)
        before = await log_end(broker, TXN_TOPIC, 0)
        clock.now_ms += 10_000
        await asyncio.sleep(0.7)  # more than one turn of the timer loop
        assert await log_end(broker, TXN_TOPIC, 0) == before
        assert await runtime.load(0, epoch=1)

        def aborted() -> bool:
            return runtime.shard(0).core.snapshot()[t0].state is TxnState.COMPLETE_ABORT

        await eventually(aborted)
        assert await log_end(broker, DATA, 0) == 1  # the abort marker

    run(tmp_path, body)
