"""Test doubles for the inter-broker path without a network: `ScriptedPeers` answers what a
peer broker would (or fails as an unreachable one does) and records every request;
`Leaders` makes a broker's engine report other brokers as the leaders of chosen topics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from strom.broker.peers import BuildRequest, Peers
from strom.broker.state import Broker
from strom.config.broker import BrokerConfig
from strom.protocol.client import PeerUnavailable
from strom.protocol.messages import ErrorCode, RequestBuilder, ResponseBuilder
from strom.storage.api import BrokerRegistration, Leadership
from strom.storage.local.engine import LocalEngine

# (node id, request) -> the answer, or PeerUnavailable raised
Answer = Callable[[int, Any], Awaitable[Any]]


class NoBrokers:
    async def brokers(self) -> Sequence[BrokerRegistration]:
        return ()


class ScriptedPeers(Peers):
    """Peers whose `send` builds the request in the highest version asked for and hands it
    to `answer` instead of a connection."""

    def __init__(self, node_id: int, answer: Answer) -> None:
        super().__init__(NoBrokers(), node_id, connect_timeout_s=1, request_timeout_s=1)
        self.answer = answer
        self.sent: list[tuple[float, int, Any]] = []  # (monotonic time, node id, request)

    async def send(self, node_id: int, api_key: int, build: BuildRequest, max_version: int,
                   min_version: int = 0) -> Any:
        request = build(RequestBuilder(api_key, max_version))
        self.sent.append((time.monotonic(), node_id, request))
        return await self.answer(node_id, request)


def use_peers(broker: Broker, peers: Peers) -> None:
    broker.peers = peers
    broker.transactions.peers = peers


class Leaders:
    """Overrides the engine's leadership per topic: `leaders[topic] = node` (None: no
    leader); other topics keep the engine's answer (and its UnknownTopic)."""

    def __init__(self, engine: LocalEngine) -> None:
        self.leaders: dict[str, int | None] = {}
        self._original = engine.leadership
        engine.leadership = self.leadership  # type: ignore[method-assign]

    def leadership(self, name: str, index: int) -> Leadership:
        if name not in self.leaders:
            return self._original(name, index)
        leader = self.leaders[name]
        return Leadership(leader, 3, () if leader is None else (leader,))


def scripted(*answers: int | Exception) -> Answer:
    """Answers the requests in turn with these errors (or raises them), then NONE."""
    remaining = list(answers)

    async def answer(node_id: int, request: Any) -> Any:
        item = remaining.pop(0) if remaining else ErrorCode.none
        if isinstance(item, Exception):
            raise item
        return error_answer(request, ErrorCode(item))

    return answer


def error_answer(request: Any, error: ErrorCode) -> Any:
    """The answer a peer gives `request` (WriteTxnMarkers or AddPartitionsToTxn v4+) with
    `error` for every partition."""
    api_key, version = int(request.__api_key__), int(request.__version__)
    b = ResponseBuilder(api_key, version)
    if api_key == 27:
        return b.make("WriteTxnMarkersResponse", markers=tuple(
            b.make("WritableTxnMarkerResult", producer_id=m.producer_id, topics=tuple(
                b.make("WritableTxnMarkerTopicResult", name=t.name, partitions=tuple(
                    b.make("WritableTxnMarkerPartitionResult", partition_index=p,
                           error_code=error) for p in t.partition_indexes))
                for t in m.topics))
            for m in request.markers))
    assert api_key == 24 and version >= 4, request
    return b.make("AddPartitionsToTxnResponse", throttle_time=0, error_code=ErrorCode.none,
                  results_by_transaction=tuple(
                      b.make("AddPartitionsToTxnResult", transactional_id=t.transactional_id,
                             topic_results=tuple(
                                 b.make("AddPartitionsToTxnTopicResult", name=topic.name,
                                        results_by_partition=tuple(
                                            b.make("AddPartitionsToTxnPartitionResult",
                                                   partition_index=p,
                                                   partition_error_code=error)
                                            for p in topic.partitions))
                                 for topic in t.topics))
                      for t in request.transactions))


UNREACHABLE = PeerUnavailable("node 2 (127.0.0.1:1): cannot connect: ConnectionRefusedError")


def run_broker(path: Path, body: Callable[[Broker, LocalEngine], Awaitable[None]],
               settings: dict[str, str] | None = None) -> None:
    """A Broker over a LocalEngine (node 1, one partition per internal topic), no network."""

    async def main() -> None:
        config = BrokerConfig.build(path, "localhost", 0, {
            "transaction.state.log.num.partitions": "1", "offsets.topic.num.partitions": "1",
            **(settings or {})})
        engine = LocalEngine(path, config)
        await engine.open()
        broker = Broker(config, engine)
        await broker.groups.start()
        await broker.transactions.start()
        try:
            await body(broker, engine)
        finally:
            await broker.transactions.stop()
            await broker.groups.stop()
            await engine.close()

    asyncio.run(main())
