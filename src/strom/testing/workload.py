"""A threaded Kafka workload that records a history for the checker (docs/testing.md):

    with HistoryRecorder("history.jsonl") as recorder:
        workload = Workload(WorkloadConfig(name="soak-1"), cluster.bootstrap_servers, recorder)
        workload.start()
        ...                              # inject faults (nemesis)
        result = workload.finish()       # stop writers, drain, final reads
    report = check(recorder.events)

Three topics, named after the run: `NAME-main`, written by idempotent producers (unique values
round-robin over its partitions) and transactional producers (committing, and sometimes
aborting on purpose), read by a consumer group of read_committed members that commit their
offsets; `NAME-in`, written by one idempotent producer and read by the consume-transform-produce
stage, which writes `NAME-out` exactly once per input. Each client is a `Worker` in a slot; a
supervisor thread replaces a worker whose client died or is stuck in a call past
`stuck_after_s`, as a new instance with a new name in the history.

`finish()` stops the writers (flushing), waits for the transform stage to have committed every
input, stops the rest, and reads every partition from the start (read_uncommitted and
read_committed; read_committed only where the checker needs it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka.admin import AdminClient, NewTopic

from strom.testing.history import Isolation, Note
from strom.testing.history_jsonl import HistoryRecorder
from strom.testing.workload_drain import wait_drained
from strom.testing.workload_final_read import final_read
from strom.testing.workload_producers import IdempotentProducerWorker, TransactionalProducerWorker
from strom.testing.workload_readers import GroupReaderWorker
from strom.testing.workload_transform import TransformWorker
from strom.testing.workload_worker import Worker, WorkloadContext

SUPERVISE_EVERY_S: Final = 0.5
RESTART_BACKOFF_S: Final = 2.0
JOIN_TIMEOUT_S: Final = 45.0
TOPIC_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True)
class WorkloadConfig:
    """How many clients of each kind, and how fast. Rates are per client."""

    name: str
    partitions: int = 6
    idempotent_producers: int = 2
    idempotent_rate_per_s: float = 100.0
    transactional_producers: int = 1
    transaction_rate_per_s: float = 10.0
    readers: int = 2
    transformers: int = 1
    input_rate_per_s: float = 30.0
    seed: int = 0
    stuck_after_s: float = 45.0
    drain_timeout_s: float = 90.0
    final_read_timeout_s: float = 120.0  # for all the final reads together
    client_settings: dict[str, Any] = field(default_factory=dict)

    @property
    def topics(self) -> dict[str, str]:
        return {"main": f"{self.name}-main", "in": f"{self.name}-in", "out": f"{self.name}-out"}


@dataclass
class WorkloadResult:
    """What `finish()` found: whether the transform stage committed every input, the final
    reads' records, and what could not be completed (each a sentence)."""

    drained: bool
    final_records: int
    problems: list[str]
    counters: dict[str, int]


@dataclass
class _Slot:
    make: Callable[[int], Worker]
    role: str  # "writer" or "reader": writers stop first
    worker: Worker
    restarted_at: float = 0.0
    stopping: bool = False


class Workload:
    def __init__(self, config: WorkloadConfig, bootstrap_servers: str,
                 recorder: HistoryRecorder) -> None:
        self.config = config
        self.ctx = WorkloadContext(recorder, bootstrap_servers, config.client_settings)
        self.slots: dict[str, _Slot] = {}
        self.failures: list[str] = []  # exceptions that escaped a client's loop: bugs
        self._lock = threading.Lock()  # slot changes: the supervisor's and finish()'s
        self._finished = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def counters(self) -> dict[str, int]:
        return self.ctx.counters.snapshot()

    def note(self, text: str) -> None:
        self.ctx.recorder.record(Note(text=text))

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        """Creates the topics, starts every client and the supervisor."""
        self.create_topics()
        for slot, role, make in self._slot_makers():
            self.slots[slot] = _Slot(make, role, make(0))
        for s in self.slots.values():
            s.worker.start()
        self._supervisor = threading.Thread(target=self._supervise, name="workload-supervisor",
                                            daemon=True)
        self._supervisor.start()
        self.note(f"workload: started {len(self.slots)} clients")

    def create_topics(self) -> None:
        admin = AdminClient(self.ctx.client_config("workload-admin"))
        partitions = self.config.partitions
        futures = admin.create_topics(
            [NewTopic(t, num_partitions=partitions, replication_factor=1)
             for t in self.config.topics.values()], operation_timeout=TOPIC_TIMEOUT_S,
            request_timeout=TOPIC_TIMEOUT_S)
        for future in futures.values():
            future.result(timeout=TOPIC_TIMEOUT_S)
        deadline = time.monotonic() + TOPIC_TIMEOUT_S
        names = set(self.config.topics.values())
        while True:
            topics = admin.list_topics(timeout=10).topics
            if all(n in topics and topics[n].error is None
                   and len(topics[n].partitions) == partitions for n in names):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics {sorted(names)} not all listed with {partitions} "
                                   "partitions")
            time.sleep(0.1)

    def _slot_makers(self) -> list[tuple[str, str, Callable[[int], Worker]]]:
        c, ctx, t = self.config, self.ctx, self.config.topics
        makers: list[tuple[str, str, Callable[[int], Worker]]] = []
        for i in range(c.idempotent_producers):
            makers.append((f"idem{i}", "writer", _maker(
                IdempotentProducerWorker, ctx, f"idem{i}", topic=t["main"],
                partitions=c.partitions, seed=c.seed, rate_per_s=c.idempotent_rate_per_s)))
        for i in range(c.transactional_producers):
            makers.append((f"txn{i}", "writer", _maker(
                TransactionalProducerWorker, ctx, f"txn{i}", topic=t["main"],
                partitions=c.partitions, seed=c.seed, rate_per_s=c.transaction_rate_per_s,
                transactional_id=f"{c.name}-txn{i}")))
        if c.transformers:
            makers.append(("input", "writer", _maker(
                IdempotentProducerWorker, ctx, "input", topic=t["in"],
                partitions=c.partitions, seed=c.seed, rate_per_s=c.input_rate_per_s)))
        for i in range(c.transformers):
            makers.append((f"ctp{i}", "transform", _maker(
                TransformWorker, ctx, f"ctp{i}", in_topic=t["in"], out_topic=t["out"],
                out_partitions=c.partitions, group=f"{c.name}-ctp",
                transactional_id=f"{c.name}-ctp{i}", seed=c.seed)))
        for i in range(c.readers):
            makers.append((f"reader{i}", "reader", _maker(
                GroupReaderWorker, ctx, f"reader{i}", topic=t["main"],
                group=f"{c.name}-readers")))
        return makers

    # -- supervision -------------------------------------------------------------------------

    def _supervise(self) -> None:
        while not self._finished.wait(SUPERVISE_EVERY_S):
            for slot in list(self.slots.values()):
                with self._lock:
                    if not slot.stopping:
                        self._check(slot)

    def _check(self, slot: _Slot) -> None:
        worker = slot.worker
        stuck = worker.stuck()
        if stuck is not None and stuck[1] > self.config.stuck_after_s:
            worker.abandon()
        elif not worker.finished:
            return
        if time.monotonic() - slot.restarted_at < RESTART_BACKOFF_S:
            return
        why = "abandoned" if worker.abandoned else repr(worker.error or "its client failed")
        slot.worker = slot.make(worker.generation + 1)
        slot.restarted_at = time.monotonic()
        self.note(f"workload: {worker.name} ended ({why}); {slot.worker.name} replaces it")
        self.ctx.counters.add("clients_replaced")
        self._collect_failure(worker)
        slot.worker.start()

    # -- finish ----------------------------------------------------------------------------

    def finish(self) -> WorkloadResult:
        """Stops writers, waits for the transform stage to drain, stops the rest, and does the
        final reads (see the module docstring)."""
        problems: list[str] = []
        self.note("workload: stopping the writers")
        problems += self._stop_role("writer")
        drained = True
        if self.config.transformers:
            drained = wait_drained(self.ctx, self.config.topics["in"], self.config.partitions,
                                   f"{self.config.name}-ctp", self.config.drain_timeout_s)
            if not drained:
                problems.append(f"the transform stage did not commit every input in "
                                f"{self.config.drain_timeout_s:.0f} s")
        problems += self._stop_role("transform") + self._stop_role("reader")
        self._finished.set()
        if self._supervisor is not None:
            self._supervisor.join(JOIN_TIMEOUT_S)
        self.note("workload: final reads")
        records = 0
        deadline = time.monotonic() + self.config.final_read_timeout_s
        for topic, isolations in self._final_reads().items():
            for isolation in isolations:
                left_s = max(1.0, deadline - time.monotonic())
                try:
                    read = final_read(self.ctx, topic, self.config.partitions, isolation,
                                      left_s)
                except Exception as exc:  # a client error: that read is not judged
                    problems.append(f"final {isolation} read of {topic} failed: {exc!r}")
                    continue
                records += read.records
                problems += read.incomplete
        if self.failures:
            problems.append(f"{len(self.failures)} clients failed, the first: "
                            f"{self.failures[0]}")
        self.note(f"workload: done; {len(problems)} problems")
        return WorkloadResult(drained, records, problems, self.counters)

    def _final_reads(self) -> dict[str, tuple[Isolation, ...]]:
        t = self.config.topics
        both: tuple[Isolation, ...] = ("read_uncommitted", "read_committed")
        reads = {t["main"]: both}
        if self.config.transformers:
            reads[t["in"]] = ("read_uncommitted",)
            reads[t["out"]] = both
        return reads

    def _stop_role(self, role: str) -> list[str]:
        """Stops every slot of `role`; abandons a worker that does not end in time."""
        slots = [s for s in self.slots.values() if s.role == role]
        with self._lock:
            for s in slots:
                s.stopping = True
                s.worker.stop()
        problems = []
        deadline = time.monotonic() + JOIN_TIMEOUT_S  # they all stop at once
        for s in slots:
            finished = s.worker.join(max(0.0, deadline - time.monotonic()))
            self._collect_failure(s.worker)
            if not finished:
                stuck = s.worker.stuck()
                problems.append(f"{s.worker.name} did not stop in {JOIN_TIMEOUT_S:.0f} s "
                                f"(in {stuck[0] if stuck else 'no call'})")
                s.worker.abandon()
        return problems


    def _collect_failure(self, worker: Worker) -> None:
        failure = f"{worker.name}: {worker.error!r}"
        if worker.error is not None and failure not in self.failures:
            self.failures.append(failure)


def _maker(cls: Callable[..., Worker], ctx: WorkloadContext, slot: str,
           **kwargs: Any) -> Callable[[int], Worker]:
    def make(generation: int) -> Worker:
        return cls(ctx, slot, generation, **kwargs)

    return make
