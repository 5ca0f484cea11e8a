"""Faults on a LocalCluster, one at a time, each healed before the next (Jepsen's nemesis):

    schedule = random_schedule(seed=7, count=10, brokers=cluster.node_ids,
                               session_timeout_s=3.0, can_fail_over=cluster.can_fail_over)
    Nemesis(cluster, recorder).run(schedule)

A fault's start and its healing are recorded in the history as `Note`s ("nemesis: start ...",
"nemesis: healed ..."), so an anomaly's events can be lined up with the fault around them and
with the broker logs. The kinds:

| kind | what happens | healed by |
|---|---|---|
| broker_kill | SIGKILL of one broker | a restart after `duration_s` |
| broker_pause | SIGSTOP of one broker, past its session (lease) timeout | SIGCONT |
| broker_terminate | SIGTERM (a clean stop) | a restart after `duration_s` |
| database_partition | one broker's network to the database black-holed | heal |
| database_loss_requests | one-way loss: what a broker sends the database is lost | heal |
| database_loss_answers | one-way loss: what the database answers a broker is lost | heal |
| postgres_kill | SIGKILL of the PostgreSQL primary | a restart (crash recovery) |
| postgres_failover | primary SIGKILLed, standby promoted (PostgresPair, once) | the promotion |

After healing, the nemesis waits until every broker lists every broker again.
"""

from __future__ import annotations

import enum
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from strom.testing.cluster import LocalCluster
from strom.testing.history import Note
from strom.testing.history_jsonl import HistoryRecorder

HEAL_READY_TIMEOUT_S: Final = 90.0


class FaultKind(enum.StrEnum):
    BROKER_KILL = "broker_kill"
    BROKER_PAUSE = "broker_pause"
    BROKER_TERMINATE = "broker_terminate"
    DATABASE_PARTITION = "database_partition"
    DATABASE_LOSS_REQUESTS = "database_loss_requests"
    DATABASE_LOSS_ANSWERS = "database_loss_answers"
    POSTGRES_KILL = "postgres_kill"
    POSTGRES_FAILOVER = "postgres_failover"

    @property
    def on_broker(self) -> bool:
        return self not in (FaultKind.POSTGRES_KILL, FaultKind.POSTGRES_FAILOVER)


ALL_KINDS: Final = tuple(FaultKind)


@dataclass(frozen=True)
class Fault:
    """One fault: its kind, the broker it hits (None for the database's faults) and how long
    it lasts before it is healed."""

    kind: FaultKind
    node_id: int | None
    duration_s: float

    def __str__(self) -> str:
        where = f" broker {self.node_id}" if self.node_id is not None else ""
        return f"{self.kind.value}{where} for {self.duration_s:.1f} s"


def random_schedule(*, seed: int, count: int, brokers: Sequence[int], session_timeout_s: float,
                    can_fail_over: bool = False,
                    kinds: Sequence[FaultKind] = ALL_KINDS) -> list[Fault]:
    """`count` faults drawn with `seed`: kinds in turn from a shuffled cycle of `kinds` (so a
    short schedule still mixes them), brokers at random. Pauses and database partitions last
    past the session timeout (the broker's leases expire); the failover comes at most once,
    and only with `can_fail_over`."""
    rng = random.Random(seed)
    usable = [k for k in kinds if k is not FaultKind.POSTGRES_FAILOVER or can_fail_over]
    if not usable:
        raise ValueError("no fault kind to draw from")
    faults: list[Fault] = []
    cycle: list[FaultKind] = []
    failed_over = False
    while len(faults) < count:
        if not cycle:
            cycle = rng.sample(usable, len(usable))
        kind = cycle.pop()
        if kind is FaultKind.POSTGRES_FAILOVER:
            if failed_over:
                continue
            failed_over = True
        node = rng.choice(list(brokers)) if kind.on_broker else None
        faults.append(Fault(kind, node, _duration(rng, kind, session_timeout_s)))
    return faults


def _duration(rng: random.Random, kind: FaultKind, session_timeout_s: float) -> float:
    if kind in (FaultKind.BROKER_PAUSE, FaultKind.DATABASE_PARTITION):
        return round(session_timeout_s * rng.uniform(1.3, 2.0), 1)
    if kind is FaultKind.POSTGRES_FAILOVER:
        return 1.0  # from the primary's death to the promotion
    return round(rng.uniform(1.0, 3.0), 1)


class Nemesis:
    """Injects faults into `cluster`, one at a time, noting each in `recorder`."""

    def __init__(self, cluster: LocalCluster, recorder: HistoryRecorder, *,
                 gap_s: tuple[float, float] = (2.0, 4.0), seed: int = 0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.cluster = cluster
        self.recorder = recorder
        self.gap_s = gap_s
        self.rng = random.Random(seed)
        self.sleep = sleep
        self.injected: list[Fault] = []

    def counts(self) -> dict[str, int]:
        """Faults injected so far, by kind."""
        return dict(Counter(f.kind.value for f in self.injected))

    def run(self, faults: Iterable[Fault], *,
            done: Callable[[], bool] = lambda: False) -> list[Fault]:
        """Injects `faults` in order, a gap drawn from `gap_s` before each, until `done()`
        says enough; returns every fault injected so far."""
        for fault in faults:
            if done():
                break
            self.sleep(self.rng.uniform(*self.gap_s))
            self.inject(fault)
        return self.injected

    def inject(self, fault: Fault) -> None:
        """Starts `fault`, waits its duration, heals it, and waits for the cluster to be whole
        again (ClusterNotReady if it is not in time, with the brokers' log tails)."""
        started = time.monotonic()
        self.recorder.record(Note(text=f"nemesis: start {fault}"))
        self.injected.append(fault)
        self._apply(fault)
        self.recorder.record(Note(text=f"nemesis: healed {fault.kind.value} after "
                                       f"{time.monotonic() - started:.1f} s"))
        self.cluster.wait_ready(HEAL_READY_TIMEOUT_S)
        self.recorder.record(Note(text=f"nemesis: cluster whole again after {fault.kind.value}, "
                                       f"{time.monotonic() - started:.1f} s after its start"))

    def _apply(self, fault: Fault) -> None:
        c, node, hold = self.cluster, fault.node_id, fault.duration_s
        if fault.kind is FaultKind.POSTGRES_KILL:
            c.kill_database()
            self.sleep(hold)
            c.restart_database()
        elif fault.kind is FaultKind.POSTGRES_FAILOVER:
            c.fail_over(pause_s=hold)
        else:
            assert node is not None, f"{fault.kind} needs a broker"
            start, heal = self._broker_fault(fault.kind, node)
            start()
            self.sleep(hold)
            heal()

    def _broker_fault(self, kind: FaultKind, node: int
                      ) -> tuple[Callable[[], None], Callable[[], None]]:
        """What starts and what heals a fault on broker `node`."""
        c = self.cluster
        if kind is FaultKind.BROKER_KILL:
            return (lambda: c.kill(node)), (lambda: c.restart(node))
        if kind is FaultKind.BROKER_PAUSE:
            return (lambda: c.pause(node)), (lambda: c.resume(node))
        if kind is FaultKind.BROKER_TERMINATE:
            return (lambda: c.terminate_quietly(node)), (lambda: c.restart(node))
        if kind is FaultKind.DATABASE_PARTITION:
            return (lambda: c.partition_from_database(node)), (lambda: c.heal(node))
        if kind is FaultKind.DATABASE_LOSS_REQUESTS:
            return (lambda: c.drop_database_traffic(node, "to_upstream")), (lambda: c.heal(node))
        assert kind is FaultKind.DATABASE_LOSS_ANSWERS, kind
        return (lambda: c.drop_database_traffic(node, "to_client")), (lambda: c.heal(node))

