"""Waiting for a consume-transform-produce stage to catch up: its group's committed offset of
every input partition at the partition's high watermark, i.e. every input was transformed in
a committed transaction. Asked with the group's id but without joining it (OffsetFetch only),
so the stage's members are not disturbed."""

from __future__ import annotations

import time
from typing import Final

from confluent_kafka import Consumer, KafkaException, TopicPartition

from strom.testing.history import Note
from strom.testing.workload_outcomes import describe_error
from strom.testing.workload_worker import WorkloadContext

ASK_TIMEOUT_S: Final = 10.0
ASK_EVERY_S: Final = 0.5


def wait_drained(ctx: WorkloadContext, topic: str, partitions: int, group: str,
                 timeout_s: float) -> bool:
    """True once `group` committed the end of every partition of `topic`; False after
    `timeout_s` (noted in the history with how far each partition got)."""
    consumer = Consumer(ctx.client_config(f"drain-{group}", **{"group.id": group,
                                                                "enable.auto.commit": False}))
    deadline = time.monotonic() + timeout_s
    behind: dict[int, tuple[int, int]] = {}
    try:
        while True:
            try:
                behind = _behind(consumer, topic, partitions)
            except KafkaException as exc:
                behind = {}
                unanswered = f"no answer ({describe_error(exc)})"
            else:
                unanswered = ""
            if not behind and not unanswered:
                ctx.recorder.record(Note(text=f"workload: group {group} committed all of "
                                              f"{topic}"))
                return True
            if time.monotonic() > deadline:
                ctx.recorder.record(Note(text=f"workload: group {group} behind on {topic} "
                                              f"(partition: committed, end): "
                                              f"{unanswered or behind}"))
                return False
            time.sleep(ASK_EVERY_S)
    finally:
        consumer.close()


def _behind(consumer: Consumer, topic: str, partitions: int) -> dict[int, tuple[int, int]]:
    """Partition -> (committed offset, high watermark) of the partitions not caught up."""
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    committed = {tp.partition: tp.offset
                 for tp in consumer.committed(tps, timeout=ASK_TIMEOUT_S)}
    behind = {}
    for tp in tps:
        _low, high = consumer.get_watermark_offsets(tp, timeout=ASK_TIMEOUT_S, cached=False)
        if high > 0 and committed.get(tp.partition, -1) < high:
            behind[tp.partition] = (committed.get(tp.partition, -1), int(high))
    return behind
