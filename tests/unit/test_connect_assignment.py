"""strom.connect.assignment: incremental cooperative assignment (balance within one, minimal
movement, a departed worker's share reserved until the scheduled delay expires)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from strom.connect.assignment import Assignment, WorkerLoad, assign, defer_moves, moved


def tasks(name: str, n: int) -> list[tuple[str, int]]:
    return [(name, i) for i in range(n)]


def counts(a: Assignment, workers: list[str]) -> tuple[list[int], list[int]]:
    return ([len(a[w].connectors) for w in workers], [len(a[w].tasks) for w in workers])


def everything(a: Assignment) -> tuple[list[str], list[tuple[str, int]]]:
    return (sorted(c for load in a.values() for c in load.connectors),
            sorted(t for load in a.values() for t in load.tasks))


def never(_item: object) -> bool:
    return False


def test_a_move_between_live_workers_takes_two_assignments() -> None:
    """KIP-415: the task leaves w1 in one assignment and reaches w2 only once w1 said it
    stopped it (its status no longer RUNNING there)."""
    before = assign({}, ["w1"], [], ["src"], tasks("src", 2))
    wanted = assign(before, ["w1", "w2"], [], ["src"], tasks("src", 2))
    assert moved(before, wanted) == 1
    running = {("src", 0): "w1", ("src", 1): "w1", "src": "w1"}
    first, deferred = defer_moves(wanted, before, ["w1", "w2"], running, never)
    (mover,) = deferred
    assert mover in before["w1"].tasks and mover not in first["w1"].tasks
    assert mover not in first["w2"].tasks  # nobody runs it in between
    # w1 stopped it but its UNASSIGNED status is not read yet: still deferred.
    again, deferred = defer_moves(assign(first, ["w1", "w2"], [], ["src"], tasks("src", 2)),
                                  first, ["w1", "w2"], running, never)
    assert deferred == {mover} and mover not in again["w2"].tasks
    # Its status says UNASSIGNED now (not in running): w2 gets it.
    del running[mover]
    final, deferred = defer_moves(assign(again, ["w1", "w2"], [], ["src"], tasks("src", 2)),
                                  again, ["w1", "w2"], running, never)
    assert deferred == set() and mover in final["w2"].tasks
    assert counts(final, ["w1", "w2"])[1] == [1, 1]


def test_a_departed_workers_task_moves_at_once_and_a_silent_one_after_expiry() -> None:
    before = assign({}, ["w1", "w2"], [], ["src"], tasks("src", 2))
    running = {t: w for w, load in before.items() for t in load.tasks}
    gone = assign(before, ["w1"], [], ["src"], tasks("src", 2))
    after, deferred = defer_moves(gone, before, ["w1"], running, never)
    assert deferred == set() and sorted(after["w1"].tasks) == tasks("src", 2)
    # A live worker that never confirms: moved once `expired` says so, and not deferred
    # again afterwards although its stale status still names the old worker.
    alone = assign({}, ["w1"], [], ["src"], tasks("src", 2))
    running = {t: "w1" for t in tasks("src", 2)}
    wanted = assign(alone, ["w1", "w2"], [], ["src"], tasks("src", 2))
    after, deferred = defer_moves(wanted, alone, ["w1", "w2"], running, lambda _item: True)
    assert deferred == set() and after == wanted and len(after["w2"].tasks) == 1
    later, deferred = defer_moves(after, after, ["w1", "w2"], running, never)
    assert deferred == set() and later == after


def test_first_assignment_spreads_a_connectors_tasks() -> None:
    a = assign({}, ["w1", "w2", "w3"], [], ["sink"], tasks("sink", 3))
    assert counts(a, ["w1", "w2", "w3"]) == ([1, 0, 0], [1, 1, 1])
    assert everything(a) == (["sink"], tasks("sink", 3))


def test_a_joining_worker_takes_only_what_balance_requires() -> None:
    before = assign({}, ["w1", "w2"], [], ["a", "b"], tasks("a", 4) + tasks("b", 2))
    after = assign(before, ["w1", "w2", "w3"], [], ["a", "b"], tasks("a", 4) + tasks("b", 2))
    assert counts(after, ["w1", "w2", "w3"])[1] == [2, 2, 2]
    # 6 tasks over 3: w3 takes 2 tasks; connectors 1/1/0 were already balanced.
    assert moved(before, after) == 2
    assert after["w3"].connectors == []
    for worker in ("w1", "w2"):
        assert set(after[worker].tasks) <= set(before[worker].tasks)


def test_a_departed_workers_share_is_reserved_then_reassigned() -> None:
    before = assign({}, ["w1", "w2", "w3"], [], ["a"], tasks("a", 6))
    gone = "w2"
    held = assign(before, ["w1", "w3"], [gone], ["a"], tasks("a", 6))
    assert held[gone].tasks == before[gone].tasks  # kept for it, nobody else runs them
    assert moved(before, held) == 0
    after = assign(held, ["w1", "w3"], [], ["a"], tasks("a", 6))
    assert gone not in after
    assert counts(after, ["w1", "w3"])[1] == [3, 3]
    assert everything(after) == (["a"], tasks("a", 6))
    for worker in ("w1", "w3"):  # the survivors kept theirs
        assert set(before[worker].tasks) <= set(after[worker].tasks)


def test_the_worker_coming_back_within_the_delay_gets_its_share_again() -> None:
    before = assign({}, ["w1", "w2"], [], ["a"], tasks("a", 4))
    held = assign(before, ["w1"], ["w2"], ["a"], tasks("a", 4))
    back = assign(held, ["w1", "w2"], [], ["a"], tasks("a", 4))
    assert moved(before, back) == 0


def test_deleted_connectors_and_tasks_drop_out() -> None:
    before = assign({}, ["w1", "w2"], [], ["a", "b"], tasks("a", 2) + tasks("b", 2))
    after = assign(before, ["w1", "w2"], [], ["a"], tasks("a", 2))
    assert everything(after) == (["a"], tasks("a", 2))


def test_no_live_worker_assigns_nothing_new() -> None:
    a = assign({}, [], [], ["a"], tasks("a", 2))
    assert a == {}


def test_json_round_trip_with_dashes_in_names() -> None:
    load = WorkerLoad(["my-conn"], [("my-conn", 10), ("x-1", 2)])
    assert WorkerLoad.from_json(load.to_json()) == WorkerLoad(["my-conn"],
                                                              [("my-conn", 10), ("x-1", 2)])


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.lists(st.integers(0, 8), min_size=1,
                                                       max_size=5), st.integers(0, 10**6))
def test_balanced_and_minimal_after_any_membership_change(n_before: int, n_after: int,
                                                          task_counts: list[int],
                                                          seed: int) -> None:
    rng = random.Random(seed)
    names = [f"c{i}" for i in range(len(task_counts))]
    all_tasks = [t for name, n in zip(names, task_counts, strict=True) for t in tasks(name, n)]
    pool = [f"w{i}" for i in range(12)]
    first = rng.sample(pool, n_before)
    before = assign({}, first, [], names, all_tasks)
    # Some leave, some join.
    stay = [w for w in first if rng.random() < 0.6] or first[:1]
    joining = rng.sample([w for w in pool if w not in first], max(0, n_after - len(stay)))
    live = stay + joining
    after = assign(before, live, [], names, all_tasks)
    c, t = counts(after, live)
    assert max(c) - min(c) <= 1 and max(t) - min(t) <= 1
    assert everything(after) == (sorted(names), sorted(all_tasks))
    # Minimal movement: a surviving worker loses only down to the new fair share's ceiling.
    for kind in ("connectors", "tasks"):
        total = len(names) if kind == "connectors" else len(all_tasks)
        ceiling = -(-total // len(live))
        for worker in stay:
            kept = set(getattr(before[worker], kind)) & set(getattr(after[worker], kind))
            assert len(kept) >= min(len(getattr(before[worker], kind)), ceiling - 1)
