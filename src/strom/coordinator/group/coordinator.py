"""The classic consumer-group coordinator core: Kafka's GroupCoordinator without I/O.

Every call takes the request and `now_ms` and returns a `Step` (see `model.py` for how a shell
delivers one). Deadlines (sessions, rebalance timeouts, the initial rebalance delay, pending
syncs, offset retention) are timers that `tick(now_ms)` fires; `next_deadline_ms()` says when.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TypeVar, cast

from kio.schema.errors import ErrorCode

from strom.coordinator.group import offsets, rebalance, txn_offsets
from strom.coordinator.group.consumer_group import ConsumerGroup
from strom.coordinator.group.consumer_heartbeat import ConsumerGroups
from strom.coordinator.group.context import RETENTION_KEY, Context, Timer
from strom.coordinator.group.group import GroupState
from strom.coordinator.group.join import Parked, handle_join
from strom.coordinator.group.membership import handle_heartbeat, handle_leave, handle_sync
from strom.coordinator.group.model import (
    CommitRequest,
    CommitResult,
    CommittedOffset,
    ConsumerGroupDescription,
    ConsumerHeartbeatRequest,
    ConsumerHeartbeatResult,
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
    TxnCommitRequest,
    join_error,
)
from strom.coordinator.group.replay import load_consumer_group, replay_record

T = TypeVar("T")
R = TypeVar("R", JoinResult, SyncResult)

CLASSIC_GROUP_TYPE = "classic"
CONSUMER_GROUP_TYPE = "consumer"


class GroupCoordinator:
    def __init__(self, config: GroupConfig) -> None:
        self._ctx = Context(config)
        self._loaded: set[str] = set()  # replayed groups whose sessions are not yet running
        # KIP-848 groups; their committed offsets live in an Empty classic group of the same id
        self._consumer = ConsumerGroups(config, self._emit_consumer_record)

    # -- membership -----------------------------------------------------------------------

    def join(self, req: JoinRequest, now_ms: int) -> Step[JoinResult]:
        self._begin(now_ms)
        consumer = self._consumer.groups.get(req.group_id)
        if consumer is not None:  # group.consumer.migration.policy=disabled
            if consumer.members:
                return self._step(join_error(req.member_id,
                                             ErrorCode.inconsistent_group_protocol))
            self._consumer.drop(req.group_id)  # an Empty consumer group becomes classic
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
        consumer = self._consumer.groups.get(req.group_id)
        if consumer is not None:
            error = _validate_member_epoch(consumer, req.member_id, req.generation_id)
            if error is not None:
                return self._step(offsets.reject_all(req.offsets, error))
            # Valid: stored as a simple commit into the offsets-holding classic group.
            req = replace(req, generation_id=-1, member_id="", group_instance_id=None)
        return self._step(offsets.commit_offsets(self._ctx, req))

    def txn_commit_offsets(self, req: TxnCommitRequest, now_ms: int) -> Step[CommitResult]:
        """TxnOffsetCommit, once the group's partition is in the producer's transaction: the
        offsets are written in its transactional batch and stay pending until its marker."""
        self._begin(now_ms)
        consumer = self._consumer.groups.get(req.group_id)
        if consumer is not None:
            error = _validate_member_epoch(consumer, req.member_id, req.generation_id)
            if error == ErrorCode.stale_member_epoch:  # not a TxnOffsetCommit error
                error = ErrorCode.illegal_generation
            if error is not None:
                return self._step(offsets.reject_all(req.offsets, error))
            req = replace(req, generation_id=-1, member_id="", group_instance_id=None)
        return self._step(txn_offsets.commit_txn_offsets(self._ctx, req))

    def complete_txn(self, partition: int, producer_id: int, commit: bool, now_ms: int,
                     ) -> Step[list[tuple[str, str, int, int]]]:
        """The producer's COMMIT or ABORT marker is in `__consumer_offsets` partition
        `partition`: its pending offsets there become committed or go away. The result: the
        (group, topic, partition, offset) committed."""
        self._begin(now_ms)
        applied: list[tuple[str, str, int, int]] = []
        txn_offsets.complete_txn(self._ctx, partition, producer_id, commit, applied)
        return self._step(applied)

    def unstable_offsets(self, group_id: str) -> set[TopicPartition]:
        """The group's partitions with offsets of an open transaction."""
        return txn_offsets.unstable_partitions(self._ctx, group_id)

    def validate_offset_fetch(self, group_id: str, member_id: str | None,
                              member_epoch: int) -> int | None:
        """OffsetFetch v9+ of a KIP-848 member: UNKNOWN_MEMBER_ID / STALE_MEMBER_EPOCH."""
        consumer = self._consumer.groups.get(group_id)
        if consumer is None or (member_epoch < 0 and not member_id):
            return None
        return _validate_member_epoch(consumer, member_id or "", member_epoch)

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
            if group_id in self._consumer.groups:  # Kafka: "Group X is not a classic group."
                group = None
            if group is None:
                descriptions.append(GroupDescription(group_id, ErrorCode.group_id_not_found,
                                                     GroupState.DEAD.value, "", "", ()))
                continue
            protocol = group.protocol_name if group.is_(GroupState.STABLE) else None
            descriptions.append(GroupDescription(
                group_id, ErrorCode.none, group.state.value, group.protocol_type or "",
                protocol or "", group.describe_members()))
        return descriptions

    def rebalances(self, group_id: str) -> int:
        """Generations (classic) and group epochs (KIP-848) the group began while this core
        served it, for the metrics."""
        classic = self._ctx.groups.get(group_id)
        consumer = self._consumer.groups.get(group_id)
        return ((0 if classic is None else classic.rebalances)
                + (0 if consumer is None else consumer.rebalances))

    def list_groups(self, states: Sequence[str] = (), types: Sequence[str] = (),
                    ) -> list[GroupListing]:
        """Groups filtered by state and type, both case-insensitive."""
        kinds = {t.lower() for t in types} or {CLASSIC_GROUP_TYPE, CONSUMER_GROUP_TYPE}
        wanted = {s.lower() for s in states}
        listings = []
        if CLASSIC_GROUP_TYPE in kinds:
            listings = [GroupListing(g.group_id, g.protocol_type or "", g.state.value)
                        for g in self._ctx.groups.values()
                        if g.group_id not in self._consumer.groups
                        and (not wanted or g.state.value.lower() in wanted)]
        if CONSUMER_GROUP_TYPE in kinds:
            listings += [GroupListing(g.group_id, CONSUMER_GROUP_TYPE, g.state().value,
                                      CONSUMER_GROUP_TYPE)
                         for g in self._consumer.groups.values()
                         if not wanted or g.state().value.lower() in wanted]
        return listings

    def delete_groups(self, group_ids: Sequence[str], now_ms: int,
                      ) -> Step[list[tuple[str, int]]]:
        """One (group_id, error) per distinct id, in request order."""
        self._begin(now_ms)
        consumer_errors: dict[str, int] = {}
        for group_id in dict.fromkeys(group_ids):
            consumer = self._consumer.groups.get(group_id)
            if consumer is None:
                continue
            if consumer.members:
                consumer_errors[group_id] = ErrorCode.non_empty_group
                continue
            self._consumer.drop(group_id)
            consumer_errors[group_id] = ErrorCode.none
        classic = [g for g in group_ids if consumer_errors.get(g, ErrorCode.none)
                   == ErrorCode.none]
        results = dict(offsets.delete_groups(self._ctx, classic))
        return self._step([(g, consumer_errors[g] if g in consumer_errors else results[g])
                           for g in dict.fromkeys(group_ids)])

    # -- KIP-848 consumer groups ----------------------------------------------------------

    def consumer_heartbeat(self, req: ConsumerHeartbeatRequest, now_ms: int,
                           ) -> Step[ConsumerHeartbeatResult]:
        """ConsumerGroupHeartbeat; group.consumer.migration.policy=disabled: a classic group
        with members is not converted, an Empty one is."""
        self._begin(now_ms)
        classic = self._ctx.groups.get(req.group_id)
        if (classic is not None and not classic.is_(GroupState.EMPTY)
                and req.group_id not in self._consumer.groups):
            return self._step(ConsumerHeartbeatResult(
                ErrorCode.group_id_not_found, f"Group {req.group_id} is not a consumer group.",
                None, 0, 0))
        return self._step(self._consumer.heartbeat(req, now_ms))

    def consumer_describe(self, group_ids: Sequence[str]) -> list[ConsumerGroupDescription]:
        out = []
        for group_id in group_ids:
            group = self._consumer.groups.get(group_id)
            if group is None:
                message = (f"Group {group_id} is not a consumer group."
                           if group_id in self._ctx.groups else
                           f"Group {group_id} not found.")
                out.append(ConsumerGroupDescription(group_id, ErrorCode.group_id_not_found,
                                                    message, "Dead", -1, -1, "", ()))
                continue
            out.append(ConsumerGroupDescription(
                group_id, ErrorCode.none, None, group.state().value, group.group_epoch,
                group.assignment_epoch, group.assignor_name(),
                tuple(group.describe_member(m) for m in group.members.values())))
        return out

    def consumer_group(self, group_id: str) -> ConsumerGroup | None:
        """The KIP-848 group's state, for tests and tools; do not mutate."""
        return self._consumer.groups.get(group_id)

    def partition_for(self, group_id: str) -> int:
        return self._ctx.partition_for(group_id)

    def use_offsets_topic_partitions(self, count: int) -> None:
        """Maps group ids to `count` partitions: `__consumer_offsets`' actual partition count,
        which wins over offsets.topic.num.partitions once the topic exists (as in Kafka)."""
        if count < 1:
            raise ValueError(f"__consumer_offsets needs a partition, not {count}")
        self._ctx.config = replace(self._ctx.config, offsets_topic_partitions=count)

    # -- time -----------------------------------------------------------------------------

    def tick(self, now_ms: int) -> Step[None]:
        ctx = self._ctx
        self._begin(now_ms)
        cutoff = ctx.timers.seq
        while (due := ctx.timers.pop_due(now_ms, cutoff)) is not None:
            _fire(ctx, due[1])
        self._consumer.tick(now_ms)
        return self._step(None)

    def next_deadline_ms(self) -> int | None:
        """When `tick` next has work; a time not after now means "tick now"."""
        if self._loaded:
            return 0
        deadlines = [d for d in (self._ctx.timers.next_deadline_ms(),
                                 self._consumer.next_deadline_ms()) if d is not None]
        return min(deadlines, default=None)

    # -- startup --------------------------------------------------------------------------

    def replay(self, record: GroupLogRecord) -> None:
        """Applies one `__consumer_offsets` record, in log order, before serving requests."""
        group_id = replay_record(self._ctx, record, self._consumer.persisted)
        if group_id is not None:
            self._loaded.add(group_id)

    def replay_marker(self, partition: int, producer_id: int, commit: bool) -> None:
        """Applies a transaction marker of `__consumer_offsets` partition `partition`, in
        log order with the records."""
        self._loaded.update(txn_offsets.complete_txn(self._ctx, partition, producer_id, commit))

    # -- internals ------------------------------------------------------------------------

    def _begin(self, now_ms: int) -> None:
        """Starts a call; the first one after replay starts the loaded members' sessions
        (Kafka's onGroupLoaded)."""
        ctx = self._ctx
        ctx.begin(now_ms)
        for group_id in sorted(self._loaded):
            self._load_consumer_group(group_id, now_ms)
            group = ctx.groups.get(group_id)
            if group is None:
                continue
            for member in group.members.values():
                rebalance.schedule_session(ctx, group, member)
            if len(group.members) > ctx.config.max_group_size:  # the limit was lowered
                rebalance.prepare_rebalance(ctx, group)
        self._loaded.clear()

    def _load_consumer_group(self, group_id: str, now_ms: int) -> None:
        view = self._consumer.persisted.get(group_id)
        if not view:
            return
        group = load_consumer_group(group_id, view)
        if group is not None:
            self._consumer.restore(group, now_ms)

    def _emit_consumer_record(self, group_id: str, key: bytes, value: bytes | None) -> None:
        ctx = self._ctx
        ctx.records.append(GroupLogRecord(ctx.partition_for(group_id), key, value))

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


def _validate_member_epoch(group: ConsumerGroup, member_id: str, member_epoch: int,
                           ) -> int | None:
    """Kafka's ConsumerGroup.validateOffsetCommit: an epoch below 0 commits only into a group
    without members; a member's commit carries its current member epoch."""
    if member_epoch < 0 and not group.members:
        return None
    member = group.members.get(member_id)
    if member is None:
        return ErrorCode.unknown_member_id
    return None if member_epoch == member.member_epoch else ErrorCode.stale_member_epoch


def _fire(ctx: Context, timer: Timer) -> None:
    if timer.kind in ("session", "pending"):
        rebalance.on_member_timer(ctx, timer)
    elif timer.kind in ("join", "initial_join"):
        rebalance.on_join_timer(ctx, timer)
    elif timer.kind == "sync":
        rebalance.on_sync_timer(ctx, timer)
    else:
        offsets.expire_offsets(ctx)
