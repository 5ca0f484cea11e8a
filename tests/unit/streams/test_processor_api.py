"""The processor API by hand: sources, processors with stores, sinks; punctuators on stream
time and wall-clock time; record metadata; and the topology's checks."""

from __future__ import annotations

import pytest

from strom.streams import (
    KeyValueStoreBuilder,
    Processor,
    PunctuationType,
    Record,
    Serdes,
    Topology,
    TopologyError,
    TopologyTestDriver,
)

S, L = Serdes.String(), Serdes.Long()


class Dedupe(Processor):
    """Forwards a key's first record; every 10 ms of stream time, how many it has seen."""

    def init(self, context):  # type: ignore[no-untyped-def]
        super().init(context)
        self.seen = context.get_state_store("seen")
        self.ticks: list[int] = []
        context.schedule(10, PunctuationType.STREAM_TIME, self.ticks.append)
        context.schedule(1000, PunctuationType.WALL_CLOCK_TIME, self.report)

    def process(self, record: Record) -> None:
        assert self.context.record_metadata is not None
        if self.seen.get(record.key) is None:
            self.seen.put(record.key, self.context.record_metadata.offset, record.timestamp)
            self.context.forward(record, "out")

    def report(self, now: int) -> None:
        self.context.forward(Record("count", str(self.seen.approximate_num_entries()), now),
                             "report")


def topology() -> Topology:
    return (Topology()
            .add_source("in", "events", key_serde=S, value_serde=S)
            .add_processor("dedupe", Dedupe, "in")
            .add_state_store(KeyValueStoreBuilder("seen", S, L), "dedupe")
            .add_sink("out", "unique", "dedupe", key_serde=S, value_serde=S)
            .add_sink("report", "reports", "dedupe", key_serde=S, value_serde=S))


def test_a_processor_with_a_store_and_punctuators() -> None:
    with TopologyTestDriver(topology(), {"application.id": "dd"}) as driver:
        events = driver.create_input_topic("events", S, S)
        for key, ts in (("a", 5), ("b", 9), ("a", 12), ("c", 40)):
            events.pipe_input(key, "v", ts)
        unique = driver.create_output_topic("unique", S, S)
        assert [r.key for r in unique.read_records_to_list()] == ["a", "b", "c"]
        processor = driver.tasks[0]._runtimes["dedupe"].processor  # type: ignore[attr-defined]
        # The first record fires the stream-time punctuator; then once per 10 ms passed
        # (missed ones are not made up for).
        assert processor.ticks == [5, 12, 40]
        reports = driver.create_output_topic("reports", S, S)
        assert reports.is_empty()
        driver.advance_wall_clock_time(999)
        assert reports.is_empty()
        driver.advance_wall_clock_time(1)
        assert reports.read_key_value() == ("count", "3")
        driver.advance_wall_clock_time(5000)  # missed wall-clock punctuations: one
        assert reports.read_records_to_list()[0].timestamp == 6000
        assert reports.is_empty()
        assert driver.create_output_topic("dd-seen-changelog", S, L
                                          ).read_key_values_to_map() == {"a": 0, "b": 1,
                                                                         "c": 3}


def test_topology_checks() -> None:
    t = Topology().add_source("in", "a")
    with pytest.raises(TopologyError, match="added already"):
        t.add_source("in", "b")
    with pytest.raises(TopologyError, match="read by source"):
        t.add_source("in2", "a")
    with pytest.raises(TopologyError, match="not a node"):
        t.add_processor("p", Dedupe, "nope")
    t.add_sink("out", "x", "in")
    with pytest.raises(TopologyError, match="cannot follow sink"):
        t.add_processor("p", Dedupe, "out")
    with pytest.raises(TopologyError, match="not one"):
        t.add_state_store(KeyValueStoreBuilder("s"), "in")


def test_stores_shared_by_processors_join_their_sub_topologies() -> None:
    t = (Topology().add_source("s1", "a").add_source("s2", "b")
         .add_processor("p1", Dedupe, "s1").add_processor("p2", Dedupe, "s2"))
    assert len(t.sub_topologies()) == 2
    t.add_state_store(KeyValueStoreBuilder("seen"), "p1", "p2")
    (sub,) = t.sub_topologies()
    assert sub.source_topics == ("a", "b") and sub.stores == ("seen",)
    assert "Sub-topology: 0" in t.describe()
