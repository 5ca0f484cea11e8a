"""OffsetForLeaderEpoch's end offsets over a partition's leader-epoch history, as Kafka's
LeaderEpochFileCache.endOffsetFor answers (broker/handlers/offset_for_leader_epoch.py)."""

from __future__ import annotations

from strom.broker.handlers.offset_for_leader_epoch import end_offset_for

# Epoch 0 from 0, epoch 1 from 40 (the lease moved), epoch 2 from 40 too (it moved again
# before anything was written: Kafka's cache keeps only the later one), epoch 4 from 90.
HISTORY = [(0, 0), (1, 40), (2, 40), (4, 90)]


def test_the_current_epoch_ends_at_the_log_end() -> None:
    assert end_offset_for(HISTORY, 4, 120, 4) == (4, 120)


def test_an_earlier_epoch_ends_where_the_next_began() -> None:
    assert end_offset_for(HISTORY, 4, 120, 0) == (0, 40)
    assert end_offset_for(HISTORY, 4, 120, 2) == (2, 90)


def test_an_epoch_without_records_answers_the_one_below_it() -> None:
    assert end_offset_for(HISTORY, 4, 120, 1) == (0, 40)  # epoch 1 left no records
    assert end_offset_for(HISTORY, 4, 120, 3) == (2, 90)  # epoch 3 never happened here


def test_unknown_epochs_are_undefined() -> None:
    assert end_offset_for(HISTORY, 4, 120, -1) == (-1, -1)
    assert end_offset_for(HISTORY, 4, 120, 5) == (-1, -1)


def test_below_the_earliest_epoch_ends_where_that_one_began() -> None:
    assert end_offset_for([(3, 25), (5, 60)], 5, 80, 1) == (1, 25)


def test_one_broker_has_one_epoch_from_the_log_start() -> None:
    assert end_offset_for([(0, 10)], 0, 50, 0) == (0, 50)
    assert end_offset_for([(0, 10)], 0, 50, -3) == (-3, 10)  # below the earliest


def test_a_consumer_never_sees_a_truncation_that_did_not_happen() -> None:
    """Whatever epoch a consumer fetched a record in, the end offset of that epoch is past
    the record: the log never shrinks when a lease moves."""
    log_end = 120
    for epoch, start in HISTORY:
        later = [s for e, s in HISTORY if e > epoch]
        records_end = later[0] if later else log_end
        for position in range(start, records_end + 1):
            _, end = end_offset_for(HISTORY, 4, log_end, epoch)
            assert end >= position
