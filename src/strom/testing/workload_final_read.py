"""The final reads that end a workload: once every writer stopped, a fresh consumer (no
group, assign() from the beginning) reads every partition of a topic to its end and records
each record (`RecordRead`), then `FinalRead` per partition: the checker then knows the
partition's whole content, so an acknowledged value missing from it is a lost write.

The end is the high watermark read before reading. A read_uncommitted reader stops at it; a
read_committed reader stops at the last stable offset, which equals the high watermark once
no transaction is open (a producer that died with one open is aborted by its replacement or by
the transaction timeout), so it waits for that, up to a deadline. A partition not read to its
end in time gets no `FinalRead` (it is not judged) and is reported.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Final

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from strom.testing.history import FinalRead, Isolation, Note, RecordRead
from strom.testing.workload_worker import WorkloadContext

READ_DEADLINE_S: Final = 90.0
WATERMARK_TIMEOUT_S: Final = 10.0


@dataclass
class _PartitionRead:
    end: int  # the high watermark to reach
    eof_at: int = -1  # where the last end-of-partition event was


@dataclass
class FinalReadResult:
    """Records read, and the partitions that could not be read to their end (why)."""

    records: int = 0
    incomplete: list[str] = field(default_factory=list)


def final_read(ctx: WorkloadContext, topic: str, partitions: int, isolation: Isolation,
               deadline_s: float = READ_DEADLINE_S) -> FinalReadResult:
    """Reads `topic`'s partitions from the start to their end as `isolation` (see above)."""
    reader = f"final-{isolation}-{uuid.uuid4().hex[:6]}"
    consumer = Consumer(ctx.client_config(reader, **{
        "group.id": reader, "enable.auto.commit": False, "enable.partition.eof": True,
        "isolation.level": isolation, "auto.offset.reset": "error", "fetch.wait.max.ms": 100}))
    result = FinalReadResult()
    deadline = time.monotonic() + deadline_s
    try:
        ends = {p: _high_watermark(consumer, topic, p, deadline) for p in range(partitions)}
        reads = {p: _PartitionRead(end) for p, end in ends.items() if end is not None}
        result.incomplete += [f"final {isolation} read of {topic}/{p}: no high watermark in "
                              f"{deadline_s:.0f} s" for p, end in ends.items() if end is None]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in reads])
        while reads and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None:
                result.records += _take(ctx, reader, isolation, msg, reads)
            for p in [p for p, r in reads.items() if r.eof_at >= r.end]:
                ctx.recorder.record(FinalRead(consumer=reader, topic=topic, partition=p,
                                              end_offset=reads.pop(p).eof_at,
                                              isolation=isolation))
        for p, r in sorted(reads.items()):
            why = (f"final {isolation} read of {topic}/{p} reached {r.eof_at} of {r.end} in "
                   f"{deadline_s:.0f} s")
            result.incomplete.append(why)
            ctx.recorder.record(Note(text=f"workload: {why}; not judged"))
    finally:
        consumer.close()
    return result


def _high_watermark(consumer: Consumer, topic: str, partition: int,
                    deadline: float) -> int | None:
    """The partition's high watermark, asked until `deadline` (a cluster recovering from a
    fault may not know the partition's leader for a while); None if never answered."""
    while True:
        try:
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=WATERMARK_TIMEOUT_S, cached=False)
            return int(high)
        except KafkaException:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.5)


def _take(ctx: WorkloadContext, reader: str, isolation: Isolation, msg: Message,
          reads: dict[int, _PartitionRead]) -> int:
    """Records one polled message or notes an end of partition; returns records taken."""
    partition, offset = msg.partition(), msg.offset()
    assert partition is not None and offset is not None
    read = reads.get(partition)
    if read is None:
        return 0
    err = msg.error()
    if err is not None:
        if err.code() == KafkaError._PARTITION_EOF:
            read.eof_at = offset
        return 0
    ctx.recorder.record(RecordRead(consumer=reader, topic=msg.topic() or "",
                                   partition=partition, offset=offset,
                                   value=(msg.value() or b"").decode(), isolation=isolation))
    return 1
