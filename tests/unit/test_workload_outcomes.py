"""How the workload reads confluent-kafka's errors: only a broker's refusal of the request as
such is a failed write; a timeout, a lost connection, a purge, a storage error or a fatal
error leaves it unknown. Transactional calls are retried, aborted or given up as the client's
documentation orders (fatal, then abortable, then retriable). The pacer spaces calls evenly
and catches up, a bounded burst at most, after a stall."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from strom.testing.workload_outcomes import (
    CallError,
    DeliveryOutcome,
    call_error,
    delivery_outcome,
    describe_error,
)
from strom.testing.workload_worker import Pacer


@pytest.mark.parametrize(("code", "outcome"), [
    (KafkaError.MSG_SIZE_TOO_LARGE, DeliveryOutcome.FAILED),
    (KafkaError.INVALID_RECORD, DeliveryOutcome.FAILED),
    (KafkaError.TOPIC_AUTHORIZATION_FAILED, DeliveryOutcome.FAILED),
    (KafkaError._MSG_TIMED_OUT, DeliveryOutcome.UNKNOWN),
    (KafkaError._TRANSPORT, DeliveryOutcome.UNKNOWN),
    (KafkaError._PURGE_QUEUE, DeliveryOutcome.UNKNOWN),
    (KafkaError._PURGE_INFLIGHT, DeliveryOutcome.UNKNOWN),
    (KafkaError._FATAL, DeliveryOutcome.UNKNOWN),
    (KafkaError.KAFKA_STORAGE_ERROR, DeliveryOutcome.UNKNOWN),
    (KafkaError.NOT_LEADER_FOR_PARTITION, DeliveryOutcome.UNKNOWN),
])
def test_delivery_outcomes(code: int, outcome: DeliveryOutcome) -> None:
    assert delivery_outcome(KafkaError(code)) is outcome


def test_no_error_is_acknowledged() -> None:
    assert delivery_outcome(None) is DeliveryOutcome.ACKNOWLEDGED


@pytest.mark.parametrize(("flags", "kind"), [
    ({"fatal": True, "retriable": True, "txn_requires_abort": True}, CallError.FATAL),
    ({"retriable": True, "txn_requires_abort": True}, CallError.ABORTABLE),
    ({"txn_requires_abort": True}, CallError.ABORTABLE),
    ({"retriable": True}, CallError.RETRIABLE),
    ({}, CallError.FATAL),
])
def test_transactional_call_errors(flags: dict[str, bool], kind: CallError) -> None:
    exc = KafkaException(KafkaError(KafkaError._TIMED_OUT, "x", **flags))
    assert call_error(exc) is kind


def test_an_exception_without_a_kafka_error_is_fatal_and_described() -> None:
    exc = KafkaException("something broke")
    assert call_error(exc) is CallError.FATAL
    assert "something broke" in describe_error(exc)
    assert describe_error(KafkaError(KafkaError._MSG_TIMED_OUT)).startswith("_MSG_TIMED_OUT: ")
    assert describe_error(ValueError("v")) == "ValueError: v"


def test_pacer_spaces_calls_and_bounds_the_catch_up() -> None:
    pacer = Pacer(100.0, burst=5)
    delays = [pacer.delay_s() for _ in range(3)]
    assert delays[0] == 0.0
    assert 0.005 < delays[2] <= 0.02
    stalled = Pacer(1000.0, burst=5)
    stalled.delay_s()
    time.sleep(0.05)  # 50 calls late: only 5 go at once
    immediate = 0
    while stalled.delay_s() == 0.0:
        immediate += 1
    assert 4 <= immediate <= 7
    with pytest.raises(ValueError, match="positive"):
        Pacer(0)
