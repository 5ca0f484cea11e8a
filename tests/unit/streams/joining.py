"""Helpers for the join tests: string serdes, a joiner writing "left+right", and a test
driver with an input per topic and an output `out`."""

from __future__ import annotations

from typing import Any

from strom.streams import Serdes, StreamsBuilder, TopologyTestDriver

S = Serdes.String()
APP = {"application.id": "app"}


def joined(left: Any, right: Any) -> str:
    return f"{left}+{right}"


class Run:
    """A driver with an input per topic (`left` and `right` if none is named); `take()` reads
    (key, value, timestamp)s of `out`. `config` adds settings to the application's."""

    def __init__(self, builder: StreamsBuilder, *topics: str, **config: Any) -> None:
        self.driver = TopologyTestDriver(builder.build(), {**APP, **config})
        self.inputs = {t: self.driver.create_input_topic(t, S, S)
                       for t in topics or ("left", "right")}
        self.out = self.driver.create_output_topic("out", S, S)

    def pipe(self, topic: str, key: str | None, value: str | None, timestamp: int) -> None:
        self.inputs[topic].pipe_input(key, value, timestamp)

    def take(self) -> list[tuple[Any, Any, int]]:
        return [(r.key, r.value, r.timestamp) for r in self.out.read_records_to_list()]

    def processor(self, name: str) -> Any:
        for task in self.driver.tasks:
            if name in task._runtimes:
                return task._runtimes[name].processor  # type: ignore[attr-defined]
        raise KeyError(name)
