"""One runtime under the group and the transaction coordinators: Kafka's CoordinatorRuntime.

A coordinator's state is split into shards, one per partition of its internal topic
(`__consumer_offsets`, `__transaction_state`): a shard holds the groups or transactional ids
that hash to its partition, in a core without I/O (`GroupCoordinator`, `TransactionCoordinator`).
The runtime owns the shards and gives every coordinator the same four things:

* **Ownership with an epoch.** `load(partition, epoch)` replays the partition into a fresh core
  (the shard is LOADING meanwhile, then ACTIVE; FAILED if its log cannot be read, retried by the
  timer loop); `unload(partition)` drops it. A request for a shard not owned is refused with
  NOT_COORDINATOR, for one loading with COORDINATOR_LOAD_IN_PROGRESS, for one whose log cannot
  be read with COORDINATOR_NOT_AVAILABLE (`shard`). A load with an epoch lower than one already
  seen, or an unload with an epoch lower than the shard's, is stale and ignored.
* **One write path.** `append(shard, batches)` appends a step's records to the shard's
  partition through the storage engine (`PartitionLog.append`) and refuses a shard that is no
  longer current, before and after the append: a write or timer of an unloaded (or reloaded)
  shard never delivers its effects.
* **One failure policy.** Cores apply a step, then the runtime writes it (Kafka's order). If
  the write fails, the shard is reverted to its last written state by replaying its log (Kafka
  reverts to its last committed snapshot; the log is ours): its waiting calls are answered, it
  reloads, and the caller gets the error Kafka's CoordinatorOperationExceptionHelper maps the
  storage error to (`write_error`).
* **One timer loop** for every shard: it sleeps until the earliest shard deadline (cached per
  shard, recomputed only for shards a step touched) and lets the coordinator run that shard's
  due timers. Timers live in the shard's core, so an unload cancels them.

Which shards a broker serves follows the storage's leadership (`reconcile`, called at start
and whenever the engine reports that leadership moved): a broker loads the shard of every
partition of the topic it leads, at that partition's leader epoch, and unloads the others; a
single broker leads everything at epoch 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar

from strom.coordinator.hashing import partition_for
from strom.coordinator.log_codec import LogFormatError
from strom.protocol.messages import ErrorCode
from strom.storage.api import (
    AppendBatch,
    LogDirFull,
    PartitionLog,
    StorageEngine,
    StorageError,
    StorageUnavailable,
    UnknownTopic,
)

log = logging.getLogger(__name__)

TIMER_MAX_SLEEP_S: Final = 0.5
LOAD_RETRY_MS: Final = 500  # how soon the timer loop tries again to load a FAILED shard
TIMER_RETRY_MS: Final = 500  # how soon it runs again timers that failed


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class ShardStatus(enum.Enum):
    LOADING = "loading"
    ACTIVE = "active"
    FAILED = "failed"  # owned, but its log could not be replayed: retried
    UNLOADED = "unloaded"


class CoordinatorError(Exception):
    """The coordinator cannot serve the call: answer this error code (NOT_COORDINATOR,
    COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE or UNKNOWN_SERVER_ERROR)."""

    def __init__(self, error: int, detail: str = "") -> None:
        super().__init__(f"{ErrorCode(error).name}: {detail}" if detail
                         else ErrorCode(error).name)
        self.error = error


STATUS_ERRORS: Final = {
    ShardStatus.LOADING: ErrorCode.coordinator_load_in_progress,
    ShardStatus.FAILED: ErrorCode.coordinator_not_available,
    ShardStatus.UNLOADED: ErrorCode.not_coordinator,
}


def write_error(exc: BaseException) -> int:
    """The coordinator error for a failed write, as Kafka's CoordinatorOperationExceptionHelper
    maps the log's errors: UNKNOWN_TOPIC_OR_PARTITION -> COORDINATOR_NOT_AVAILABLE,
    KAFKA_STORAGE_ERROR (every other engine error) -> NOT_COORDINATOR, anything unexpected ->
    UNKNOWN_SERVER_ERROR."""
    if isinstance(exc, UnknownTopic):
        return ErrorCode.coordinator_not_available
    if isinstance(exc, (StorageError, OSError)):
        return ErrorCode.not_coordinator
    return ErrorCode.unknown_server_error


class ShardCore(Protocol):
    def next_deadline_ms(self) -> int | None:
        """When the core's timers next have work; a time not after now means "now"."""
        ...


CoreT = TypeVar("CoreT", bound=ShardCore)


@dataclass(eq=False, slots=True)
class Shard(Generic[CoreT]):
    """One partition's state. A new object per load: holding one tells a late write or timer
    whether the state it came from is still the one served (`CoordinatorRuntime.is_current`)."""

    partition: int
    epoch: int
    status: ShardStatus
    core_or_none: CoreT | None = None
    retry_at_ms: int = 0  # FAILED: when to try loading again

    @property
    def core(self) -> CoreT:
        assert self.core_or_none is not None, f"shard {self.partition} is not loaded"
        return self.core_or_none


class InFlight:
    """A count of a partition's appends in flight, and a way to wait for none."""

    __slots__ = ("_count", "_idle")

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self) -> None:
        self._count += 1
        self._idle.clear()

    def end(self) -> None:
        self._count -= 1
        if self._count == 0:
            self._idle.set()

    async def idle(self) -> None:
        await self._idle.wait()


class ShardHost(Protocol[CoreT]):
    """What a coordinator gives the runtime: its cores, its replay and its timer step."""

    def new_core(self, partition: int, partitions: int) -> CoreT: ...

    async def replay(self, core: CoreT, plog: PartitionLog, partition: int) -> int:
        """Applies the partition's records to `core` in log order; returns how many."""
        ...

    async def on_timer(self, shard: Shard[CoreT], now_ms: int) -> None:
        """Runs the shard's due timers and writes their records (through `append`)."""
        ...

    def on_unloaded(self, shard: Shard[CoreT]) -> None:
        """The shard's state is gone: answer or stop whatever still waits on it."""
        ...


class CoordinatorRuntime(Generic[CoreT]):
    def __init__(self, engine: StorageEngine, topic: str, host: ShardHost[CoreT],
                 default_partitions: int, node_id: int,
                 clock: Callable[[], int] = wall_clock_ms) -> None:
        self.engine = engine
        self.node_id = node_id
        self.topic = topic
        self.host = host
        self.default_partitions = default_partitions
        self.clock = clock
        self._shards: dict[int, Shard[CoreT]] = {}
        self._epochs: dict[int, int] = {}  # the highest epoch seen per partition
        self._deadlines: dict[int, int] = {}  # cached next deadline of each ACTIVE shard
        self._dirty: set[int] = set()  # shards whose deadline must be asked again
        self._failed: set[int] = set()  # FAILED shards, retried by the timer loop
        self._writes: dict[int, InFlight] = {}  # appends in flight, by partition
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    # -- ownership ------------------------------------------------------------------------

    def partitions(self) -> int:
        """The topic's actual partition count (Kafka reads it at start), or the setting's
        before the topic exists."""
        info = self.engine.topics().get(self.topic)
        return self.default_partitions if info is None else info.partitions

    def partition_for(self, key: str) -> int:
        return partition_for(key, self.partitions())

    def status(self, partition: int) -> ShardStatus:
        shard = self._shards.get(partition)
        return ShardStatus.UNLOADED if shard is None else shard.status

    def shard(self, partition: int) -> Shard[CoreT]:
        """The ACTIVE shard of `partition`; raises CoordinatorError otherwise."""
        shard = self._shards.get(partition)
        if shard is not None and shard.status is ShardStatus.ACTIVE:
            return shard
        status = ShardStatus.UNLOADED if shard is None else shard.status
        raise CoordinatorError(STATUS_ERRORS[status], f"{self.topic}-{partition} is "
                               f"{status.value} on this broker")

    def is_current(self, shard: Shard[CoreT]) -> bool:
        return self._shards.get(shard.partition) is shard

    def shards(self) -> list[Shard[CoreT]]:
        """Every shard this runtime owns, whatever its status, by partition."""
        return [self._shards[p] for p in sorted(self._shards)]

    async def load(self, partition: int, epoch: int) -> bool:
        """Takes ownership of `partition` at `epoch` and replays it; True once ACTIVE. A stale
        epoch is ignored; an owned shard only takes the higher epoch."""
        if not 0 <= partition < self.partitions():
            raise ValueError(f"{self.topic} has no partition {partition}")
        if epoch < self._epochs.get(partition, -1):
            log.info("%s-%d: ignoring a load at epoch %d below %d", self.topic, partition,
                     epoch, self._epochs[partition])
            return False
        self._epochs[partition] = epoch
        current = self._shards.get(partition)
        if (current is not None and current.status is not ShardStatus.FAILED
                and current.epoch == epoch):
            return current.status is ShardStatus.ACTIVE
        # A higher epoch: the partition was led elsewhere in between and may have been
        # written there, so the shard is replayed again.
        shard = self._replace(partition, epoch)
        await self._replay(shard)
        return shard.status is ShardStatus.ACTIVE

    async def load_led(self) -> None:
        """Loads the shard of every partition this broker leads (at start, and once the
        topic is created), and waits for them."""
        started = time.monotonic()
        led = self._led()
        loaded = [await self.load(partition, epoch) for partition, epoch in led.items()]
        self.reconcile()
        if loaded:
            log.info("loaded %d of %d partitions of %s in %.0f ms", sum(loaded), len(loaded),
                     self.topic, (time.monotonic() - started) * 1000)

    def _led(self) -> dict[int, int]:
        """{partition: leader epoch} of the topic's partitions this broker leads."""
        led: dict[int, int] = {}
        if self.topic not in self.engine.topics():
            return led
        for partition in range(self.partitions()):
            try:
                leadership = self.engine.leadership(self.topic, partition)
            except UnknownTopic:
                continue
            if leadership.leader == self.node_id:
                led[partition] = leadership.epoch
        return led

    def reconcile(self) -> None:
        """Follows the storage's leadership: starts loading the shards of partitions this
        broker now leads (or leads at a higher epoch), unloads those it no longer leads."""
        if self._stopping:
            return
        led = self._led()
        for partition in list(self._shards):
            if partition not in led:
                self.unload(partition)
        for partition, epoch in led.items():
            shard = self._shards.get(partition)
            if shard is None or shard.epoch < epoch:
                self._spawn(self._load_quietly(partition, epoch))

    async def _load_quietly(self, partition: int, epoch: int) -> None:
        try:
            await self.load(partition, epoch)
        except ValueError as exc:  # the topic shrank or went while this waited
            log.debug("%s-%d not loaded: %s", self.topic, partition, exc)

    def unload(self, partition: int, epoch: int | None = None) -> bool:
        """Gives up `partition`: its state, timers and waiting calls go (they are answered
        NOT_COORDINATOR). An `epoch` lower than the shard's is stale and ignored."""
        shard = self._shards.get(partition)
        if shard is None or (epoch is not None and epoch < shard.epoch):
            return False
        del self._shards[partition]
        self._drop(shard)
        log.debug("%s-%d unloaded at epoch %d", self.topic, partition, shard.epoch)
        return True

    def _replace(self, partition: int, epoch: int) -> Shard[CoreT]:
        """A fresh LOADING shard in place of the current one (dropped)."""
        old = self._shards.get(partition)
        shard: Shard[CoreT] = Shard(partition, epoch, ShardStatus.LOADING)
        self._shards[partition] = shard
        if old is not None:
            self._drop(old)
        return shard

    def _drop(self, shard: Shard[CoreT]) -> None:
        shard.status = ShardStatus.UNLOADED
        self._deadlines.pop(shard.partition, None)
        self._dirty.discard(shard.partition)
        self._failed.discard(shard.partition)
        self.host.on_unloaded(shard)

    async def _replay(self, shard: Shard[CoreT]) -> None:
        started = time.monotonic()
        core = self.host.new_core(shard.partition, self.partitions())
        writes = self._writes.get(shard.partition)
        if writes is not None:
            await writes.idle()  # a replay includes every write started before it
        try:
            plog = self.engine.partition(self.topic, shard.partition)
            count = await self.host.replay(core, plog, shard.partition)
        except (StorageError, OSError, LogFormatError, ValueError) as exc:
            if self.is_current(shard):
                shard.status = ShardStatus.FAILED
                shard.retry_at_ms = self.clock() + LOAD_RETRY_MS
                self._failed.add(shard.partition)
                self._wake.set()
            log.error("cannot load %s-%d: %s", self.topic, shard.partition, exc)
            return
        if not self.is_current(shard):
            return  # unloaded while it loaded
        shard.core_or_none = core
        shard.status = ShardStatus.ACTIVE
        self.touched(shard)
        log.debug("loaded %d records of %s-%d at epoch %d in %.0f ms", count, self.topic,
                 shard.partition, shard.epoch, (time.monotonic() - started) * 1000)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the write path -------------------------------------------------------------------

    async def append(self, shard: Shard[CoreT], batches: Sequence[AppendBatch]) -> bool:
        """Writes a step's records of `shard` to its partition. The append starts before this
        coroutine first suspends, so steps are written in the order their cores made them.
        Returns whether the shard is still the one served: if not (unloaded or reloaded while
        the append ran), the records are in the log, and so in whatever state loads it next,
        but the step's other effects (answers to parked calls, markers) must not be delivered.
        Raises CoordinatorError: NOT_COORDINATOR if the shard is no longer served before the
        write; the mapped error if the write fails, after which the shard reloads."""
        if not self.is_current(shard) or shard.status is not ShardStatus.ACTIVE:
            raise CoordinatorError(ErrorCode.not_coordinator,
                                   f"{self.topic}-{shard.partition} was unloaded")
        writes = self._writes.setdefault(shard.partition, InFlight())
        writes.begin()
        try:
            await self.engine.partition(self.topic, shard.partition).append(batches)
        except Exception as exc:
            error = write_error(exc)
            if error == ErrorCode.unknown_server_error:
                log.exception("writing to %s-%d failed", self.topic, shard.partition)
            elif isinstance(exc, (LogDirFull, StorageUnavailable)):  # logged by the engine
                log.debug("writing to %s-%d failed (%s); reloading it", self.topic,
                          shard.partition, exc)
            else:
                log.error("writing to %s-%d failed (%s); reloading it", self.topic,
                          shard.partition, exc)
            self.revert(shard)
            raise CoordinatorError(error, str(exc)) from exc
        finally:
            writes.end()
        return self.is_current(shard)

    def revert(self, shard: Shard[CoreT]) -> None:
        """The shard's memory may hold what its log does not: replay the log into a new
        shard (same epoch); until then calls get COORDINATOR_LOAD_IN_PROGRESS."""
        if self.is_current(shard) and shard.status is ShardStatus.ACTIVE:
            self._spawn(self._replay(self._replace(shard.partition, shard.epoch)))

    def touched(self, shard: Shard[CoreT]) -> None:
        """A step ran on the shard: its deadline may have moved."""
        self._dirty.add(shard.partition)
        self._wake.set()

    # -- the timer loop -------------------------------------------------------------------

    def start(self) -> None:
        self._stopping = False
        self._timer = asyncio.get_running_loop().create_task(self._run_timers())

    async def stop(self) -> None:
        # The flag too: Python 3.11's wait_for can swallow a cancel that races a wake-up.
        self._stopping = True
        self._wake.set()
        tasks = [t for t in (self._timer, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for partition in list(self._shards):
            self.unload(partition)

    async def _run_timers(self) -> None:
        while not self._stopping:
            self._wake.clear()
            now_ms = self.clock()
            due, next_ms = self._due(now_ms)
            if not due:
                sleep_s = (TIMER_MAX_SLEEP_S if next_ms is None
                           else min((next_ms - now_ms) / 1000, TIMER_MAX_SLEEP_S))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), max(sleep_s, 0.001))
                continue
            for shard in due:
                await self._fire(shard, now_ms)
            await asyncio.sleep(0)

    def _due(self, now_ms: int) -> tuple[list[Shard[CoreT]], int | None]:
        """The shards with due timers (or a load to retry), and the earliest later time."""
        self._refresh_deadlines()
        due, next_ms = [], None
        for partition, deadline in self._deadlines.items():
            if deadline <= now_ms:
                due.append(self._shards[partition])  # _drop forgets unloaded ones
            elif next_ms is None or deadline < next_ms:
                next_ms = deadline
        for partition in self._failed:
            shard = self._shards[partition]  # _drop forgets unloaded ones
            if shard.retry_at_ms <= now_ms:
                due.append(shard)
            else:
                next_ms = shard.retry_at_ms if next_ms is None else min(next_ms,
                                                                        shard.retry_at_ms)
        return due, next_ms

    def _refresh_deadlines(self) -> None:
        """Asks the cores of the shards steps touched for their next deadline."""
        for partition in self._dirty:
            shard = self._shards.get(partition)
            if shard is None or shard.status is not ShardStatus.ACTIVE:
                continue
            deadline = shard.core.next_deadline_ms()
            if deadline is None:
                self._deadlines.pop(partition, None)
            else:
                self._deadlines[partition] = deadline
        self._dirty.clear()

    async def _fire(self, shard: Shard[CoreT], now_ms: int) -> None:
        if not self.is_current(shard):
            return
        if shard.status is ShardStatus.FAILED:
            shard.retry_at_ms = now_ms + LOAD_RETRY_MS
            self._spawn(self._replay(self._replace(shard.partition, shard.epoch)))
            return
        if shard.status is not ShardStatus.ACTIVE:
            return
        self._deadlines.pop(shard.partition, None)
        self._dirty.add(shard.partition)
        try:
            await self.host.on_timer(shard, now_ms)
            return
        except CoordinatorError as exc:
            log.warning("timers of %s-%d not run: %s", self.topic, shard.partition, exc)
        except Exception:
            log.exception("timers of %s-%d failed", self.topic, shard.partition)
        if self.is_current(shard) and shard.status is ShardStatus.ACTIVE:
            # Not again at once: a timer that keeps failing must not spin the loop.
            self._dirty.discard(shard.partition)
            self._deadlines[shard.partition] = now_ms + TIMER_RETRY_MS
