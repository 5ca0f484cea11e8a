"""The history checker passes correct histories (hand-built, and any a simulated Kafka that
keeps its promises records, unknown outcomes present or absent) and finds each planted anomaly
(lost write, duplicate, reorder, inconsistent offset, phantom and aborted reads, group offsets
backwards, consume-transform-produce input missing or doubled) with the events that show it."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from strom.testing.history import (
    Event,
    FinalRead,
    Isolation,
    OffsetsCommitted,
    OffsetsReset,
    ProduceAcked,
    ProduceAttempted,
    ProduceFailed,
    ProduceUnknown,
    RecordRead,
    Transformed,
    TxnAborted,
    TxnBegun,
    TxnCommitted,
    TxnCommitUnknown,
)
from strom.testing.history_check import Report, check
from strom.testing.history_index import Anomaly
from tests.history_sim import SimKafka, histories

RC: Isolation = "read_committed"


def sent(value: str, offset: int, *, partition: int = 0, producer: str = "p1",
         topic: str = "t", txn: str | None = None) -> list[Event]:
    return [ProduceAttempted(producer=producer, topic=topic, partition=partition, value=value,
                             txn=txn),
            ProduceAcked(producer=producer, value=value, topic=topic, partition=partition,
                         offset=offset)]


def read(value: str, offset: int, *, consumer: str = "final", partition: int = 0,
         topic: str = "t", isolation: Isolation = "read_uncommitted") -> RecordRead:
    return RecordRead(consumer=consumer, topic=topic, partition=partition, offset=offset,
                      value=value, isolation=isolation)


def final(end: int, *, consumer: str = "final", partition: int = 0, topic: str = "t",
          isolation: Isolation = "read_uncommitted") -> FinalRead:
    return FinalRead(consumer=consumer, topic=topic, partition=partition, end_offset=end,
                     isolation=isolation)


def only(report: Report, kind: str) -> Anomaly:
    """The one anomaly of the report, which must be of `kind`."""
    assert [a.kind.value for a in report.anomalies] == [kind], report.render()
    return report.anomalies[0]


def excerpt(anomaly: Anomaly) -> list[int]:
    return [e.index for e in anomaly.excerpt]


def test_a_clean_history_passes_and_is_counted() -> None:
    history = [*sent("a", 0), *sent("b", 1), *sent("c", 0, partition=1, producer="p2"),
               ProduceAttempted(producer="p1", topic="t", partition=0, value="d"),
               ProduceFailed(producer="p1", value="d", error="MSG_SIZE_TOO_LARGE"),
               read("a", 0, consumer="c1"), read("a", 0), read("b", 1), final(2),
               read("c", 0, partition=1), final(1, partition=1)]
    report = check(history)
    assert report.ok, report.render()
    s = report.summary
    assert (s.writes_attempted, s.writes_acknowledged, s.writes_failed, s.writes_unknown) == (
        4, 3, 1, 0)
    assert (s.reads, s.values_read, s.final_reads) == (4, 3, 2)
    assert set(report.counts().values()) == {0}
    assert "anomalies: none" in report.render()


def test_lost_write_is_found_with_its_attempt_ack_and_the_final_read() -> None:
    history = [*sent("a", 0), *sent("b", 1), read("b", 1), final(2)]
    a = only(check(history), "lost_write")
    assert "'a'" in a.explanation and "t/0" in a.explanation
    assert excerpt(a) == [0, 1, 5]


def test_a_committed_transaction_value_is_a_lost_write_without_its_own_ack() -> None:
    history: list[Event] = [
        TxnBegun(producer="p1", txn="x1"),
        ProduceAttempted(producer="p1", topic="t", partition=0, value="a", txn="x1"),
        TxnCommitted(producer="p1", txn="x1"), final(2, isolation=RC)]
    assert excerpt(only(check(history), "lost_write")) == [1, 2, 3]


def test_a_partition_without_a_final_read_is_not_judged_for_lost_writes() -> None:
    assert check([*sent("a", 0, partition=3), final(0)]).ok


def test_unknown_outcomes_may_be_present_or_absent_but_not_twice() -> None:
    def unknown(value: str) -> list[Event]:
        return [ProduceAttempted(producer="p1", topic="t", partition=0, value=value),
                ProduceUnknown(producer="p1", value=value, error="timed out")]

    commit_unknown: list[Event] = [
        TxnBegun(producer="p2", txn="x"), *sent("t1", 1, producer="p2", txn="x"),
        TxnCommitUnknown(producer="p2", txn="x")]
    present = [*unknown("u"), *commit_unknown, read("u", 0, isolation=RC),
               read("t1", 1, isolation=RC), final(3, isolation=RC)]
    absent = [*unknown("u"), *commit_unknown, final(0, isolation=RC)]
    assert check(present).ok, check(present).render()
    assert check(absent).ok
    assert check(absent).summary.writes_unknown == 1
    twice = [*unknown("u"), read("u", 0), read("u", 1), final(2)]
    assert excerpt(only(check(twice), "duplicate")) == [0, 2, 3]


def test_an_attempt_without_any_outcome_counts_as_unknown() -> None:
    history = [ProduceAttempted(producer="p1", topic="t", partition=0, value="a"), final(0)]
    report = check(history)
    assert report.ok and report.summary.writes_unknown == 1


def test_duplicate_is_a_value_read_at_two_offsets() -> None:
    history = [*sent("a", 0), read("a", 0), read("a", 1, consumer="c2"), final(2)]
    report = check(history)
    kinds = sorted(a.kind.value for a in report.anomalies)
    # Read at 0 (its ack) and at 1: a duplicate, and no offset disagreement to report.
    assert kinds == ["duplicate"]
    assert excerpt(report.anomalies[0]) == [0, 2, 3]


def test_reorder_of_one_producers_acknowledged_writes_in_a_partition() -> None:
    history = [ProduceAttempted(producer="p1", topic="t", partition=0, value="a"),
               ProduceAttempted(producer="p1", topic="t", partition=0, value="b"),
               ProduceAcked(producer="p1", value="b", topic="t", partition=0, offset=0),
               ProduceAcked(producer="p1", value="a", topic="t", partition=0, offset=1),
               read("b", 0), read("a", 1), final(2)]
    a = only(check(history), "reorder")
    assert "'a' before 'b'" in a.explanation
    assert excerpt(a) == [0, 1, 4, 5]


def test_writes_of_different_producers_or_partitions_may_interleave() -> None:
    history = [ProduceAttempted(producer="p1", topic="t", partition=0, value="a"),
               ProduceAttempted(producer="p2", topic="t", partition=0, value="b"),
               ProduceAttempted(producer="p1", topic="t", partition=1, value="c"),
               ProduceAcked(producer="p2", value="b", topic="t", partition=0, offset=0),
               ProduceAcked(producer="p1", value="c", topic="t", partition=1, offset=0),
               ProduceAcked(producer="p1", value="a", topic="t", partition=0, offset=1)]
    assert check(history).ok


def test_inconsistent_offset_two_values_at_one_position() -> None:
    history = [*sent("a", 0), *sent("b", 1, producer="p2"), read("a", 0),
               read("b", 0, consumer="c2")]
    report = check(history)
    assert sorted(a.kind.value for a in report.anomalies) == [
        "inconsistent_offset", "inconsistent_offset"]
    both, moved = report.anomalies
    assert "t/0@0 read as 'a', 'b'" in both.explanation and excerpt(both) == [4, 5]
    assert "acknowledged at t/0@1" in moved.explanation and excerpt(moved) == [3, 5]


def test_phantom_reads_of_values_never_written_or_failed() -> None:
    never = [read("zz", 0), final(1)]
    assert excerpt(only(check(never), "phantom_read")) == [0]
    failed = [ProduceAttempted(producer="p1", topic="t", partition=0, value="a"),
              ProduceFailed(producer="p1", value="a", error="INVALID_RECORD"), read("a", 0)]
    a = only(check(failed), "phantom_read")
    assert "INVALID_RECORD" in a.explanation and excerpt(a) == [0, 1, 2]


def test_aborted_read_of_an_aborted_transaction() -> None:
    history = [TxnBegun(producer="p1", txn="x"), *sent("a", 0, txn="x"),
               TxnAborted(producer="p1", txn="x"), read("a", 0, consumer="c", isolation=RC)]
    a = only(check(history), "aborted_read")
    assert "aborted" in a.explanation and excerpt(a) == [1, 3, 4]
    # read_uncommitted may see it.
    assert check([*history[:4], read("a", 0)]).ok


def test_aborted_read_of_a_transaction_that_never_committed() -> None:
    history = [TxnBegun(producer="p1", txn="x"), *sent("a", 0, txn="x"),
               read("a", 0, isolation=RC)]
    a = only(check(history), "aborted_read")
    assert "never committed" in a.explanation and excerpt(a) == [0, 1, 3]


def test_group_offsets_going_backwards_unless_reset() -> None:
    def commit(offset: int, group: str = "g", partition: int = 0) -> OffsetsCommitted:
        return OffsetsCommitted(group=group, consumer="c", topic="t", partition=partition,
                                offset=offset)

    back = [commit(3), commit(5), commit(5), commit(4), commit(2, group="h"),
            commit(1, partition=1)]
    a = only(check(back), "offsets_backwards")
    assert "offset 4 after 5" in a.explanation and excerpt(a) == [2, 3]
    reset = [commit(5), OffsetsReset(group="g", topic="t", partition=0, offset=0), commit(1)]
    assert check(reset).ok
    below_reset = [commit(5), OffsetsReset(group="g", topic="t", partition=0, offset=3),
                   commit(2)]
    assert excerpt(only(check(below_reset), "offsets_backwards")) == [1, 2]


def ctp_step(input_value: str, output: str, txn: str, out_offset: int,
             end: type[TxnCommitted | TxnAborted | TxnCommitUnknown]) -> list[Event]:
    return [TxnBegun(producer="w", txn=txn), *sent(output, out_offset, producer="w",
                                                   topic="out", txn=txn),
            Transformed(worker="w", txn=txn, input_value=input_value, output_value=output),
            end(producer="w", txn=txn)]


def test_consume_transform_produce_exactly_once_with_aborted_retries() -> None:
    history = [*sent("i1", 0, topic="in"), *sent("i2", 1, topic="in"),
               *ctp_step("i1", "o1", "x1", 0, TxnAborted),
               *ctp_step("i1", "o1b", "x2", 2, TxnCommitted),
               *ctp_step("i2", "o2", "x3", 4, TxnCommitUnknown),
               read("o1b", 2, topic="out", isolation=RC), read("o2", 4, topic="out", isolation=RC),
               final(6, topic="out", isolation=RC)]
    assert check(history).ok, check(history).render()


def test_consume_transform_produce_input_missing() -> None:
    history = [*sent("i1", 0, topic="in"), *sent("i2", 1, topic="in"),
               *ctp_step("i1", "o1", "x1", 0, TxnCommitted),
               *ctp_step("i2", "o2", "x2", 2, TxnAborted),
               read("o1", 0, topic="out", isolation=RC), final(4, topic="out", isolation=RC)]
    a = only(check(history), "ctp_missing")
    assert "'i2'" in a.explanation and excerpt(a) == [3, 12, 15]
    # Without a read_committed final read of the output, a missing output is not judged.
    assert check(history[:-1]).ok


def test_consume_transform_produce_input_doubled() -> None:
    history = [*sent("i1", 0, topic="in"),
               *ctp_step("i1", "o1", "x1", 0, TxnCommitUnknown),
               *ctp_step("i1", "o1b", "x2", 2, TxnCommitted),
               read("o1", 0, topic="out", isolation=RC), read("o1b", 2, topic="out", isolation=RC),
               final(4, topic="out", isolation=RC)]
    a = only(check(history), "ctp_doubled")
    assert "2 committed outputs" in a.explanation
    assert excerpt(a) == [5, 10, 12, 13]


def test_render_quotes_excerpts_and_bounds_each_kind() -> None:
    history = [*(e for i in range(8) for e in sent(f"v{i}", i)), final(8)]
    report = check(history)
    assert report.counts()["lost_write"] == 8
    text = report.render(per_kind=3)
    assert "lost_write (8):" in text and "... and 5 more" in text
    assert "#0 produce_attempted p1 'v0' -> t/0" in text
    assert "#1 produce_acked p1 'v0' at t/0@0" in text
    assert "#16 final_read final t/0 to 8 read_uncommitted" in text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_every_history_of_a_correct_kafka_passes(sim: SimKafka) -> None:
    report = check(sim.events)
    assert report.ok, report.render()


def final_reads_of(sim: SimKafka, value: str) -> list[int]:
    return [i for i, e in enumerate(sim.events) if isinstance(e, RecordRead)
            and e.value == value and e.consumer.startswith("final-")]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def test_a_durable_value_dropped_from_the_final_reads_is_a_lost_write(
        sim: SimKafka, data: st.DataObject) -> None:
    durable = sorted(v for v in sim.durable if final_reads_of(sim, v))
    assume(durable)
    value = data.draw(st.sampled_from(durable))
    dropped = set(final_reads_of(sim, value))
    report = check(e for i, e in enumerate(sim.events) if i not in dropped)
    lost = [a for a in report.anomalies if a.kind.value == "lost_write"]
    assert lost and all(f"{value!r}" in a.explanation for a in lost)
    # A consume-transform-produce output that is lost also leaves its input without output.
    assert {a.kind.value for a in report.anomalies} <= {"lost_write", "ctp_missing"}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def test_a_value_read_again_further_on_is_a_duplicate(sim: SimKafka,
                                                      data: st.DataObject) -> None:
    reads = [e for e in sim.events if isinstance(e, RecordRead)]
    assume(reads)
    r = data.draw(st.sampled_from(reads))
    again = read(r.value, r.offset + 1000, topic=r.topic, partition=r.partition, consumer="c9")
    report = check([*sim.events, again])
    assert "duplicate" in report.counts() and report.counts()["duplicate"] == 1
    [dup] = [a for a in report.anomalies if a.kind.value == "duplicate"]
    assert dup.excerpt[-1].event == again


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def test_a_read_committed_read_of_an_aborted_value_is_found(sim: SimKafka,
                                                           data: st.DataObject) -> None:
    assume(sim.aborted)
    value = data.draw(st.sampled_from(sorted(sim.aborted)))
    ack = next(e for e in sim.events if isinstance(e, ProduceAcked) and e.value == value)
    report = check([*sim.events, read(value, ack.offset, topic=ack.topic,
                                      partition=ack.partition, consumer="c9", isolation=RC)])
    kinds = [a.kind.value for a in report.anomalies]
    assert kinds[0] == "aborted_read", report.render()
    # An aborted consume-transform-produce output seen makes its input's output doubled.
    assert kinds[1:] in ([], ["ctp_doubled"])


def test_a_write_the_partitioner_placed_is_judged_where_its_ack_put_it() -> None:
    attempt = ProduceAttempted(producer="p1", topic="t", partition=-1, value="a")
    ack = ProduceAcked(producer="p1", value="a", topic="t", partition=2, offset=0)
    assert check([attempt, ack, read("a", 0, partition=2), final(1, partition=2)]).ok
    assert excerpt(only(check([attempt, ack, final(1, partition=2)]), "lost_write")) == [0, 1, 2]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def test_two_writes_of_one_producer_stored_swapped_is_a_reorder(sim: SimKafka,
                                                               data: st.DataObject) -> None:
    in_txn = {e.value for e in sim.events if isinstance(e, ProduceAttempted) and e.txn}
    acks = [e for e in sim.events if isinstance(e, ProduceAcked) and e.value not in in_txn]
    pairs = [(a, b) for i, a in enumerate(acks) for b in acks[i + 1:]
             if (a.producer, a.topic, a.partition) == (b.producer, b.topic, b.partition)]
    assume(pairs)
    a, b = data.draw(st.sampled_from(pairs))
    moved = {a.value: b.offset, b.value: a.offset}
    other = {a.value: b.value, b.value: a.value}

    def swap(e: Event) -> Event:
        # The log holds each at the other's offset: acks say so, and reads (in offset order,
        # as a reader sees a log) find the other value where each one was. (Values outside
        # transactions only: a swap must not move a value past a reader's isolation.)
        if isinstance(e, ProduceAcked) and e.value in moved:
            return dataclasses.replace(e, offset=moved[e.value])
        if isinstance(e, RecordRead) and e.value in other:
            return dataclasses.replace(e, value=other[e.value])
        return e

    report = check(swap(e) for e in sim.events)
    assert {k for k, n in report.counts().items() if n} == {"reorder"}, report.render()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_a_commit_below_the_last_one_is_offsets_backwards(sim: SimKafka) -> None:
    keys = [(group, tp) for (group, tp), offset in sim.group_offsets.items() if offset > 0]
    assume(keys)
    group, tp = keys[0]
    lower = OffsetsCommitted(group=group, consumer="c9", topic=tp.topic, partition=tp.partition,
                             offset=sim.group_offsets[group, tp] - 1)
    a = only(check([*sim.events, lower]), "offsets_backwards")
    assert a.excerpt[-1].event == lower
