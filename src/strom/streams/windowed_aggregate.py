"""The processors behind windowed aggregations: what the three kinds share (stream time, late
records, emitting on update or on close, wall-clock closing) and the one for time windows
(tumbling and hopping). Sliding and session windows are in `sliding_aggregate` and
`session_aggregate`.

Stream time is the aggregation's observed stream time, as in Kafka: the largest timestamp of
the records it has aggregated (records dropped before it, such as those with a None key or
value, do not move it). Each window kind decides from it, less the grace, whether a window
still takes records (see `strom.streams.windows`); a record for a closed window is dropped,
counted in the processor's `dropped` (once per window it missed) and logged at debug level.

Results are table updates, `Change(new, old)` keyed by `Windowed(key, window)`, with the
latest timestamp of the window's records (session windows: the session's end).
With `EmitStrategy.on_window_update()` each update is forwarded as it happens (time windows
with a record cache: when the cache is flushed, at commits; see
`strom.streams.stores.caching`); with
`on_window_close()` nothing is forwarded until a window closes, then its final value once
(`Change(value, None)`), windows by start (sessions by end) then key. Closed windows are
emitted before the record that closed them is aggregated (so none can expire from the store
first); they are emitted on every record (Kafka's emit interval of 0), not throttled. The
close time of the last emission is kept as processor metadata under the store's name
(committed with the task's offsets, as Kafka does): a task created again after a restart, or
on another instance, emits only the windows closed after it, and takes records for the
windows it had emitted as late.

Wall-clock closing (`on_window_close(wall_clock_idle_ms=N)`): the time that closes windows
is the stream time, except that once the stream time has not advanced for N ms of wall-clock
time it runs on with the wall clock: stream time + (wall clock - the wall-clock time at which
the stream time last advanced). It is kept as it was reached (it never goes back), so a
record arriving after a window was closed this way is late for it, as any late record. A
wall-clock punctuator checks it every `check_interval_ms`; records check it as they come.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from strom.streams.aggregate import Aggregator, Change, Initializer
from strom.streams.processor import (
    Processor,
    ProcessorContext,
    PunctuationType,
    typed_store,
)
from strom.streams.record import Headers, Record
from strom.streams.stores.caching import CachingWindowStore
from strom.streams.stores.window import TimestampedWindowStore
from strom.streams.windows import EmitStrategy, TimeWindows, Window, Windowed

log = logging.getLogger(__name__)


class WindowedAggregateProcessor(Processor):
    """Stream time, dropping late records and forwarding results, for each window kind."""

    def __init__(self, store_name: str, close_after_ms: int, emit: EmitStrategy,
                 initializer: Initializer, aggregator: Aggregator) -> None:
        self.store_name = store_name
        self.close_after_ms = close_after_ms  # from stream time to the close time
        self.emit = emit
        self.initializer = initializer
        self.aggregator = aggregator
        self.dropped = 0
        self.observed_stream_time = -1
        self.closing_stream_time = -1  # the stream time that closes windows (see above)
        self._observed_at = 0  # wall clock when the stream time last advanced
        self._last_emit_close = -1  # the close time of the last emission of final results

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        if self.emit.on_close:
            # The close time of the last final results this task committed, before a
            # restart or on another instance: they are not emitted again, and the windows
            # they closed stay closed (records for them are late).
            restored = context.processor_metadata(self.store_name)
            if restored is not None and restored > self._last_emit_close:
                self._last_emit_close = restored
                self.closing_stream_time = max(self.closing_stream_time,
                                               restored + self.close_after_ms)
        idle = self.emit.wall_clock_idle_ms
        if self.emit.on_close and idle is not None:
            context.schedule(self.emit.check_interval_ms or idle,
                             PunctuationType.WALL_CLOCK_TIME, self._on_wall_clock)

    # -- time ----------------------------------------------------------------------------

    @property
    def close_time(self) -> int:
        """Windows whose end (plus a session's gap) is before this are closed."""
        return self.closing_stream_time - self.close_after_ms

    def _observe(self, timestamp: int) -> int:
        """Takes a record's timestamp into the stream time; returns the close time."""
        now = self.context.current_system_time_ms()
        self._advance_by_wall_clock(now)
        if timestamp > self.observed_stream_time:
            self.observed_stream_time = timestamp
            self._observed_at = now
        self.closing_stream_time = max(self.closing_stream_time, self.observed_stream_time)
        return self.close_time

    def _advance_by_wall_clock(self, now: int) -> None:
        idle = self.emit.wall_clock_idle_ms
        if idle is None or self.observed_stream_time < 0:
            return
        elapsed = now - self._observed_at
        if elapsed >= idle:
            self.closing_stream_time = max(self.closing_stream_time,
                                           self.observed_stream_time + elapsed)

    def _on_wall_clock(self, now: int) -> None:
        self._advance_by_wall_clock(now)
        self._emit_final(())

    # -- records -------------------------------------------------------------------------

    def _skip_null(self, record: Record) -> bool:
        if record.key is not None and record.value is not None:
            return False
        self.dropped += 1
        log.debug("%s: skipping a record with a None key or value (%s)", self.store_name,
                  self.context.record_metadata)
        return True

    def _late(self, record: Record, window: Window, close_time: int) -> None:
        self.dropped += 1
        log.debug("%s: skipping the record at %d for closed window %d-%d (close time %d, "
                  "stream time %d, %s)", self.store_name, record.timestamp, window.start,
                  window.end, close_time, self.closing_stream_time,
                  self.context.record_metadata)

    def _forward_update(self, record: Record, key: Windowed, new: Any, old: Any,
                        timestamp: int, headers: Headers | None = None) -> None:
        if not self.emit.on_close:
            self.context.forward(Record(key, Change(new, old), timestamp,
                                        record.headers if headers is None else headers))

    def _emit_final(self, headers: Headers, skip: frozenset[Windowed] = frozenset()) -> None:
        """Forwards the windows closed since the last emission (on_window_close only)."""
        if not self.emit.on_close:
            return
        close = self.close_time
        if close < 0 or close <= self._last_emit_close:
            return
        for key, value, timestamp in self._closed(self._last_emit_close, close):
            if key not in skip:
                self.context.forward(Record(key, Change(value, None), timestamp, headers))
        self._last_emit_close = close
        self.context.add_processor_metadata(self.store_name, close)

    def _closed(self, last_close: int, close: int) -> Iterator[tuple[Windowed, Any, int]]:
        """(window, value, timestamp) of the windows closed at `close` but not at
        `last_close` (-1: never emitted)."""
        raise NotImplementedError


class TimeWindowAggregateProcessor(WindowedAggregateProcessor):
    """count / reduce / aggregate over time windows: a record updates every window
    [start, start + size) containing it whose end > stream time - grace."""

    def __init__(self, store_name: str, windows: TimeWindows, emit: EmitStrategy,
                 initializer: Initializer, aggregator: Aggregator) -> None:
        super().__init__(store_name, windows.grace_ms, emit, initializer, aggregator)
        self.windows = windows

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self.store = typed_store(context, self.store_name, TimestampedWindowStore)
        # With a record cache (emitting on update only), updates are forwarded when the
        # cache is flushed, not as they happen.
        self.cached: CachingWindowStore | None = None
        if isinstance(self.store, CachingWindowStore) and self.store.caching and \
                not self.emit.on_close:
            self.cached = self.store
            self.store.flush_listener = self._flushed

    def _flushed(self, key: Any, new: Any, old: Any, timestamp: int, headers: Headers) -> None:
        self.context.forward(Record(key, Change(new, old), timestamp, headers))

    def process(self, record: Record) -> None:
        if self._skip_null(record):
            return
        close = self._observe(record.timestamp)
        self._emit_final(record.headers)
        for start, window in self.windows.windows_for(record.timestamp).items():
            if window.end > close:
                self._update(record, start, window)
            else:
                self._late(record, window, close)

    def _update(self, record: Record, start: int, window: Window) -> None:
        key = record.key
        found = self.store.fetch_with_timestamp(key, start)
        if found is None:
            old, current, timestamp = None, self.initializer(), record.timestamp
        else:
            old, current, timestamp = found[0], found[0], max(record.timestamp, found[1])
        new = self.aggregator(key, record.value, current)
        if self.cached is not None:
            self.cached.put(key, new, start, timestamp, headers=record.headers)
            return
        self.store.put(key, new, start, timestamp)
        self._forward_update(record, Windowed(key, window), new, old, timestamp)

    def _closed(self, last_close: int, close: int) -> Iterator[tuple[Windowed, Any, int]]:
        size = self.windows.size_ms
        low = 0 if last_close < 0 else max(0, last_close - size + 1)
        return self.store.fetch_all_with_timestamps(low, close - size)
