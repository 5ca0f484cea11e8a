"""Sliding windows (KIP-450) as Kafka Streams creates them: the documented example, windows
created by out-of-order records, records before the time difference, grace at the boundary,
emitting on close, and (hypothesis) that whatever the arrival order the store ends with
exactly the windows Kafka's rules define, each holding the aggregate of its records."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from strom.streams import EmitStrategy, Materialized, SlidingWindows
from tests.unit.streams.windowing import windowed


def sliding(difference: int, grace: int = 1_000_000, emit: EmitStrategy | None = None):  # type: ignore[no-untyped-def]
    windows = SlidingWindows.of_time_difference_and_grace(difference, grace)
    return lambda g: g.windowed_by(windows).emit_strategy(
        emit or EmitStrategy.on_window_update()).count(Materialized("counts"))


def test_kafkas_documented_example() -> None:
    """SlidingWindows' javadoc: difference 5000, records at 8000, 9200, 12400 make windows
    [3000;8000] {1}, [4200;9200] {1,2}, [7400;12400] {1,2,3}, [8001;13001] {2,3},
    [9201;14201] {3}."""
    with windowed(sliding(5000)) as h:
        h.pipe("A", "1", 8000)
        assert h.rows() == [("A", 3000, 8000, 1, 8000)]
        h.pipe("A", "2", 9200)
        assert h.rows() == [("A", 8001, 13001, 1, 9200), ("A", 4200, 9200, 2, 9200)]
        h.pipe("A", "3", 12400)
        assert h.rows() == [("A", 8001, 13001, 2, 12400), ("A", 9201, 14201, 1, 12400),
                            ("A", 7400, 12400, 3, 12400)]
        assert sorted((w.window.start, w.window.end, v) for w, v in h.store().all()) == [
            (3000, 8000, 1), (4200, 9200, 2), (7400, 12400, 3), (8001, 13001, 2),
            (9201, 14201, 1)]


def test_an_out_of_order_record_creates_its_right_window() -> None:
    with windowed(sliding(10)) as h:
        h.pipe("a", "x", 100)
        h.pipe("a", "x", 95)  # 100 falls in 95's right window [96,106]
        assert h.rows() == [
            ("a", 90, 100, 1, 100),
            ("a", 90, 100, 2, 100),  # the existing window containing 95 is updated
            ("a", 85, 95, 1, 95),  # 95's left window
            ("a", 96, 106, 1, 100),  # 95's right window takes [90,100]'s earlier aggregate
        ]


def test_records_before_the_time_difference_share_the_window_from_zero() -> None:
    with windowed(sliding(10)) as h:
        h.pipe("a", "x", 3)
        h.pipe("a", "x", 7)
        h.pipe("a", "x", 12)
        assert h.rows() == [
            ("a", 0, 10, 1, 3),
            ("a", 4, 14, 1, 7),  # 3's right window, created by 7
            ("a", 0, 10, 2, 7),
            ("a", 4, 14, 2, 12),
            ("a", 8, 18, 1, 12),  # 7's right window
            ("a", 2, 12, 3, 12),  # 12's left window: 12 - 10 <= 7, so from [0,10]'s aggregate
        ]


def test_grace_boundary_and_records_dropped_whole() -> None:
    """A window [s, s+d] takes records while its end >= stream time - grace; a record whose
    right window would be closed (t + d < stream time - grace) is dropped whole."""
    with windowed(sliding(10, grace=0)) as h:
        h.pipe("a", "x", 100)
        h.rows()
        h.pipe("a", "x", 89)  # 89 + 10 < 100: dropped whole
        assert h.rows() == []
        assert h.processor.dropped == 1
        h.pipe("a", "x", 90)  # 90 + 10 = 100: taken, but its left window [80,90] is closed
        assert h.rows() == [("a", 90, 100, 2, 100), ("a", 91, 101, 1, 100)]
        assert h.processor.dropped == 2


def test_emit_on_close_emits_a_window_once_its_end_is_before_the_close_time() -> None:
    with windowed(sliding(10, grace=0, emit=EmitStrategy.on_window_close())) as h:
        h.pipe("a", "x", 100)
        h.pipe("b", "x", 100)  # close time 100: [90,100] ends at it, still open
        assert h.rows() == []
        h.pipe("b", "x", 101)  # close time 101: [90,100] of both keys is final
        assert h.rows() == [("a", 90, 100, 1, 100), ("b", 90, 100, 1, 100)]
        h.pipe("b", "x", 112)
        assert h.rows() == [("b", 91, 101, 2, 101), ("b", 101, 111, 1, 101)]


def expected_windows(timestamps: list[int], d: int) -> dict[int, tuple[int, int, int]]:
    """Kafka's sliding windows of a key's records: start -> (end, count, latest timestamp).
    Each record t has its left window [t - d, t] ([0, d] if t < d) and, if a record falls in
    (t, t + d], its right window [t + 1, t + 1 + d]."""
    starts = set()
    for t in timestamps:
        starts.add(max(0, t - d))
        if any(t < u <= t + d for u in timestamps):
            starts.add(t + 1)
    result = {}
    for s in starts:
        inside = [u for u in timestamps if s <= u <= s + d]
        result[s] = (s + d, len(inside), max(inside))
    return result


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 20), st.lists(st.integers(0, 80), min_size=1, max_size=12))
def test_any_arrival_order_ends_with_kafkas_windows(d: int, timestamps: list[int]) -> None:
    with windowed(sliding(d)) as h:
        for t in timestamps:
            h.pipe("k", "v", t)
        got = {w.window.start: (w.window.end, value, ts)
               for w, value, ts in h.store().fetch_all_with_timestamps(0, 10**6)}
        assert got == expected_windows(timestamps, d)
