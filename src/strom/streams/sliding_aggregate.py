"""The processor behind aggregations over sliding windows (KIP-450), with Kafka's rules for
which windows a record creates and updates. With time difference d, windows are [start,
start + d], both ends included, and are stored by start:

- a record at t updates every existing window containing it;
- it gets its left window [t - d, t] unless one exists: the aggregate of the latest window
  ending before t, if the previous record (the latest before t) falls within d of t, plus t;
- the previous record gets its right window [p + 1, p + 1 + d] if it has none and t falls in
  it (created with t alone: records after p and within d of p + 1);
- t gets its right window [t + 1, t + 1 + d] if later records fall within d of t: it takes
  the aggregate of the latest window containing t from before this record;
- records before d (t < d), whose left window would start before 0, share the window [0, d].

A window takes records while its end >= stream time - grace; a record whose right window
would be closed (t + d < stream time - grace) is dropped whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from strom.streams.aggregate import Aggregator, Initializer
from strom.streams.processor import ProcessorContext, typed_store
from strom.streams.record import Record
from strom.streams.stores.window import TimestampedWindowStore
from strom.streams.windowed_aggregate import WindowedAggregateProcessor
from strom.streams.windows import EmitStrategy, SlidingWindows, Window, Windowed

Aggregate = tuple[Any, int]  # (value, latest record timestamp) of a window


class SlidingWindowAggregateProcessor(WindowedAggregateProcessor):
    def __init__(self, store_name: str, windows: SlidingWindows, emit: EmitStrategy,
                 initializer: Initializer, aggregator: Aggregator) -> None:
        super().__init__(store_name, windows.grace_ms, emit, initializer, aggregator)
        self.difference = windows.time_difference_ms

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self.store = typed_store(context, self.store_name, TimestampedWindowStore)

    def _window(self, start: int) -> Window:
        return Window(start, start + self.difference)

    def process(self, record: Record) -> None:
        if self._skip_null(record):
            return
        close = self._observe(record.timestamp)
        self._emit_final(record.headers)
        t = record.timestamp
        if t + self.difference < close:
            self._late(record, Window(t, t + self.difference), close)
        elif t < self.difference:
            self._process_early(record, close)
        else:
            self._process(record, close)

    def _windows(self, key: Any, low: int, high: int, reverse: bool
                 ) -> list[tuple[int, Aggregate]]:
        return [(start, (value, ts)) for start, value, ts in
                self.store.fetch_range_with_timestamps(key, low, high, reverse=reverse)]

    def _process(self, record: Record, close: int) -> None:
        """A record at t >= d: the existing windows from t - 2d to t + 1, latest first."""
        t, d = record.timestamp, self.difference
        starts: set[int] = set()
        left: Aggregate | None = None  # the latest window ending before t
        right: Aggregate | None = None  # the latest window containing t, before t's update
        left_exists = right_exists = False
        previous: int | None = None  # the timestamp of the latest record before t
        for start, found in self._windows(record.key, max(0, t - 2 * d), t + 1, True):
            starts.add(start)
            end = start + d
            if start == t + 1:
                right_exists = True
            elif end > t:
                right = right or found
                self._update(record, self._window(start), found, close)
            elif end == t:
                left_exists = True
                self._update(record, self._window(start), found, close)
                if found[1] >= t:  # a record at t came before: its windows exist
                    return
                previous = found[1]
            else:
                left, previous = found, found[1]
                break
        self._create(record, close, starts, left, right, left_exists, right_exists, previous)

    def _create(self, record: Record, close: int, starts: set[int], left: Aggregate | None,
                right: Aggregate | None, left_exists: bool, right_exists: bool,
                previous: int | None) -> None:
        t, d = record.timestamp, self.difference
        if previous is not None and previous + 1 not in starts and previous + 1 + d >= t:
            self._update(record, self._window(previous + 1), None, close)
        if not left_exists:
            within = previous is not None and t - d <= previous and left is not None
            self._update(record, self._window(t - d), (left[0], t) if within and left
                         else None, close, existed=False)
        if not right_exists and right is not None and right[1] > t:
            self._create_right(record, right)

    def _process_early(self, record: Record, close: int) -> None:
        """A record at t < d: its left window is the shared [0, d]."""
        t = record.timestamp
        starts: set[int] = set()
        combined: Aggregate | None = None
        right: Aggregate | None = None
        right_exists = False
        previous: int | None = None
        for start, found in self._windows(record.key, 0, t + 1, False):
            starts.add(start)
            if start == 0:
                combined = found
                if found[1] < t:
                    previous = found[1]
            elif start <= t:
                right = found
                self._update(record, self._window(start), found, close)
            else:  # start == t + 1
                right_exists = True
        if right is None and combined is not None and combined[1] > t:
            right = combined
        if not right_exists and right is not None and right[1] > t:
            self._create_right(record, right)
        if previous is not None and previous + 1 not in starts:
            self._update(record, self._window(previous + 1), None, close)
        self._update(record, self._window(0), combined, close, existed=combined is not None)

    def _create_right(self, record: Record, right: Aggregate) -> None:
        """t's right window, holding the later records' aggregate as it is."""
        window = self._window(record.timestamp + 1)
        self.store.put(record.key, right[0], window.start, right[1])
        self._forward_update(record, Windowed(record.key, window), right[0], None, right[1])

    def _update(self, record: Record, window: Window, found: Aggregate | None, close: int,
                existed: bool = True) -> None:
        """Adds the record to `window` (holding `found`, None: a new window) if it is open."""
        if window.end < close:
            self._late(record, window, close)
            return
        if found is None:
            current, timestamp, existed = self.initializer(), record.timestamp, False
        else:
            current, timestamp = found[0], max(record.timestamp, found[1])
        if current is None:  # a reduce's first value
            timestamp = record.timestamp
        new = self.aggregator(record.key, record.value, current)
        self.store.put(record.key, new, window.start, timestamp)
        self._forward_update(record, Windowed(record.key, window), new,
                             found[0] if existed and found else None, timestamp)

    def _closed(self, last_close: int, close: int) -> Iterator[tuple[Windowed, Any, int]]:
        low = 0 if last_close < 0 else max(0, last_close - self.difference)
        return self.store.fetch_all_with_timestamps(low, close - self.difference - 1)
