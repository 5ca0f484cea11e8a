"""A consumer-group member in its own process, for tests that SIGKILL it.

    python group_worker.py BOOTSTRAP TOPIC GROUP SESSION_TIMEOUT_MS

It subscribes to TOPIC in GROUP with confluent-kafka, and for each record commits offset + 1
synchronously and only then prints `partition offset value` (so every printed record is
committed).  After each rebalance callback it prints `assignment P P ...` (its whole current
assignment).  Every line is flushed at once.  It runs until it is killed.
"""

from __future__ import annotations

import sys

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition


def main(argv: list[str]) -> None:
    bootstrap, topic, group, session_ms = argv[1:5]
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "session.timeout.ms": int(session_ms),
        "heartbeat.interval.ms": max(100, int(session_ms) // 10), "fetch.wait.max.ms": 100,
        "socket.timeout.ms": 10000,
    })
    owned: set[int] = set()

    def on_assign(c: Consumer, partitions: list[TopicPartition]) -> None:
        owned.update(tp.partition for tp in partitions)
        print("assignment", *sorted(owned), flush=True)

    def on_revoke(c: Consumer, partitions: list[TopicPartition]) -> None:
        owned.difference_update(tp.partition for tp in partitions)
        print("assignment", *sorted(owned), flush=True)

    consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    print("started", flush=True)
    while True:
        msg = consumer.poll(0.1)
        if msg is None:
            continue
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(err)
        consumer.commit(message=msg, asynchronous=False)
        print(msg.partition(), msg.offset(), msg.value().decode(), flush=True)


if __name__ == "__main__":
    main(sys.argv)
