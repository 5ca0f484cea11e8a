"""The record collector of a stream thread: what its tasks write (sink records, changelog
records) goes to one producer. Keys are partitioned as Java clients partition them
(murmur2, librdkafka's `murmur2_random`), so a Kafka Streams application and a strom one
agree on where a key lives. Under exactly-once the producer is transactional and every
write between two commits is one transaction.

Delivery reports keep the last offset written to each changelog partition (a store's
checkpoint) and the first error, unless the production handler (`strom.streams.errors`) skips
the record (only under at-least-once, and never for changelog or dead-letter-queue records).
The error is raised at the next flush (with at-least-once the commit that follows must not
happen); under exactly-once the thread raises it when the transaction cannot commit."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from strom.streams.errors import ErrorHandling
from strom.streams.record import Headers

log = logging.getLogger(__name__)


class ProductionError(RuntimeError):
    """A record the producer could not write; processing stops (nothing is committed)."""


class ProducerCollector:
    def __init__(self, settings: dict[str, Any], *, transactional_id: str | None = None,
                 errors: ErrorHandling | None = None) -> None:
        conf = {"partitioner": "murmur2_random", "linger.ms": 5,
                "enable.idempotence": True, **settings}
        if transactional_id is not None:
            conf["transactional.id"] = transactional_id
            # Kafka Streams' default under exactly-once: a crashed instance's transaction
            # holds read_committed readers back at most this long.
            conf.setdefault("transaction.timeout.ms", 10_000)
        self.producer = Producer(conf)
        self.transactional = transactional_id is not None
        self.written: dict[tuple[str, int], int] = {}  # changelog (topic, partition) -> next
        self._error: KafkaError | None = None
        self.sent = 0
        self.errors = errors or ErrorHandling()
        self.skipped = 0  # records the production handler skipped

    def _skip(self, error: KafkaError, message: Any) -> bool:
        """Whether the production handler skips a record the producer could not write."""
        topic = message.topic()
        if self.transactional or error.fatal() or topic.endswith("-changelog") or \
                topic == self.errors.dead_letter_queue:
            return False
        try:
            skip = self.errors.production(KafkaException(error), topic, message.key(),
                                          message.value())
        except Exception:
            log.exception("the production exception handler failed")
            return False
        if skip:
            self.skipped += 1
        return skip

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            if self._error is None and not self._skip(error, message):
                self._error = error
            return
        topic = message.topic()
        if topic.endswith("-changelog"):
            key = (topic, message.partition())
            offset = message.offset() + 1
            if offset > self.written.get(key, 0):
                self.written[key] = offset

    def send(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int,
             headers: Headers, partition: int | None) -> None:
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": self._delivered}
        if timestamp >= 0:
            kwargs["timestamp"] = timestamp
        if partition is not None and partition >= 0:
            kwargs["partition"] = partition
        if headers:
            kwargs["headers"] = list(headers)
        while True:
            try:
                self.producer.produce(topic, **kwargs)
                break
            except BufferError:
                self.producer.poll(0.05)  # the queue is full: let deliveries drain
        self.sent += 1
        if self.sent % 1000 == 0:
            self.producer.poll(0)

    def failed_write(self) -> KafkaError | None:
        """The first error the producer reported for a record since the last flush (under
        exactly-once: since the transaction began)."""
        return self._error

    def flush(self, timeout_s: float) -> None:
        """Waits for every record sent; ProductionError for one that failed."""
        remaining = self.producer.flush(timeout_s)
        if self._error is not None:
            error, self._error = self._error, None
            raise ProductionError(f"a record could not be written: {error.str()}")
        if remaining:
            raise ProductionError(f"{remaining} records were not written within "
                                  f"{timeout_s:g} s")

    def begin(self) -> None:
        if self.transactional:
            self.producer.begin_transaction()

    def abort(self, timeout_s: float) -> None:
        if self.transactional:
            try:
                self.producer.abort_transaction(timeout_s)
            except KafkaException as exc:
                log.warning("aborting the transaction failed: %s", exc)
        self._error = None

    def close(self, timeout_s: float) -> None:
        self.producer.flush(timeout_s)
        close_client(self.producer)


def close_client(client: Any) -> None:
    """Closes a librdkafka client at once (newer confluent-kafka versions can), so that it
    stops connecting to the cluster instead of waiting for the garbage collector."""
    close = getattr(client, "close", None)
    if close is not None:
        close()
