"""Helpers for the windowing tests: a windowed table over the string stream `in`, written to
`out` with its own (windowed) key serde, and what it wrote as (key, start, end, value,
timestamp) rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from strom.streams import (
    Consumed,
    KGroupedStream,
    KTable,
    Produced,
    Serdes,
    StreamsBuilder,
    TopologyTestDriver,
)
from strom.streams.serdes import Serde

S, L = Serdes.String(), Serdes.Long()
Row = tuple[Any, int, int, Any, int]  # key, window start, window end, value, timestamp


class Harness:
    def __init__(self, driver: TopologyTestDriver, table: KTable, value_serde: Serde[Any]
                 ) -> None:
        assert table.key_serde is not None
        self.driver = driver
        self.table = table
        self.input = driver.create_input_topic("in", S, S)
        self.output = driver.create_output_topic("out", table.key_serde, value_serde)

    def pipe(self, key: Any, value: Any, timestamp: int) -> None:
        self.input.pipe_input(key, value, timestamp)

    def rows(self) -> list[Row]:
        """What the table wrote since the last call (a tombstone's value is None)."""
        return [(r.key.key, r.key.window.start, r.key.window.end, r.value, r.timestamp)
                for r in self.output.read_records_to_list()]

    @property
    def processor(self) -> Any:
        """The aggregation's processor (its `dropped` counter, its stream times)."""
        runtime: Any = self.driver.tasks[-1]._runtimes[self.table.node]
        return runtime.processor

    def store(self) -> Any:
        assert self.table.store is not None
        return self.driver.get_state_store(self.table.store)


@contextmanager
def windowed(build: Callable[[KGroupedStream], KTable], value_serde: Serde[Any] = L,
             config: dict[str, Any] | None = None, wall_clock_ms: int = 0
             ) -> Iterator[Harness]:
    """Runs `build(the grouped stream of "in")`; its table is written to `out`."""
    builder = StreamsBuilder()
    table = build(builder.stream("in", consumed=Consumed(S, S)).group_by_key())
    table.to_stream().to("out", Produced(value_serde=value_serde))
    with TopologyTestDriver(builder.build(), {"application.id": "app", **(config or {})},
                            initial_wall_clock_ms=wall_clock_ms) as driver:
        yield Harness(driver, table, value_serde)
