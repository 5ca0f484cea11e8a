"""What confluent-kafka's errors say about a write or a transaction, honestly three-valued.

A delivery report's error is a definite failure only when the broker refused the write as such
(a record too large, an invalid record, no permission): nothing of it was stored. Everything
else, a timeout above all, but also a lost connection, a purge at close, a fatal producer
error, says nothing about whether the broker stored it: the write's outcome is unknown. The
checker (history_check) then lets it be present once or not at all, which is right; calling
such a write failed would make every retry that did land a phantom read.

A transactional call's error is one of: retriable (call it again), abortable (abort and go
on), fatal (the producer instance is done; a new one with the same transactional.id fences it
and settles its open transaction).
"""

from __future__ import annotations

import enum
from typing import Final

from confluent_kafka import KafkaError, KafkaException

# Errors with which the broker refuses a produce request as a whole: nothing was written.
DEFINITE_FAILURES: Final = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_REQUIRED_ACKS,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
})


class DeliveryOutcome(enum.Enum):
    ACKNOWLEDGED = "acknowledged"
    FAILED = "failed"
    UNKNOWN = "unknown"


def delivery_outcome(error: KafkaError | None) -> DeliveryOutcome:
    """The outcome a delivery report with `error` (None: success) establishes."""
    if error is None:
        return DeliveryOutcome.ACKNOWLEDGED
    if error.code() in DEFINITE_FAILURES:
        return DeliveryOutcome.FAILED
    return DeliveryOutcome.UNKNOWN


class CallError(enum.Enum):
    RETRIABLE = "retriable"
    ABORTABLE = "abortable"
    FATAL = "fatal"


def kafka_error(exc: KafkaException) -> KafkaError:
    """The KafkaError a KafkaException carries (a bare message becomes an unknown error)."""
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return err
    return KafkaError(KafkaError.UNKNOWN, str(err))


def call_error(exc: KafkaException) -> CallError:
    """How to go on after a transactional API call raised `exc`. Fatal wins over the others;
    a retriable error that also requires an abort is abortable (the client's documented
    order: check fatal, then txn_requires_abort, then retriable)."""
    err = kafka_error(exc)
    if err.fatal():
        return CallError.FATAL
    if err.txn_requires_abort():
        return CallError.ABORTABLE
    if err.retriable():
        return CallError.RETRIABLE
    return CallError.FATAL


def describe_error(error: KafkaError | KafkaException | BaseException) -> str:
    """A short text for a history event's `error` field: the name, then the message."""
    if isinstance(error, KafkaException):
        error = kafka_error(error)
    if isinstance(error, KafkaError):
        return f"{error.name()}: {error.str()}"
    return f"{type(error).__name__}: {error}"
