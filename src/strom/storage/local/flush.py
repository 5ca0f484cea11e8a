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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable

from strom.storage.api import LogDirFailure
from strom.storage.local.log_segment import LogSegment

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


class LogFlusher:
    def __init__(self, recovery_point: int, snapshot: Callable[[], tuple[int, int]]) -> None:
        """`snapshot()` gives (log end offset, active segment fd) at the start of an fsync."""
        self.recovery_point = recovery_point
        self.last_flush_ms = now_ms()
        self._snapshot = snapshot
        self._flush: asyncio.Future[None] | None = None
        self._rolled: asyncio.Task[None] | None = None
        self.failure: LogDirFailure | None = None  # set once; the partition is offline

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

    def rolled(self, seg: LogSegment, end_offset: int,
               after: Callable[[], None] | None = None) -> None:
        """Flushes a segment that just became inactive, after earlier rolled ones; then runs
        `after` (blocking, in a thread; failures are logged: producer state snapshots)."""
        task = asyncio.get_running_loop().create_task(
            self._flush_rolled(seg, end_offset, self._rolled, after))
        task.add_done_callback(_retrieve)  # a failure is logged by fail() and kept there
        self._rolled = task

    async def _flush_rolled(self, seg: LogSegment, end_offset: int,
                            previous: asyncio.Task[None] | None,
                            after: Callable[[], None] | None) -> None:
        if previous is not None:
            with contextlib.suppress(Exception):  # it took the partition offline: see below
                await previous
        self.check()
        try:
            await asyncio.to_thread(seg.persist)
        except Exception as exc:
            raise self.fail(f"{seg.log_path}: persisting a rolled segment", exc) from exc
        self.check()
        self.recovery_point = max(self.recovery_point, end_offset)
        if after is not None:
            try:
                await asyncio.to_thread(after)
            except Exception:
                log.warning("%s: the work after a roll flush failed", seg.log_path,
                            exc_info=True)

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
        self.check()
        while self.recovery_point < offset:
            future = self._flush
            if future is None:
                future = self._flush = asyncio.ensure_future(self._do_flush())
            await asyncio.shield(future)

    async def _do_flush(self) -> None:
        try:
            target, fd = self._snapshot()
            await self.wait_rolled()
            self.check()
            try:
                await asyncio.to_thread(os.fsync, fd)
            except Exception as exc:
                raise self.fail(f"fsync of the active segment (fd {fd})", exc) from exc
            self.check()
            self.recovery_point = max(self.recovery_point, target)
            self.last_flush_ms = now_ms()
        finally:
            self._flush = None
