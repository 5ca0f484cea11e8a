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


def test_the_buffer_entries_round_trip_through_their_encoding() -> None:
    """What the suppression writes to its store (and changelog) reads back as it was: the
    windowed key, the change (a None old value too), the timestamp, the order and headers."""
    from strom.streams import Change, Serdes
    from strom.streams.suppress import SuppressFinalResultsProcessor, _Buffered
    from strom.streams.windows import Window, Windowed

    processor = SuppressFinalResultsProcessor(0, BufferConfig.unbounded(), "buf", S,
                                              Serdes.Long())
    processor.key_serde, processor.value_serde = S, Serdes.Long()
    key = Windowed("user-1", Window(10_000, 20_000))
    assert processor._decode_key(processor._encode_key(key)) == key
    for change, headers in ((Change(3, None), ()),
                            (Change(None, 2), (("trace", b"\x00\x01"), ("empty", None)))):
        held = processor._decode(processor._encode(_Buffered(change, 12_345, headers, 7)))
        assert (held.change, held.timestamp, held.headers, held.order) == \
            (change, 12_345, headers, 7)
    with pytest.raises(StreamsError, match="version 9"):
        processor._decode(b"\x09" + processor._encode(_Buffered(Change(1, 0), 1, (), 0))[1:])
