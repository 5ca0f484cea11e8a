"""The HTTP and S3 sinks run by a standalone strom.connect worker against a strom broker: Kafka
records through the worker's consumer, converters and pre_commit to a real aiohttp endpoint
(a 400 lands in the dead letter queue) and to SeaweedFS as Parquet (the group's committed offset
stops at the last uploaded file, and a recreated connector resumes there without rewriting or
duplicating rows)."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pyarrow.parquet as pq
import pytest
from aiohttp import web

from strom.testing import EmbeddedBroker
from tests.integration.conftest import consume_partitions, produce_all, producer, unique_name
from tests.integration.connect_worker import ConnectWorker, wait_for
from tests.integration.group_clients import GROUP_BROKER_SETTINGS
from tests.integration.seaweedfs import ACCESS_KEY, REGION, SECRET_KEY, S3Server


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(GROUP_BROKER_SETTINGS)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def worker(broker: EmbeddedBroker) -> Iterator[ConnectWorker]:
    props = {"bootstrap.servers": broker.bootstrap_servers,
             "key.converter": "org.apache.kafka.connect.storage.StringConverter",
             "value.converter": "org.apache.kafka.connect.json.JsonConverter",
             "value.converter.schemas.enable": "false",
             "offset.flush.interval.ms": "200"}
    with ConnectWorker(props) as running:
        yield running


class Endpoint:
    """An aiohttp server in its own thread: 400 for bodies containing "poison", else 200."""

    def __init__(self) -> None:
        self.bodies: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: web.AppRunner | None = None
        self.url = ""

    def call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(30)

    async def _start(self) -> None:
        async def handle(request: web.Request) -> web.Response:
            body = await request.text()
            self.bodies.append(body)
            return web.Response(status=400 if "poison" in body else 200)

        app = web.Application()
        app.router.add_post("/ingest", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/ingest"

    def __enter__(self) -> Endpoint:
        self.thread.start()
        self.call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        if self.runner is not None:
            self.call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def committed(worker: ConnectWorker, name: str) -> Any:
    return worker.request("GET", f"/connectors/{name}/offsets")[1]["offsets"]


def test_http_sink_delivers_and_sends_a_rejected_record_to_the_dlq(
        worker: ConnectWorker, broker: EmbeddedBroker) -> None:
    name, topic, dlq = unique_name("http"), unique_name("in"), unique_name("dlq")
    values = [b'"good-1"', b'"poison"', b'"good-2"', b'"good-3"']
    assert not produce_all(producer(broker.bootstrap_servers), topic,
                           [{"key": f"k{i}".encode(), "value": v}
                            for i, v in enumerate(values)]).failed
    with Endpoint() as endpoint:
        code, body = worker.request("POST", "/connectors", {"name": name, "config": {
            "connector.class": "io.confluent.connect.http.HttpSinkConnector", "topics": topic,
            "http.api.url": endpoint.url, "batch.max.size": "1", "retry.backoff.ms": "10",
            "errors.tolerance": "all", "errors.deadletterqueue.topic.name": dlq,
            "errors.deadletterqueue.topic.replication.factor": "1",
            "errors.deadletterqueue.context.headers.enable": "true"}})
        assert code == 201, body
        wait_for(lambda: committed(worker, name) == [
            {"partition": {"kafka_topic": topic, "kafka_partition": 0},
             "offset": {"kafka_offset": 4}}], what="the offsets committed")
        assert endpoint.bodies == ['["good-1"]', '["poison"]', '["good-2"]', '["good-3"]']
    [dead] = consume_partitions(broker.bootstrap_servers, dlq, expected=1)
    assert dead.value() == b'"poison"'
    headers = dict(dead.headers() or [])
    assert headers["__connect.errors.stage"] == b"TASK_PUT"
    assert headers["__connect.errors.offset"] == b"1"
    assert b"HTTP 400" in headers["__connect.errors.exception.message"]
    status = worker.request("GET", f"/connectors/{name}/status")[1]
    assert [t["state"] for t in status["tasks"]] == ["RUNNING"]


SCHEMA = {"type": "struct", "name": "row", "optional": False, "fields": [
    {"field": "id", "type": "int32", "optional": False},
    {"field": "name", "type": "string", "optional": True}]}


def rows(start: int, end: int) -> list[dict[str, bytes]]:
    return [{"value": json.dumps({"schema": SCHEMA,
                                  "payload": {"id": i, "name": f"n{i}"}}).encode()}
            for i in range(start, end)]


def test_s3_sink_commits_offsets_only_past_uploaded_files(
        worker: ConnectWorker, broker: EmbeddedBroker, s3: S3Server) -> None:
    name, topic, bucket = unique_name("s3"), unique_name("in"), "e2e"
    s3.create_bucket(bucket)
    config = {"connector.class": "S3Sink", "topics": topic, "s3.bucket.name": bucket,
              "s3.region": REGION, "store.url": s3.url, "aws.access.key.id": ACCESS_KEY,
              "aws.secret.access.key": SECRET_KEY,
              "format.class": "io.confluent.connect.s3.format.parquet.ParquetFormat",
              "flush.size": "4",
              "value.converter": "org.apache.kafka.connect.json.JsonConverter",
              "value.converter.schemas.enable": "true"}
    p = producer(broker.bootstrap_servers)
    assert not produce_all(p, topic, rows(0, 10)).failed
    code, body = worker.request("POST", "/connectors", {"name": name, "config": config})
    assert code == 201, body
    prefix = f"topics/{topic}/partition=0/{topic}+0+"
    wait_for(lambda: s3.keys(bucket, f"topics/{topic}/") == [
        f"{prefix}0000000000.snappy.parquet", f"{prefix}0000000004.snappy.parquet"],
        what="two files")
    # records 8 and 9 are still in memory: the group's offset stops at 8
    wait_for(lambda: committed(worker, name) == [
        {"partition": {"kafka_topic": topic, "kafka_partition": 0},
         "offset": {"kafka_offset": 8}}], what="offset 8 committed")
    code, _ = worker.request("DELETE", f"/connectors/{name}")
    assert code == 204
    assert not produce_all(p, topic, rows(10, 12)).failed
    code, body = worker.request("POST", "/connectors", {"name": name, "config": config})
    assert code == 201, body
    keys = wait_for(lambda: (k := s3.keys(bucket, f"topics/{topic}/"))
                    and len(k) == 3 and k, what="the third file")
    assert keys[2] == f"{prefix}0000000008.snappy.parquet"
    ids = [row["id"] for key in keys
           for row in pq.read_table(io.BytesIO(s3.get(bucket, key))).to_pylist()]
    assert ids == list(range(12))
    table = pq.read_table(io.BytesIO(s3.get(bucket, keys[0])))
    assert table.column_names == ["id", "name"]
    assert table.to_pylist()[1] == {"id": 1, "name": "n1"}
