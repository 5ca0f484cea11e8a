"""`suppress(Suppressed.until_window_closes(...))` forwards each window of a windowed table
once, when it closes (end <= stream time - grace; sessions: grace + gap), with its latest
value and timestamp; tombstones of merged sessions are not forwarded."""

from __future__ import annotations

import pytest

from strom.streams import (
    BufferConfig,
    Consumed,
    SessionWindows,
    StreamsBuilder,
    StreamsError,
    Suppressed,
    TimeWindows,
)
from tests.unit.streams.windowing import S, windowed

FINAL = Suppressed.until_window_closes(BufferConfig.unbounded())


def test_time_windows_final_results() -> None:
    windows = TimeWindows.of_size_and_grace(10, 5)
    with windowed(lambda g: g.windowed_by(windows).count()
                  .filter(lambda k, v: v < 3).suppress(FINAL)) as h:
        for key, ts in (("a", 1), ("a", 3), ("b", 4), ("a", 12), ("a", 14)):
            h.pipe(key, "x", ts)
        assert h.rows() == []
        h.pipe("b", "x", 15)  # stream time 15: [0,10) closes
        assert h.rows() == [("a", 0, 10, 2, 3), ("b", 0, 10, 1, 4)]
        h.pipe("a", "x", 19)  # a's third record in [10,20) fails the filter: a tombstone
        assert h.rows() == []
        h.pipe("a", "x", 25)  # [10,20) closes
        assert h.rows() == [("b", 10, 20, 1, 15)]


def test_session_final_results_wait_for_the_gap_and_drop_tombstones() -> None:
    windows = SessionWindows.of_inactivity_gap_with_no_grace(10)
    with windowed(lambda g: g.windowed_by(windows).count().suppress(FINAL)) as h:
        h.pipe("a", "x", 0)
        h.pipe("a", "x", 5)  # forwards a tombstone for [0,0] and [0,5]
        h.pipe("b", "x", 15)  # a record at 15 could still extend [0,5]
        assert h.rows() == []
        h.pipe("b", "x", 16)
        assert h.rows() == [("a", 0, 5, 2, 5)]


def test_suppress_needs_a_windowed_table_and_a_strict_buffer_stops_when_full() -> None:
    table = StreamsBuilder().stream("in", consumed=Consumed(S, S)).group_by_key().count()
    with pytest.raises(ValueError, match="needs a windowed table"):
        table.suppress(FINAL)
    small = Suppressed.until_window_closes(BufferConfig.max_records_then_shut_down(1))
    with windowed(lambda g: g.windowed_by(TimeWindows.of_size_with_no_grace(10)).count()
                  .suppress(small)) as h:
        h.pipe("a", "x", 1)
        with pytest.raises(StreamsError, match="buffer is full"):
            h.pipe("b", "x", 2)
