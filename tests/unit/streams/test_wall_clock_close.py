"""Idle wall-clock closing (`EmitStrategy.on_window_close(wall_clock_idle_ms=N)`): once the
stream time has not advanced for N ms of wall clock, windows close as if it ran on with the
wall clock; nothing is emitted before; a record arriving for a window closed this way is
late; and the outcome does not depend on how often the punctuator checks."""

from __future__ import annotations

import pytest

from strom.streams import EmitStrategy, SessionWindows, SlidingWindows, TimeWindows
from strom.streams.windows import Windows
from tests.unit.streams.windowing import windowed


def count(windows: Windows, idle: int = 5000, check: int | None = None):  # type: ignore[no-untyped-def]
    emit = EmitStrategy.on_window_close(idle, check_interval_ms=check)
    return lambda g: g.windowed_by(windows).emit_strategy(emit).count()


TUMBLING = TimeWindows.of_size_with_no_grace(10)


def test_an_idle_task_emits_the_final_window_when_the_idle_period_has_passed() -> None:
    with windowed(count(TUMBLING)) as h:
        h.driver.advance_wall_clock_time(10_000)  # no record yet: nothing to close
        h.pipe("a", "x", 5)  # at wall clock 10 000
        h.pipe("a", "x", 7)
        h.driver.advance_wall_clock_time(4999)
        assert h.rows() == []
        h.driver.advance_wall_clock_time(1)
        (record,) = h.output.read_records_to_list()
        assert (record.key.key, record.key.window.start, record.value, record.timestamp) == (
            "a", 0, 2, 7)
        assert record.headers == ()
        assert h.processor.closing_stream_time == 7 + 5000
        h.driver.advance_wall_clock_time(60_000)  # emitted once
        assert h.rows() == []


def test_a_record_for_a_window_closed_by_the_wall_clock_is_late() -> None:
    with windowed(count(TUMBLING)) as h:
        h.pipe("a", "x", 5)
        h.driver.advance_wall_clock_time(5000)  # closing time 5005
        assert h.rows() == [("a", 0, 10, 1, 5)]
        h.pipe("a", "x", 7)
        assert h.rows() == []
        assert h.processor.dropped == 1
        h.pipe("a", "x", 5004)  # [5000,5010) ends after 5005: open
        assert h.processor.dropped == 1
        h.driver.advance_wall_clock_time(4999)
        assert h.rows() == []
        h.driver.advance_wall_clock_time(1)  # 5004 + 5000
        assert h.rows() == [("a", 5000, 5010, 1, 5004)]


def test_the_rule_does_not_depend_on_the_check_interval() -> None:
    """With a punctuator every 60 s, a record arriving 6 s into the idle period still sees
    the closing time the wall clock has reached."""
    with windowed(count(TUMBLING, check=60_000)) as h:
        h.pipe("a", "x", 5)
        h.driver.advance_wall_clock_time(6000)
        assert h.rows() == []  # no check yet
        h.pipe("b", "x", 6)  # closing time 5 + 6000: [0,10) closes, b's record is late
        assert h.rows() == [("a", 0, 10, 1, 5)]
        assert h.processor.dropped == 1


def test_only_advancing_stream_time_restarts_the_idle_period() -> None:
    with windowed(count(TUMBLING)) as h:
        h.pipe("a", "x", 5)
        h.driver.advance_wall_clock_time(3000)
        h.pipe("a", "x", 8)  # stream time advances at wall clock 3000
        h.driver.advance_wall_clock_time(4999)
        assert h.rows() == []
        h.driver.advance_wall_clock_time(1)
        assert h.rows() == [("a", 0, 10, 2, 8)]
    with windowed(count(TUMBLING)) as h:
        h.pipe("a", "x", 5)
        h.driver.advance_wall_clock_time(3000)
        h.pipe("a", "x", 2)  # out of order: the stream time stays 5 (seen at wall clock 0)
        h.driver.advance_wall_clock_time(2000)
        assert h.rows() == [("a", 0, 10, 2, 5)]


def test_sessions_and_sliding_windows_close_on_the_wall_clock_too() -> None:
    sessions = SessionWindows.of_inactivity_gap_and_grace(10, 2)
    with windowed(count(sessions, idle=1000)) as h:
        h.pipe("a", "x", 5)
        h.driver.advance_wall_clock_time(1000)  # close time 5 + 1000 - 2 - 10
        assert h.rows() == [("a", 5, 5, 1, 5)]
        h.pipe("a", "x", 10)  # would merge into [5,5]: late, not a second final result
        assert h.rows() == []
        assert h.processor.dropped == 1
    with windowed(count(SessionWindows.of_inactivity_gap_with_no_grace(10), idle=1)) as h:
        h.pipe("a", "x", 100)
        h.driver.advance_wall_clock_time(15)  # close time 100 + 15 - 10
        assert h.rows() == [("a", 100, 100, 1, 100)]
        h.pipe("a", "x", 108)  # not late, within the gap, but [100,100] is final
        h.driver.advance_wall_clock_time(15)
        assert h.rows() == [("a", 108, 108, 1, 108)]
    sliding = SlidingWindows.of_time_difference_and_grace(10, 0)
    with windowed(count(sliding, idle=1000)) as h:
        h.pipe("a", "x", 100)
        h.driver.advance_wall_clock_time(999)
        assert h.rows() == []
        h.driver.advance_wall_clock_time(1)
        assert h.rows() == [("a", 90, 100, 1, 100)]


def test_emit_strategy_checks() -> None:
    assert EmitStrategy.on_window_close(5000) == EmitStrategy(True, 5000, 1000)
    assert EmitStrategy.on_window_close(300).check_interval_ms == 300
    assert EmitStrategy.on_window_close() == EmitStrategy(True)
    assert EmitStrategy.on_window_update() == EmitStrategy()
    with pytest.raises(ValueError, match="goes with wall_clock_idle_ms"):
        EmitStrategy.on_window_close(check_interval_ms=5)
    with pytest.raises(ValueError, match="at least 1 ms"):
        EmitStrategy.on_window_close(0)
