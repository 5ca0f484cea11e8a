"""The record collector of a stream thread: what its tasks write (sink records, changelog
records) goes to one producer. Keys are partitioned as Java clients partition them
(murmur2, librdkafka's `murmur2_random`), so a Kafka Streams application and a strom one
agree on where a key lives. Under exactly-once the producer is transactional and every
write between two commits is one transaction.

Delivery reports keep the last offset written to each changelog partition (a store's
checkpoint) and the first error (raised at the next flush: with at-least-once the commit
that follows must not happen)."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from strom.streams.record import Headers

log = logging.getLogger(__name__)


class ProductionError(RuntimeError):
    """A record the producer could not write; processing stops (nothing is committed)."""


class ProducerCollector:
    def __init__(self, settings: dict[str, Any], *, transactional_id: str | None = None
                 ) -> None:
        conf = {"partitioner": "murmur2_random", "linger.ms": 5,
                "enable.idempotence": True, **settings}
        if transactional_id is not None:
            conf["transactional.id"] = transactional_id
        self.producer = Producer(conf)
        self.transactional = transactional_id is not None
        self.written: dict[tuple[str, int], int] = {}  # changelog (topic, partition) -> next
        self._error: KafkaError | None = None
        self.sent = 0

    def _delivered(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            if self._error is None:
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
