"""Stream-stream joins on the test driver: what inner, left and outer joins emit and at which
timestamps, window bounds at their edges (also asymmetric windows), out-of-order records within
the grace period, late records dropped and counted, left/outer results only once a window has
closed (KIP-633), the window stores' retention and changelogs, and a stream whose key changed
joined through a repartition topic."""

from __future__ import annotations

from typing import Any

import pytest

from strom.streams import (
    Consumed,
    JoinWindows,
    Produced,
    Serde,
    Serdes,
    StreamJoined,
    StreamsBuilder,
)
from strom.streams.stream_join import JoinWindowStore
from tests.unit.streams.joining import Run, S, joined


def build(kind: str, windows: JoinWindows, name: str = "j") -> StreamsBuilder:
    builder = StreamsBuilder()
    left = builder.stream("left", consumed=Consumed(S, S))
    right = builder.stream("right", consumed=Consumed(S, S))
    join = getattr(left, {"inner": "join", "left": "left_join", "outer": "outer_join"}[kind])
    join(right, joined, windows, StreamJoined(S, S, S, name=name)).to("out", Produced(S, S))
    return builder


def test_join_windows_are_checked_and_built_as_kafka_builds_them() -> None:
    windows = JoinWindows.of_time_difference_and_grace(10, 5)
    assert (windows.before_ms, windows.after_ms, windows.grace_ms) == (10, 10, 5)
    assert windows.before(0).after(20) == JoinWindows(0, 20, 5)
    assert windows.retention_ms == 25 and windows.before(-5).size_ms == 5
    assert JoinWindows.of_time_difference_with_no_grace(7) == JoinWindows(7, 7, 0)
    with pytest.raises(ValueError, match="empty"):
        windows.before(-11)
    with pytest.raises(ValueError, match="grace"):
        JoinWindows.of_time_difference_and_grace(1, -1)


def test_inner_join_emits_every_match_at_the_later_timestamp() -> None:
    run = Run(build("inner", JoinWindows.of_time_difference_with_no_grace(10)))
    run.pipe("left", "a", "A1", 100)
    assert run.take() == []
    run.pipe("right", "a", "a1", 105)
    run.pipe("left", "a", "A2", 108)  # joins a1 (earlier than it)
    run.pipe("right", "b", "b1", 108)  # another key: nothing
    run.pipe("right", "a", "a2", 112)  # joins A2 only (A1 is 12 ms away)
    assert run.take() == [("a", "A1+a1", 105), ("a", "A2+a1", 108), ("a", "A2+a2", 112)]


def test_window_bounds_are_inclusive_on_both_sides() -> None:
    # Grace keeps the out-of-order records below from being late: only the bounds decide.
    run = Run(build("inner", JoinWindows.of_time_difference_and_grace(10, 100)))
    run.pipe("left", "a", "L", 100)
    for timestamp in (89, 90, 110, 111):
        run.pipe("right", "a", f"r{timestamp}", timestamp)
    assert run.take() == [("a", "L+r90", 100), ("a", "L+r110", 110)]
    # The same from the other side: a left record meets the right records already kept.
    run.pipe("left", "a", "M", 100)
    assert run.take() == [("a", "M+r90", 100), ("a", "M+r110", 110)]


def test_asymmetric_windows_with_before_and_after() -> None:
    # A left record at t joins right records in [t, t + 10]; a right record at t joins left
    # records in [t - 10, t].
    windows = JoinWindows.of_time_difference_and_grace(0, 1000).after(10)
    run = Run(build("inner", windows))
    for timestamp in (99, 100, 110, 111):
        run.pipe("right", "a", f"r{timestamp}", timestamp)
    run.pipe("left", "a", "L", 100)
    assert run.take() == [("a", "L+r100", 100), ("a", "L+r110", 110)]
    run.pipe("left", "b", "L", 100)
    for timestamp in (99, 100, 110, 111):
        run.pipe("right", "b", f"r{timestamp}", timestamp)
    assert run.take() == [("b", "L+r100", 100), ("b", "L+r110", 110)]


def test_records_of_one_key_and_timestamp_all_join() -> None:
    run = Run(build("inner", JoinWindows.of_time_difference_with_no_grace(5)))
    run.pipe("left", "a", "A1", 10)
    run.pipe("left", "a", "A2", 10)
    run.pipe("right", "a", "x", 12)
    assert run.take() == [("a", "A1+x", 12), ("a", "A2+x", 12)]


def test_late_records_are_dropped_and_counted_unless_within_grace() -> None:
    run = Run(build("inner", JoinWindows.of_time_difference_with_no_grace(10)))
    run.pipe("left", "a", "A", 100)
    run.pipe("right", "b", "B", 111)  # stream time 111
    run.pipe("right", "a", "late", 95)  # its window ended at 105 < 111: late, though A matches
    run.pipe("right", "a", "edge", 101)  # its window ends at 111: in time, joins A
    assert run.take() == [("a", "A+edge", 101)]
    other = run.processor("j-other-join")
    assert (other.late, other.dropped) == (1, 1)
    kept = [(k, t, v) for k, t, v in run.driver.get_state_store("j-other-join-store").all()]
    assert ("a", 95, "late") not in kept and ("a", 101, "edge") in kept

    run = Run(build("inner", JoinWindows.of_time_difference_and_grace(10, 6)))
    run.pipe("left", "a", "A", 100)
    run.pipe("right", "b", "B", 111)
    run.pipe("right", "a", "in-grace", 95)  # window end 105 + grace 6 = 111: still in time
    run.pipe("right", "a", "late", 94)
    assert run.take() == [("a", "A+in-grace", 100)]
    assert run.processor("j-other-join").late == 1


def test_records_without_key_or_value_are_dropped() -> None:
    run = Run(build("inner", JoinWindows.of_time_difference_with_no_grace(10)))
    run.pipe("left", None, "A", 1)
    run.pipe("left", "a", None, 2)
    run.pipe("right", "a", "x", 3)
    assert run.take() == []
    assert run.processor("j-this-join").dropped == 2


def test_left_join_emits_unmatched_records_only_when_their_window_closes() -> None:
    run = Run(build("left", JoinWindows.of_time_difference_with_no_grace(10)))
    run.pipe("left", "a", "A", 100)
    run.pipe("left", "b", "B", 105)
    assert run.take() == []  # no "A+None" at arrival (KIP-633)
    run.pipe("right", "a", "x", 108)
    assert run.take() == [("a", "A+x", 108)]
    run.pipe("right", "c", "y", 115)  # B's window closes after 105 + 10: not yet
    assert run.take() == []
    run.pipe("right", "c", "z", 116)
    assert run.take() == [("b", "B+None", 105)]  # A matched: never "A+None"
    run.pipe("left", None, "N", 117)  # no key: emitted at once (KIP-962)
    assert run.take() == [(None, "N+None", 117)]
    run.pipe("right", "d", "w", 500)  # unmatched right records never show in a left join
    assert run.take() == []


def test_left_join_grace_delays_the_unmatched_result_and_lets_a_match_in() -> None:
    run = Run(build("left", JoinWindows.of_time_difference_and_grace(10, 5)))
    run.pipe("left", "a", "A", 100)
    run.pipe("right", "b", "x", 112)  # past A's window end (110) but within grace
    run.pipe("right", "a", "late-match", 108)  # out of order, in time: matches A
    run.pipe("left", "c", "C", 112)
    run.pipe("right", "b", "y", 128)  # closes C's window (112 + 10 + 5 < 128)
    assert run.take() == [("a", "A+late-match", 108), ("c", "C+None", 112)]
    run.pipe("left", "d", "D", 130)
    run.pipe("left", "e", "E", 135)
    run.pipe("right", "b", "z", 146)  # D's window closed; E's ended at 145, grace runs on
    assert run.take() == [("d", "D+None", 130)]
    run.pipe("right", "b", "z", 151)
    assert run.take() == [("e", "E+None", 135)]


def test_outer_join_emits_both_sides_unmatched_at_window_close_in_time_order() -> None:
    run = Run(build("outer", JoinWindows.of_time_difference_and_grace(10, 5)))
    run.pipe("left", "a", "A", 100)
    run.pipe("right", "b", "B", 100)
    run.pipe("right", "a", "x", 112)  # A is 12 ms away: no match, x waits
    assert run.take() == []
    run.pipe("left", "c", "C", 116)  # 100 + 10 + 5 < 116: A's and B's windows closed
    assert run.take() == [("b", "None+B", 100), ("a", "A+None", 100)]
    run.pipe("left", "a", "A2", 105)  # out of order but in time: matches x
    assert run.take() == [("a", "A2+x", 112)]
    run.pipe("right", "z", "Z", 200)
    assert run.take() == [("c", "C+None", 116)]  # x matched: never "None+x"
    assert run.driver.get_state_store("j-outer-shared-join-store"
                                      ).approximate_num_entries() == 1  # Z waits
    run.pipe("right", "q", "late", 184)  # 184 + 10 + 5 < 200: dropped, never emitted
    run.pipe("right", None, "N", 201)  # no key: emitted at once (KIP-962)
    run.pipe("left", "w", "W", 400)
    assert run.take() == [(None, "None+N", 201), ("z", "None+Z", 200)]
    assert run.processor("j-other-join").late == 1


def test_asymmetric_outer_join_closes_each_side_by_its_own_window() -> None:
    # before 0, after 10: a left record at t waits for right records up to t + 10, a right
    # record at t for left records up to t (its window is [t - 10, t]).
    run = Run(build("outer", JoinWindows.of_time_difference_with_no_grace(10).before(0)))
    run.pipe("left", "a", "A", 100)
    run.pipe("right", "b", "B", 100)
    run.pipe("right", "c", "C", 101)
    assert run.take() == [("b", "None+B", 100)]
    run.pipe("left", "d", "D", 110)
    assert run.take() == [("c", "None+C", 101)]
    run.pipe("left", "e", "E", 111)
    assert run.take() == [("a", "A+None", 100)]


def test_window_stores_keep_records_for_before_after_and_grace_and_log_them() -> None:
    run = Run(build("inner", JoinWindows.of_time_difference_and_grace(10, 5)))
    for timestamp in (100, 101, 125, 126):
        run.pipe("left", "a", f"A{timestamp}", timestamp)
    # Retention 25: at stream time 126 the record at 100 is gone, 101.. are kept.
    store = run.driver.get_state_store("j-this-join-store")
    assert list(store.all()) == [("a", 101, "A101"), ("a", 125, "A125"), ("a", 126, "A126")]
    assert list(store.fetch("a", 0, 125)) == [(101, "A101"), (125, "A125")]
    assert store.put("a", "old", 100) is False and store.put("a", "edge", 101) is True
    changelog = run.driver.create_output_topic("app-j-this-join-store-changelog",
                                               Serdes.Bytes(), S)
    assert [(r.value, r.timestamp) for r in changelog.read_records_to_list()] == [
        ("A100", 100), ("A101", 101), ("A125", 125), ("A126", 126), ("edge", 101)]


def test_a_stream_whose_key_changed_is_repartitioned_before_the_join() -> None:
    builder = StreamsBuilder()
    left = builder.stream("left", consumed=Consumed(S, S)).select_key(
        lambda k, v: v.split(":")[0])
    right = builder.stream("right", consumed=Consumed(S, S))
    left.join(right, joined, JoinWindows.of_time_difference_with_no_grace(10),
              StreamJoined(S, S, S, name="j")).to("out", Produced(S, S))
    topology = builder.build()
    assert "j-left-repartition" in topology.internal_topics
    assert frozenset({"j-left-repartition", "right"}) in topology.copartition_groups
    assert len(topology.sub_topologies()) == 2
    run = Run(builder)
    run.pipe("right", "k", "R", 10)
    run.pipe("left", "ignored", "k:L", 12)
    assert run.take() == [("k", "k:L+R", 12)]
    repartition = run.driver.create_output_topic("app-j-left-repartition", S, S)
    assert repartition.read_key_values_to_list() == [("k", "k:L")]


def test_unnamed_join_names_its_nodes_and_stores_as_kafka_does() -> None:
    builder = StreamsBuilder()
    left = builder.stream("left", consumed=Consumed(S, S))
    right = builder.stream("right", consumed=Consumed(S, S))
    left.join(right, joined, JoinWindows.of_time_difference_with_no_grace(1))
    (sub,) = builder.build().sub_topologies()
    assert sub.stores == ("KSTREAM-JOINTHIS-0000000002-store",
                          "KSTREAM-JOINOTHER-0000000003-store")
    assert builder.build().copartition_groups == [frozenset({"left", "right"})]
    left.left_join(right, joined, JoinWindows.of_time_difference_with_no_grace(1))
    assert "KSTREAM-OUTERSHARED-0000000005-store" in builder.build().stores


def test_a_window_store_restores_from_its_changelog_and_keeps_keys_apart() -> None:
    class Log:
        partition = 0
        task_id = "0_0"

        def __init__(self) -> None:
            self.records: list[tuple[bytes, bytes | None, int]] = []

        def changelog_topic(self, store: str) -> str:
            return f"{store}-changelog"

        def log_change(self, topic: str, key: bytes, value: bytes | None, ts: int) -> None:
            self.records.append((key, value, ts))

    def store() -> JoinWindowStore:
        serde: Serde[Any] = S
        return JoinWindowStore("w", serde, serde, retention_ms=100)

    original, log = store(), Log()
    original.init(log)
    for key, timestamp in (("a", 10), ("ab", 10), ("a", 10), ("a", 20)):
        original.put(key, f"{key}@{timestamp}", timestamp)
    restored = store()
    for key, value, _ in log.records:
        restored.restore(key, value)
    for copy in (original, restored):
        assert list(copy.fetch("a", 10, 20)) == [(10, "a@10"), (10, "a@10"), (20, "a@20")]
        assert list(copy.fetch("ab", 0, 100)) == [(10, "ab@10")]
    restored.put("a", "a@130", 130)  # stream time 130: 10 and 20 expire, 30.. would stay
    assert list(restored.all()) == [("a", 130, "a@130")]
    assert restored.put("a", "again", 20) is False
