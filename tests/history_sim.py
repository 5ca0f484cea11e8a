"""A simulated Kafka that keeps every promise, driven by hypothesis: it records the history a
workload would (sends and their outcomes, transactions, polls, group commits,
consume-transform-produce, final reads), so tests can show the checker accepts every correct
history and finds anomalies planted in one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hypothesis import strategies as st

from strom.testing.history import (
    Event,
    FinalRead,
    Isolation,
    OffsetsCommitted,
    OffsetsReset,
    ProduceAcked,
    ProduceAttempted,
    ProduceFailed,
    ProduceUnknown,
    RecordRead,
    TopicPartition,
    Transformed,
    TxnAborted,
    TxnBegun,
    TxnCommitted,
    TxnCommitUnknown,
)

SendOutcome = Literal["acked", "unknown_written", "unknown_lost", "failed"]
TxnOutcome = Literal["commit", "abort", "unknown_committed", "unknown_aborted", "open"]
SEND_OUTCOMES: tuple[SendOutcome, ...] = ("acked", "unknown_written", "unknown_lost", "failed")
TXN_OUTCOMES: tuple[TxnOutcome, ...] = (
    "commit", "abort", "unknown_committed", "unknown_aborted", "open")
MARKER = None  # a transaction marker takes an offset that no consumer sees


@dataclass
class Entry:
    value: str
    txn: str | None


@dataclass
class SimKafka:
    events: list[Event] = field(default_factory=list)
    logs: dict[TopicPartition, list[Entry | None]] = field(default_factory=dict)
    txn_state: dict[str, Literal["open", "committed", "aborted"]] = field(default_factory=dict)
    durable: set[str] = field(default_factory=set)  # values that must be read (MUST)
    aborted: set[str] = field(default_factory=set)  # values of aborted or open transactions
    group_offsets: dict[tuple[str, TopicPartition], int] = field(default_factory=dict)
    counter: int = 0

    def new_value(self, producer: str) -> str:
        self.counter += 1
        return f"{producer}-{self.counter}"

    def log(self, tp: TopicPartition) -> list[Entry | None]:
        return self.logs.setdefault(tp, [])

    def send(self, producer: str, tp: TopicPartition, outcome: SendOutcome,
             txn: str | None = None) -> str:
        value = self.new_value(producer)
        self.events.append(ProduceAttempted(producer=producer, topic=tp.topic,
                                            partition=tp.partition, value=value, txn=txn))
        if outcome in ("acked", "unknown_written"):
            self.log(tp).append(Entry(value, txn))
        if outcome == "acked":
            offset = len(self.log(tp)) - 1
            self.events.append(ProduceAcked(producer=producer, value=value, topic=tp.topic,
                                            partition=tp.partition, offset=offset))
            if txn is None:
                self.durable.add(value)
        elif outcome == "failed":
            self.events.append(ProduceFailed(producer=producer, value=value, error="too large"))
        else:
            self.events.append(ProduceUnknown(producer=producer, value=value, error="timed out"))
        return value

    def transaction(self, producer: str, txn: str, sends: list[TopicPartition],
                    outcome: TxnOutcome) -> list[str]:
        self.events.append(TxnBegun(producer=producer, txn=txn))
        self.txn_state[txn] = "open"
        values = [self.send(producer, tp, "acked", txn) for tp in sends]
        if outcome != "open":
            self.end_transaction(txn, outcome in ("commit", "unknown_committed"))
        end = {"commit": TxnCommitted, "abort": TxnAborted, "open": None}.get(
            outcome, TxnCommitUnknown)
        if end is not None:
            self.events.append(end(producer=producer, txn=txn))
        if outcome == "commit":
            self.durable.update(values)
        if outcome in ("abort", "open"):
            self.aborted.update(values)
        return values

    def end_transaction(self, txn: str, commit: bool) -> None:
        self.txn_state[txn] = "committed" if commit else "aborted"
        for log in self.logs.values():
            if any(e is not None and e.txn == txn for e in log):
                log.append(MARKER)

    def readable(self, tp: TopicPartition, isolation: Isolation) -> list[tuple[int, str]]:
        """(offset, value) a consumer gets: read_committed stops at the first open transaction's
        record (the last stable offset) and skips aborted ones."""
        out: list[tuple[int, str]] = []
        for offset, entry in enumerate(self.log(tp)):
            if entry is None:
                continue
            state = self.txn_state.get(entry.txn, "committed") if entry.txn else "committed"
            if isolation == "read_committed" and state == "open":
                break
            if isolation == "read_uncommitted" or state == "committed":
                out.append((offset, entry.value))
        return out

    def read(self, consumer: str, tp: TopicPartition, isolation: Isolation,
             start: int = 0) -> list[str]:
        records = [(o, v) for o, v in self.readable(tp, isolation) if o >= start]
        for offset, value in records:
            self.events.append(RecordRead(consumer=consumer, topic=tp.topic,
                                          partition=tp.partition, offset=offset, value=value,
                                          isolation=isolation))
        return [v for _, v in records]

    def commit_offset(self, group: str, tp: TopicPartition, offset: int) -> None:
        self.group_offsets[group, tp] = offset
        self.events.append(OffsetsCommitted(group=group, consumer=f"{group}-c", topic=tp.topic,
                                            partition=tp.partition, offset=offset))

    def final_reads(self, isolations: list[Isolation]) -> None:
        # The coordinator aborts what dead producers left open before the final reads.
        for txn, state in list(self.txn_state.items()):
            if state == "open":
                self.end_transaction(txn, commit=False)
        for tp in sorted(self.logs):
            for isolation in isolations:
                consumer = f"final-{isolation}"
                self.read(consumer, tp, isolation)
                self.events.append(FinalRead(consumer=consumer, topic=tp.topic,
                                             partition=tp.partition,
                                             end_offset=len(self.log(tp)), isolation=isolation))


def _step(draw: st.DrawFn, sim: SimKafka, partitions: list[TopicPartition],
          producers: list[str]) -> None:
    action = draw(st.sampled_from(["send", "send", "txn", "read", "commit"]))
    tp = draw(st.sampled_from(partitions))
    producer = draw(st.sampled_from(producers))
    if action == "send":
        sim.send(producer, tp, draw(st.sampled_from(SEND_OUTCOMES)))
    elif action == "txn":
        sends = draw(st.lists(st.sampled_from(partitions), min_size=1, max_size=3))
        sim.transaction(producer, f"{producer}-tx{sim.counter}", sends,
                        draw(st.sampled_from(TXN_OUTCOMES)))
    elif action == "read":
        isolation = draw(st.sampled_from(["read_committed", "read_uncommitted"]))
        start = draw(st.integers(0, max(0, len(sim.log(tp)))))
        sim.read(draw(st.sampled_from(["c1", "c2"])), tp, isolation, start)
    else:
        previous = sim.group_offsets.get(("g", tp), 0)
        if draw(st.booleans()) and previous > 0:
            back = draw(st.integers(0, previous))
            sim.events.append(OffsetsReset(group="g", topic=tp.topic, partition=tp.partition,
                                           offset=back))
            sim.group_offsets["g", tp] = back
            previous = back
        sim.commit_offset("g", tp, previous + draw(st.integers(0, 3)))


def _consume_transform_produce(draw: st.DrawFn, sim: SimKafka) -> None:
    source, target = TopicPartition("in", 0), TopicPartition("out", 0)
    for _ in range(draw(st.integers(1, 4))):
        sim.send("src", source, draw(st.sampled_from(["acked", "acked", "unknown_written",
                                                      "unknown_lost"])))
    for offset, value in sim.readable(source, "read_committed"):
        sim.events.append(RecordRead(consumer="w", topic="in", partition=0, offset=offset,
                                     value=value, isolation="read_committed"))
        for attempt in range(3):
            outcome: TxnOutcome = "commit" if attempt == 2 else draw(st.sampled_from(
                ["commit", "abort", "unknown_committed", "unknown_aborted"]))
            txn = f"w-tx{sim.counter}"
            [output] = sim.transaction("w", txn, [target], outcome)
            sim.events.insert(len(sim.events) - 1, Transformed(
                worker="w", txn=txn, input_value=value, output_value=output))
            if outcome == "commit":  # a commit whose answer was lost is not recorded
                sim.commit_offset("ctp", source, offset + 1)
            if outcome in ("commit", "unknown_committed"):
                break


@st.composite
def histories(draw: st.DrawFn) -> SimKafka:
    """A correct history: random sends, transactions, reads, group commits, maybe a
    consume-transform-produce pipeline, then final reads of every partition."""
    sim = SimKafka()
    partitions = [TopicPartition("t", p) for p in range(draw(st.integers(1, 3)))]
    producers = [f"p{i}" for i in range(draw(st.integers(1, 3)))]
    for _ in range(draw(st.integers(0, 20))):
        _step(draw, sim, partitions, producers)
    if draw(st.booleans()):
        _consume_transform_produce(draw, sim)
    isolations: list[Isolation] = draw(st.sampled_from(
        [["read_committed"], ["read_uncommitted"], ["read_committed", "read_uncommitted"]]))
    sim.final_reads(isolations)
    return sim
