"""A consume-transform-produce worker with exactly-once semantics, in its own process, for tests
that SIGKILL it (or the broker under it).

    python eos_worker.py BOOTSTRAP IN_TOPIC OUT_TOPIC GROUP TRANSACTIONAL_ID BATCH PAUSE_MS
                         [NAME=VALUE ...]

It consumes IN_TOPIC in GROUP (read_committed, no auto commit) and, per batch of up to BATCH
records, runs one transaction of its transactional producer: for each input record it produces
`upper(value)|partition:offset` to the same partition of OUT_TOPIC, then commits the batch's
consumer offsets with send_offsets_to_transaction and commits the transaction. The
transactional id is fixed per worker, so a restarted worker fences its predecessor and aborts
the transaction the predecessor left open.

Abortable errors abort the transaction and rewind the consumer to the group's committed offsets
(the standard EOS pattern); retriable errors retry the same call; a fatal error (e.g. fenced by
a newer instance) exits with status 3, a call that hangs (see STUCK_S) with status 4. Between
the steps it sleeps PAUSE_MS, so a test can kill it with a transaction open. NAME=VALUE are
librdkafka settings for both clients; EOS_WORKER_DEBUG in the environment sets librdkafka's
`debug` (e.g. `eos,protocol`; the log goes to stderr). Progress lines on stdout, each flushed
at once:

    ready                                   init_transactions done, subscribed
    flushed TXN COUNT                       TXN's COUNT outputs are in the log, uncommitted
    offsets TXN                             TXN's consumer offsets were sent to the coordinator
    committed TXN COUNT TOTAL               TXN committed; TOTAL outputs committed by this process
    aborted TXN REASON                      TXN aborted; the consumer was rewound
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

FATAL_EXIT = 3
STUCK_EXIT = 4
# How long one retriable call is retried before the worker gives up (a broker restart takes
# a few seconds).
RETRY_FOR_S = 60.0
# A call of the transactional API that has not returned after this long is taken as hung:
# the process exits with STUCK_EXIT (a liveness check of a real deployment would restart it).
# librdkafka's send_offsets_to_transaction can block past its timeout when the group
# coordinator's broker handle was decommissioned by a re-bootstrap (all brokers were down):
# confluentinc/librdkafka#5511 and #5456.
STUCK_S = float(os.environ.get("EOS_WORKER_STUCK_S", "8"))


class Watchdog:
    """Exits the process when a call runs longer than STUCK_S."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._call: tuple[str, float] | None = None
        threading.Thread(target=self._watch, daemon=True).start()

    def start(self, what: str) -> None:
        with self._lock:
            self._call = (what, time.monotonic())

    def stop(self) -> None:
        with self._lock:
            self._call = None

    def _watch(self) -> None:
        while True:
            time.sleep(0.2)
            with self._lock:
                call = self._call
            if call is not None and time.monotonic() - call[1] > STUCK_S:
                say("stuck", call[0])
                os._exit(STUCK_EXIT)


WATCHDOG = Watchdog()


def say(*words: object) -> None:
    print(*words, flush=True)


def kafka_error(exc: KafkaException) -> KafkaError:
    err = exc.args[0]
    assert isinstance(err, KafkaError)
    return err


class Abort(Exception):
    """The transaction must be aborted (and the consumer rewound)."""


def retrying(what: str, call: Any, *args: Any) -> Any:
    """`call(*args)` until it succeeds; retriable errors are retried, abortable ones raise
    Abort, fatal ones (and anything else) exit the process with FATAL_EXIT."""
    deadline = time.monotonic() + RETRY_FOR_S
    while True:
        WATCHDOG.start(what)
        try:
            return call(*args)
        except KafkaException as exc:
            err = kafka_error(exc)
            if err.fatal():
                say("fatal", what, err.name(), err.str())
                sys.exit(FATAL_EXIT)
            if err.txn_requires_abort():
                raise Abort(f"{what}: {err.name()}") from exc
            if err.retriable() and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            say("fatal", what, err.name(), err.str())
            sys.exit(FATAL_EXIT)
        finally:
            WATCHDOG.stop()


def rewind(consumer: Consumer) -> None:
    """Seeks every assigned partition back to the group's committed offset."""
    assignment = consumer.assignment()
    if not assignment:
        return
    committed = retrying("committed", consumer.committed, assignment, 10)
    for tp in committed:
        offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        try:
            consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        except KafkaException as exc:
            # Not assigned any more (a rebalance in between): the next owner starts from the
            # committed offset anyway.
            say("seek-failed", tp.partition, kafka_error(exc).name())


def poll_batch(consumer: Consumer, batch: int) -> list[Message]:
    """Up to `batch` records (waits at most 100 ms); exits on a fatal consumer error."""
    messages: list[Message] = []
    for msg in consumer.consume(num_messages=batch, timeout=0.1):
        err = msg.error()
        if err is None:
            messages.append(msg)
        elif err.fatal():
            say("fatal", "consume", err.name(), err.str())
            sys.exit(FATAL_EXIT)
        else:
            say("consume-error", err.name())
    return messages


def transform(producer: Producer, out_topic: str, messages: list[Message]) -> dict[int, int]:
    """Produces one output per input to the same partition; returns the next input offset of
    each partition in the batch (what send_offsets_to_transaction commits)."""
    positions: dict[int, int] = {}
    for msg in messages:
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None
        out = (msg.value() or b"").upper() + f"|{partition}:{offset}".encode()
        while True:
            try:
                producer.produce(out_topic, value=out, partition=partition)
                break
            except BufferError:
                producer.poll(0.05)
        positions[partition] = offset + 1
    return positions


def main(argv: list[str]) -> None:
    bootstrap, in_topic, out_topic, group, txn_id = argv[1:6]
    batch = int(argv[6])
    pause_s = int(argv[7]) / 1000
    common: dict[str, Any] = {"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000,
                              "reconnect.backoff.max.ms": 500}
    if os.environ.get("EOS_WORKER_DEBUG"):
        common["debug"] = os.environ["EOS_WORKER_DEBUG"]  # librdkafka debug contexts
    common.update(setting.split("=", 1) for setting in argv[8:])  # type: ignore[misc]
    consumer = Consumer({
        **common, "group.id": group, "isolation.level": "read_committed",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "session.timeout.ms": 2000, "heartbeat.interval.ms": 200, "fetch.wait.max.ms": 100,
    })
    producer = Producer({
        **common, "transactional.id": txn_id, "transaction.timeout.ms": 20000,
        "linger.ms": 5, "message.timeout.ms": 20000,
    })
    retrying("init_transactions", producer.init_transactions, 30)
    consumer.subscribe([in_topic])
    say("ready")
    txn = 0
    total = 0
    while True:
        messages = poll_batch(consumer, batch)
        if not messages:
            continue
        txn += 1
        try:
            retrying("begin_transaction", producer.begin_transaction)
            positions = transform(producer, out_topic, messages)
            WATCHDOG.start("flush")
            producer.flush(30)
            WATCHDOG.stop()
            say("flushed", txn, len(messages))
            time.sleep(pause_s)
            offsets = [TopicPartition(in_topic, p, o) for p, o in sorted(positions.items())]
            retrying("send_offsets_to_transaction", producer.send_offsets_to_transaction,
                     offsets, consumer.consumer_group_metadata(), 30)
            say("offsets", txn)
            time.sleep(pause_s)
            retrying("commit_transaction", producer.commit_transaction, 30)
        except Abort as abort:
            retrying("abort_transaction", producer.abort_transaction, 30)
            rewind(consumer)
            say("aborted", txn, str(abort).replace(" ", "_"))
            continue
        total += len(messages)
        say("committed", txn, len(messages), total)


if __name__ == "__main__":
    main(sys.argv)
