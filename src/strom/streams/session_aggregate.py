"""The processor behind aggregations over session windows, with Kafka's rules.

A record at t looks for the key's sessions that end at or after t - gap and start at or before
t + gap; it merges with all of them (the session merger combines their aggregates, in end
order, into the initializer's value) into one session from the earliest start to the latest
end (t included), and the aggregator adds the record. Sessions merged away are removed and, on
update, forwarded as tombstones `Change(None, old)` stamped with their own end; the new
session is forwarded as `Change(aggregate, None)` stamped with its end. (When the record falls
into a session without changing it, that session is removed and written again all the same,
tombstone included, as Kafka does.)

Closing: the close time is stream time - grace - gap (a session's records may still arrive a
gap after its end); a record whose merged session ends before it is dropped, and with
`on_window_close` a session is emitted once its end is before it. A closed session has also
expired from the store (its retention, gap + grace, runs from the latest session end, which
is the stream time), so no later record merges into it. With a longer retention
(`Materialized(retention=...)`) a closed session stays, and, as in Kafka, an out-of-order
record within a gap after its end that is not late itself merges it into a new session (so
a session emitted as final can be followed by a larger one). A session closed by the wall
clock (see `windowed_aggregate`) is never merged again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from strom.streams.aggregate import Aggregator, Initializer
from strom.streams.processor import ProcessorContext, typed_store
from strom.streams.record import Record
from strom.streams.stores.session import SessionStore
from strom.streams.windowed_aggregate import WindowedAggregateProcessor
from strom.streams.windows import EmitStrategy, SessionWindows, Window, Windowed

Merger = Callable[[Any, Any, Any], Any]  # (key, aggregate, aggregate) -> aggregate


class SessionWindowAggregateProcessor(WindowedAggregateProcessor):
    def __init__(self, store_name: str, windows: SessionWindows, emit: EmitStrategy,
                 initializer: Initializer, aggregator: Aggregator, merger: Merger) -> None:
        super().__init__(store_name, windows.grace_ms + windows.inactivity_gap_ms, emit,
                         initializer, aggregator)
        self.gap = windows.inactivity_gap_ms
        self.merger = merger

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self.store = typed_store(context, self.store_name, SessionStore)

    def process(self, record: Record) -> None:
        if self._skip_null(record):
            return
        key, t = record.key, record.timestamp
        close = self._observe(t)
        found = self.store.find_sessions(key, t - self.gap, t + self.gap)
        if self.emit.wall_clock_idle_ms is not None:  # closed by the wall clock: final
            found = (session for session in found if session[0].window.end >= close)
        merged = list(found)
        window = Window(t, t)
        aggregate = self.initializer()
        for session, value in merged:
            aggregate = self.merger(key, aggregate, value)
            window = Window(min(window.start, session.window.start),
                            max(window.end, session.window.end))
        late = window.end < close
        # Final results first; sessions this record merges away are not final.
        self._emit_final(record.headers, frozenset() if late else
                         frozenset(session for session, _ in merged))
        if late:
            self._late(record, window, close)
            return
        if window != Window(t, t):
            for session, value in merged:
                self.store.remove(session, t)
                self._forward_update(record, session, None, value, session.window.end, ())
        aggregate = self.aggregator(key, record.value, aggregate)
        session = Windowed(key, window)
        self.store.put(session, aggregate, t)
        self._forward_update(record, session, aggregate, None, window.end, ())

    def _closed(self, last_close: int, close: int) -> Iterator[tuple[Windowed, Any, int]]:
        for session, value in self.store.find_sessions_by_end(max(0, last_close), close - 1):
            yield session, value, session.window.end
