"""Helpers for the consumer-group integration tests: confluent-kafka group members driven from one
thread with their rebalance callbacks recorded, a settle loop that waits for a stable assignment,
a consumer-group worker in a subprocess (group_worker.py) for SIGKILL tests, and a `strom serve`
subprocess broker."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from tests.integration.broker_process import serve_process
from tests.integration.conftest import DEADLINE_S, Delivered, producer

# What every group test module starts its broker with: no initial rebalance delay (a new group's
# first generation forms at once) and a low minimum session timeout (tests use 1-6 s sessions).
GROUP_BROKER_SETTINGS: Mapping[str, str] = {
    "group.initial.rebalance.delay.ms": "0",
    "group.min.session.timeout.ms": "1000",
}

WORKER = Path(__file__).with_name("group_worker.py")


def group_conf(bootstrap: str, group: str, **extra: Any) -> dict[str, Any]:
    """confluent-kafka settings of a group member that commits only when told to."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 200, "fetch.wait.max.ms": 100, "socket.timeout.ms": 10000,
        "enable.partition.eof": False,
    }
    conf.update({k.replace("_", "."): v for k, v in extra.items()})
    return conf


def group_consumer(bootstrap: str, group: str, **extra: Any) -> Consumer:
    return Consumer(group_conf(bootstrap, group, **extra))


@dataclass(frozen=True)
class Consumed:
    member: str
    partition: int
    offset: int
    value: bytes | None


@dataclass
class Member:
    """One confluent-kafka group member; every callback and every record it consumed is kept.

    `step()` polls once and, for a record, appends it to the shared `log` and (with `commit`)
    commits its offset + 1 synchronously before returning, so a record is only ever counted once
    its commit was acknowledged.
    """

    name: str
    consumer: Consumer
    log: list[Consumed]
    commit: bool = True
    events: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)
    closed: bool = False

    @classmethod
    def subscribe(cls, name: str, bootstrap: str, group: str, topic: str, log: list[Consumed],
                  commit: bool = True, **extra: Any) -> Member:
        member = cls(name, group_consumer(bootstrap, group, **extra), log, commit)
        member.consumer.subscribe([topic], on_assign=member._on_assign,
                                  on_revoke=member._on_revoke, on_lost=member._on_lost)
        return member

    def _record(self, kind: str, partitions: Sequence[TopicPartition]) -> None:
        self.events.append((kind, tuple(sorted(tp.partition for tp in partitions))))

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._record("assign", partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._record("revoke", partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._record("lost", partitions)

    def step(self, timeout: float = 0.02) -> Message | None:
        msg = self.consumer.poll(timeout)
        if msg is None:
            return None
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return None
            raise KafkaException(err)
        if self.commit:
            self.consumer.commit(message=msg, asynchronous=False)
        self.log.append(Consumed(self.name, msg.partition(), msg.offset(), msg.value()))
        return msg

    def partitions(self) -> frozenset[int]:
        return frozenset(tp.partition for tp in self.consumer.assignment())

    def events_of(self, kind: str, since: int = 0) -> list[tuple[int, ...]]:
        return [parts for k, parts in self.events[since:] if k == kind]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.consumer.close()


def kip848_member(name: str, bootstrap: str, group: str, topic: str, log: list[Consumed],
                  assignor: str | None = None) -> Member:
    """A member on the new protocol (`group.protocol=consumer`): no session/heartbeat/
    assignment-strategy settings (they are forbidden with it)."""
    conf: dict[str, Any] = {
        "bootstrap.servers": bootstrap, "group.id": group, "group.protocol": "consumer",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100, "socket.timeout.ms": 10000,
    }
    if assignor is not None:
        conf["group.remote.assignor"] = assignor
    member = Member(name, Consumer(conf), log)
    member.consumer.subscribe([topic], on_assign=member._on_assign,
                              on_revoke=member._on_revoke, on_lost=member._on_lost)
    return member


def produce_spread(bootstrap: str, topic: str, count: int, start: int, partitions: int) -> None:
    """Values v{start}..v{start+count-1}, value i to partition i % `partitions`; all acked."""
    delivered = Delivered()
    prod = producer(bootstrap)
    for i in range(start, start + count):
        prod.produce(topic, value=f"v{i}".encode(), partition=i % partitions,
                     on_delivery=delivered)
    prod.flush(15)
    assert len(delivered.acked) == count and not delivered.failed


def close_all(members: Iterable[Member]) -> None:
    for member in members:
        with contextlib.suppress(Exception):  # teardown: the test already has its verdict
            member.close()


def spread_ok(assignments: Mapping[str, frozenset[int]], partitions: set[int]) -> bool:
    """Every member owns something, no partition has two owners, all are owned, and the sizes
    differ by at most one (what range, roundrobin and sticky give for one topic)."""
    sets = list(assignments.values())
    if not sets or any(not s for s in sets):
        return False
    if sum(len(s) for s in sets) != len(partitions) or set().union(*sets) != partitions:
        return False
    sizes = [len(s) for s in sets]
    return max(sizes) - min(sizes) <= 1


class Steady:
    """Called with a condition's value on every poll; True once it held `seconds` in a row."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.since: float | None = None

    def __call__(self, holds: bool) -> bool:
        if not holds:
            self.since = None
            return False
        if self.since is None:
            self.since = time.monotonic()
        return time.monotonic() - self.since >= self.seconds


def settle(members: Sequence[Member], partitions: Iterable[int], *,
           pump: Callable[[], None] | None = None, stable_s: float = 1.0,
           deadline_s: float = DEADLINE_S) -> dict[str, frozenset[int]]:
    """Polls every member (and `pump`, e.g. a producer) round-robin until their assignments
    spread `partitions` without overlap and stay so for `stable_s`; returns the assignments."""
    wanted = set(partitions)
    deadline = time.monotonic() + deadline_s
    steady = Steady(stable_s)
    last: dict[str, frozenset[int]] = {}
    while True:
        if pump is not None:
            pump()
        for member in members:
            member.step()
        now = {m.name: m.partitions() for m in members}
        if steady(spread_ok(now, wanted) and now == last):
            return now
        last = now
        assert time.monotonic() < deadline, (
            f"assignment never settled over {sorted(wanted)}: {now}; events: "
            f"{ {m.name: m.events for m in members} }")


def drain(members: Sequence[Member], done: Callable[[], bool], *, linger_s: float = 0.5,
          deadline_s: float = DEADLINE_S) -> None:
    """Polls every member until `done()`, then `linger_s` more (to catch duplicates)."""
    deadline = time.monotonic() + deadline_s
    while not done():
        for member in members:
            member.step()
        assert time.monotonic() < deadline, "records still missing after the deadline"
    until = time.monotonic() + linger_s
    while time.monotonic() < until:
        for member in members:
            member.step()


def offsets_by_partition(log: Iterable[Consumed]) -> dict[int, list[int]]:
    """Per partition, the offsets in the order the group consumed them."""
    out: dict[int, list[int]] = {}
    for record in log:
        out.setdefault(record.partition, []).append(record.offset)
    return out


class Worker:
    """group_worker.py in its own process; its stdout lines are collected by a reader thread."""

    def __init__(self, bootstrap: str, topic: str, group: str, session_ms: int,
                 log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER), bootstrap, topic, group, str(session_ms)],
                stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self._lines.append(line.rstrip("\n"))

    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def records(self) -> list[tuple[int, int, str]]:
        """(partition, offset, value) of every record the worker consumed and committed."""
        out = []
        for line in self.lines():
            parts = line.split(" ", 2)
            if parts[0].isdigit():
                out.append((int(parts[0]), int(parts[1]), parts[2]))
        return out

    def assignment(self) -> frozenset[int] | None:
        """The partitions of the worker's last `assignment` line (None before the first)."""
        for line in reversed(self.lines()):
            if line.startswith("assignment"):
                return frozenset(int(p) for p in line.split()[1:])
        return None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._reader.join(5)

    def stderr(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextmanager
def broker_process(data_dir: Path, log_path: Path, *settings: str,
                   listen: str = "127.0.0.1:0", storage: str | None = None,
                   ) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m strom serve` with the group settings and `settings` (see serve_process)."""
    group = [f"{name}={value}" for name, value in GROUP_BROKER_SETTINGS.items()]
    with serve_process(data_dir, log_path, *group, *settings, listen=listen,
                       storage=storage) as running:
        yield running
