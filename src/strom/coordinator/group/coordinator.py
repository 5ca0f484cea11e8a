"""The classic consumer-group coordinator core: Kafka's GroupCoordinator without I/O.

Every call takes the request and `now_ms` and returns a `Step` (see `model.py` for how a shell
delivers one). Deadlines (sessions, rebalance timeouts, the initial rebalance delay, pending
syncs, offset retention) are timers that `tick(now_ms)` fires; `next_deadline_ms()` says when.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar, cast

from kio.schema.errors import ErrorCode

from strom.coordinator.group import offsets, rebalance
from strom.coordinator.group.context import RETENTION_KEY, Context, Timer
from strom.coordinator.group.group import GroupState
from strom.coordinator.group.join import Parked, handle_join
from strom.coordinator.group.membership import handle_heartbeat, handle_leave, handle_sync
from strom.coordinator.group.model import (
    CommitRequest,
    CommitResult,
    CommittedOffset,
    GroupConfig,
    GroupDescription,
    GroupListing,
    GroupLogRecord,
    HeartbeatRequest,
    JoinRequest,
    JoinResult,
    LeaveRequest,
    LeaveResult,
    PendingKey,
    Step,
    SyncRequest,
    SyncResult,
    TopicPartition,
)
from strom.coordinator.group.replay import replay_record

T = TypeVar("T")
R = TypeVar("R", JoinResult, SyncResult)

CLASSIC_GROUP_TYPE = "classic"


class GroupCoordinator:
    def __init__(self, config: GroupConfig) -> None:
        self._ctx = Context(config)
        self._loaded: set[str] = set()  # replayed groups whose sessions are not yet running

    # -- membership -----------------------------------------------------------------------

    def join(self, req: JoinRequest, now_ms: int) -> Step[JoinResult]:
        self._begin(now_ms)
        return self._parked_step("join", req.group_id, handle_join(self._ctx, req))

    def sync(self, req: SyncRequest, now_ms: int) -> Step[SyncResult]:
        self._begin(now_ms)
        return self._parked_step("sync", req.group_id, handle_sync(self._ctx, req))

    def heartbeat(self, req: HeartbeatRequest, now_ms: int) -> Step[int]:
        self._begin(now_ms)
        return self._step(handle_heartbeat(self._ctx, req))

    def leave(self, req: LeaveRequest, now_ms: int) -> Step[LeaveResult]:
        self._begin(now_ms)
        return self._step(handle_leave(self._ctx, req))

    # -- offsets --------------------------------------------------------------------------

    def commit_offsets(self, req: CommitRequest, now_ms: int) -> Step[CommitResult]:
        self._begin(now_ms)
        return self._step(offsets.commit_offsets(self._ctx, req))

    def fetch_offsets(self, group_id: str, partitions: Sequence[TopicPartition] | None,
                      ) -> tuple[int, dict[TopicPartition, CommittedOffset]]:
        """Committed offsets of `partitions` (None: all); partitions without one are absent."""
        return offsets.fetch_offsets(self._ctx, group_id, partitions)

    def delete_offsets(self, group_id: str, partitions: Sequence[TopicPartition], now_ms: int,
                       ) -> Step[tuple[int, tuple[tuple[str, int, int], ...]]]:
        self._begin(now_ms)
        return self._step(offsets.delete_offsets(self._ctx, group_id, partitions))

    # -- groups ---------------------------------------------------------------------------

    def describe(self, group_ids: Sequence[str]) -> list[GroupDescription]:
        """Unknown groups come back Dead with GROUP_ID_NOT_FOUND (DescribeGroups v6+; older
        versions answer NONE)."""
        descriptions = []
        for group_id in group_ids:
            group = self._ctx.groups.get(group_id)
            if group is None:
                descriptions.append(GroupDescription(group_id, ErrorCode.group_id_not_found,
                                                     GroupState.DEAD.value, "", "", ()))
                continue
            protocol = group.protocol_name if group.is_(GroupState.STABLE) else None
            descriptions.append(GroupDescription(
                group_id, ErrorCode.none, group.state.value, group.protocol_type or "",
                protocol or "", group.describe_members()))
        return descriptions

    def list_groups(self, states: Sequence[str] = (), types: Sequence[str] = (),
                    ) -> list[GroupListing]:
        """Groups filtered by state and type, both case-insensitive; all groups are classic."""
        if types and CLASSIC_GROUP_TYPE not in {t.lower() for t in types}:
            return []
        wanted = {s.lower() for s in states}
        return [GroupListing(g.group_id, g.protocol_type or "", g.state.value)
                for g in self._ctx.groups.values()
                if not wanted or g.state.value.lower() in wanted]

    def delete_groups(self, group_ids: Sequence[str], now_ms: int,
                      ) -> Step[list[tuple[str, int]]]:
        """One (group_id, error) per distinct id, in request order."""
        self._begin(now_ms)
        return self._step(offsets.delete_groups(self._ctx, group_ids))

    def partition_for(self, group_id: str) -> int:
        return self._ctx.partition_for(group_id)

    # -- time -----------------------------------------------------------------------------

    def tick(self, now_ms: int) -> Step[None]:
        ctx = self._ctx
        self._begin(now_ms)
        cutoff = ctx.timers.seq
        while (due := ctx.timers.pop_due(now_ms, cutoff)) is not None:
            _fire(ctx, due[1])
        return self._step(None)

    def next_deadline_ms(self) -> int | None:
        """When `tick` next has work; a time not after now means "tick now"."""
        if self._loaded:
            return 0
        return self._ctx.timers.next_deadline_ms()

    # -- startup --------------------------------------------------------------------------

    def replay(self, record: GroupLogRecord) -> None:
        """Applies one `__consumer_offsets` record, in log order, before serving requests."""
        group_id = replay_record(self._ctx, record)
        if group_id is not None:
            self._loaded.add(group_id)

    # -- internals ------------------------------------------------------------------------

    def _begin(self, now_ms: int) -> None:
        """Starts a call; the first one after replay starts the loaded members' sessions
        (Kafka's onGroupLoaded)."""
        ctx = self._ctx
        ctx.begin(now_ms)
        for group_id in sorted(self._loaded):
            group = ctx.groups.get(group_id)
            if group is None:
                continue
            for member in group.members.values():
                rebalance.schedule_session(ctx, group, member)
            if len(group.members) > ctx.config.max_group_size:  # the limit was lowered
                rebalance.prepare_rebalance(ctx, group)
        self._loaded.clear()

    def _step(self, result: T) -> Step[T]:
        ctx = self._ctx
        if ctx.groups and ctx.timers.get(RETENTION_KEY) is None:
            ctx.timers.schedule(RETENTION_KEY,
                                ctx.now_ms + ctx.config.offsets_retention_check_interval_ms,
                                Timer("retention"))
        return Step(result, None, tuple(ctx.completions), tuple(ctx.records))

    def _parked_step(self, kind: str, group_id: str, outcome: R | Parked) -> Step[R]:
        """The answer, if the call produced it; else the key its completion will carry."""
        if not isinstance(outcome, Parked):
            return self._step(outcome)
        step = self._step(None)
        completions = list(step.completions)
        key: PendingKey = (kind, group_id, outcome.member_id)
        for index in range(outcome.since, len(completions)):
            if completions[index].key == key:  # answered within this call
                answer = cast(R, completions.pop(index).result)
                return Step(answer, None, tuple(completions), step.records)
        return Step(None, key, step.completions, step.records)


def _fire(ctx: Context, timer: Timer) -> None:
    if timer.kind in ("session", "pending"):
        rebalance.on_member_timer(ctx, timer)
    elif timer.kind in ("join", "initial_join"):
        rebalance.on_join_timer(ctx, timer)
    elif timer.kind == "sync":
        rebalance.on_sync_timer(ctx, timer)
    else:
        offsets.expire_offsets(ctx)
