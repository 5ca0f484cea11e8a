"""The workload's consume-transform-produce stage (Kafka's exactly-once pattern, KIP-98 and
KIP-447): a read_committed member of the stage's group reads a batch of the input topic and,
in one transaction, writes one unique output value per input to the output topic and commits
the batch's input offsets with send_offsets_to_transaction.

Recorded: each input read (`RecordRead`), each output (`ProduceAttempted` in the transaction,
and `Transformed` input -> output), the transaction's end as far as it is known, and, once
the transaction committed, the input offsets it committed (`OffsetsCommitted`). An aborted
transaction rewinds the consumer to the group's committed offsets, so the batch is read and
transformed again into new outputs; the checker wants exactly one committed output per input.
"""

from __future__ import annotations

import contextlib
from typing import Final

from confluent_kafka import OFFSET_BEGINNING, KafkaException, Message, Producer, TopicPartition

from strom.testing.history import OffsetsCommitted, Transformed
from strom.testing.workload_outcomes import CallError, call_error
from strom.testing.workload_producers import CALL_TIMEOUT_S, TransactionalWorker
from strom.testing.workload_readers import GroupMember
from strom.testing.workload_worker import WorkloadContext

BATCH_MAX: Final = 50


class TransformWorker(TransactionalWorker):
    """Reads `in_topic` in `group`, writes to `out_topic` (input partition p goes to output
    partition p mod `out_partitions`)."""

    def __init__(self, ctx: WorkloadContext, slot: str, generation: int, *, in_topic: str,
                 out_topic: str, out_partitions: int, group: str, transactional_id: str,
                 seed: int, batch_max: int = BATCH_MAX) -> None:
        super().__init__(ctx, slot, generation, topic=out_topic, partitions=out_partitions,
                         seed=seed, transactional_id=transactional_id)
        self.member = GroupMember(self, topic=in_topic, group=group)
        self.batch_max = batch_max

    def run(self) -> None:
        producer = self.start_producer()
        if producer is None:
            return
        self.member.open()
        while self.running() and self.fatal is None and self.member.fatal is None:
            batch = self.member.poll(self.batch_max)
            if batch and not self.transform(producer, batch):
                return  # this instance is done; the supervisor starts another

    def transform(self, producer: Producer, batch: list[Message]) -> bool:
        """One transaction for `batch`; False if this instance cannot go on."""
        txn = self.begin(producer)
        if txn is None:
            return False
        offsets: dict[int, int] = {}
        try:
            for msg in batch:
                read = self.member.record_read(msg)
                output = self.next_value()
                self.send(output, read.partition % self.partitions, txn)
                self.record(Transformed(worker=self.name, txn=txn, input_value=read.value,
                                        output_value=output))
                offsets[read.partition] = read.offset + 1
            self.send_offsets(producer, offsets)
        except KafkaException as exc:
            if call_error(exc) is not CallError.ABORTABLE:
                return False  # its commit never requested: it can only abort
            return self.abort(producer, txn) and self.rewind()
        committed = self.commit(producer, txn)
        if committed:
            for partition, offset in offsets.items():
                self.record(OffsetsCommitted(group=self.member.group, consumer=self.name,
                                             topic=self.member.topic, partition=partition,
                                             offset=offset))
            return True
        return committed is not None and self.rewind()

    def send_offsets(self, producer: Producer, offsets: dict[int, int]) -> None:
        consumer = self.member.consumer
        assert consumer is not None
        positions = [TopicPartition(self.member.topic, p, o) for p, o in offsets.items()]
        error = self.settle("send_offsets_to_transaction",
                            lambda: producer.send_offsets_to_transaction(
                                positions, consumer.consumer_group_metadata(), CALL_TIMEOUT_S))
        if error is not None:
            raise error

    def rewind(self) -> bool:
        """Seeks every assigned input partition back to the group's committed offset; False
        if they cannot be fetched (a new instance starts from them anyway)."""
        consumer = self.member.consumer
        assert consumer is not None
        assignment = consumer.assignment()
        if not assignment:
            return True
        try:
            with self.busy("committed"):
                committed = consumer.committed(assignment, timeout=CALL_TIMEOUT_S)
        except KafkaException:
            return False
        for tp in committed:
            offset = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
            # One no longer assigned raises: its next owner starts from the committed offset.
            with contextlib.suppress(KafkaException):
                consumer.seek(TopicPartition(tp.topic, tp.partition, offset))
        return True

    def close(self) -> None:
        self.member.close()
        super().close()

