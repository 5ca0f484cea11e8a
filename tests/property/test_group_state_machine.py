"""Property: whatever clients do to the group coordinator core (joins, syncs, heartbeats,
leaves, commits, transactional commits and their markers, deletions, time passing) in any
order, generations never go back, Stable groups hold the current generation's assignment,
answers go only to parked requests and none stays parked past the rebalance timeout, and the
records and markers it emitted rebuild its state (committed and pending offsets)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from kio.schema.errors import ErrorCode as E

from strom.coordinator.group import (
    CommitRequest,
    GroupConfig,
    GroupCoordinator,
    GroupLogRecord,
    HeartbeatRequest,
    JoinRequest,
    JoinResult,
    LeaveMember,
    LeaveRequest,
    OffsetCommit,
    Step,
    SyncRequest,
    SyncResult,
)
from strom.coordinator.group.group import ClassicGroup, GroupState
from strom.coordinator.group.model import TxnCommitRequest

MAX_REBALANCE_TIMEOUT_MS = 30_000
CONFIG = GroupConfig(initial_rebalance_delay_ms=3_000, offsets_retention_ms=120_000,
                     offsets_retention_check_interval_ms=20_000, max_group_size=4)
TOPICS = ("t1", "t2", "t3")


def subscription(*topics: str) -> bytes:
    body = struct.pack(">hi", 0, len(topics))
    for topic in topics:
        body += struct.pack(">h", len(topic)) + topic.encode()
    return body + struct.pack(">i", -1)


PROTOCOL_CHOICES = (
    (("range", subscription("t1")),),
    (("range", subscription("t1", "t2")), ("rr", subscription("t1"))),
    (("rr", subscription("t2")), ("range", subscription("t2"))),
)


@dataclass
class Client:
    """What one consumer believes: its member id, generation and (if leader) the members."""

    group_id: str
    instance_id: str | None
    member_id: str = ""
    generation_id: int = -1
    members: tuple[str, ...] = ()
    leader: bool = False
    # The ids this client's instance had, so renamed static members map to assignments.
    history: list[str] = field(default_factory=list)


CLIENTS = [Client("g", None), Client("g", "s1"), Client("g", None), Client("g", "s3"),
           Client("h", None), Client("h", "s5")]
GROUPS = ("g", "h", "simple")


class GroupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.core = GroupCoordinator(CONFIG)
        self.now = 0
        self.clients = [Client(c.group_id, c.instance_id) for c in CLIENTS]
        self.waiters: dict[tuple[str, str, str], tuple[int, int]] = {}  # key -> (client, since)
        # the log of every __consumer_offsets partition, with (partition, producer, commit) markers
        self.records: list[GroupLogRecord | tuple[int, int, bool]] = []
        self.txn_groups: set[str] = set()  # groups that got transactional offsets
        self.generations: dict[str, int] = {}
        self.assignment_root: dict[str, str] = {}  # renamed static member id -> original id

    # -- the shell ---------------------------------------------------------------------------

    def deliver(self, step: Step[Any], client: int | None = None) -> None:
        """As the shell does: wait on the key (replacing an older waiter for it), append the
        records, deliver the completions (never one for the key just parked)."""
        if step.pending_key is not None:
            assert client is not None
            assert all(c.key != step.pending_key for c in step.completions)
            self.waiters[step.pending_key] = (client, self.now)
        self.records.extend(step.records)
        for completion in step.completions:
            assert completion.key in self.waiters, f"unasked answer {completion}"
            owner, _ = self.waiters.pop(completion.key)
            self.on_answer(owner, completion.result)

    def on_answer(self, index: int, result: object) -> None:
        client = self.clients[index]
        if isinstance(result, JoinResult):
            if result.error in (E.none, E.member_id_required):
                client.member_id = result.member_id
                client.history.append(result.member_id)
            if result.error == E.none:
                client.generation_id = result.generation_id
                client.leader = result.leader == result.member_id
                client.members = tuple(m.member_id for m in result.members)
            elif result.error in (E.unknown_member_id, E.fenced_instance_id):
                client.member_id, client.generation_id = "", -1
        elif isinstance(result, SyncResult) and result.error in (E.unknown_member_id,
                                                                 E.fenced_instance_id):
            client.member_id, client.generation_id = "", -1

    def group(self, group_id: str) -> ClassicGroup | None:
        return self.core._ctx.groups.get(group_id)

    # -- rules -------------------------------------------------------------------------------

    @rule(index=st.integers(0, len(CLIENTS) - 1), protocols=st.sampled_from(PROTOCOL_CHOICES),
          require=st.booleans(), skip=st.booleans(),
          session_ms=st.sampled_from([6_000, 10_000]),
          rebalance_ms=st.sampled_from([10_000, MAX_REBALANCE_TIMEOUT_MS]),
          protocol_type=st.sampled_from(["consumer", "consumer", "connect"]))
    def join(self, index: int, protocols: tuple[tuple[str, bytes], ...], require: bool,
             skip: bool, session_ms: int, rebalance_ms: int, protocol_type: str) -> None:
        client = self.clients[index]
        group = self.group(client.group_id)
        old_static = None
        if group is not None and client.instance_id is not None:
            old_static = group.static_members.get(client.instance_id)
        req = JoinRequest(client.group_id, client.member_id, client.instance_id, f"c{index}",
                          "/127.0.0.1", session_ms, rebalance_ms, protocol_type, protocols,
                          require, None, skip)
        step = self.core.join(req, self.now)
        self.deliver(step, index)
        result = step.result
        if result is not None:
            if result.error == E.none and old_static is not None and not client.member_id:
                # A static member took over without a rebalance: it keeps the assignment.
                self.assignment_root[result.member_id] = self.root(old_static)
            self.on_answer(index, result)

    def joined_clients(self) -> list[int]:
        return [i for i, c in enumerate(self.clients) if c.generation_id >= 0]

    @precondition(lambda self: self.joined_clients())
    @rule(data=st.data(), stale=st.integers(0, 9))
    def sync(self, data: st.DataObject, stale: int) -> None:
        index = data.draw(st.sampled_from(self.joined_clients()))
        self.send_sync(index, self.clients[index].generation_id - (stale == 0))

    def send_sync(self, index: int, generation: int) -> None:
        client = self.clients[index]
        assignments: tuple[tuple[str, bytes], ...] = ()
        if client.leader:
            assignments = tuple((m, f"{generation}:{self.root(m)}".encode())
                                for m in client.members)
        req = SyncRequest(client.group_id, client.member_id, generation, client.instance_id,
                          "consumer", None, assignments)
        step = self.core.sync(req, self.now)
        self.deliver(step, index)
        if step.result is not None:
            self.on_answer(index, step.result)

    @rule(group_id=st.sampled_from(("g", "h")), leader_first=st.booleans())
    def cooperative_round(self, group_id: str, leader_first: bool) -> None:
        """Well-behaved consumers: all (re)join, the join completes, all sync."""
        members = [i for i, c in enumerate(self.clients) if c.group_id == group_id]
        for index in members:
            client = self.clients[index]
            if ("join", group_id, client.member_id) not in self.waiters:
                self.join(index, PROTOCOL_CHOICES[1], False, True, 10_000, 10_000, "consumer")
        self.advance(CONFIG.initial_rebalance_delay_ms + 1)
        synced = sorted(members, key=lambda i: self.clients[i].leader != leader_first)
        for index in synced:
            if self.clients[index].generation_id >= 0:
                self.send_sync(index, self.clients[index].generation_id)

    @rule(index=st.integers(0, len(CLIENTS) - 1))
    def heartbeat(self, index: int) -> None:
        self.send_heartbeat(index)

    @rule()
    def everybody_heartbeats(self) -> None:
        """The consumers' background heartbeat threads."""
        for index, client in enumerate(self.clients):
            if client.member_id:
                self.send_heartbeat(index)

    def send_heartbeat(self, index: int) -> None:
        client = self.clients[index]
        step = self.core.heartbeat(HeartbeatRequest(
            client.group_id, client.member_id, client.generation_id, client.instance_id),
            self.now)
        self.deliver(step)
        if step.result in (E.unknown_member_id, E.fenced_instance_id):
            client.member_id, client.generation_id = "", -1

    @rule(index=st.integers(0, len(CLIENTS) - 1), by_instance=st.booleans())
    def leave(self, index: int, by_instance: bool) -> None:
        client = self.clients[index]
        member_id = "" if by_instance else client.member_id
        step = self.core.leave(LeaveRequest(client.group_id, (
            LeaveMember(member_id, client.instance_id, None),)), self.now)
        self.deliver(step)
        client.member_id, client.generation_id = "", -1

    @rule(index=st.integers(-1, len(CLIENTS) - 1), topic=st.sampled_from(TOPICS),
          partition=st.integers(0, 1), offset=st.integers(0, 1000))
    def commit(self, index: int, topic: str, partition: int, offset: int) -> None:
        if index < 0:
            req = CommitRequest("simple", -1, "", None,
                                (OffsetCommit(topic, partition, offset, -1, None),))
        else:
            client = self.clients[index]
            req = CommitRequest(client.group_id, client.generation_id, client.member_id,
                                client.instance_id,
                                (OffsetCommit(topic, partition, offset, 3, "meta"),))
        self.deliver(self.core.commit_offsets(req, self.now))

    @rule(index=st.integers(-1, len(CLIENTS) - 1), producer_id=st.integers(1, 2),
          topic=st.sampled_from(TOPICS), partition=st.integers(0, 1),
          offset=st.integers(0, 1000))
    def txn_commit(self, index: int, producer_id: int, topic: str, partition: int,
                   offset: int) -> None:
        commit = (OffsetCommit(topic, partition, offset, -1, None),)
        if index < 0:
            req = TxnCommitRequest("tx", "simple", producer_id, 0, -1, "", None, commit)
        else:
            client = self.clients[index]
            req = TxnCommitRequest("tx", client.group_id, producer_id, 0, client.generation_id,
                                   client.member_id, client.instance_id, commit)
        step = self.core.txn_commit_offsets(req, self.now)
        assert all(r.producer_id == producer_id for r in step.records)
        self.txn_groups.add(req.group_id)
        self.deliver(step)

    @rule(group_id=st.sampled_from(GROUPS), producer_id=st.integers(1, 2), commit=st.booleans())
    def end_txn(self, group_id: str, producer_id: int, commit: bool) -> None:
        """The producer's marker on one group's partition (each group has its own here)."""
        partition = self.core.partition_for(group_id)
        self.records.append((partition, producer_id, commit))
        self.deliver(self.core.complete_txn(partition, producer_id, commit, self.now))

    @rule(group_id=st.sampled_from(GROUPS), topic=st.sampled_from(TOPICS))
    def delete_offsets(self, group_id: str, topic: str) -> None:
        step = self.core.delete_offsets(group_id, [(topic, 0), (topic, 1)], self.now)
        self.deliver(step)

    @rule(group_id=st.sampled_from(GROUPS))
    def delete_group(self, group_id: str) -> None:
        self.deliver(self.core.delete_groups([group_id], self.now))

    @rule(ms=st.one_of(st.integers(0, 4_000), st.integers(4_000, 35_000)))
    def advance(self, ms: int) -> None:
        """Time passes; like a punctual shell, tick at every deadline on the way."""
        target = self.now + ms
        for _ in range(10_000):
            deadline = self.core.next_deadline_ms()
            if deadline is None or deadline > target:
                break
            self.now = max(self.now, deadline)
            self.deliver(self.core.tick(self.now))
        else:
            raise AssertionError("tick does not settle")
        self.now = target
        self.deliver(self.core.tick(self.now))

    @precondition(lambda self: len(self.records) > 0)
    @rule()
    def replay_matches(self) -> None:
        self.check_replay()

    # -- invariants --------------------------------------------------------------------------

    def root(self, member_id: str) -> str:
        while member_id in self.assignment_root:
            member_id = self.assignment_root[member_id]
        return member_id

    @invariant()
    def generations_never_decrease(self) -> None:
        for group_id in GROUPS:
            group = self.group(group_id)
            if group is None:
                self.generations.pop(group_id, None)  # deleted: a new group may start at 0
                continue
            assert group.generation_id >= self.generations.get(group_id, 0)
            self.generations[group_id] = group.generation_id

    @invariant()
    def stable_members_hold_the_current_assignment(self) -> None:
        for group_id in GROUPS:
            group = self.group(group_id)
            if group is None or not group.is_(GroupState.STABLE):
                continue
            for member in group.members.values():
                expected = f"{group.generation_id}:{self.root(member.member_id)}".encode()
                assert member.assignment == expected, (member.member_id, member.assignment)

    @invariant()
    def parked_requests_are_exactly_the_waiters(self) -> None:
        parked = set()
        for group_id in GROUPS:
            group = self.group(group_id)
            for member in group.members.values() if group is not None else ():
                if member.awaiting_join:
                    parked.add(("join", group_id, member.member_id))
                if member.awaiting_sync:
                    parked.add(("sync", group_id, member.member_id))
        assert parked == set(self.waiters)  # no waiter for an absent or unparked member

    @invariant()
    def nothing_waits_past_the_rebalance_timeout(self) -> None:
        for key, (_, since) in self.waiters.items():
            assert self.now - since <= MAX_REBALANCE_TIMEOUT_MS, (key, since, self.now)

    def check_replay(self) -> None:
        fresh = GroupCoordinator(CONFIG)
        for record in self.records:
            if isinstance(record, tuple):
                fresh.replay_marker(*record)
            else:
                fresh.replay(record)
        for group_id in GROUPS:
            assert fresh.fetch_offsets(group_id, None) == self.core.fetch_offsets(group_id, None)
            assert fresh.unstable_offsets(group_id) == self.core.unstable_offsets(group_id)
            live, loaded = self.group(group_id), fresh._ctx.groups.get(group_id)
            if live is None or live.state not in (GroupState.STABLE, GroupState.EMPTY):
                continue
            if live.generation_id == 0 and not live.offsets and group_id in self.txn_groups:
                continue  # kept by an aborted transaction's offsets until the next expiry
            if live.generation_id == 0 and not live.offsets:
                assert loaded is None
                continue
            assert loaded is not None
            assert (loaded.generation_id, loaded.protocol_type, loaded.protocol_name,
                    loaded.leader_id, loaded.state) == (
                live.generation_id, live.protocol_type, live.protocol_name, live.leader_id,
                live.state)
            assert _members(loaded) == _members(live)

    def teardown(self) -> None:
        self.check_replay()


def _members(group: ClassicGroup) -> list[tuple[str, str | None, bytes, bytes]]:
    name = group.protocol_name
    return [(m.member_id, m.group_instance_id, m.metadata(name) if name else b"", m.assignment)
            for m in group.members.values()]


GroupMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=50,
                                          deadline=None)
test_group_state_machine = GroupMachine.TestCase
