"""Window definitions (Kafka Streams' TimeWindows, SlidingWindows, SessionWindows), the
windows themselves, windowed keys, and when a windowed aggregation emits (EmitStrategy).

    TimeWindows.of_size_with_no_grace(timedelta(minutes=5))            # tumbling
    TimeWindows.of_size_and_grace(60_000, 10_000).advance_by(15_000)   # hopping
    SlidingWindows.of_time_difference_and_grace(10_000, 1_000)         # KIP-450
    SessionWindows.of_inactivity_gap_with_no_grace(30_000)

Durations are milliseconds (int) or `timedelta`. Time windows are aligned to the epoch and
their end is exclusive: [start, start + size). Sliding windows [start, start + difference]
and session windows [first record, last record] include both ends, as in Kafka.

When a window closes (stream time: the largest record timestamp the aggregation has seen):
- time windows: a window takes records while its end > stream time - grace;
- sliding windows: while its end >= stream time - grace (both ends are inclusive), and a
  record whose own windows would all be closed (timestamp + difference < stream time - grace)
  is dropped whole;
- session windows: a session is closed once its end + inactivity gap + grace < stream time (a
  record up to a gap after the end could still extend it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

Duration = int | timedelta


def to_ms(value: Duration, what: str) -> int:
    """Milliseconds from an int or a timedelta (whole milliseconds only)."""
    if isinstance(value, timedelta):
        ms = value // timedelta(milliseconds=1)
        if timedelta(milliseconds=ms) != value:
            raise ValueError(f"{what}: {value} is not a whole number of milliseconds")
        return ms
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what}: give milliseconds (int) or a timedelta, not "
                        f"{type(value).__name__}")
    return value


def _at_least(value: Duration, minimum: int, what: str) -> int:
    ms = to_ms(value, what)
    if ms < minimum:
        raise ValueError(f"{what} must be at least {minimum} ms, not {ms}")
    return ms


@dataclass(frozen=True, order=True)
class Window:
    """A window's bounds in ms; whether `end` is included depends on the kind of window (see
    the module docstring)."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.end < self.start:
            raise ValueError(f"a window needs 0 <= start <= end, not [{self.start}, {self.end}]")

    def overlaps(self, other: Window) -> bool:
        return self.start <= other.end and other.start <= self.end


@dataclass(frozen=True)
class Windowed:
    """The key of a windowed table: the record key and its window."""

    key: Any
    window: Window

    def __repr__(self) -> str:
        return f"[{self.key!r}@{self.window.start}/{self.window.end}]"


@dataclass(frozen=True)
class TimeWindows:
    """Fixed-size windows aligned to the epoch: tumbling (advance = size) or hopping (advance <
    size, so a record falls into every window [start, start + size) that contains it)."""

    size_ms: int
    advance_ms: int
    grace_ms: int

    def __post_init__(self) -> None:
        if self.size_ms <= 0:
            raise ValueError(f"window size must be positive, not {self.size_ms} ms")
        if not 0 < self.advance_ms <= self.size_ms:
            raise ValueError(f"advance must lie in (0, {self.size_ms}] ms, not "
                             f"{self.advance_ms}")
        if self.grace_ms < 0:
            raise ValueError(f"grace must not be negative, not {self.grace_ms} ms")

    @staticmethod
    def of_size_with_no_grace(size: Duration) -> TimeWindows:
        return TimeWindows.of_size_and_grace(size, 0)

    @staticmethod
    def of_size_and_grace(size: Duration, grace: Duration) -> TimeWindows:
        size_ms = _at_least(size, 1, "window size")
        return TimeWindows(size_ms, size_ms, _at_least(grace, 0, "grace"))

    def advance_by(self, advance: Duration) -> TimeWindows:
        return TimeWindows(self.size_ms, to_ms(advance, "advance"), self.grace_ms)

    def windows_for(self, timestamp: int) -> dict[int, Window]:
        """The windows containing `timestamp`, by start (oldest first)."""
        start = max(0, timestamp - self.size_ms + self.advance_ms) // self.advance_ms \
            * self.advance_ms
        windows = {}
        while start <= timestamp:
            windows[start] = Window(start, start + self.size_ms)
            start += self.advance_ms
        return windows


@dataclass(frozen=True)
class SlidingWindows:
    """Windows of `time_difference_ms` between records (KIP-450): a window [t - difference, t]
    ends at each record and one [t + 1, t + 1 + difference] starts just after it when later
    records fall there, so every distinct set of records within the difference gets one window."""

    time_difference_ms: int
    grace_ms: int

    def __post_init__(self) -> None:
        if self.time_difference_ms < 0:
            raise ValueError("window time difference must not be negative")
        if self.grace_ms < 0:
            raise ValueError("grace must not be negative")

    @staticmethod
    def of_time_difference_with_no_grace(time_difference: Duration) -> SlidingWindows:
        return SlidingWindows.of_time_difference_and_grace(time_difference, 0)

    @staticmethod
    def of_time_difference_and_grace(time_difference: Duration, grace: Duration
                                     ) -> SlidingWindows:
        return SlidingWindows(to_ms(time_difference, "time difference"), to_ms(grace, "grace"))


@dataclass(frozen=True)
class SessionWindows:
    """Sessions of records of one key no more than `inactivity_gap_ms` apart; a record that
    falls within the gap of two sessions merges them."""

    inactivity_gap_ms: int
    grace_ms: int

    def __post_init__(self) -> None:
        if self.inactivity_gap_ms <= 0:
            raise ValueError("the inactivity gap must be positive")
        if self.grace_ms < 0:
            raise ValueError("grace must not be negative")

    @staticmethod
    def of_inactivity_gap_with_no_grace(inactivity_gap: Duration) -> SessionWindows:
        return SessionWindows.of_inactivity_gap_and_grace(inactivity_gap, 0)

    @staticmethod
    def of_inactivity_gap_and_grace(inactivity_gap: Duration, grace: Duration
                                    ) -> SessionWindows:
        return SessionWindows(to_ms(inactivity_gap, "inactivity gap"), to_ms(grace, "grace"))


@dataclass(frozen=True)
class EmitStrategy:
    """When a windowed aggregation forwards its results (KIP-825).

    `on_window_update()` (the default): every change of a window, as it happens.
    `on_window_close()`: each window once, when it closes (stream time passes its end plus
    grace), with its final value.

    `on_window_close(wall_clock_idle_ms=N)` also closes windows when no record comes: once the
    stream time has not advanced for N ms of wall-clock time, the time used to close windows
    runs on with the wall clock (the stream time plus the wall-clock time elapsed since it last
    advanced). It never goes back: a record that comes later for a window closed that way is
    late and dropped. A wall-clock punctuator checks every `check_interval_ms` (default: N, at
    most 1000 ms); the rule itself does not depend on that interval.
    """

    on_close: bool = False
    wall_clock_idle_ms: int | None = None
    check_interval_ms: int | None = None

    @staticmethod
    def on_window_update() -> EmitStrategy:
        return EmitStrategy()

    @staticmethod
    def on_window_close(wall_clock_idle_ms: Duration | None = None, *,
                        check_interval_ms: Duration | None = None) -> EmitStrategy:
        if wall_clock_idle_ms is None:
            if check_interval_ms is not None:
                raise ValueError("check_interval_ms goes with wall_clock_idle_ms")
            return EmitStrategy(True)
        idle = _at_least(wall_clock_idle_ms, 1, "wall_clock_idle_ms")
        check = min(idle, 1000) if check_interval_ms is None else _at_least(
            check_interval_ms, 1, "check_interval_ms")
        return EmitStrategy(True, idle, check)


Windows = TimeWindows | SlidingWindows | SessionWindows
