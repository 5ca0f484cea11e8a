"""The HTTP sink against a real aiohttp server the test starts on loopback: batches as JSON
arrays, auth and configured headers, retries of 503s and connection errors, 4xx records to the
errant record reporter (errors.tolerance=all) or a task failure (put raises, so the worker
commits nothing past them). The worker-level run with a DLQ is in
test_connect_object_sinks_e2e.py."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from strom.connect.api import ErrantRecordReporter, SinkTaskContext, TopicPartition
from strom.connect.data import STRING_SCHEMA, SchemaBuilder, Struct
from strom.connect.discovery import find_connector
from strom.connect.errors import ConnectException
from strom.connect.http_sink import (
    HttpSinkConnector,
    HttpSinkTask,
    parse_headers,
    parse_status_codes,
)
from strom.connect.records import SinkRecord

TOPIC = "orders"
TP = TopicPartition(TOPIC, 0)


@dataclass
class Received:
    method: str
    path: str
    headers: Mapping[str, str]
    body: str


@dataclass
class Server:
    """What the endpoint received; `statuses` are answered in order, then 200."""
    received: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    url: str = ""


async def start_server(server: Server) -> web.AppRunner:
    async def handle(request: web.Request) -> web.Response:
        server.received.append(Received(request.method, request.path, dict(request.headers),
                                        await request.text()))
        status = server.statuses.pop(0) if server.statuses else 200
        return web.Response(status=status, text="bad request" if status == 400 else "ok")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    server.url = f"http://127.0.0.1:{port}"
    return runner


class Reporter:
    def __init__(self) -> None:
        self.reported: list[tuple[SinkRecord, BaseException]] = []

    def report(self, record: SinkRecord, error: BaseException) -> None:
        self.reported.append((record, error))


class Context(SinkTaskContext):
    def __init__(self, reporter: Reporter | None = None) -> None:
        self.reporter = reporter

    def offset(self, offsets: Any, offset: int | None = None) -> None:
        pass

    def timeout(self, timeout_ms: int) -> None:
        pass

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def pause(self, *partitions: TopicPartition) -> None:
        pass

    def resume(self, *partitions: TopicPartition) -> None:
        pass

    def request_commit(self) -> None:
        pass

    def errant_record_reporter(self) -> ErrantRecordReporter | None:
        return self.reporter


def record(offset: int, value: Any, schema: Any = None, topic: str = TOPIC) -> SinkRecord:
    return SinkRecord(topic=topic, kafka_partition=0, key=f"k{offset}", value=value,
                      value_schema=schema, kafka_offset=offset)


def run(scenario: Callable[[Server], Awaitable[None]]) -> Server:
    server = Server()

    async def main() -> None:
        runner = await start_server(server)
        try:
            await scenario(server)
        finally:
            await runner.cleanup()

    asyncio.run(main())
    return server


async def started(props: dict[str, str], reporter: Reporter | None = None) -> HttpSinkTask:
    connector = HttpSinkConnector()
    connector.start(props)
    [config] = connector.task_configs(1)
    task = HttpSinkTask()
    task.initialize(Context(reporter))
    await task.start(config)
    return task


def test_batches_as_json_arrays_with_basic_auth_and_headers() -> None:
    schema = SchemaBuilder.struct().field("id", SchemaBuilder.int32().build()) \
        .field("item", STRING_SCHEMA).build()

    async def scenario(server: Server) -> None:
        task = await started({
            "http.api.url": server.url + "/api/orders", "batch.max.size": "2",
            "auth.type": "BASIC", "connection.user": "alice", "connection.password": "s3cret",
            "headers": "X-Source:strom|X-Env: test"})
        try:
            records = [record(i, Struct(schema).put("id", i).put("item", f"item-{i}"), schema)
                       for i in range(5)]
            await task.put(records)
            # two full batches, then the rest: all sent when put returns
            assert len(server.received) == 3
            assert task.pre_commit({TP: 5}) == {TP: 5}
        finally:
            await task.stop()

    server = run(scenario)
    assert [json.loads(r.body) for r in server.received] == [
        [{"id": 0, "item": "item-0"}, {"id": 1, "item": "item-1"}],
        [{"id": 2, "item": "item-2"}, {"id": 3, "item": "item-3"}],
        [{"id": 4, "item": "item-4"}]]
    for request in server.received:
        assert request.method == "POST"
        assert request.path == "/api/orders"
        assert request.headers["Authorization"] == \
            "Basic " + base64.b64encode(b"alice:s3cret").decode()
        assert request.headers["X-Source"] == "strom"
        assert request.headers["X-Env"] == "test"
        assert request.headers["Content-Type"] == "application/json"


def test_string_format_put_bearer_and_topic_in_the_url() -> None:
    async def scenario(server: Server) -> None:
        task = await started({
            "http.api.url": server.url + "/topics/${topic}", "request.method": "PUT",
            "request.body.format": "string", "batch.max.size": "3", "batch.separator": "\\n",
            "auth.type": "BEARER", "bearer.token": "tok-123"})
        try:
            await task.put([record(0, "a"), record(1, "b"),
                            record(0, "c", topic="other"), record(2, None)])
        finally:
            await task.stop()

    server = run(scenario)
    by_path = {r.path: r for r in server.received}
    assert set(by_path) == {"/topics/orders", "/topics/other"}
    assert by_path["/topics/orders"].body == "a\nb"  # the null value (tombstone) is skipped
    assert by_path["/topics/other"].body == "c"
    assert all(r.method == "PUT" for r in server.received)
    assert all(r.headers["Authorization"] == "Bearer tok-123" for r in server.received)


def test_a_503_is_retried_and_the_batch_delivered_once() -> None:
    async def scenario(server: Server) -> None:
        server.statuses = [503, 503]
        task = await started({"http.api.url": server.url, "batch.max.size": "3",
                              "retry.backoff.ms": "20", "max.retries": "3"})
        try:
            await task.put([record(i, {"n": i}) for i in range(3)])
            assert task.pre_commit({TP: 3}) == {TP: 3}
        finally:
            await task.stop()

    server = run(scenario)
    assert len(server.received) == 3  # two 503s, then the 200
    assert all(json.loads(r.body) == [{"n": 0}, {"n": 1}, {"n": 2}] for r in server.received)


def test_a_400_goes_to_the_errant_record_reporter_under_tolerance_all() -> None:
    reporter = Reporter()

    async def scenario(server: Server) -> None:
        server.statuses = [200, 400]
        task = await started({"http.api.url": server.url, "batch.max.size": "2",
                              "retry.backoff.ms": "10", "errors.tolerance": "all"}, reporter)
        try:
            await task.put([record(i, {"n": i}) for i in range(4)])
            assert task.pre_commit({TP: 4}) == {TP: 4}
        finally:
            await task.stop()

    server = run(scenario)
    assert len(server.received) == 2  # a 400 is not retried (retry.on.status.codes)
    assert [r.kafka_offset for r, _ in reporter.reported] == [2, 3]
    assert all("HTTP 400" in str(e) for _, e in reporter.reported)


def test_a_400_fails_the_task_under_tolerance_none_and_nothing_is_committed() -> None:
    reporter = Reporter()

    async def scenario(server: Server) -> None:
        server.statuses = [400]
        task = await started({"http.api.url": server.url, "batch.max.size": "5"}, reporter)
        try:
            with pytest.raises(ConnectException, match="HTTP 400"):
                await task.put([record(i, {"n": i}) for i in range(3)])
        finally:
            await task.stop()

    server = run(scenario)
    assert len(server.received) == 1
    assert reporter.reported == []


def test_retriable_statuses_are_configurable() -> None:
    async def scenario(server: Server) -> None:
        server.statuses = [400, 404]
        task = await started({"http.api.url": server.url, "retry.on.status.codes": "400-",
                              "retry.backoff.ms": "5", "retry.backoff.policy": "CONSTANT_VALUE"})
        try:
            await task.put([record(0, "x")])
        finally:
            await task.stop()

    server = run(scenario)
    assert len(server.received) == 3


def test_connection_errors_are_retried_then_fail_the_task() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> None:
        task = await started({"http.api.url": f"http://127.0.0.1:{port}/x",
                              "max.retries": "2", "retry.backoff.ms": "10"})
        try:
            with pytest.raises(ConnectException, match="failed after 2 retries"):
                await task.put([record(0, "x")])
        finally:
            await task.stop()

    asyncio.run(scenario())


def test_config_parsing_and_discovery() -> None:
    assert parse_status_codes("400-,500-599, 404") == [(400, 999), (500, 599), (404, 404)]
    assert parse_headers("A:1|B: x:y", "|") == {"A": "1", "B": "x:y"}
    with pytest.raises(Exception, match=r"retry\.on\.status\.codes"):
        HttpSinkConnector().start({"http.api.url": "http://x", "retry.on.status.codes": "5xx"})
    with pytest.raises(Exception, match=r"auth\.type"):
        HttpSinkConnector().start({"http.api.url": "http://x", "auth.type": "DIGEST"})
    for name in ("io.confluent.connect.http.HttpSinkConnector", "HttpSink",
                 "HttpSinkConnector"):
        assert find_connector(name).cls is HttpSinkConnector
