"""KIP-848 reconciliation under random schedules: joins, leaves, heartbeats, subscription and
partition-count changes and time. What the coordinator has told its members never gives one
partition to two of them; once everyone heartbeats, every subscribed partition is assigned and
the group is Stable; group and member epochs never go backwards."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from strom.coordinator.group.coordinator import GroupCoordinator
from strom.coordinator.group.model import (
    ConsumerHeartbeatRequest,
    GroupConfig,
    TopicMetadata,
)

T = [uuid.UUID(int=i + 1) for i in range(3)]
NAMES = ["t0", "t1", "t2"]
MEMBERS = ["m0", "m1", "m2", "m3"]
CONFIG = GroupConfig(consumer_session_timeout_ms=10_000)
SETTLE_ROUNDS = 12


@dataclass
class Client:
    epoch: int = 0
    owned: dict[uuid.UUID, frozenset[int]] = field(default_factory=dict)
    topics: tuple[str, ...] = ("t0",)
    assignor: str = "uniform"
    changed: bool = True  # subscription to send


class ConsumerGroupMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.coord = GroupCoordinator(CONFIG)
        self.clients: dict[str, Client] = {}
        self.counts = [3, 2, 4]
        self.now_ms = 0
        self.group_epoch = 0

    def cluster(self) -> tuple[TopicMetadata, ...]:
        return tuple(TopicMetadata(NAMES[i], T[i], self.counts[i]) for i in range(3))

    def send(self, name: str) -> None:
        client = self.clients[name]
        owned = tuple((t, tuple(sorted(ps))) for t, ps in client.owned.items())
        req = ConsumerHeartbeatRequest(
            "g", name, client.epoch, None, None, 5_000 if client.epoch == 0 else -1,
            client.topics if client.changed or client.epoch == 0 else None, None,
            client.assignor if client.changed or client.epoch == 0 else None, owned, "c", "/h",
            self.cluster())
        result = self.coord.consumer_heartbeat(req, self.now_ms).result
        assert result is not None
        if result.error:
            assert result.error in (25, 110), result  # UNKNOWN_MEMBER_ID, FENCED_MEMBER_EPOCH
            self.clients[name] = Client(topics=client.topics, assignor=client.assignor)
            return
        assert result.member_epoch >= client.epoch, "member epoch went backwards"
        client.epoch = result.member_epoch
        client.changed = False
        if result.assignment is not None:  # revoke and take at once, as a consumer would
            client.owned = {t: frozenset(ps) for t, ps in result.assignment if ps}

    @rule(name=st.sampled_from(MEMBERS), topics=st.sets(st.sampled_from(NAMES), min_size=1),
          assignor=st.sampled_from(["uniform", "range"]))
    def join(self, name: str, topics: set[str], assignor: str) -> None:
        if name in self.clients:
            return
        self.clients[name] = Client(topics=tuple(sorted(topics)), assignor=assignor)
        self.send(name)

    @rule(name=st.sampled_from(MEMBERS))
    def heartbeat(self, name: str) -> None:
        if name in self.clients:
            self.send(name)

    @rule(name=st.sampled_from(MEMBERS))
    def leave(self, name: str) -> None:
        client = self.clients.pop(name, None)
        if client is not None and client.epoch > 0:
            req = ConsumerHeartbeatRequest("g", name, -1, None, None, -1, None, None, None, None,
                                           "c", "/h", self.cluster())
            self.coord.consumer_heartbeat(req, self.now_ms)

    @rule(name=st.sampled_from(MEMBERS), topics=st.sets(st.sampled_from(NAMES), min_size=1))
    def resubscribe(self, name: str, topics: set[str]) -> None:
        if name in self.clients:
            self.clients[name].topics = tuple(sorted(topics))
            self.clients[name].changed = True

    @rule(topic=st.integers(0, 2), extra=st.integers(1, 3))
    def add_partitions(self, topic: int, extra: int) -> None:
        self.counts[topic] = min(self.counts[topic] + extra, 12)

    @rule(ms=st.integers(0, 15_000))
    def advance(self, ms: int) -> None:
        self.now_ms += ms
        self.coord.tick(self.now_ms)

    @rule()
    def settle(self) -> None:
        for _ in range(SETTLE_ROUNDS):
            for name in sorted(self.clients):
                self.send(name)
        if not self.clients:
            return
        group = self.coord.consumer_group("g")
        assert group is not None
        assert group.state().value == "Stable", group.state()
        wanted = {(T[NAMES.index(n)], p) for c in self.clients.values() for n in c.topics
                  for p in range(self.counts[NAMES.index(n)])}
        held = {(t, p) for c in self.clients.values() for t, ps in c.owned.items() for p in ps}
        assert held == wanted

    @invariant()
    def no_partition_told_to_two_members(self) -> None:
        group = self.coord.consumer_group("g")
        if group is None:
            return
        seen: dict[tuple[uuid.UUID, int], str] = {}
        for name, client in self.clients.items():
            member = group.members.get(name)
            if member is None or member.member_epoch != client.epoch:
                continue  # fenced: the coordinator no longer counts what it holds
            for t, ps in client.owned.items():
                for p in ps:
                    assert (t, p) not in seen, f"{t}-{p} held by {seen[(t, p)]} and {name}"
                    seen[(t, p)] = name

    @invariant()
    def group_epoch_monotone(self) -> None:
        group = self.coord.consumer_group("g")
        if group is None:
            return
        assert group.group_epoch >= self.group_epoch
        assert group.assignment_epoch <= group.group_epoch
        self.group_epoch = group.group_epoch


ConsumerGroupMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                                  deadline=None)
TestConsumerGroupReconcile = ConsumerGroupMachine.TestCase
