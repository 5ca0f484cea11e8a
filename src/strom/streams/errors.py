"""What happens to a record that fails: Kafka Streams' exception handlers and its dead-letter
queue (KIP-1034).

Three handlers, each chosen by Kafka's setting: "LogAndFail" (the default: processing stops
with a StreamsError naming the record), "LogAndContinue" (the record is logged and skipped,
and its offset is committed as if it had been processed) or a function returning True to
continue, False to fail.

- `default.deserialization.exception.handler` (Kafka 4's `deserialization.exception.handler`
  is read too): a source record its key or value serde cannot read. The function is called as
  `handler(error, topic, partition, offset)`.
- `processing.exception.handler` (KIP-1033): an exception raised while a source record goes
  through the processors (the DSL's functions, a Processor, a store's serde), called as
  `handler(error, topic, partition, offset)` with the source record's place. What the record
  had already done before the exception (records forwarded, stores updated) stays done.
  A punctuator's exception is not handled: it stops processing.
- `default.production.exception.handler` (or `production.exception.handler`): a sink record
  whose key or value its serde cannot write (KIP-399), or that the producer refuses or fails
  to write, called as `handler(error, topic, key, value)`: the key and value as objects when
  the sink could not serialize the record or hand it to the producer, as bytes (in a
  KafkaException) when the producer later reports that writing it failed. Such a report comes
  after the record was processed, and the producer fails every record of a batch the broker
  refused, so records batched with the bad one share its fate. Under exactly-once a failed
  write fails the transaction, and so the application, whatever the handler says; a failed
  write of a changelog or dead-letter-queue record always does.

The dead-letter queue: with `errors.dead.letter.queue.topic.name` set, a source record that
fails deserialization or processing, or one of whose results could not be serialized or
handed to the producer, is also written to that topic (which must exist), whatever the
handler then decides, as Kafka 4.2's built-in handlers do: its key, value, timestamp and
headers as read, plus the headers below (UTF-8 text), through the task's producer (in its
transaction under exactly-once). A record of a repartition topic is written as read from
there. Records the producer fails to write later do not go there.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from strom.streams.record import Headers

log = logging.getLogger(__name__)

HEADER_EXCEPTION: Final = "__streams.errors.exception"  # the exception's class
HEADER_MESSAGE: Final = "__streams.errors.message"
HEADER_STACKTRACE: Final = "__streams.errors.stacktrace"
HEADER_TOPIC: Final = "__streams.errors.topic"  # where the failed record was read
HEADER_PARTITION: Final = "__streams.errors.partition"
HEADER_OFFSET: Final = "__streams.errors.offset"

# (error, topic, partition, offset) of the source record -> True to skip it, False to fail
ProcessingHandler = Callable[[Exception, str, int, int], bool]
# (error, topic, key, value) of the sink record -> True to skip it, False to fail
ProductionHandler = Callable[[Exception, str, Any, Any], bool]


def fail_processing(error: Exception, topic: str, partition: int, offset: int) -> bool:
    return False


def continue_processing(error: Exception, topic: str, partition: int, offset: int) -> bool:
    log.warning("skipping the record at %s-%d@%d whose processing failed: %r", topic,
                partition, offset, error)
    return True


def fail_production(error: Exception, topic: str, key: Any, value: Any) -> bool:
    return False


def continue_production(error: Exception, topic: str, key: Any, value: Any) -> bool:
    log.warning("skipping a record to %s that could not be written: %r", topic, error)
    return True


@dataclass(frozen=True)
class ErrorHandling:
    """The processing and production handlers and the dead-letter queue of an application."""

    processing: ProcessingHandler = fail_processing
    production: ProductionHandler = fail_production
    dead_letter_queue: str | None = None


def exception_name(error: BaseException) -> str:
    kind = type(error)
    return kind.__qualname__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__qualname__}"


def dead_letter_headers(error: BaseException, topic: str, partition: int, offset: int
                        ) -> Headers:
    """The headers KIP-1034 adds to a dead-letter record (after the record's own)."""
    trace = "".join(traceback.format_exception(error))
    return ((HEADER_EXCEPTION, exception_name(error).encode()),
            (HEADER_MESSAGE, str(error).encode()),
            (HEADER_STACKTRACE, trace.encode()),
            (HEADER_TOPIC, topic.encode()),
            (HEADER_PARTITION, str(partition).encode()),
            (HEADER_OFFSET, str(offset).encode()))
