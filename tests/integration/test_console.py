"""The web console (strom.console) against a real broker, over HTTP: pages, forms, auth."""

from __future__ import annotations

import html
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from strom import __version__
from strom.cli import wire_admin
from strom.cli.common import ClientOptions
from strom.console import ConsoleSettings, RunningConsole, start_in_thread
from strom.testing import EmbeddedBroker
from tests.integration.conftest import (
    consume_partitions,
    produce_all,
    producer,
    unique_name,
)
from tests.integration.console_client import (
    ConsoleClient,
    commit_offsets,
    committed,
    topic_config,
)
from tests.integration.group_clients import GROUP_BROKER_SETTINGS


def start(broker: EmbeddedBroker, **settings: object) -> RunningConsole:
    return start_in_thread(ConsoleSettings(broker.bootstrap_servers, poll_interval=0.5,
                                           **settings))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(GROUP_BROKER_SETTINGS)  # a group's first generation forms at once


@pytest.fixture(scope="module")
def console(broker: EmbeddedBroker) -> Iterator[RunningConsole]:
    running = start(broker)
    yield running
    running.stop()


@pytest.fixture
def web(console: RunningConsole) -> ConsoleClient:
    return ConsoleClient(console.url)


def produce(broker: EmbeddedBroker, topic: str, values: list[bytes], key: bytes = b"k",
            headers: list[tuple[str, bytes]] | None = None) -> None:
    p = producer(broker.bootstrap_servers)
    delivered = produce_all(p, topic, [{"key": key, "value": v, "headers": headers}
                                       for v in values])
    assert not delivered.failed


def test_topics_list_shows_a_created_topic(broker: EmbeddedBroker, web: ConsoleClient,
                                           new_topic: Callable[..., str]) -> None:
    name = new_topic(partitions=3, config={"retention.ms": "7200000"})
    produce(broker, name, [b"a", b"b"])
    page = web.get("/topics")
    assert page.status == 200
    row = page.text[page.text.index(f">{name}</a>"):]
    row = row[:row.index("</tr>")]
    assert "<td>3</td>" in row  # partitions
    assert "<td>2</td>" in row  # messages
    assert "2 h" in row  # retention
    assert name in web.get("/topics/live").text


def test_create_and_delete_a_topic(broker: EmbeddedBroker, web: ConsoleClient) -> None:
    name = unique_name("console")
    reply = web.post("/topics", {"name": name, "partitions": "2", "replication": "1",
                                 "config": "retention.ms=60000"})
    assert reply.status == 302, reply.text
    assert name in web.get("/topics").text
    assert topic_config(broker.bootstrap_servers, name, "retention.ms") == "60000"
    assert web.post(f"/topics/{name}/delete", {}).status == 302
    deadline = time.monotonic() + 10
    while name in web.get("/topics/live").text and time.monotonic() < deadline:
        time.sleep(0.2)
    assert name not in web.get("/topics/live").text


def test_config_edit_takes_effect(broker: EmbeddedBroker, web: ConsoleClient,
                                  topic: str) -> None:
    page = web.get(f"/topics/{topic}")
    assert 'data-key="retention.ms"' in page.text
    reply = web.post(f"/topics/{topic}/config", {"key": "retention.ms", "value": "123456"})
    assert reply.status == 302
    assert topic_config(broker.bootstrap_servers, topic, "retention.ms") == "123456"
    assert 'value="123456" aria-label="retention.ms"' in web.get(f"/topics/{topic}").text
    web.post(f"/topics/{topic}/config", {"key": "retention.ms", "reset": "1"})
    assert topic_config(broker.bootstrap_servers, topic, "retention.ms") != "123456"


def test_browser_shows_a_produced_message(broker: EmbeddedBroker, web: ConsoleClient,
                                          topic: str) -> None:
    produce(broker, topic, [b"plain text value", b'{"b":[1,2],"a":"x"}'],
            headers=[("trace", b"t-1")])
    page = html.unescape(web.get(f"/topics/{topic}").text)
    assert "plain text value" in page
    assert '{\n  "b": [\n    1,\n    2\n  ],\n  "a": "x"\n}' in page  # JSON pretty-printed
    assert "t-1" in page
    hexed = web.get(f"/topics/{topic}/messages?format=hex&mode=oldest").json()["messages"]
    assert hexed[0]["value"] == b"plain text value".hex(" ")
    text = web.get(f"/topics/{topic}/messages?format=text&mode=oldest").json()["messages"]
    assert [m["value"] for m in text] == ["plain text value", '{"b":[1,2],"a":"x"}']
    assert text[0]["headers"] == [["trace", "t-1"]]
    filtered = web.get(f"/topics/{topic}/messages?filter=PLAIN").json()["messages"]
    assert [m["offset"] for m in filtered] == [0]
    from_offset = web.get(f"/topics/{topic}/messages?mode=offset&offset=1").json()
    assert [m["offset"] for m in from_offset["messages"]] == [1]
    stamp = text[1]["timestamp"]
    by_time = web.get(f"/topics/{topic}/messages?mode=timestamp&timestamp={stamp}").json()
    assert [m["offset"] for m in by_time["messages"]][-1] == 1


def test_newest_reads_the_last_messages_first(broker: EmbeddedBroker, web: ConsoleClient,
                                              topic: str) -> None:
    produce(broker, topic, [f"v{i}".encode() for i in range(20)])
    found = web.get(f"/topics/{topic}/messages?limit=5").json()["messages"]
    assert [m["value"] for m in found] == ["v19", "v18", "v17", "v16", "v15"]


def test_produce_form_lands_in_the_topic(broker: EmbeddedBroker, web: ConsoleClient,
                                         topic: str) -> None:
    reply = web.post(f"/topics/{topic}/produce", {"key": "k1", "value": "from the form",
                                                  "headers": "h1=v1", "partition": "0"})
    assert reply.status == 302, reply.text
    [message] = consume_partitions(broker.bootstrap_servers, topic)
    assert (message.key(), message.value()) == (b"k1", b"from the form")
    assert message.headers() == [("h1", b"v1")]


def test_group_page_shows_the_exact_lag(broker: EmbeddedBroker, web: ConsoleClient,
                                        new_topic: Callable[..., str]) -> None:
    name = new_topic(partitions=2)
    group = unique_name("group")
    p = producer(broker.bootstrap_servers)
    produce_all(p, name, [{"value": b"x", "partition": i % 2} for i in range(10)])
    commit_offsets(broker.bootstrap_servers, group, name, {0: 2, 1: 4})  # lags 3 and 1
    data = web.get(f"/groups/{group}/lag").json()
    assert data["total_lag"] == 4
    assert sorted((r["partition"], r["lag"]) for r in data["partitions"]) == [(0, 3), (1, 1)]
    page = web.get(f"/groups/{group}")
    assert '<span id="total-lag">4</span>' in page.text
    assert '<span class="lag">3</span>' in page.text
    assert group in web.get("/groups").text
    deadline = time.monotonic() + 10  # the poller's history: the chart and the health
    while "<polyline" not in web.get(f"/groups/{group}/live").text:
        assert time.monotonic() < deadline, "no lag chart"
        time.sleep(0.3)
    assert web.get(f"/groups/{group}/lag").json()["health"]["group"] == group


def test_offset_reset_previews_then_applies(broker: EmbeddedBroker, web: ConsoleClient,
                                            topic: str) -> None:
    group = unique_name("group")
    produce(broker, topic, [b"x"] * 6)
    commit_offsets(broker.bootstrap_servers, group, topic, {0: 5})
    preview = web.post(f"/groups/{group}/reset", {"topic": topic, "to": "offset",
                                                  "value": "2", "apply": "0"})
    assert preview.status == 200
    assert "Dry run" in preview.text
    assert "<td>5</td><td>2</td>" in preview.text  # old offset, new offset
    assert committed(broker.bootstrap_servers, group) == {(topic, 0): 5}
    applied = web.post(f"/groups/{group}/reset", {"topic": topic, "to": "offset",
                                                  "value": "2", "apply": "1"})
    assert applied.status == 302
    assert committed(broker.bootstrap_servers, group) == {(topic, 0): 2}
    web.post(f"/groups/{group}/reset", {"topic": "", "to": "earliest", "apply": "1"})
    assert committed(broker.bootstrap_servers, group) == {(topic, 0): 0}


MUTATING = ("/topics", "/topics/{t}/delete", "/topics/{t}/config", "/topics/{t}/produce",
            "/groups/{g}/reset", "/acls", "/acls/delete", "/users", "/users/delete",
            "/quotas", "/quotas/delete")


def test_read_only_refuses_every_change(broker: EmbeddedBroker, topic: str) -> None:
    running = start(broker, read_only=True)
    try:
        web = ConsoleClient(running.url)
        page = web.get(f"/topics/{topic}")
        assert page.status == 200
        assert 'id="produce"' not in page.text and "config-edit" not in page.text
        assert 'id="create-topic"' not in web.get("/topics").text
        for path in MUTATING:
            reply = web.post(path.format(t=topic, g="g"), {
                "name": "x", "key": "retention.ms", "value": "1", "to": "earliest",
                "user": "ro-user", "producer_byte_rate": "1000",
                "entity": '[["user", "ro-user"]]'})
            assert reply.status == 403, path
        assert topic_config(broker.bootstrap_servers, topic, "retention.ms") != "1"
        quotas = web.get("/quotas")
        assert quotas.status == 200 and 'id="set-quota"' not in quotas.text
        assert "/quotas/delete" not in quotas.text
        assert (("user", "ro-user"),) not in wire_quotas(broker)
    finally:
        running.stop()


def test_password_login_and_csrf(broker: EmbeddedBroker, topic: str) -> None:
    running = start(broker, password="s3cret")
    try:
        web = ConsoleClient(running.url)
        first = web.get("/topics")
        assert first.status == 302 and first.location.startswith("/login")
        assert web.post("/topics", {"name": "x"}, csrf=False).status == 403
        bad = web.request("/login", {"password": "wrong", "next": "/topics"})
        assert bad.status == 401 and "wrong password" in bad.text
        good = web.request("/login", {"password": "s3cret", "next": "/topics"})
        assert good.status == 302 and good.location == "/topics"
        assert topic in web.get("/topics").text
        no_csrf = web.post(f"/topics/{topic}/config", {"key": "retention.ms", "value": "9"},
                           csrf=False)
        assert no_csrf.status == 403
        forged = web.request(f"/topics/{topic}/config", {"key": "retention.ms", "value": "9",
                                                         "csrf": "forged"})
        assert forged.status == 403
        assert topic_config(broker.bootstrap_servers, topic, "retention.ms") != "9"
        web.get("/topics")
        assert web.post(f"/topics/{topic}/config",
                        {"key": "retention.ms", "value": "9000"}).status == 302
        assert web.post("/logout", {}).status == 302
        assert web.get("/topics").status == 302
    finally:
        running.stop()


def test_assets_are_local(web: ConsoleClient) -> None:
    page = web.get("/topics").text
    assert "http://" not in page.replace(web.base, "") and "https://" not in page
    assert web.get("/static/console.js").status == 200
    assert "data-live" in web.get("/static/console.js").text
    assert json.dumps  # the page's JSON endpoints are covered above


def test_strom_serve_console_starts_it_in_process(tmp_path: Path) -> None:
    """`strom serve --console HOST:PORT`: one command, a broker and its console."""
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "strom", "serve", "--storage",
                                 "memory:", "--listen", "127.0.0.1:0", "--console",
                                 "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while True:
            found = re.search(r"console on (http://\S+)/\n", log_path.read_text())
            if found:
                break
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        web = ConsoleClient(found.group(1))
        name = unique_name("served")
        assert web.post("/topics", {"name": name, "partitions": "1"}).status == 302
        assert name in web.get("/topics").text
    finally:
        proc.terminate()
        proc.wait(15)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_strom_console_command(broker: EmbeddedBroker, topic: str, tmp_path: Path) -> None:
    """`strom console --bootstrap-servers ... --listen ... --read-only`."""
    port = free_port()
    log_path = tmp_path / "console.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "strom", "console",
                                 "--bootstrap-servers", broker.bootstrap_servers,
                                 "--listen", f"127.0.0.1:{port}", "--read-only"],
                                stdout=subprocess.DEVNULL, stderr=log)
    try:
        web = ConsoleClient(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            try:
                page = web.get("/topics")
                break
            except OSError:
                assert proc.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        assert page.status == 200 and topic in page.text and "read-only" in page.text
        assert web.post("/topics", {"name": "x"}).status == 403
    finally:
        proc.terminate()
        proc.wait(15)


def test_strom_console_refuses_password_with_sasl() -> None:
    from click.testing import CliRunner

    from strom.cli.main import cli

    result = CliRunner().invoke(cli, ["console", "--password", "x", "--sasl"])
    assert result.exit_code == 2
    assert "not both" in result.output


def test_offset_reset_is_refused_while_the_group_has_members(
        broker: EmbeddedBroker, web: ConsoleClient, topic: str) -> None:
    from confluent_kafka import Consumer

    group = unique_name("group")
    produce(broker, topic, [b"x"] * 3)
    member = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group,
                       "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        member.subscribe([topic])
        deadline = time.monotonic() + 30
        while not member.assignment():
            assert time.monotonic() < deadline, "never assigned"
            member.poll(0.2)
        member.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
        form = {"topic": topic, "to": "earliest", "apply": "0"}
        preview = web.post(f"/groups/{group}/reset", form)
        assert "has active members" in preview.text
        refused = web.post(f"/groups/{group}/reset", {**form, "apply": "1"})
        assert refused.status == 400 and "active members" in refused.text
        assert committed(broker.bootstrap_servers, group) == {(topic, 0): 3}
        members = web.get(f"/groups/{group}/live").text.split("Members")[1]
        assert f"<td>{topic}[0]</td>" in members  # the member's assignment
    finally:
        member.close()


# --- sizes, the cluster's software and throughput, client quotas ------------------------------

def data_bytes(fragment: str, css_class: str = "size") -> list[int]:
    """The data-bytes of each size shown ("-": unknown, left out)."""
    return [int(n) for n in re.findall(rf'class="{css_class}" data-bytes="(\d+)"', fragment)]


def test_topic_sizes_after_producing(broker: EmbeddedBroker, web: ConsoleClient,
                                     new_topic: Callable[..., str]) -> None:
    name = new_topic(partitions=2)
    p = producer(broker.bootstrap_servers)
    produce_all(p, name, [{"value": b"x" * 1000, "partition": i % 2} for i in range(20)])
    page = web.get("/topics").text
    row = page[page.index(f">{name}</a>"):]
    row = row[:row.index("</tr>")]
    [size] = data_bytes(row)
    assert size >= 20 * 1000  # ten 1000-byte values in each partition, and their batches
    assert re.search(r">\d+\.\d KiB</span>", row), row  # human-readable
    detail = web.get(f"/topics/{name}/live").text
    partitions = data_bytes(detail)
    assert len(partitions) == 2 and all(s >= 10 * 1000 for s in partitions), detail
    [total] = re.findall(r'id="topic-size" data-bytes="(\d+)"', detail)
    assert int(total) == sum(partitions) == size


def test_cluster_page_names_the_storage_engine_and_version(web: ConsoleClient,
                                                           storage_engine: str) -> None:
    page = web.get("/cluster")
    assert page.status == 200
    brokers = page.text[page.text.index('id="brokers"'):]
    brokers = brokers[:brokers.index("</table>")]
    assert f'<span class="engine">{storage_engine}</span>' in brokers
    assert f'<span class="version">{__version__}</span>' in brokers
    assert "not strom" not in brokers


def test_cluster_page_charts_messages_and_bytes_in(broker: EmbeddedBroker, web: ConsoleClient,
                                                   topic: str) -> None:
    p = producer(broker.bootstrap_servers)
    deadline = time.monotonic() + 20
    while True:  # traffic while the poller samples (every 0.5 s): both rates become charts
        produce_all(p, topic, [{"value": b"y" * 200}] * 20)
        live = web.get("/cluster/live").text
        messages = live[live.index('id="throughput-messages"'):live.index('id="throughput-bytes"')]
        sizes = live[live.index('id="throughput-bytes"'):]
        if "<polyline" in messages and "<polyline" in sizes:
            break
        assert time.monotonic() < deadline, live
        time.sleep(0.3)
    assert "messages in per second" in messages and "bytes in per second" in sizes


def wire_quotas(broker: EmbeddedBroker) -> wire_admin.Quotas:
    """The broker's DescribeClientQuotas, asked without the console."""
    found = wire_admin.list_quotas(ClientOptions(broker.bootstrap_servers, {}, 5.0))
    return {tuple(sorted(entity)): values for entity, values in found.items()}


def test_quotas_page_sets_lists_and_deletes(broker: EmbeddedBroker,
                                            web: ConsoleClient) -> None:
    user = unique_name("quota-user")
    assert web.get("/quotas").status == 200
    reply = web.post("/quotas", {"user": user, "client_id": "etl",
                                 "producer_byte_rate": "1048576", "request_percentage": "25"})
    assert reply.status == 302, reply.text
    assert "set" in html.unescape(reply.location)
    entity = (("client-id", "etl"), ("user", user))
    assert wire_quotas(broker)[entity] == {"producer_byte_rate": 1048576.0,
                                           "request_percentage": 25.0}
    page = html.unescape(web.get("/quotas").text)
    row = page[page.index(f"user={user}, client-id=etl"):]
    row = row[:row.index("</tr>")]
    assert "1048576 (1.0 MiB/s)" in row and "<td>25</td>" in row

    defaults = web.post("/quotas", {"client_default": "1", "consumer_byte_rate": "2048"})
    assert defaults.status == 302, defaults.text
    assert wire_quotas(broker)[(("client-id", None),)] == {"consumer_byte_rate": 2048.0}
    assert "client-id=&lt;default&gt;" in web.get("/quotas").text

    bad = web.post("/quotas", {"user": user, "producer_byte_rate": "fast"})
    assert bad.status == 400 and "not a number" in bad.text
    neither = web.post("/quotas", {"producer_byte_rate": "1"})
    assert neither.status == 400 and "needs a user" in neither.text

    removed = web.post("/quotas/delete", {"entity": json.dumps([["client-id", "etl"],
                                                                 ["user", user]])})
    assert removed.status == 302, removed.text
    assert entity not in wire_quotas(broker)
    assert f"user={user}" not in web.get("/quotas").text
    web.post("/quotas/delete", {"entity": '[["client-id", null]]'})
    assert (("client-id", None),) not in wire_quotas(broker)
    gone = web.post("/quotas/delete", {"entity": json.dumps([["user", user]])})
    assert gone.status == 400 and "has no quotas" in gone.text
