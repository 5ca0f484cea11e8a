"""The storage engine contract in executable form: `await check_storage_engine(factory)`.

Every engine strom ships passes it (local `file:`, `memory:`, and later `postgresql:`), and so
must one a user writes. `factory()` returns a new, unopened engine over the same storage each
time it is called; the checker opens, closes and reopens engines through it. With `durable`
(the default) everything must survive a close and reopen; `durable=False` (an in-memory
engine) skips those checks. Failures are plain AssertionErrors saying what broke.

What it drives, each on its own topics: cluster id and broker registration; topic
create/delete/grow/configure; append and read (whole batches, offsets, limits, out of range);
client produce checks (duplicates, sequence and epoch errors, KIP-890 verification);
transactions (last stable offset, read_committed, aborted transactions, markers of an old
epoch); delete-records; timestamp lookups; retention by time and size; compaction (each
key's last value kept, older ones and settled tombstones removed); waiting for data;
producer id reservation; restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from strom.protocol.batch_header import BATCH_HEADER_SIZE, read_batch_header
from strom.protocol.record_builder import RecordInput, build_batch
from strom.protocol.records import iter_records
from strom.storage.api import (
    AppendBatch,
    AppendResult,
    Assignment,
    BrokerRegistration,
    Duplicate,
    FileRegion,
    InvalidProducerEpoch,
    OffsetOutOfRange,
    PartitionLog,
    Rejected,
    StorageEngine,
    TopicExists,
    UnknownTopic,
    chunks_bytes,
)

EngineFactory = Callable[[], StorageEngine]

T0: Final = 1_700_000_000_000  # record timestamps (ms)
OUT_OF_ORDER_SEQUENCE_NUMBER: Final = 45
INVALID_PRODUCER_EPOCH: Final = 47
INVALID_TXN_STATE: Final = 48
INVALID_RECORD: Final = 87
SMALL_SEGMENTS: Final = {"segment.bytes": "300"}  # about one test batch per segment
ME: Final = BrokerRegistration(1, "a", 9092, "rack-1")  # the broker (node.id 1) of every check


async def check_storage_engine(factory: EngineFactory, *, durable: bool = True) -> None:
    """Runs every check against engines from `factory`; raises AssertionError on the first
    broken rule."""
    harness = _Harness(factory, durable)
    try:
        for check in CHECKS:
            await check(harness)
    finally:
        await harness.close()


@dataclass
class _Harness:
    factory: EngineFactory
    durable: bool
    engine: StorageEngine | None = None

    async def open(self, register: bool = True) -> StorageEngine:
        """The engine, opened and (with `register`) registered as broker ME, so that it
        leads its partitions (an engine several brokers share leads only once its broker
        has registered)."""
        if self.engine is None:
            self.engine = self.factory()
            await self.engine.open()
            if register:
                await self.engine.register_broker(ME)
        return self.engine

    async def reopen(self, register: bool = True) -> StorageEngine:
        """A close and a fresh engine over the same storage."""
        await self.close()
        return await self.open(register)

    async def close(self) -> None:
        if self.engine is not None:
            engine, self.engine = self.engine, None
            await engine.close()


# -- batches ---------------------------------------------------------------------------------


def data_batch(values: Sequence[bytes | None], *, keys: Sequence[bytes | None] | None = None,
               timestamp: int = T0, producer_id: int = -1, producer_epoch: int = -1,
               base_sequence: int = -1, transactional: bool = False) -> AppendBatch:
    keys = keys if keys is not None else [None] * len(values)
    records: list[RecordInput] = [(k, v, (), timestamp) for k, v in zip(keys, values,
                                                                        strict=True)]
    data = bytearray(build_batch(records, producer_id=producer_id,
                                 producer_epoch=producer_epoch, base_sequence=base_sequence,
                                 transactional=transactional))
    return AppendBatch(data, len(values), timestamp, timestamp)


async def read_batches(plog: PartitionLog, offset: int, committed: bool = False,
                       max_bytes: int = 1 << 24) -> list[bytes]:
    """The whole batches a read from `offset` returns."""
    return split_batches((await plog.read(offset, max_bytes, True, committed=committed)).chunks)


async def read_records(plog: PartitionLog, offset: int = 0
                       ) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every data record from `offset` (or the log start) on."""
    start = max(offset, (await plog.offsets()).log_start)
    out = []
    for batch in await read_batches(plog, start):
        header = read_batch_header(batch)
        if header.is_control:
            continue
        for r in iter_records(batch):
            if header.base_offset + r.offset_delta >= start:
                out.append((header.base_offset + r.offset_delta, r.key, r.value))
    return out


def appended(outcome: object) -> AppendResult:
    assert isinstance(outcome, AppendResult), f"expected an append, got {outcome!r}"
    return outcome


def rejected(outcome: object, code: int) -> None:
    assert isinstance(outcome, Rejected) and outcome.error_code == code, (
        f"expected error {code}, got {outcome!r}")


# -- the checks ------------------------------------------------------------------------------


async def cluster_and_brokers(h: _Harness) -> None:
    engine = await h.open()
    cluster_id = engine.cluster_id()
    assert isinstance(cluster_id, str) and len(cluster_id) == 22, cluster_id
    me = ME
    assert list(await engine.brokers()) == [me]
    await engine.register_broker(me)  # registering again (a restart) is no error
    assert list(await engine.brokers()) == [me]
    if h.durable:
        engine = await h.reopen(register=False)
        assert engine.cluster_id() == cluster_id, "the cluster id changed"
        moved = BrokerRegistration(1, "a2", 9093)  # the stop ended the old registration
        await engine.register_broker(moved)
        assert list(await engine.brokers()) == [moved]


async def topics(h: _Harness) -> None:
    engine = await h.open()
    info = await engine.create_topic("conf-topics", 2, {"retention.ms": "5000"})
    assert (info.name, info.partitions, dict(info.configs)) == (
        "conf-topics", 2, {"retention.ms": "5000"})
    assert engine.topics()["conf-topics"] == info
    assert engine.topic_by_id(info.topic_id) == info
    assert engine.log_config("conf-topics").retention_ms == 5000
    try:
        await engine.create_topic("conf-topics", 1, {})
        raise AssertionError("creating an existing topic must raise TopicExists")
    except TopicExists:
        pass
    grown = await engine.create_partitions("conf-topics", 4)
    assert grown.partitions == 4 and grown.topic_id == info.topic_id
    engine.partition("conf-topics", 3)
    configured = await engine.set_topic_configs("conf-topics", {"retention.ms": "7000"})
    assert dict(configured.configs) == {"retention.ms": "7000"}
    assert engine.log_config("conf-topics").retention_ms == 7000
    await engine.create_topic("conf-doomed", 1, {})
    await appended_batch(engine, "conf-doomed")
    await engine.delete_topic("conf-doomed")
    assert "conf-doomed" not in engine.topics()
    _assert_unknown(engine, "conf-doomed", 0)
    _assert_unknown(engine, "conf-topics", 4)
    if h.durable:
        engine = await h.reopen()
        assert engine.topics()["conf-topics"] == configured
        assert "conf-doomed" not in engine.topics()
        assert engine.log_config("conf-topics").retention_ms == 7000


async def leadership_and_log_dir(h: _Harness) -> None:
    """A broker alone leads every partition, which belongs to it (nothing pinned), and its
    log directory lists them with their sizes."""
    engine = await h.open()
    await engine.create_topic("conf-led", 2, {})
    await appended_batch(engine, "conf-led")
    for index in range(2):
        assert engine.leadership("conf-led", index).leader == ME.node_id
        assert engine.assignment("conf-led", index) == Assignment(ME.node_id, ME.node_id)
    await engine.rebalance()  # nothing to move
    assert engine.leadership("conf-led", 0).leader == ME.node_id
    try:
        engine.assignment("conf-led", 2)
        raise AssertionError("the assignment of a missing partition must raise UnknownTopic")
    except UnknownTopic:
        pass
    described = await engine.describe_log_dir()
    sizes = {(p.topic, p.partition): p.size_bytes for p in described.partitions}
    assert described.path and sizes[("conf-led", 0)] > 0 and ("conf-led", 1) in sizes, sizes


def _assert_unknown(engine: StorageEngine, topic: str, partition: int) -> None:
    try:
        engine.partition(topic, partition)
    except UnknownTopic:
        return
    raise AssertionError(f"{topic}-{partition} must be unknown")


async def appended_batch(engine: StorageEngine, topic: str) -> AppendResult:
    return await engine.partition(topic, 0).append([data_batch([b"x"])])


async def append_and_read(h: _Harness) -> None:
    engine = await h.open()
    await engine.create_topic("conf-log", 1, {})
    plog = engine.partition("conf-log", 0)
    empty = await plog.offsets()
    assert (empty.log_start, empty.high_watermark, empty.last_stable, empty.log_end) == (
        0, 0, 0, 0)
    batches = [data_batch([b"a", b"b"]), data_batch([b"c"]), data_batch([b"d", b"e", b"f"])]
    first = await plog.append(batches[:1])
    assert (first.base_offset, first.last_offset, first.log_start_offset) == (0, 1, 0)
    rest = await plog.append(batches[1:])
    assert (rest.base_offset, rest.last_offset) == (2, 5)
    assert (plog.appended_records, plog.appended_bytes) == (
        6, sum(len(b.data) for b in batches)), "appends count their records and bytes"
    offsets = await plog.offsets()
    assert (offsets.high_watermark, offsets.last_stable, offsets.log_end) == (6, 6, 6)
    stored = await read_batches(plog, 0)
    assert [read_batch_header(b).base_offset for b in stored] == [0, 2, 3]
    for got, sent in zip(stored, batches, strict=True):
        assert got[8:12] == bytes(sent.data[8:12]) and got[16:] == bytes(sent.data[16:]), (
            "a batch must be stored as received (only base offset and leader epoch change)")
    # A read from inside a batch returns that whole batch.
    assert [read_batch_header(b).base_offset for b in await read_batches(plog, 4)] == [3]
    one = await plog.read(0, 1, True)
    assert len(split_batches(one.chunks)) == 1, "min_one_batch returns the first batch whole"
    none = await plog.read(0, 1, False)
    assert none.size == 0 and not chunks_bytes(none.chunks)
    at_end = await plog.read(6, 1 << 20, True)
    assert at_end.size == 0 and at_end.high_watermark == 6 and at_end.log_start_offset == 0
    for offset in (7, -1):
        try:
            await plog.read(offset, 1 << 20, True)
            raise AssertionError(f"reading offset {offset} must raise OffsetOutOfRange")
        except OffsetOutOfRange:
            pass
    if h.durable:
        engine = await h.reopen()
        plog = engine.partition("conf-log", 0)
        assert await read_batches(plog, 0) == stored, "the log changed across a restart"
        assert (await plog.append([data_batch([b"g"])])).base_offset == 6


def split_batches(chunks: Sequence[bytes | FileRegion]) -> list[bytes]:
    """The whole batches in a read's chunks; AssertionError if one is cut."""
    data = chunks_bytes(chunks)
    out, pos = [], 0
    while pos + BATCH_HEADER_SIZE <= len(data):
        size = read_batch_header(data, pos).size
        out.append(data[pos: pos + size])
        pos += size
    assert pos == len(data), "a read returned a partial batch"
    return out


async def produce_checks(h: _Harness) -> None:
    engine = await h.open()
    await engine.create_topic("conf-idempotent", 1, {})
    plog = engine.partition("conf-idempotent", 0)
    # Recent timestamps: at open, producers idle for producer.id.expiration.ms are dropped.
    now = int(time.time() * 1000)

    def idem(seq: int, epoch: int = 0) -> AppendBatch:
        return data_batch([b"1", b"2"], producer_id=7, producer_epoch=epoch,
                          base_sequence=seq, timestamp=now + seq)

    assert appended(await plog.produce([idem(0)])).base_offset == 0
    assert appended(await plog.produce([idem(2)])).base_offset == 2
    assert await plog.produce([idem(0)]) == Duplicate(0, now, 0)
    assert await plog.produce([idem(2)]) == Duplicate(2, now + 2, 0)
    rejected(await plog.produce([idem(7)]), OUT_OF_ORDER_SEQUENCE_NUMBER)
    rejected(await plog.produce([idem(-1)]), INVALID_RECORD)
    assert appended(await plog.produce([idem(0, epoch=1)])).base_offset == 4  # a new epoch
    rejected(await plog.produce([idem(4, epoch=0)]), INVALID_PRODUCER_EPOCH)
    rejected(await plog.produce([idem(5, epoch=2)]), OUT_OF_ORDER_SEQUENCE_NUMBER)
    assert (await plog.offsets()).log_end == 6
    assert (plog.appended_records, plog.appended_bytes) == (6, 3 * len(idem(0).data)), (
        "duplicates and refused batches are not counted as appended")
    if h.durable:  # the producer state is rebuilt: a retry is still a duplicate
        engine = await h.reopen()
        plog = engine.partition("conf-idempotent", 0)
        assert await plog.produce([idem(0, epoch=1)]) == Duplicate(4, now, 0)
        assert appended(await plog.produce([idem(2, epoch=1)])).base_offset == 6


async def transactions(h: _Harness) -> None:
    engine = await h.open()
    await engine.create_topic("conf-txn", 1, {})
    plog = engine.partition("conf-txn", 0)

    def txn(pid: int, seq: int, value: bytes) -> AppendBatch:
        return data_batch([value], producer_id=pid, producer_epoch=0, base_sequence=seq,
                          transactional=True)

    rejected(await plog.produce([txn(11, 0, b"unverified")]), INVALID_TXN_STATE)
    await plog.append([data_batch([b"plain"])])  # offset 0
    guard = plog.producer_state.start_verification(11)
    assert appended(await plog.produce([txn(11, 0, b"t11")], guard)).base_offset == 1
    guard = plog.producer_state.start_verification(12)
    assert appended(await plog.produce([txn(12, 0, b"t12")], guard)).base_offset == 2
    await plog.append([data_batch([b"after"])])  # offset 3
    offsets = await plog.offsets()
    assert (offsets.last_stable, offsets.high_watermark) == (1, 4)
    assert [r[2] for r in await _committed(plog)] == [b"plain"]
    await plog.append_marker(11, 0, commit=False)  # offset 4: 11 aborted
    assert (await plog.offsets()).last_stable == 2
    await plog.append_marker(12, 0, commit=True)  # offset 5
    offsets = await plog.offsets()
    assert (offsets.last_stable, offsets.high_watermark) == (6, 6)
    assert plog.aborted_transactions(0, 6) == [(11, 1)]
    assert plog.aborted_transactions(5, 6) == []
    assert plog.appended_records == 6, "a transaction marker is an appended record"
    try:
        await plog.append_marker(12, -1 + 0, commit=True)
        raise AssertionError("a marker of an older epoch must raise InvalidProducerEpoch")
    except InvalidProducerEpoch:
        pass
    # A guard taken before the transaction ended no longer lets a late batch in.
    guard = plog.producer_state.start_verification(12)
    await plog.append_marker(12, 0, commit=False)  # offset 6: ends the guard
    rejected(await plog.produce([txn(12, 1, b"late")], guard), INVALID_TXN_STATE)
    if h.durable:
        engine = await h.reopen()
        plog = engine.partition("conf-txn", 0)
        assert plog.aborted_transactions(0, 7) == [(11, 1)]
        assert (await plog.offsets()).last_stable == 7


async def _committed(plog: PartitionLog) -> list[tuple[int, bytes | None, bytes | None]]:
    out: list[tuple[int, bytes | None, bytes | None]] = []
    for batch in await read_batches(plog, 0, committed=True):
        header = read_batch_header(batch)
        if not header.is_control:
            out.extend((header.base_offset + r.offset_delta, r.key, r.value)
                       for r in iter_records(batch))
    return out


async def delete_records(h: _Harness) -> None:
    engine = await h.open()
    await engine.create_topic("conf-delete", 1, {})
    plog = engine.partition("conf-delete", 0)
    for value in (b"a", b"b", b"c", b"d"):
        await plog.append([data_batch([value])])
    assert await plog.delete_records_before(2) == 2
    assert await plog.delete_records_before(1) == 2, "the log start never moves back"
    assert (await plog.offsets()).log_start == 2
    try:
        await plog.read(1, 1 << 20, True)
        raise AssertionError("reading below the log start must raise OffsetOutOfRange")
    except OffsetOutOfRange:
        pass
    assert [r[2] for r in await read_records(plog, 2)] == [b"c", b"d"]
    if h.durable:
        engine = await h.reopen()
        assert (await engine.partition("conf-delete", 0).offsets()).log_start == 2


async def timestamps(h: _Harness) -> None:
    engine = await h.open()
    await engine.create_topic("conf-time", 1, {})
    plog = engine.partition("conf-time", 0)
    assert await plog.max_timestamp() is None
    assert await plog.offset_for_timestamp(T0) is None
    for i, ts in enumerate((T0, T0 + 50, T0 + 20, T0 + 100)):
        await plog.append([data_batch([bytes([65 + i])], timestamp=ts)])
    assert await plog.offset_for_timestamp(T0 + 10) == (1, T0 + 50)
    assert await plog.offset_for_timestamp(T0 + 60) == (3, T0 + 100)
    assert await plog.offset_for_timestamp(T0 + 101) is None
    assert await plog.max_timestamp() == (3, T0 + 100)


async def retention(h: _Harness) -> None:
    engine = await h.open()
    await engine.create_topic("conf-retention-time", 1, SMALL_SEGMENTS | {"retention.ms": "1000"})
    await engine.create_topic("conf-retention-size", 1,
                              SMALL_SEGMENTS | {"retention.bytes": "400"})
    by_time = engine.partition("conf-retention-time", 0)
    by_size = engine.partition("conf-retention-size", 0)
    for i in range(10):
        await by_time.append([data_batch([bytes(100)], timestamp=T0 + i)])
        await by_size.append([data_batch([bytes(100)], timestamp=T0 + i)])
    await by_time.append([data_batch([b"recent"], timestamp=T0 + 100_000)])
    await engine.run_retention(T0 + 100_500)
    kept = await read_records(by_time)
    assert kept and kept[-1] == (10, None, b"recent"), "retention dropped recent records"
    assert (await by_time.offsets()).log_start > 0, "nothing past retention.ms was deleted"
    assert (await by_time.offsets()).log_end == 11
    size_offsets = await by_size.offsets()
    assert size_offsets.log_start > 0 and size_offsets.log_end == 10, size_offsets
    assert (await read_records(by_size))[-1][0] == 9


async def compaction(h: _Harness) -> None:
    engine = await h.open()
    await engine.create_topic("conf-compact", 1, SMALL_SEGMENTS | {
        "cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "0", "segment.ms": "1000"})
    plog = engine.partition("conf-compact", 0)
    latest: dict[bytes, bytes | None] = {}
    for i in range(12):
        key = b"k%d" % (i % 3)
        last = None if i == 10 else b"v%d" % i  # k1's tombstone at offset 10
        await plog.append([data_batch([last], keys=[key], timestamp=T0 + i)])
        latest[key] = last
    await plog.append([data_batch([b"tail"], keys=[b"t"], timestamp=T0 + 12)])
    latest[b"t"] = b"tail"
    now = int(time.time() * 1000) + 10_000
    # An engine may flush or clean in the background: a few passes, as its cleaner would
    # make (a tombstone also goes a pass after the one that sets its delete horizon).
    for _ in range(40):
        await engine.run_cleaner(now)
        now += 10_000
        records = await read_records(plog)
        keys = [key for _, key, _ in records]
        if keys.count(b"k0") == 1 and b"k1" not in keys:
            break
        await asyncio.sleep(0.05)
    by_key: dict[bytes, list[tuple[int, bytes | None]]] = {}
    for offset, record_key, value in records:
        assert record_key is not None
        by_key.setdefault(record_key, []).append((offset, value))
    assert [o for o, _, _ in records] == sorted(o for o, _, _ in records)
    for key, value in latest.items():
        if value is None:
            assert key not in by_key or by_key[key][-1][1] is None, key
        else:
            assert by_key[key][-1][1] == value, f"{key!r} lost its last value"
    assert len(records) < 13, "compaction removed nothing"
    assert len(by_key.get(b"k0", [])) == 1, "k0's older values were not removed"
    assert b"k1" not in by_key, "k1's tombstone outlived delete.retention.ms"
    assert (await plog.offsets()).log_end == 13


async def wait_for_data(h: _Harness) -> None:
    engine = await h.open()
    await engine.create_topic("conf-wait", 2, {})
    plog = engine.partition("conf-wait", 1)
    hw = (await plog.offsets()).high_watermark
    begin = time.monotonic()
    await engine.wait_for_data({("conf-wait", 1): hw}, 0.05)
    assert time.monotonic() - begin >= 0.04, "returned before the timeout with no new data"
    waiting = asyncio.create_task(engine.wait_for_data(
        {("conf-wait", 0): 0, ("conf-wait", 1): hw}, 10))
    await asyncio.sleep(0.02)
    assert not waiting.done()
    await plog.append([data_batch([b"wake"])])
    await asyncio.wait_for(waiting, 5)  # woken by the append, well before its 10 s
    begin = time.monotonic()
    await engine.wait_for_data({("conf-wait", 1): hw}, 10)  # already moved: at once
    assert time.monotonic() - begin < 1


async def producer_ids(h: _Harness) -> None:
    engine = await h.open()
    first = await engine.reserve_producer_ids(10)
    second = await engine.reserve_producer_ids(5)
    assert first >= 0 and second >= first + 10
    if h.durable:
        engine = await h.reopen()
        assert await engine.reserve_producer_ids(1) >= second + 5, "producer ids reused"


CHECKS: Final[tuple[Callable[[_Harness], Awaitable[None]], ...]] = (
    cluster_and_brokers, topics, leadership_and_log_dir, append_and_read, produce_checks,
    transactions, delete_records, timestamps, retention, compaction, wait_for_data,
    producer_ids)
