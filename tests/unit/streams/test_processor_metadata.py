"""Processor metadata (strom.streams.processor_metadata): its encoding in the offset commit's
metadata string, the stream thread's commit of it, and windowed aggregations that emit on
window close keeping there the close time of their last final results, so that a task
created again (after a restart, or on another instance) with its restored stores and
committed metadata emits neither the windows emitted before nor fewer."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from strom.streams import (
    Consumed,
    EmitStrategy,
    Materialized,
    Processor,
    Produced,
    Serdes,
    SessionWindows,
    SlidingWindows,
    StreamsBuilder,
    TimeWindows,
    TopologyTestDriver,
)
from strom.streams import processor_metadata as pm
from strom.streams.processor import ProcessorContext
from strom.streams.record import Record
from strom.streams.thread import StreamThread, _Running
from strom.streams.windows import Windows
from tests.unit.streams.windowing import Row, windowed

# -- the encoding ------------------------------------------------------------------------


def test_the_encoding_round_trips_and_is_small() -> None:
    values = {"KSTREAM-AGGREGATE-STATE-STORE-0000000001": 1_700_000_000_000, "b": -1, "c": 0}
    text = pm.encode(values)
    assert pm.decode(text) == values
    assert len(text) < 120
    assert pm.encode({}) == ""
    assert pm.decode(pm.encode({"x": 2**62})) == {"x": 2**62}


@pytest.mark.parametrize("text", [
    "hello", "{", "[]", "{}", "null", "42", '{"strom.pm": 2, "m": {"a": 1}}',
    '{"strom.pm": 1}', '{"strom.pm": 1, "m": [1]}', '{"strom.pm": 1, "m": {"a": "1"}}',
    '{"strom.pm": 1, "m": {"a": 1.5}}', '{"strom.pm": 1, "m": {"a": true}}', "\x00\xff",
    '{"strom.pm": "1", "m": {"a": 1}}'])
def test_foreign_or_unreadable_metadata_is_ignored_with_a_warning(
        text: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert pm.decode(text) is None
        assert pm.merge([text, pm.encode({"a": 3})]) == {"a": 3}
    assert "ignoring" in caplog.text


def test_no_metadata_is_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert pm.decode("") is None
        assert pm.decode(None) is None
        assert pm.merge([None, ""]) == {}
    assert caplog.text == ""


def test_merging_takes_the_largest_value_of_each_key() -> None:
    assert pm.merge([pm.encode({"a": 5, "b": 1}), None, pm.encode({"a": 3, "c": 7})]) == {
        "a": 5, "b": 1, "c": 7}


def test_metadata_over_the_limit_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert pm.encode({f"store-{i:04}": 10**12 for i in range(300)}) == ""
    assert "limit" in caplog.text


# -- the stream thread's commit ------------------------------------------------------------


class _Task:
    def __init__(self, metadata: dict[str, int], changed: bool) -> None:
        self.processor_metadata = metadata
        self.metadata_changed = changed


def _offsets(running: list[_Running]) -> set[tuple[str, int, int, str | None]]:
    thread = StreamThread.__new__(StreamThread)  # no clients: _offsets reads the tasks only
    thread.tasks = {str(i): r for i, r in enumerate(running)}
    return {(tp.topic, tp.partition, tp.offset, tp.metadata) for tp in thread._offsets()}


def _running(task: _Task, consumed: dict[tuple[str, int], int],
             next_offsets: dict[tuple[str, int], int]) -> _Running:
    inputs = [("a", 0), ("b", 0), ("c", 0)]
    return _Running(task, inputs[0], inputs, None, consumed=consumed,  # type: ignore[arg-type]
                    next_offsets=next_offsets)


def test_each_committed_offset_carries_the_tasks_metadata() -> None:
    text = pm.encode({"s": 10})
    task = _Task({"s": 10}, changed=False)
    assert _offsets([_running(task, {("a", 0): 5}, {("a", 0): 5, ("b", 0): 3})]) == {
        ("a", 0, 5, text)}
    assert _offsets([_running(_Task({}, False), {("a", 0): 5}, {("a", 0): 5})]) == {
        ("a", 0, 5, None)}
    assert _offsets([_running(task, {}, {("a", 0): 5})]) == set()  # nothing new


def test_metadata_that_changed_is_committed_with_every_input_not_consumed() -> None:
    """A wall-clock punctuation emitted windows with no new record: the task's offsets are
    committed all the same (where they were), with the new metadata."""
    text = pm.encode({"s": 20})
    task = _Task({"s": 20}, changed=True)
    assert _offsets([_running(task, {}, {("a", 0): 5, ("b", 0): 3})]) == {
        ("a", 0, 5, text), ("b", 0, 3, text)}  # c: no offset known, nothing to commit


# -- the processor context -----------------------------------------------------------------


class _Remember(Processor):
    """Keeps the largest value it has seen as processor metadata; forwards what it found in
    init on each record."""

    def init(self, context: ProcessorContext) -> None:
        super().init(context)
        self.found = context.processor_metadata("largest")

    def process(self, record: Record) -> None:
        largest = max(int(record.value), self.context.processor_metadata("largest") or 0)
        self.context.add_processor_metadata("largest", largest)
        self.context.forward(Record(record.key, str(self.found), record.timestamp))


def test_processor_metadata_is_kept_per_task_and_given_to_init_after_a_restart() -> None:
    s = Serdes.String()
    builder = StreamsBuilder()
    builder.stream("in", consumed=Consumed(s, s)).process(_Remember).to("out", Produced(s, s))
    with TopologyTestDriver(builder.build(), {"application.id": "app"}) as driver:
        into = driver.create_input_topic("in", s, s)
        out = driver.create_output_topic("out", s, s)
        into.pipe_input("k", "7", 1)
        into.pipe_input("k", "3", 2)
        assert out.read_values_to_list() == ["None", "None"]
        assert driver.tasks[0].processor_metadata == {"largest": 7}
        driver.restart_tasks()
        into.pipe_input("k", "1", 3)
        assert out.read_values_to_list() == ["7"]


# -- windowed aggregations emitting on close, created again ---------------------------------


def _count(windows: Windows, retention: int | None = None) -> Any:
    materialized = Materialized(retention=retention) if retention else None
    return lambda g: g.windowed_by(windows).emit_strategy(
        EmitStrategy.on_window_close()).count(materialized)


def _run(windows: Windows, records: list[tuple[str, int]], restart_after: int | None
         ) -> tuple[list[Row], list[Row]]:
    """What the count wrote before and after the restart (none: after the index)."""
    # Sessions are kept past their close (by default a closed session has expired from the
    # store, and could not be emitted again anyway).
    retention = 1000 if isinstance(windows, SessionWindows) else None
    with windowed(_count(windows, retention)) as h:
        before: list[Row] = []
        for i, (key, timestamp) in enumerate(records):
            if i == restart_after:
                before = h.rows()
                h.driver.restart_tasks()
            h.pipe(key, "x", timestamp)
        return before, h.rows()


CASES = {
    "tumbling": (TimeWindows.of_size_with_no_grace(10),
                 [("a", 5), ("b", 7), ("a", 15), ("a", 16), ("b", 18), ("a", 25), ("b", 41),
                  ("a", 60)]),
    "hopping": (TimeWindows.of_size_and_grace(10, 2).advance_by(5),
                [("a", 5), ("b", 7), ("a", 15), ("a", 16), ("b", 18), ("a", 25), ("b", 41),
                 ("a", 60)]),
    "sliding": (SlidingWindows.of_time_difference_and_grace(10, 0),
                [("a", 5), ("b", 7), ("a", 15), ("a", 30), ("a", 31), ("b", 33), ("a", 50),
                 ("b", 52), ("a", 90)]),
    "session": (SessionWindows.of_inactivity_gap_with_no_grace(10),
                [("a", 5), ("b", 7), ("a", 12), ("a", 40), ("a", 45), ("b", 47), ("a", 80),
                 ("b", 81), ("a", 120)]),
}


@pytest.mark.parametrize("kind", sorted(CASES))
@pytest.mark.parametrize("restart_after", [4, 5, 6])
def test_a_task_created_again_emits_each_final_window_once(kind: str, restart_after: int
                                                           ) -> None:
    windows, records = CASES[kind]
    _, expected = _run(windows, records, None)
    before, after = _run(windows, records, restart_after)
    assert before, "the test means some windows to have been emitted before the restart"
    assert after, "and some after"
    assert before + after == expected  # none again, none missing, in the same order


def test_a_record_for_a_window_emitted_before_the_restart_is_late() -> None:
    with windowed(_count(TimeWindows.of_size_with_no_grace(10))) as h:
        h.pipe("a", "x", 5)
        h.pipe("a", "x", 12)
        assert h.rows() == [("a", 0, 10, 1, 5)]
        h.driver.restart_tasks()
        h.pipe("a", "x", 8)  # out of order, for [0, 10), emitted as final
        assert h.processor.dropped == 1
        h.pipe("a", "x", 25)
        assert h.rows() == [("a", 10, 20, 1, 12)]


def test_the_close_time_is_kept_under_the_store_name_and_restored_in_init() -> None:
    with windowed(_count(TimeWindows.of_size_with_no_grace(10))) as h:
        h.pipe("a", "x", 5)
        h.pipe("a", "x", 22)
        store = h.table.store
        assert h.driver.tasks[-1].processor_metadata == {store: 22}
        h.driver.restart_tasks()
        assert h.processor._last_emit_close == 22
        assert h.processor.close_time == 22


def test_updates_without_emit_on_close_keep_no_metadata() -> None:
    with windowed(lambda g: g.windowed_by(TimeWindows.of_size_with_no_grace(10)).count()) as h:
        h.pipe("a", "x", 5)
        h.pipe("a", "x", 22)
        assert h.driver.tasks[-1].processor_metadata == {}


def test_the_wall_clock_close_changes_the_metadata_without_records() -> None:
    emit = EmitStrategy.on_window_close(1000)
    with windowed(lambda g: g.windowed_by(TimeWindows.of_size_with_no_grace(10))
                  .emit_strategy(emit).count()) as h:
        h.pipe("a", "x", 5)
        task = h.driver.tasks[-1]
        task.metadata_changed = False  # as after a commit
        h.driver.advance_wall_clock_time(1000)
        assert h.rows() == [("a", 0, 10, 1, 5)]
        assert task.metadata_changed
        h.driver.restart_tasks()
        h.driver.advance_wall_clock_time(5000)
        h.pipe("a", "x", 9)  # late: its window was emitted
        h.pipe("a", "x", 1012)
        h.pipe("a", "x", 1100)
        assert h.rows() == [("a", 1010, 1020, 1, 1012)]

