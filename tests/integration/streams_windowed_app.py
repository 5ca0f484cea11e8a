"""A windowed count, exactly-once, for test_streams_eos_kill: counts the records of each key
of `clicks-input` in tumbling windows of one second (no grace), emitted once each window
closes, to `click-counts` (key: "<key>@<window start>", value: the count as a decimal string,
both UTF-8). Run like the examples (their command line: examples/streams/_runner.py).

    python tests/integration/streams_windowed_app.py --bootstrap-servers localhost:9092
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "examples" / "streams"))

from _runner import run

from strom.streams import (
    Consumed,
    EmitStrategy,
    Materialized,
    Produced,
    Serdes,
    StreamsBuilder,
    TimeWindows,
    Topology,
)

INPUT, OUTPUT = "clicks-input", "click-counts"
WINDOW_MS = 1000


def topology(wall_clock_idle_ms: int | None = None) -> Topology:
    """With `wall_clock_idle_ms`, windows also close by the wall clock (checked every 100
    ms) once the stream time has not advanced for that long."""
    builder = StreamsBuilder()
    (builder.stream(INPUT, consumed=Consumed(Serdes.String(), Serdes.String()))
     .group_by_key()
     .windowed_by(TimeWindows.of_size_with_no_grace(WINDOW_MS))
     .emit_strategy(EmitStrategy.on_window_close(wall_clock_idle_ms, check_interval_ms=100)
                    if wall_clock_idle_ms else EmitStrategy.on_window_close())
     .count(Materialized("click-counts-store"))
     .to_stream()
     .map(lambda window, count: (f"{window.key}@{window.window.start}", str(count)))
     .to(OUTPUT, Produced(Serdes.String(), Serdes.String())))
    return builder.build()


def main() -> None:
    run(__doc__.splitlines()[0], "windowed-count", [INPUT, OUTPUT], lambda _args: topology(),
        "windowed count")


if __name__ == "__main__":
    main()
