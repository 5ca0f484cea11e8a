"""Session windows as Kafka Streams has them: sessions grow and merge (tombstones for the
sessions merged away, stamped with their own end), a record bridging two sessions merges all
three into one, sessions close at end + gap + grace, and emitting on close."""

from __future__ import annotations

from strom.streams import EmitStrategy, Materialized, SessionWindows
from tests.unit.streams.windowing import S, windowed


def counts(gap: int, grace: int = 1_000_000, emit: EmitStrategy | None = None):  # type: ignore[no-untyped-def]
    windows = SessionWindows.of_inactivity_gap_and_grace(gap, grace)
    return lambda g: g.windowed_by(windows).emit_strategy(
        emit or EmitStrategy.on_window_update()).count(Materialized("sessions"))


def test_a_session_grows_and_a_record_beyond_the_gap_starts_another() -> None:
    with windowed(counts(10)) as h:
        h.pipe("a", "x", 0)
        h.pipe("a", "x", 10)  # within the gap (inclusive): merged, [0,0] deleted
        h.pipe("a", "x", 21)  # 11 after the end: a new session
        h.pipe("b", "x", 5)
        assert h.rows() == [
            ("a", 0, 0, 1, 0),
            ("a", 0, 0, None, 0),  # tombstone, stamped with the old session's end
            ("a", 0, 10, 2, 10),  # stamped with the session's end
            ("a", 21, 21, 1, 21),
            ("b", 5, 5, 1, 5),
        ]
        assert [(w.key, w.window.start, w.window.end, v) for w, v in h.store().all()] == [
            ("b", 5, 5, 1), ("a", 0, 10, 2), ("a", 21, 21, 1)]


def test_a_record_inside_a_session_rewrites_it_unless_the_session_is_its_own() -> None:
    with windowed(counts(10)) as h:
        h.pipe("a", "x", 0)
        h.pipe("a", "x", 8)
        h.rows()
        h.pipe("a", "x", 4)  # inside [0,8]: Kafka removes and writes the same session
        assert h.rows() == [("a", 0, 8, None, 8), ("a", 0, 8, 3, 8)]
        h.pipe("a", "x", 8)  # at its end, still not its own [8,8]: rewritten too
        assert h.rows() == [("a", 0, 8, None, 8), ("a", 0, 8, 4, 8)]
    with windowed(counts(10)) as h:
        h.pipe("a", "x", 5)
        h.pipe("a", "x", 5)  # the merged window is [5,5] itself: no tombstone
        assert h.rows() == [("a", 5, 5, 1, 5), ("a", 5, 5, 2, 5)]


def test_a_record_bridging_two_sessions_merges_the_three_into_one() -> None:
    """Sessions of a key are always more than a gap apart, so one record can reach at most
    two of them: with its own, three sessions become one."""
    def build(g):  # type: ignore[no-untyped-def]
        return g.windowed_by(SessionWindows.of_inactivity_gap_and_grace(10, 100)).aggregate(
            lambda: "", lambda k, v, agg: agg + v,
            lambda k, one, two: one + two, Materialized(value_serde=S))
    with windowed(build, S) as h:
        h.pipe("a", "x", 0)
        h.pipe("a", "y", 3)
        h.pipe("a", "z", 20)  # 17 after [0,3]: its own session
        h.rows()
        h.pipe("a", "m", 13)  # 13 - 10 <= 3 and 20 <= 13 + 10
        assert h.rows() == [
            ("a", 0, 3, None, 3),
            ("a", 20, 20, None, 20),
            ("a", 0, 20, "xyzm", 20),  # merged in end order, then the record added
        ]
        assert [(w.window.start, w.window.end, v) for w, v in h.store().all()] == [
            (0, 20, "xyzm")]


def test_sessions_close_at_end_plus_gap_plus_grace() -> None:
    with windowed(counts(10, grace=0)) as h:
        h.pipe("a", "x", 0)
        h.pipe("b", "x", 10)  # close time 10 - 0 - 10 = 0: [0,0] ends at it, still open
        h.pipe("a", "x", 0)
        h.pipe("b", "x", 11)  # close time 1
        h.pipe("a", "x", 0)  # [0,0] ends before 1: late
        assert h.rows() == [("a", 0, 0, 1, 0), ("b", 10, 10, 1, 10), ("a", 0, 0, 2, 0),
                            ("b", 10, 10, None, 10), ("b", 10, 11, 2, 11)]
        assert h.processor.dropped == 1


def test_a_late_record_that_merges_into_an_open_session_is_taken() -> None:
    with windowed(counts(10, grace=5)) as h:
        h.pipe("a", "x", 10)
        h.pipe("b", "x", 20)
        h.pipe("b", "x", 30)  # b: [20,30]; close time 30 - 5 - 10 = 15
        h.rows()
        h.pipe("a", "x", 1)  # merged with [10,10] it still ends before 15: late
        assert h.rows() == []
        assert h.processor.dropped == 1
        h.pipe("b", "x", 12)  # alone it would be late; merged into [20,30] it is not
        assert h.rows() == [("b", 20, 30, None, 30), ("b", 12, 30, 3, 30)]
        assert h.processor.dropped == 1


def test_emit_on_close_emits_final_sessions_not_merged_ones() -> None:
    with windowed(counts(10, grace=5, emit=EmitStrategy.on_window_close())) as h:
        h.pipe("a", "x", 0)
        h.pipe("a", "x", 8)
        h.pipe("b", "x", 23)  # close time 23 - 15 = 8: [0,8] ends at it, not closed
        assert h.rows() == []
        h.pipe("b", "x", 24)  # close time 9
        assert h.rows() == [("a", 0, 8, 2, 8)]
        h.pipe("b", "x", 50)  # [23,24] of b closes; the new [50,50] does not
        assert h.rows() == [("b", 23, 24, 2, 24)]
        assert h.processor.dropped == 0


def test_a_closed_session_has_expired_and_a_longer_retention_keeps_it_mergeable() -> None:
    with windowed(counts(10, grace=0, emit=EmitStrategy.on_window_close())) as h:
        h.pipe("a", "x", 0)
        h.pipe("b", "x", 11)  # close time 1: [0,0] is emitted, and expires from the store
        assert h.rows() == [("a", 0, 0, 1, 0)]
        h.pipe("a", "x", 10)  # not late (10 >= 1): a session of its own
        h.pipe("b", "x", 31)
        assert h.rows() == [("a", 10, 10, 1, 10), ("b", 11, 11, 1, 11)]
    windows = SessionWindows.of_inactivity_gap_with_no_grace(10)
    with windowed(lambda g: g.windowed_by(windows).emit_strategy(
            EmitStrategy.on_window_close()).count(Materialized(retention=100))) as h:
        h.pipe("a", "x", 0)
        h.pipe("b", "x", 11)
        assert h.rows() == [("a", 0, 0, 1, 0)]
        h.pipe("a", "x", 10)  # as in Kafka: merged with the session emitted as final
        h.pipe("b", "x", 31)
        assert h.rows() == [("a", 0, 10, 2, 10), ("b", 11, 11, 1, 11)]
