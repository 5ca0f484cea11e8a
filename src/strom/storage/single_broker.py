"""Leadership for engines that one broker serves alone (the local log, memory): that broker
leads every partition, at leader epoch 0, for as long as it runs, and is where every
partition belongs (nothing is ever pinned elsewhere or moves)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from strom.config.broker import BrokerConfig
from strom.storage.api import Assignment, Leadership


class _Engine(Protocol):
    config: BrokerConfig

    def partition(self, name: str, index: int) -> Any: ...


class SingleBrokerLeadership:
    """Mixed into an engine with `config` and `partition()`."""

    def leadership(self: _Engine, name: str, index: int) -> Leadership:
        self.partition(name, index)  # raises UnknownTopic
        node = self.config.node_id
        return Leadership(node, 0, (node,))

    def assignment(self: _Engine, name: str, index: int) -> Assignment:
        self.partition(name, index)  # raises UnknownTopic
        node = self.config.node_id
        return Assignment(node, node)

    async def rebalance(self) -> None:
        """Every lease is where it belongs already."""

    def on_leadership_change(self, listener: Callable[[], None]) -> None:
        """Nothing ever moves."""

    async def retire(self) -> None:
        """No other broker to hand anything to."""

    async def leader_epochs(self: _Engine, name: str, index: int
                            ) -> Sequence[tuple[int, int]]:
        """One epoch, 0, from the log start on."""
        offsets = await self.partition(name, index).offsets()
        return [(0, offsets.log_start)]

    async def reassign(self: _Engine, name: str, index: int,
                       replicas: Sequence[int] | None) -> None:
        self.partition(name, index)
        node = self.config.node_id
        if replicas is not None and set(replicas) != {node}:
            raise ValueError(f"the only broker is node {node}; replicas "
                             f"{list(replicas)} name others")
