"""Incremental cooperative assignment of connectors and tasks to workers (pure functions).

As Kafka Connect's IncrementalCooperativeAssignor: a worker keeps what it runs while others
join or leave; what a departed worker ran stays reserved for it for
`scheduled.rebalance.max.delay.ms` (it may come back: a restart, a long GC), then goes to the
others; new work goes to the least loaded workers; and only as much moves as it takes to
balance connectors, and tasks, within one of each other over the live workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

ConnectorId = str
TaskId = tuple[str, int]


@dataclass
class WorkerLoad:
    connectors: list[ConnectorId] = field(default_factory=list)
    tasks: list[TaskId] = field(default_factory=list)

    def to_json(self) -> dict[str, list[str]]:
        return {"connectors": sorted(self.connectors),
                "tasks": [f"{c}-{n}" for c, n in sorted(self.tasks)]}

    @staticmethod
    def from_json(value: Mapping[str, list[str]]) -> WorkerLoad:
        tasks = []
        for item in value.get("tasks", []):
            name, _, number = item.rpartition("-")
            tasks.append((name, int(number)))
        return WorkerLoad(list(value.get("connectors", [])), tasks)


Assignment = dict[str, WorkerLoad]


def assign(previous: Mapping[str, WorkerLoad], live: Iterable[str], reserved: Iterable[str],
           connectors: Iterable[ConnectorId], tasks: Iterable[TaskId]) -> Assignment:
    """The new assignment: `live` workers get work; `reserved` are departed workers still
    within the scheduled delay, keeping (not running) what they had; everything else of
    `previous` is dropped. Deterministic for the same inputs."""
    live = sorted(set(live))
    reserved = sorted(set(reserved) - set(live))
    wanted_connectors = set(connectors)
    wanted_tasks = set(tasks)
    out: Assignment = {w: WorkerLoad() for w in live + reserved}
    taken_c: set[ConnectorId] = set()
    taken_t: set[TaskId] = set()
    for worker in live + reserved:
        load = previous.get(worker)
        if load is None:
            continue
        for c in sorted(load.connectors):
            if c in wanted_connectors and c not in taken_c:
                out[worker].connectors.append(c)
                taken_c.add(c)
        for t in sorted(load.tasks):
            if t in wanted_tasks and t not in taken_t:
                out[worker].tasks.append(t)
                taken_t.add(t)
    if not live:
        return out
    _distribute(out, live, sorted(wanted_connectors - taken_c), "connectors")
    _distribute(out, live, sorted(wanted_tasks - taken_t), "tasks")
    _balance(out, live, "connectors")
    _balance(out, live, "tasks")
    for load in out.values():
        load.connectors.sort()
        load.tasks.sort()
    return out


def _items(load: WorkerLoad, kind: str) -> list[object]:
    items: list[object] = getattr(load, kind)
    return items


def _distribute(out: Assignment, live: list[str], new: Sequence[object], kind: str) -> None:
    for item in new:
        worker = min(live, key=lambda w: (len(_items(out[w], kind)),
                                          len(out[w].connectors) + len(out[w].tasks), w))
        _items(out[worker], kind).append(item)


def _balance(out: Assignment, live: list[str], kind: str) -> None:
    while True:
        most = max(live, key=lambda w: (len(_items(out[w], kind)), w))
        least = min(live, key=lambda w: (len(_items(out[w], kind)), w))
        if len(_items(out[most], kind)) - len(_items(out[least], kind)) <= 1:
            return
        items = _items(out[most], kind)
        # Move the one the least loaded worker has fewest of the same connector (spreading a
        # connector's tasks), the last in order among equals.
        owned = {_connector_of(i) for i in _items(out[least], kind)}
        choice = max(items, key=lambda i: (_connector_of(i) not in owned, str(i)))
        items.remove(choice)
        _items(out[least], kind).append(choice)


def _connector_of(item: object) -> str:
    return item[0] if isinstance(item, tuple) else str(item)


def moved(before: Mapping[str, WorkerLoad], after: Mapping[str, WorkerLoad]) -> int:
    """How many connectors and tasks changed worker (for tests and logs)."""
    where: dict[object, str] = {}
    for worker, load in before.items():
        for item in [*load.connectors, *load.tasks]:
            where[item] = worker
    count = 0
    for worker, load in after.items():
        for item in [*load.connectors, *load.tasks]:
            if item in where and where[item] != worker:
                count += 1
    return count


Item = ConnectorId | TaskId
# Statuses of something still running where they say (a FAILED, STOPPED or UNASSIGNED one
# produces nothing more and holds no uncommitted offsets).
RUNNING_STATES = frozenset({"RUNNING", "PAUSED", "RESTARTING"})


def defer_moves(new: Mapping[str, WorkerLoad], previous: Mapping[str, WorkerLoad],
                live: Iterable[str], running_on: Mapping[Item, str],
                expired: Callable[[Item], bool]) -> tuple[Assignment, set[Item]]:
    """Kafka's two rounds for a move (KIP-415: revoked in one assignment, assigned in the
    next): what `new` gives to a worker that did not have it in `previous`, while another
    live worker holds it (in `previous`) or still runs it (`running_on`, from the status
    records: that worker has not yet stopped it, written its last offsets and said
    UNASSIGNED), is left unassigned for now, unless `expired(item)` (the old worker did not
    confirm in time). Returns the assignment and what it deferred."""
    live_set = set(live)
    holder: dict[Item, str] = {}
    for worker, load in previous.items():
        if worker in live_set:
            holder.update(dict.fromkeys(load.connectors, worker))
            holder.update(dict.fromkeys(load.tasks, worker))
    out: Assignment = {}
    deferred: set[Item] = set()

    def held_elsewhere(item: Item, worker: str) -> bool:
        if holder.get(item) == worker:  # not a move: it stays where it is
            return False
        others = {holder.get(item), running_on.get(item)} - {None, worker}
        if others & live_set and not expired(item):
            deferred.add(item)
            return True
        return False

    for worker, load in new.items():
        out[worker] = WorkerLoad([c for c in load.connectors if not held_elsewhere(c, worker)],
                                 [t for t in load.tasks if not held_elsewhere(t, worker)])
    return out, deferred
