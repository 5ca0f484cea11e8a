"""The workload's writers: idempotent producers writing unique values round-robin over a
topic's partitions at a steady rate, and transactional producers writing a few unique values
per transaction to random partitions, then committing or (by choice, sometimes) aborting.

Every value is recorded (`ProduceAttempted`) before it is handed to the client, so the
history's order is the send order; its delivery report becomes `ProduceAcked`, or
`ProduceFailed` / `ProduceUnknown` as workload_outcomes judges the error. A transaction's end is
recorded only as far as it is known: `TxnCommitted` / `TxnAborted` when the call returned,
`TxnCommitUnknown` when a commit was requested and no answer settled it; a transaction whose
commit was never requested gets no end (it can only abort).
"""

from __future__ import annotations

import random
import time
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from strom.testing.history import (
    Note,
    ProduceAcked,
    ProduceAttempted,
    ProduceFailed,
    ProduceUnknown,
    TxnAborted,
    TxnBegun,
    TxnCommitted,
    TxnCommitUnknown,
)
from strom.testing.workload_outcomes import (
    CallError,
    DeliveryOutcome,
    call_error,
    delivery_outcome,
    describe_error,
)
from strom.testing.workload_worker import Pacer, Worker, WorkloadContext

IN_FLIGHT_MAX: Final = 2000  # values handed to a producer and not reported yet
FLUSH_TIMEOUT_S: Final = 30.0
CALL_TIMEOUT_S: Final = 10.0  # one transactional API call
SETTLE_TIMEOUT_S: Final = 30.0  # retrying one transaction's commit or abort
# A transaction left open by a producer that died without a replacement is aborted this long
# after it began (librdkafka wants message.timeout.ms at most this).
TRANSACTION_TIMEOUT_MS: Final = 20_000
PRODUCER_SETTINGS: Final[dict[str, Any]] = {
    "enable.idempotence": True, "acks": "all", "linger.ms": 5,
    "message.timeout.ms": 30_000, "request.timeout.ms": 10_000,
}


class ProducerWorker(Worker):
    """What both writers share: the client, the delivery reports, the fatal-error flag, and
    flushing (then purging what is left, which leaves those values unknown) at the end."""

    def __init__(self, ctx: WorkloadContext, slot: str, generation: int, *, topic: str,
                 partitions: int, seed: int) -> None:
        super().__init__(ctx, slot, generation)
        self.topic = topic
        self.partitions = partitions
        self.rng = random.Random(f"{seed}-{self.name}")
        self.producer: Producer | None = None
        self.fatal: KafkaError | None = None
        self.sent = 0

    def new_producer(self, **settings: Any) -> Producer:
        self.producer = Producer(self.ctx.client_config(
            self.name, **{**PRODUCER_SETTINGS, **settings}, error_cb=self._on_error))
        return self.producer

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal() and self.fatal is None:
            self.fatal = err
            self.record(Note(text=f"workload: {self.name} fatal error {describe_error(err)}"))

    def next_value(self) -> str:
        value = f"{self.name}-{self.sent}"
        self.sent += 1
        return value

    def send(self, value: str, partition: int, txn: str | None = None) -> None:
        """Records the attempt and hands `value` to the client (waiting while its queue is
        full). Raises KafkaException if the client refuses it (then nothing was sent)."""
        producer = self.producer
        assert producer is not None
        while len(producer) >= IN_FLIGHT_MAX and self.fatal is None:
            with self.busy("poll"):
                producer.poll(0.05)
        self.record(ProduceAttempted(producer=self.name, topic=self.topic, partition=partition,
                                     value=value, txn=txn))
        while True:
            try:
                with self.busy("produce"):
                    producer.produce(self.topic, value=value.encode(), partition=partition,
                                     on_delivery=self._delivered)
                return
            except BufferError:
                with self.busy("poll"):
                    producer.poll(0.05)
            except KafkaException as exc:
                # Refused before it was queued: never sent, so it cannot be stored.
                self.record(ProduceFailed(producer=self.name, value=value,
                                          error=describe_error(exc)))
                raise

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        value = (msg.value() or b"").decode()
        outcome = delivery_outcome(err)
        partition, offset = msg.partition(), msg.offset()
        if outcome is DeliveryOutcome.ACKNOWLEDGED and (partition is None or offset is None):
            # librdkafka reports a message persisted without its offset when a later
            # message's acknowledgement implies it (idempotence): stored, but where is not
            # known, so the checker may not hold it to a position. Recorded as unknown.
            self.ctx.counters.add("acknowledged_without_offset")
            self.record(ProduceUnknown(producer=self.name, value=value,
                                       error="acknowledged without an offset"))
            return
        self.ctx.counters.add(outcome.value)
        if outcome is DeliveryOutcome.ACKNOWLEDGED:
            assert partition is not None and offset is not None
            self.record(ProduceAcked(producer=self.name, value=value, topic=self.topic,
                                     partition=partition, offset=offset))
        elif outcome is DeliveryOutcome.FAILED:
            assert err is not None
            self.record(ProduceFailed(producer=self.name, value=value,
                                      error=describe_error(err)))
        else:
            assert err is not None
            self.record(ProduceUnknown(producer=self.name, value=value,
                                       error=describe_error(err)))

    def close(self) -> None:
        producer, self.producer = self.producer, None
        if producer is None:
            return
        try:
            with self.busy("flush"):
                left = producer.flush(FLUSH_TIMEOUT_S)
            if left:
                with self.busy("purge"):
                    producer.purge()
                    producer.flush(5)
        except KafkaException as exc:
            # A transactional producer in a fatal state refuses even to flush: what it still
            # held gets no report, and stays unknown.
            self.record(Note(text=f"workload: {self.name} closed with {len(producer)} values "
                                  f"unreported: {describe_error(exc)}"))


class IdempotentProducerWorker(ProducerWorker):
    """acks=all, enable.idempotence; `rate_per_s` values a second, partition after partition."""

    def __init__(self, ctx: WorkloadContext, slot: str, generation: int, *, topic: str,
                 partitions: int, seed: int, rate_per_s: float) -> None:
        super().__init__(ctx, slot, generation, topic=topic, partitions=partitions, seed=seed)
        self.rate_per_s = rate_per_s

    def run(self) -> None:
        producer = self.new_producer()
        pacer = Pacer(self.rate_per_s)
        while self.running() and self.fatal is None:
            self.sleep(pacer.delay_s())
            if not self.running():
                break
            try:
                self.send(self.next_value(), self.sent % self.partitions)
            except KafkaException:
                return  # the client is unusable; the supervisor starts another
            with self.busy("poll"):
                producer.poll(0)


class TransactionalWorker(ProducerWorker):
    """A producer with a transactional.id (the slot's, so a replacement fences this instance
    and settles the transaction it left open): begin, commit and abort, each end recorded as
    far as it is known."""

    def __init__(self, ctx: WorkloadContext, slot: str, generation: int, *, topic: str,
                 partitions: int, seed: int, transactional_id: str) -> None:
        super().__init__(ctx, slot, generation, topic=topic, partitions=partitions, seed=seed)
        self.transactional_id = transactional_id
        self.transactions = 0
        self.settling: str | None = None  # the txn whose commit was requested, not settled

    def start_producer(self) -> Producer | None:
        """A new transactional producer, initialized; None if that failed."""
        producer = self.new_producer(**{"transactional.id": self.transactional_id,
                                        "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
                                        "message.timeout.ms": TRANSACTION_TIMEOUT_MS})
        if self.settle("init_transactions",
                       lambda: producer.init_transactions(CALL_TIMEOUT_S)) is not None:
            return None
        return producer

    def begin(self, producer: Producer) -> str | None:
        """Begins a transaction; its name, or None if the producer cannot."""
        txn = f"{self.name}-tx{self.transactions}"
        self.transactions += 1
        try:
            with self.busy("begin_transaction"):
                producer.begin_transaction()
        except KafkaException:
            return None
        self.record(TxnBegun(producer=self.name, txn=txn))
        return txn

    def commit(self, producer: Producer, txn: str) -> bool | None:
        """True: committed; False: aborted (an abortable error); None: unknown, or the
        producer instance cannot go on."""
        self.settling = txn
        error = self.settle("commit_transaction",
                            lambda: producer.commit_transaction(CALL_TIMEOUT_S))
        if error is not None and call_error(error) is CallError.ABORTABLE:
            return False if self.abort(producer, txn) else None
        if error is None:
            self.record(TxnCommitted(producer=self.name, txn=txn))
            self.ctx.counters.add("txn_committed")
        else:
            self.record(TxnCommitUnknown(producer=self.name, txn=txn,
                                         error=describe_error(error)))
            self.ctx.counters.add("txn_commit_unknown")
        self.settling = None
        return True if error is None else None

    def abort(self, producer: Producer, txn: str) -> bool:
        """True if the abort went through. A transaction whose commit was never requested
        needs no end recorded when it fails: it cannot have committed."""
        error = self.settle("abort_transaction",
                            lambda: producer.abort_transaction(CALL_TIMEOUT_S))
        if error is None:
            self.record(TxnAborted(producer=self.name, txn=txn))
            self.ctx.counters.add("txn_aborted")
        elif self.settling == txn:
            # Its commit was requested and neither the commit nor the abort settled it.
            self.record(TxnCommitUnknown(producer=self.name, txn=txn,
                                         error=describe_error(error)))
            self.ctx.counters.add("txn_commit_unknown")
        self.settling = None
        return error is None

    def settle(self, what: str, call: Any) -> KafkaException | None:
        """Calls `call` until it returns (None), fails other than retriably, or
        SETTLE_TIMEOUT_S has passed; returns the last error."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            try:
                with self.busy(what):
                    call()
                return None
            except KafkaException as exc:
                if call_error(exc) is not CallError.RETRIABLE or time.monotonic() > deadline:
                    return exc
                time.sleep(0.1)

    def on_abandon(self) -> None:
        super().on_abandon()
        txn = self.settling
        if txn is not None:
            stuck = self.stuck()
            self.record(TxnCommitUnknown(producer=self.name, txn=txn,
                                         error=f"stuck in {stuck[0] if stuck else 'a call'}"))


class TransactionalProducerWorker(TransactionalWorker):
    """`rate_per_s` transactions a second of 1..`size_max` values each, to random partitions;
    a fraction `abort_ratio` is aborted on purpose."""

    def __init__(self, ctx: WorkloadContext, slot: str, generation: int, *, topic: str,
                 partitions: int, seed: int, transactional_id: str, rate_per_s: float,
                 size_max: int = 5, abort_ratio: float = 0.2) -> None:
        super().__init__(ctx, slot, generation, topic=topic, partitions=partitions, seed=seed,
                         transactional_id=transactional_id)
        self.rate_per_s = rate_per_s
        self.size_max = size_max
        self.abort_ratio = abort_ratio

    def run(self) -> None:
        producer = self.start_producer()
        pacer = Pacer(self.rate_per_s)
        while producer is not None and self.running() and self.fatal is None:
            self.sleep(pacer.delay_s())
            if self.running() and not self.transaction(producer):
                return  # this instance is done; the supervisor starts another

    def transaction(self, producer: Producer) -> bool:
        """One transaction; False if the producer instance cannot go on."""
        txn = self.begin(producer)
        if txn is None:
            return False
        try:
            for _ in range(self.rng.randint(1, self.size_max)):
                self.send(self.next_value(), self.rng.randrange(self.partitions), txn)
        except KafkaException as exc:
            return call_error(exc) is CallError.ABORTABLE and self.abort(producer, txn)
        if self.rng.random() < self.abort_ratio:
            return self.abort(producer, txn)
        return self.commit(producer, txn) is not None
