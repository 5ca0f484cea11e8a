"""strom.connect.rest_forward: a follower forwards REST writes to the leader and answers with
the leader's answer; reads stay local; 409 while no leader is reachable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from strom.connect.herder import StandaloneHerder
from strom.connect.offsets import MemoryOffsetBackingStore
from strom.connect.rest import make_app
from strom.connect.rest_forward import FORWARDED_HEADER, forwarding_middleware
from strom.connect.worker import Worker, WorkerConfig

NO_LEADER = ("Cannot complete request momentarily due to no known leader URL, likely because "
             "a rebalance was underway.")
REBALANCE = ("Cannot complete request because of a conflicting operation (e.g. worker "
             "rebalance)")


class Node(StandaloneHerder):
    def __init__(self, worker_id: str, leader: bool) -> None:
        super().__init__(Worker(WorkerConfig({}, worker_id), MemoryOffsetBackingStore()))
        self.leader = leader
        self.leader_address: str | None = None

    def is_leader(self) -> bool:
        return self.leader

    def leader_url(self) -> str | None:
        return self.leader_address


def app(herder: Node) -> web.Application:
    application = make_app(herder)
    application.middlewares.insert(0, forwarding_middleware)
    return application


def run(test: Callable[[Node, TestClient, Node, TestClient], Awaitable[None]]) -> None:
    async def main() -> None:
        leader, follower = Node("leader:1", True), Node("follower:2", False)
        async with TestClient(TestServer(app(leader))) as to_leader, \
                TestClient(TestServer(app(follower))) as to_follower:
            follower.leader_address = str(to_leader.make_url("")).rstrip("/")
            try:
                await test(leader, to_leader, follower, to_follower)
            finally:
                await leader.stop()
                await follower.stop()
    asyncio.run(main())


def sink(tmp_path: Path) -> dict[str, object]:
    return {"name": "s", "initial_state": "STOPPED",
            "config": {"connector.class": "FileStreamSink", "topics": "t",
                       "file": str(tmp_path / "out.txt")}}


def test_writes_are_forwarded_and_answered_with_the_leaders_answer(tmp_path: Path) -> None:
    async def test(leader: Node, _l: TestClient, follower: Node, client: TestClient) -> None:
        response = await client.post("/connectors", json=sink(tmp_path))
        assert response.status == 201
        assert (await response.json())["name"] == "s"
        # The Location is the connector's URL on the worker asked, not on the leader.
        assert response.headers["Location"] == str(client.make_url("/connectors/s"))
        assert await leader.connectors() == ["s"]  # done by the leader
        assert await follower.connectors() == []  # not by the follower
        # The leader's error answers come back unchanged.
        response = await client.post("/connectors", json=sink(tmp_path))
        assert response.status == 409
        assert (await response.json())["message"] == "Connector s already exists"
        response = await client.put("/connectors/s/stop")
        assert response.status == 204
        response = await client.delete("/connectors/nope")
        assert response.status == 404
        response = await client.delete("/connectors/s")
        assert response.status == 204
        assert await leader.connectors() == []
        # Reads are answered locally.
        response = await client.get("/connectors")
        assert await response.json() == []
    run(test)


def test_no_leader_known_or_reachable_is_a_409(tmp_path: Path) -> None:
    async def test(_leader: Node, _l: TestClient, follower: Node, client: TestClient) -> None:
        follower.leader_address = None
        response = await client.post("/connectors", json=sink(tmp_path))
        assert response.status == 409
        assert (await response.json()) == {"error_code": 409, "message": NO_LEADER}
        follower.leader_address = "http://127.0.0.1:9"  # nothing listens there
        response = await client.put("/connectors/s/pause")
        assert response.status == 409
        assert (await response.json()) == {"error_code": 409, "message": REBALANCE}
        # Kafka's own hop marker: `?forward=false` is not forwarded again either.
        response = await client.put("/connectors/s/pause?forward=false")
        assert response.status == 409
        # A request already forwarded once is not forwarded again (no loops).
        follower.leader_address = "http://127.0.0.1:9"
        response = await client.post("/connectors", json=sink(tmp_path),
                                     headers={FORWARDED_HEADER: "x"})
        assert response.status == 409
        # Validation is not a write: answered locally.
        response = await client.put("/connector-plugins/FileStreamSink/config/validate",
                                    json={"connector.class": "FileStreamSink", "topics": "t"})
        assert response.status == 200
    run(test)
