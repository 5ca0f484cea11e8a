"""LogFlusher: a partition's fsyncs and its recovery point (Kafka's flush + recoveryPoint).

* `flush_to(offset)` returns once everything below `offset` is on disk. Callers that arrive
  while an fsync is in flight wait for it and, if it does not cover them, share the next one
  (group commit), so flush.messages=1 under load costs far fewer fsyncs than appends.
* A rolled segment is fsynced and its indexes saved in the background (`rolled`); these
  flushes run one after another, and a flush of the active segment waits for them first.
* The recovery point only moves forward, and only past data that is fsynced, with the indexes
  of every inactive segment below it saved: recovery after a crash starts there.
* A failed fsync or index write takes the partition offline (`failure`, Kafka halts the log
  directory): nothing is fsynced again (after EIO a retry could "succeed" with the data lost),
  the recovery point stays where it was, and every flush raises LogDirFailure.
* Except for lack of space (no_space.py): a write that fails with ENOSPC or EDQUOT starts a
  `no_space` episode instead. A rolled segment whose indexes could not be saved waits in
  `_unsaved` (and the rolls after it, in order); the recovery point does not move and flushes
  raise LogDirFull until `save_unsaved` succeeds. An fsync of segment data that fails is
  fatal whatever its errno: the kernel may have dropped the pages it could not write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from strom.storage.api import LogDirFailure
from strom.storage.local.log_segment import LogSegment
from strom.storage.local.no_space import NoSpaceEpisode, is_no_space
from strom.storage.meter import MeterSlot

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True, slots=True)
class RolledFlush:
    """A segment that became inactive: fsync it, save its indexes, then the recovery point
    may reach `end_offset` and `after` runs."""

    seg: LogSegment
    end_offset: int
    after: Callable[[], None] | None


class LogFlusher:
    def __init__(self, recovery_point: int, snapshot: Callable[[], tuple[int, int]],
                 name: str = "", meters: MeterSlot | None = None) -> None:
        """`snapshot()` gives (log end offset, active segment fd) at the start of an fsync;
        `name` names the partition in logs; `meters`: the engine's (fsyncs are timed)."""
        self.recovery_point = recovery_point
        self._meters = meters or MeterSlot()
        self.last_flush_ms = now_ms()
        self._snapshot = snapshot
        self._name = name
        self._flush: asyncio.Future[None] | None = None
        self._rolled: asyncio.Task[None] | None = None
        self.failure: LogDirFailure | None = None  # set once; the partition is offline
        self.no_space: NoSpaceEpisode | None = None  # writes fail for lack of space
        self._unsaved: list[RolledFlush] = []  # rolls waiting for space, oldest first

    @property
    def waiting_for_space(self) -> bool:
        """Whether a rolled segment's indexes wait for space (the recovery point is stuck)."""
        return bool(self._unsaved)

    def fail_write(self, what: str, exc: BaseException) -> LogDirFailure:
        """A write failed: lack of space starts (or continues) a no-space episode, anything
        else takes the partition offline. Returns the error to raise."""
        if self.failure is not None or not is_no_space(exc):
            return self.fail(what, exc)
        if self.no_space is None:
            self.no_space = NoSpaceEpisode(self._name, what, exc, self.recovery_point)
        self.no_space.write_failed()
        return self.no_space.error

    def write_succeeded(self) -> None:
        """A write went through: a no-space episode is over once no roll waits for space."""
        episode = self.no_space
        if episode is not None and not self._unsaved:
            self.no_space = None
            episode.ended()

    def fail(self, what: str, exc: BaseException) -> LogDirFailure:
        """Takes the partition offline (once, logged at ERROR); returns the error to raise."""
        if self.failure is None:
            self.failure = LogDirFailure(f"{what} failed: {exc!r}; the partition is offline "
                                         f"until restart")
            log.error("%s failed; the partition is offline until restart (recovery point %d)",
                      what, self.recovery_point, exc_info=exc)
        return self.failure

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def check_flushable(self) -> None:
        """Raises if the recovery point cannot move: offline, or a roll waits for space."""
        self.check()
        if self._unsaved:
            assert self.no_space is not None, "a roll waits for space outside an episode"
            raise self.no_space.error

    def rolled(self, seg: LogSegment, end_offset: int,
               after: Callable[[], None] | None = None) -> None:
        """Flushes a segment that just became inactive, after earlier rolled ones; then runs
        `after` (blocking, in a thread; failures are logged: producer state snapshots)."""
        task = asyncio.get_running_loop().create_task(
            self._flush_rolled(RolledFlush(seg, end_offset, after), self._rolled))
        task.add_done_callback(_retrieve)  # a failure is logged by fail() and kept there
        self._rolled = task

    async def _flush_rolled(self, job: RolledFlush, previous: asyncio.Task[None] | None
                            ) -> None:
        if previous is not None:
            with contextlib.suppress(Exception):  # it took the partition offline: see below
                await previous
        self.check()
        if self._unsaved:  # an earlier roll waits for space: this one waits behind it
            self._unsaved.append(job)
            return
        if not await self._persist_rolled(job):
            self._unsaved.append(job)

    async def _persist_rolled(self, job: RolledFlush) -> bool:
        """fsyncs the segment (fatal on failure), saves its indexes (False if there is no
        space for them: retried later), advances the recovery point, runs `after`."""
        seg = job.seg
        try:
            await self._timed_fsync(seg.sync_log)
        except Exception as exc:
            raise self.fail(f"{seg.log_path}: an fsync of a rolled segment", exc) from exc
        self.check()
        try:
            await asyncio.to_thread(seg.save_indexes)
        except Exception as exc:
            error = self.fail_write(f"{seg.log_path}: saving a rolled segment's indexes", exc)
            if self.failure is not None:
                raise error from exc
            return False
        self.check()
        self.recovery_point = max(self.recovery_point, job.end_offset)
        if job.after is not None:
            try:
                await asyncio.to_thread(job.after)
            except Exception:
                log.warning("%s: the work after a roll flush failed", seg.log_path,
                            exc_info=True)
        return True

    async def save_unsaved(self, alive: Callable[[LogSegment], bool]) -> None:
        """Retries the rolls waiting for space, oldest first (segments that are no longer
        `alive`, deleted by retention meanwhile, are skipped); raises LogDirFull if there is
        still no space, LogDirFailure on another error. The caller holds the partition's
        maintenance lock and no roll flush is in flight."""
        await self.wait_rolled()
        while self._unsaved:
            job = self._unsaved[0]
            if not alive(job.seg):
                self.recovery_point = max(self.recovery_point, job.end_offset)
            elif not await self._persist_rolled(job):
                assert self.no_space is not None
                raise self.no_space.error
            self._unsaved.pop(0)

    async def wait_rolled(self) -> None:
        task = self._rolled
        if task is not None:
            await asyncio.shield(task)

    async def wait_idle(self) -> None:
        await self.wait_rolled()
        if self._flush is not None:
            await asyncio.shield(self._flush)

    async def flush_to(self, offset: int) -> None:
        """`offset` must not be past the log end offset."""
        self.check_flushable()
        while self.recovery_point < offset:
            future = self._flush
            if future is None:
                future = self._flush = asyncio.ensure_future(self._do_flush())
            await asyncio.shield(future)

    async def _timed_fsync(self, sync: Callable[[], None]) -> None:
        """Runs `sync` in a thread; with metrics on, times it or counts its failure."""
        meter = self._meters.meter
        if meter is None:
            await asyncio.to_thread(sync)
            return
        started = time.perf_counter()
        try:
            await asyncio.to_thread(sync)
        except Exception:
            meter.failed("flush")
            raise
        meter.flushed(time.perf_counter() - started)

    async def _do_flush(self) -> None:
        try:
            target, fd = self._snapshot()
            await self.wait_rolled()
            self.check_flushable()
            try:
                await self._timed_fsync(partial(os.fsync, fd))
            except Exception as exc:
                raise self.fail(f"fsync of the active segment (fd {fd})", exc) from exc
            self.check()
            self.recovery_point = max(self.recovery_point, target)
            self.last_flush_ms = now_ms()
        finally:
            self._flush = None
