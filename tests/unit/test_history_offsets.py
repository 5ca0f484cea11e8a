"""The checks a cluster makes necessary: an offset handed out twice is found from the
acknowledgements alone (two brokers appending to one partition), even when nobody read either
value; a final reader served a partition out of order, or a record twice, is found, while
gaps (transaction markers, aborted records) are not anomalies; and a consume-transform-produce
input the log holds twice is reported once, as the duplicate it is, not also as doubled; and a
stage that stopped early owes outputs only below its acknowledged input commits."""

from __future__ import annotations

from strom.testing.history import (
    Event,
    FinalRead,
    OffsetsCommitted,
    ProduceAcked,
    ProduceAttempted,
    RecordRead,
    TxnCommitted,
)
from strom.testing.history_check import check
from tests.unit.test_history_check import ctp_step, excerpt, final, only, read, sent


def test_two_values_acknowledged_at_one_offset() -> None:
    history: list[Event] = [*sent("a", 4), *sent("b", 4, producer="p2")]
    a = only(check(history), "inconsistent_offset")
    assert "t/0@4 acknowledged for 'a', 'b'" in a.explanation
    assert excerpt(a) == [1, 3]


def test_one_value_acknowledged_twice_at_its_offset_is_no_collision() -> None:
    # A retried send reported twice (an unknown outcome, then the ack): one value, one offset.
    history: list[Event] = [
        ProduceAttempted(producer="p1", topic="t", partition=0, value="a"),
        ProduceAcked(producer="p1", value="a", topic="t", partition=0, offset=0),
        ProduceAcked(producer="p1", value="a", topic="t", partition=0, offset=0),
        *sent("b", 1), read("a", 0), read("b", 1), final(2)]
    assert check(history).ok, check(history).render()


def test_an_offset_acknowledged_twice_and_read_once_also_loses_a_write() -> None:
    history: list[Event] = [*sent("a", 0), *sent("b", 0, producer="p2"), read("b", 0),
                            final(1)]
    kinds = sorted(a.kind.value for a in check(history).anomalies)
    assert kinds == ["inconsistent_offset", "lost_write"]


def test_a_final_read_going_back_is_nonmonotonic() -> None:
    history: list[Event] = [*sent("a", 0), *sent("b", 1), *sent("c", 2),
                            read("a", 0), read("b", 1), read("a", 0), read("c", 2), final(3)]
    a = only(check(history), "nonmonotonic_read")
    assert "read t/0@0 ('a') after t/0@1 ('b')" in a.explanation
    assert excerpt(a) == [7, 8, 10]


def test_a_final_read_with_gaps_and_other_readers_rereading_is_fine() -> None:
    history: list[Event] = [
        *sent("a", 0), *sent("b", 3),
        read("a", 0, consumer="group-member"), read("a", 0, consumer="group-member"),
        read("a", 0), read("b", 3), final(4)]
    assert check(history).ok, check(history).render()


def test_reads_after_a_final_read_are_not_part_of_it() -> None:
    history: list[Event] = [*sent("a", 0), *sent("b", 1), read("a", 0), read("b", 1),
                            final(2), read("a", 0)]
    assert check(history).ok


def test_each_partition_of_a_final_read_is_judged_on_its_own() -> None:
    history: list[Event] = [
        *sent("a", 5), *sent("b", 0, partition=1),
        read("a", 5), read("b", 0, partition=1),
        FinalRead(consumer="final", topic="t", partition=0, end_offset=6),
        FinalRead(consumer="final", topic="t", partition=1, end_offset=1),
        RecordRead(consumer="final", topic="t", partition=1, offset=0, value="b")]
    assert check(history).ok, check(history).render()


def test_an_input_stored_twice_may_have_an_output_per_copy() -> None:
    """The stage reads records: a duplicated input is two of them, each transformed once.
    The duplicate is the anomaly; a third output would still be a doubled one."""
    history: list[Event] = [
        *sent("i1", 0, topic="in"),
        read("i1", 0, topic="in", consumer="w", isolation="read_committed"),
        read("i1", 1, topic="in", consumer="w", isolation="read_committed"),
        *ctp_step("i1", "o1", "x1", 0, TxnCommitted),
        *ctp_step("i1", "o2", "x2", 2, TxnCommitted),
        read("o1", 0, topic="out", isolation="read_committed"),
        read("o2", 2, topic="out", isolation="read_committed"),
        final(4, topic="out", isolation="read_committed")]
    assert [a.kind.value for a in check(history).anomalies] == ["duplicate"]
    third = [*history[:-1], *ctp_step("i1", "o3", "x3", 4, TxnCommitted),
             read("o3", 4, topic="out", isolation="read_committed"),
             final(6, topic="out", isolation="read_committed")]
    kinds = sorted(a.kind.value for a in check(third).anomalies)
    assert kinds == ["ctp_doubled", "duplicate"]


def test_a_stage_owes_outputs_only_for_inputs_below_its_committed_offsets() -> None:
    """A stage that stopped early (its group behind the input) is judged on what it claims
    consumed: inputs below the group's acknowledged commit; an input above it is not missing,
    one below it is."""
    def commit(offset: int) -> OffsetsCommitted:
        return OffsetsCommitted(group="ctp", consumer="w", topic="in", partition=0,
                                offset=offset)

    inputs = [*sent("i0", 0, topic="in"), *sent("i1", 1, topic="in"),
              *sent("i2", 2, topic="in")]
    outputs = [*ctp_step("i0", "o0", "x0", 0, TxnCommitted), commit(1),
               read("o0", 0, topic="out", isolation="read_committed")]
    history = [*inputs, *outputs, final(2, topic="out", isolation="read_committed")]
    assert check(history).ok, check(history).render()
    claimed_more = [*inputs, *outputs, commit(2),
                    final(2, topic="out", isolation="read_committed")]
    a = only(check(claimed_more), "ctp_missing")
    assert "'i1'" in a.explanation
