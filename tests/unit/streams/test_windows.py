"""Time windows (tumbling and hopping) as Kafka Streams has them: which windows a record falls
into, what each update forwards (value and timestamp), grace and late records exactly at the
boundary, emitting on close, and the window definitions' checks."""

from __future__ import annotations

from datetime import timedelta

import pytest

from strom.streams import (
    Consumed,
    EmitStrategy,
    Grouped,
    Materialized,
    Produced,
    SessionWindows,
    SlidingWindows,
    StreamsBuilder,
    TimeWindowedKStream,
    TimeWindows,
    TopologyTestDriver,
    Window,
    Windowed,
    WindowedSerdes,
)
from strom.streams.windowed import SessionWindowedKStream
from tests.unit.streams.windowing import L, S, windowed


def test_windows_for_tumbling_and_hopping() -> None:
    tumbling = TimeWindows.of_size_with_no_grace(10)
    assert tumbling.windows_for(0) == {0: Window(0, 10)}
    assert tumbling.windows_for(19) == {10: Window(10, 20)}
    hopping = TimeWindows.of_size_with_no_grace(10).advance_by(3)
    assert list(hopping.windows_for(11)) == [3, 6, 9]  # every [s, s+10) with s <= 11 < s+10
    assert list(hopping.windows_for(2)) == [0]  # no negative starts
    assert hopping.windows_for(12)[12] == Window(12, 22)


def test_definitions_take_timedelta_and_check_their_arguments() -> None:
    windows = TimeWindows.of_size_and_grace(timedelta(minutes=1), timedelta(seconds=5))
    assert (windows.size_ms, windows.advance_ms, windows.grace_ms) == (60_000, 60_000, 5_000)
    assert windows.advance_by(timedelta(seconds=15)).advance_ms == 15_000
    assert SlidingWindows.of_time_difference_with_no_grace(timedelta(seconds=2)) == \
        SlidingWindows(2000, 0)
    assert SessionWindows.of_inactivity_gap_and_grace(5, timedelta(milliseconds=7)) == \
        SessionWindows(5, 7)
    with pytest.raises(ValueError, match="at least 1"):
        TimeWindows.of_size_with_no_grace(0)
    with pytest.raises(ValueError, match=r"advance must lie in \(0, 10\]"):
        TimeWindows.of_size_with_no_grace(10).advance_by(11)
    with pytest.raises(ValueError, match="grace must not be negative"):
        SlidingWindows.of_time_difference_and_grace(5, -1)
    with pytest.raises(ValueError, match="inactivity gap must be positive"):
        SessionWindows.of_inactivity_gap_with_no_grace(0)
    with pytest.raises(ValueError, match="whole number of milliseconds"):
        TimeWindows.of_size_with_no_grace(timedelta(microseconds=1500))
    with pytest.raises(TypeError, match="milliseconds"):
        TimeWindows.of_size_with_no_grace(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="0 <= start <= end"):
        Window(5, 4)
    assert repr(Windowed("k", Window(0, 10))) == "['k'@0/10]"


def test_windowed_by_gives_the_stream_for_the_window_kind() -> None:
    grouped = StreamsBuilder().stream("in").group_by_key()
    assert isinstance(grouped.windowed_by(TimeWindows.of_size_with_no_grace(5)),
                      TimeWindowedKStream)
    assert isinstance(grouped.windowed_by(SlidingWindows.of_time_difference_with_no_grace(5)),
                      TimeWindowedKStream)
    assert isinstance(grouped.windowed_by(SessionWindows.of_inactivity_gap_with_no_grace(5)),
                      SessionWindowedKStream)
    with pytest.raises(TypeError, match="TimeWindows, SlidingWindows or SessionWindows"):
        grouped.windowed_by(5)  # type: ignore[call-overload]


def test_tumbling_count_in_order_and_out_of_order() -> None:
    with windowed(lambda g: g.windowed_by(TimeWindows.of_size_and_grace(10, 5)).count()) as h:
        h.pipe("a", "x", 3)
        h.pipe("a", "x", 12)
        h.pipe("b", "x", 14)
        h.pipe("a", "x", 1)  # out of order, within grace: [0,10) closes at stream time 15
        # Each update carries the latest timestamp of its window's records; an older record
        # does not lower it.
        assert h.rows() == [("a", 0, 10, 1, 3), ("a", 10, 20, 1, 12), ("b", 10, 20, 1, 14),
                            ("a", 0, 10, 2, 3)]
        assert h.processor.dropped == 0


def test_grace_boundary_on_both_sides() -> None:
    """Window [0,10) with grace 5 takes records while its end (10) > stream time - 5."""
    with windowed(lambda g: g.windowed_by(TimeWindows.of_size_and_grace(10, 5)).count()) as h:
        h.pipe("a", "x", 0)
        h.pipe("b", "x", 14)  # stream time 14: 10 > 9, still open
        h.pipe("a", "x", 9)
        h.pipe("b", "x", 15)  # stream time 15: 10 > 10 is false, closed
        h.pipe("a", "x", 9)
        h.pipe("a", "x", 5)
        assert h.rows() == [("a", 0, 10, 1, 0), ("b", 10, 20, 1, 14), ("a", 0, 10, 2, 9),
                            ("b", 10, 20, 2, 15)]
        assert h.processor.dropped == 2
        assert h.processor.observed_stream_time == 15


def test_no_grace_closes_a_window_at_its_end() -> None:
    with windowed(lambda g: g.windowed_by(TimeWindows.of_size_with_no_grace(10)).count()) as h:
        h.pipe("a", "x", 9)
        h.pipe("a", "x", 10)
        h.pipe("a", "x", 9)  # [0,10) closed once stream time reached 10
        assert h.rows() == [("a", 0, 10, 1, 9), ("a", 10, 20, 1, 10)]
        assert h.processor.dropped == 1


def test_hopping_windows_overlap_and_a_late_record_misses_only_closed_ones() -> None:
    windows = TimeWindows.of_size_and_grace(10, 0).advance_by(5)
    with windowed(lambda g: g.windowed_by(windows).count()) as h:
        h.pipe("a", "x", 7)  # [0,10) and [5,15)
        h.pipe("a", "x", 12)  # [5,15) and [10,20)
        h.pipe("a", "x", 8)  # [0,10) is closed (10 <= 12), [5,15) open
        assert h.rows() == [("a", 0, 10, 1, 7), ("a", 5, 15, 1, 7), ("a", 5, 15, 2, 12),
                            ("a", 10, 20, 1, 12), ("a", 5, 15, 3, 12)]
        assert h.processor.dropped == 1  # one per window missed


def test_reduce_and_aggregate_and_none_keys_and_values() -> None:
    def build(g):  # type: ignore[no-untyped-def]
        return g.windowed_by(TimeWindows.of_size_with_no_grace(10)).reduce(
            lambda agg, v: agg + v, Materialized("joined", value_serde=S))
    with windowed(build, S) as h:
        h.pipe("a", "x", 1)
        h.pipe(None, "y", 2)
        h.pipe("a", None, 3)
        h.pipe("a", "z", 4)
        assert h.rows() == [("a", 0, 10, "x", 1), ("a", 0, 10, "xz", 4)]
        assert h.processor.dropped == 2
        assert h.processor.observed_stream_time == 4  # dropped records do not move it
        assert h.store().fetch("a", 0) == "xz"
    lists = Materialized(value_serde=S)
    with windowed(lambda g: g.windowed_by(TimeWindows.of_size_with_no_grace(10)).aggregate(
            lambda: "", lambda k, v, agg: agg + v.upper(), lists), S) as h:
        h.pipe("a", "x", 1)
        h.pipe("a", "y", 11)
        assert h.rows() == [("a", 0, 10, "X", 1), ("a", 10, 20, "Y", 11)]


def test_emit_on_window_close_forwards_each_window_once_when_it_closes() -> None:
    windows = TimeWindows.of_size_and_grace(10, 5).advance_by(5)
    with windowed(lambda g: g.windowed_by(windows).emit_strategy(
            EmitStrategy.on_window_close()).count()) as h:
        h.pipe("a", "x", 1)
        h.pipe("b", "x", 3)
        h.pipe("a", "x", 7)
        h.pipe("a", "x", 14)  # stream time 14: [0,10) closes at 15
        assert h.rows() == []
        h.pipe("b", "x", 15)  # [0,10) closes; by window start, then key
        assert h.rows() == [("a", 0, 10, 2, 7), ("b", 0, 10, 1, 3)]
        h.pipe("a", "x", 6)  # late for [0,10), into [5,15): nothing closes
        h.pipe("a", "x", 19)  # stream time 19: nothing more closes before 20
        assert h.rows() == []
        assert h.processor.dropped == 1
        h.pipe("a", "x", 30)
        assert h.rows() == [("a", 5, 15, 3, 14), ("a", 10, 20, 2, 19), ("b", 10, 20, 1, 15),
                            ("a", 15, 25, 1, 19), ("b", 15, 25, 1, 15)]
        h.pipe("a", "x", 30)
        assert h.rows() == []
        # Emitted windows stay until they expire: retention 15, the store's stream time is
        # its latest window start (30), so starts before 15 have gone.
        assert h.store().fetch("a", 15) == 1
        assert h.store().fetch("a", 10) is None


def test_to_a_topic_writes_kafkas_windowed_key_and_repartitions_a_new_key() -> None:
    builder = StreamsBuilder()
    (builder.stream("in", consumed=Consumed(S, S))
     .group_by(lambda k, v: v, Grouped(S, S))
     .windowed_by(TimeWindows.of_size_with_no_grace(timedelta(seconds=10)))
     .count(Materialized("counts"))
     .to_stream()
     .to("out", Produced(WindowedSerdes.time_windowed(S, 10_000), L)))
    topology = builder.build()
    assert len(topology.sub_topologies()) == 2
    with TopologyTestDriver(topology, {"application.id": "app"}) as driver:
        driver.create_input_topic("in", S, S).pipe_input("k", "word", 12_345)
        (written,) = driver.outputs["out"]
        assert written.key == b"word" + (10_000).to_bytes(8, "big")
        assert written.value == (1).to_bytes(8, "big")
        assert written.timestamp == 12_345
        assert driver.create_output_topic("app-counts-repartition", S, S
                                          ).read_key_values_to_list() == [("word", "word")]


def test_retention_can_be_longer_but_not_shorter_than_size_plus_grace() -> None:
    grouped = StreamsBuilder().stream("in", consumed=Consumed(S, S)).group_by_key()
    grouped.windowed_by(TimeWindows.of_size_and_grace(10, 5)).count(
        Materialized("long", retention=timedelta(hours=1)))
    assert grouped.stream.builder.topology.stores["long"].retention_ms == 3_600_000  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="no smaller than the window size plus the grace"):
        grouped.windowed_by(TimeWindows.of_size_and_grace(10, 5)).count(
            Materialized("short", retention=14))
    with pytest.raises(ValueError, match="inactivity gap plus the grace"):
        grouped.windowed_by(SessionWindows.of_inactivity_gap_and_grace(10, 5)).count(
            Materialized("short", retention=14))
