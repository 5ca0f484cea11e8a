"""The nemesis's schedules and its bookkeeping, without a cluster: a seeded schedule is the
same every time and mixes every kind early, pauses and database partitions outlast the
session timeout, the failover comes at most once and only on a pair; injecting a fault
starts it, waits its duration, heals it, waits for the cluster, and notes each step."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from strom.testing.history import Note
from strom.testing.history_jsonl import HistoryRecorder
from strom.testing.nemesis import ALL_KINDS, Fault, FaultKind, Nemesis, random_schedule

BROKERS = [1, 2, 3]


def schedule(seed: int = 1, count: int = 40, can_fail_over: bool = False) -> list[Fault]:
    return random_schedule(seed=seed, count=count, brokers=BROKERS, session_timeout_s=3.0,
                           can_fail_over=can_fail_over)


def test_a_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    assert schedule(7) == schedule(7)
    assert schedule(7) != schedule(8)


def test_the_first_faults_cover_every_kind() -> None:
    kinds = {f.kind for f in schedule(3, count=len(ALL_KINDS), can_fail_over=True)}
    assert kinds == set(ALL_KINDS)


def test_failover_comes_once_and_only_on_a_pair() -> None:
    assert Counter(f.kind for f in schedule(can_fail_over=True))[FaultKind.POSTGRES_FAILOVER] == 1
    assert FaultKind.POSTGRES_FAILOVER not in {f.kind for f in schedule()}


def test_faults_hit_brokers_or_the_database_and_outlast_the_session_where_they_must() -> None:
    for fault in schedule(count=200, can_fail_over=True):
        if fault.kind.on_broker:
            assert fault.node_id in BROKERS
        else:
            assert fault.node_id is None
        if fault.kind in (FaultKind.BROKER_PAUSE, FaultKind.DATABASE_PARTITION):
            assert fault.duration_s > 3.0
        assert 0 < fault.duration_s <= 6.0


def test_kinds_can_be_restricted() -> None:
    only = [FaultKind.BROKER_KILL, FaultKind.POSTGRES_KILL]
    faults = random_schedule(seed=1, count=10, brokers=[1], session_timeout_s=1.0, kinds=only)
    assert {f.kind for f in faults} == set(only)
    with pytest.raises(ValueError, match="no fault kind"):
        random_schedule(seed=1, count=1, brokers=[1], session_timeout_s=1.0,
                        kinds=[FaultKind.POSTGRES_FAILOVER])


class FakeCluster:
    """Records the calls a nemesis makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, *args, *kwargs.values()))

        return call


@pytest.mark.parametrize(("kind", "start", "heal"), [
    (FaultKind.BROKER_KILL, ("kill", 2), ("restart", 2)),
    (FaultKind.BROKER_PAUSE, ("pause", 2), ("resume", 2)),
    (FaultKind.BROKER_TERMINATE, ("terminate_quietly", 2), ("restart", 2)),
    (FaultKind.DATABASE_PARTITION, ("partition_from_database", 2), ("heal", 2)),
    (FaultKind.DATABASE_LOSS_REQUESTS, ("drop_database_traffic", 2, "to_upstream"),
     ("heal", 2)),
    (FaultKind.DATABASE_LOSS_ANSWERS, ("drop_database_traffic", 2, "to_client"), ("heal", 2)),
])
def test_a_broker_fault_starts_waits_heals_and_waits_for_the_cluster(
        kind: FaultKind, start: tuple[Any, ...], heal: tuple[Any, ...]) -> None:
    cluster = FakeCluster()
    slept: list[float] = []
    with HistoryRecorder() as recorder:
        nemesis = Nemesis(cluster, recorder, sleep=slept.append)  # type: ignore[arg-type]
        nemesis.inject(Fault(kind, 2, 4.5))
        notes = [e.text for e in recorder.events if isinstance(e, Note)]
    assert cluster.calls[:2] == [start, heal]
    assert cluster.calls[2][0] == "wait_ready"
    assert slept == [4.5]
    assert notes[0] == f"nemesis: start {kind.value} broker 2 for 4.5 s"
    assert notes[1].startswith(f"nemesis: healed {kind.value}")
    assert notes[2].startswith(f"nemesis: cluster whole again after {kind.value}")
    assert nemesis.counts() == {kind.value: 1}


def test_database_faults() -> None:
    cluster = FakeCluster()
    with HistoryRecorder() as recorder:
        nemesis = Nemesis(cluster, recorder, sleep=lambda _s: None)  # type: ignore[arg-type]
        nemesis.inject(Fault(FaultKind.POSTGRES_KILL, None, 2.0))
        nemesis.inject(Fault(FaultKind.POSTGRES_FAILOVER, None, 1.0))
    names = [c[0] for c in cluster.calls]
    assert names == ["kill_database", "restart_database", "wait_ready", "fail_over",
                     "wait_ready"]
    assert cluster.calls[3] == ("fail_over", 1.0)


def test_run_stops_when_done_says_so_and_sleeps_a_gap_before_each_fault() -> None:
    cluster = FakeCluster()
    slept: list[float] = []
    with HistoryRecorder() as recorder:
        nemesis = Nemesis(cluster, recorder, gap_s=(1.0, 2.0),  # type: ignore[arg-type]
                          sleep=slept.append)
        injected = nemesis.run(schedule(count=10), done=lambda: len(nemesis.injected) >= 3)
    assert len(injected) == 3
    gaps = slept[::2]
    assert len(gaps) == 3 and all(1.0 <= g <= 2.0 for g in gaps)
