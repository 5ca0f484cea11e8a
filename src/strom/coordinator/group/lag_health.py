"""Consumer-lag health: strom's evaluation of a group's committed offsets over a sliding window,
modeled on Burrow's (docs/operations.md, "Consumer-lag health", states the rules).

Pure: no clock and no I/O. Each partition a group commits keeps a window of its last commits
(the committed offset, when it was committed, and the partition's log end offset then); the
evaluation reads the window, the partition's log end offset now and the time now, and gives
the partition a status (OK, WARN, STOP, STALL, REWIND). A group's status is the worst of its
partitions': ERR if any is STOP, STALL or REWIND, else WARN if any is WARN, else OK.

The broker keeps a `LagHistory` fed by OffsetCommit (broker/group_runtime.py); `strom group
health` builds its windows by sampling any cluster from the client side.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise
from typing import Final

DEFAULT_WINDOW: Final = 10  # commits per partition (Burrow's `intervals`)
DEFAULT_MIN_DISTANCE_MS: Final = 1000  # closer commits replace the newest (Burrow's)


class PartitionStatus(StrEnum):
    OK = "OK"
    WARN = "WARN"
    STOP = "STOP"
    STALL = "STALL"
    REWIND = "REWIND"


class GroupStatus(StrEnum):
    OK = "OK"
    WARN = "WARN"
    ERR = "ERR"


GROUP_STATUSES: Final = tuple(GroupStatus)
ERROR_STATUSES: Final = frozenset({PartitionStatus.STOP, PartitionStatus.STALL,
                                   PartitionStatus.REWIND})


@dataclass(frozen=True, slots=True)
class Commit:
    """One commit of a partition's offset: the offset, when (ms), and the partition's log end
    offset at that time."""

    offset: int
    time_ms: int
    log_end: int

    @property
    def lag(self) -> int:
        return max(self.log_end - self.offset, 0)


@dataclass(frozen=True, slots=True)
class HealthRules:
    """`window`: how many commits a partition's window holds, and how many it needs before
    it is evaluated; `min_distance_ms`: a commit this close to the newest one replaces it."""

    window: int = DEFAULT_WINDOW
    min_distance_ms: int = DEFAULT_MIN_DISTANCE_MS

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError("a lag health window holds at least 2 commits")
        if self.min_distance_ms < 0:
            raise ValueError("lag health min distance must not be negative")


@dataclass(frozen=True, slots=True)
class PartitionHealth:
    topic: str
    partition: int
    status: PartitionStatus
    evaluated: bool  # False: no commit, a window not yet full, or no log end offset known
    commits: int  # commits in the window
    offset: int | None  # the newest committed offset
    lag: int | None  # log end offset now minus the newest committed offset
    last_commit_ms: int | None
    reason: str

    def to_json(self, now_ms: int) -> dict[str, object]:
        return {"topic": self.topic, "partition": self.partition, "status": str(self.status),
                "evaluated": self.evaluated, "commits": self.commits, "offset": self.offset,
                "lag": self.lag, "last_commit_age_ms": (
                    None if self.last_commit_ms is None else now_ms - self.last_commit_ms),
                "reason": self.reason}


@dataclass(frozen=True, slots=True)
class GroupHealth:
    group: str
    status: GroupStatus
    partitions: tuple[PartitionHealth, ...]

    @property
    def total_lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)

    def to_json(self, now_ms: int) -> dict[str, object]:
        return {"group": self.group, "status": str(self.status), "total_lag": self.total_lag,
                "partitions": [p.to_json(now_ms) for p in self.partitions]}


def record(window: deque[Commit], commit: Commit, rules: HealthRules) -> None:
    """Appends the commit to the partition's window (bounded by `rules.window`); a commit
    within `min_distance_ms` of the newest one replaces it."""
    if window and commit.time_ms - window[-1].time_ms < rules.min_distance_ms:
        window[-1] = commit
    else:
        window.append(commit)


def _rewound(commits: Sequence[Commit]) -> bool:
    """The offset went backwards somewhere in the window and the newest commit has not come
    back to where it was before."""
    highest = commits[0].offset
    for previous, current in pairwise(commits):
        if current.offset < previous.offset and commits[-1].offset < highest:
            return True
        highest = max(highest, current.offset)
    return False


def evaluate_partition(topic: str, partition: int, commits: Sequence[Commit],
                       log_end: int | None, now_ms: int, window: int) -> PartitionHealth:
    """The partition's status, by the rules of docs/operations.md, in their order."""
    if not commits:
        return PartitionHealth(topic, partition, PartitionStatus.OK, False, 0, None, None,
                               None, "no commit seen")
    newest = commits[-1]

    def health(status: PartitionStatus, reason: str, evaluated: bool = True,
               ) -> PartitionHealth:
        lag = None if log_end is None else max(log_end - newest.offset, 0)
        return PartitionHealth(topic, partition, status, evaluated, len(commits),
                               newest.offset, lag, newest.time_ms, reason)

    if log_end is None:
        return health(PartitionStatus.OK, "log end offset unknown (topic deleted or "
                      "partition not served)", evaluated=False)
    if len(commits) < window:
        return health(PartitionStatus.OK, f"{len(commits)} of {window} commits",
                      evaluated=False)
    status, reason = _rules(commits, log_end, now_ms)
    return health(status, reason)


def _rules(commits: Sequence[Commit], log_end: int, now_ms: int) -> tuple[PartitionStatus, str]:
    """Rules 3 to 9 of docs/operations.md, on a full window."""
    newest = commits[-1]
    if log_end - newest.offset <= 0:
        return PartitionStatus.OK, "no lag"
    if _rewound(commits):
        return PartitionStatus.REWIND, "the committed offset went backwards"
    if any(c.lag == 0 for c in commits):
        return PartitionStatus.OK, "lag was zero within the window"
    if now_ms - newest.time_ms > newest.time_ms - commits[0].time_ms:
        return PartitionStatus.STOP, "no commit for longer than the window spans"
    if all(c.offset == newest.offset for c in commits):
        return PartitionStatus.STALL, "the same offset committed over the window"
    if all(b.lag >= a.lag for a, b in pairwise(commits)):
        return PartitionStatus.WARN, "lag never went down over the window"
    return PartitionStatus.OK, "consuming"


def group_status(statuses: Iterable[PartitionStatus]) -> GroupStatus:
    """ERR if a partition is STOP, STALL or REWIND; else WARN if one is WARN; else OK."""
    worst = GroupStatus.OK
    for status in statuses:
        if status in ERROR_STATUSES:
            return GroupStatus.ERR
        if status is PartitionStatus.WARN:
            worst = GroupStatus.WARN
    return worst


def evaluate_group(group: str, windows: Mapping[tuple[str, int], Sequence[Commit]],
                   log_ends: Mapping[tuple[str, int], int], now_ms: int, window: int,
                   ) -> GroupHealth:
    """Every partition of the group with a window, by topic and partition."""
    partitions = tuple(
        evaluate_partition(topic, partition, commits, log_ends.get((topic, partition)),
                           now_ms, window)
        for (topic, partition), commits in sorted(windows.items()))
    return GroupHealth(group, group_status(p.status for p in partitions), partitions)


class LagHistory:
    """Each group's partitions' windows of commits, bounded: `rules.window` commits per
    partition, kept in memory by the broker coordinating the group."""

    def __init__(self, rules: HealthRules | None = None) -> None:
        self.rules = rules or HealthRules()
        self._groups: dict[str, dict[tuple[str, int], deque[Commit]]] = {}

    def record(self, group: str, topic: str, partition: int, commit: Commit) -> None:
        windows = self._groups.setdefault(group, {})
        window = windows.get((topic, partition))
        if window is None:
            window = windows[(topic, partition)] = deque(maxlen=self.rules.window)
        record(window, commit, self.rules)

    def windows(self, group: str) -> dict[tuple[str, int], tuple[Commit, ...]]:
        return {tp: tuple(w) for tp, w in self._groups.get(group, {}).items()}

    def groups(self) -> list[str]:
        return list(self._groups)

    def drop_group(self, group: str) -> None:
        self._groups.pop(group, None)

    def drop_partitions(self, group: str, partitions: Iterable[tuple[str, int]]) -> None:
        windows = self._groups.get(group)
        if windows is None:
            return
        for tp in partitions:
            windows.pop(tp, None)
        if not windows:
            del self._groups[group]

    def keep(self, group: str, partitions: Iterable[tuple[str, int]]) -> None:
        """Drops the group's windows of partitions it no longer has offsets for (deleted or
        expired)."""
        windows = self._groups.get(group)
        if windows is not None:
            self.drop_partitions(group, set(windows) - set(partitions))

    def evaluate(self, group: str, log_ends: Mapping[tuple[str, int], int], now_ms: int,
                 ) -> GroupHealth:
        return evaluate_group(group, self.windows(group), log_ends, now_ms, self.rules.window)
