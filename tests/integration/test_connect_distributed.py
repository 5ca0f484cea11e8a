"""Distributed strom connect: workers as subprocesses (`python -m strom connect WORKER.properties
--listen ... --group-id ...`) against a real embedded broker. They form a cluster, spread a
connector's tasks, forward REST writes to the leader, move a SIGKILLed worker's tasks to the
others after the scheduled delay without losing records (source offsets resume from the offsets
topic), and keep configs and statuses across a restart of every worker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from strom.testing import EmbeddedBroker
from tests.integration.conftest import unique_name
from tests.integration.connect_worker import http, wait_for
from tests.integration.group_clients import GROUP_BROKER_SETTINGS

pytestmark = pytest.mark.slow

SESSION_MS = 4000
DELAY_MS = 2000


@pytest.fixture(scope="module")
def broker_settings() -> dict[str, str]:
    return dict(GROUP_BROKER_SETTINGS)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class DistributedWorker:
    def __init__(self, props: Path, port: int, log: Path) -> None:
        self.props = props
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def id(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.id}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "strom", "connect", str(self.props),
                 "--listen", f"127.0.0.1:{self.port}"],
                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return http(method, self.url + path, body)

    def up(self) -> bool:
        if not self.alive():
            raise AssertionError(f"worker {self.id} exited: " + self.log.read_text()[-3000:])
        try:
            code, _ = self.request("GET", "/connectors")
        except OSError:
            return False
        return code == 200

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Cluster:
    def __init__(self, broker: EmbeddedBroker, tmp: Path, size: int,
                 extra: dict[str, str] | None = None) -> None:
        self.broker = broker
        self.tmp = tmp
        group = unique_name("connect")
        self.topics = {kind: f"{group}-{kind}" for kind in ("configs", "offsets", "status")}
        props = {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": group,
            "config.storage.topic": self.topics["configs"],
            "offset.storage.topic": self.topics["offsets"],
            "status.storage.topic": self.topics["status"],
            "config.storage.replication.factor": "1",
            "offset.storage.replication.factor": "1",
            "status.storage.replication.factor": "1",
            "offset.storage.partitions": "5",
            "status.storage.partitions": "3",
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.storage.StringConverter",
            "offset.flush.interval.ms": "500",
            "session.timeout.ms": str(SESSION_MS),
            "heartbeat.interval.ms": "1000",
            "scheduled.rebalance.max.delay.ms": str(DELAY_MS),
            "consumer.session.timeout.ms": str(SESSION_MS),
            "consumer.heartbeat.interval.ms": "1000",
            **(extra or {}),
        }
        path = tmp / "worker.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self.workers = [DistributedWorker(path, free_port(), tmp / f"worker{i}.log")
                        for i in range(size)]

    def start(self) -> Cluster:
        for worker in self.workers:
            worker.start()
        for worker in self.workers:
            wait_for(worker.up, 60, f"worker {worker.id} serving")
        return self

    def live(self) -> list[DistributedWorker]:
        return [w for w in self.workers if w.alive()]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def logs(self) -> str:
        return "\n".join(w.log.read_text()[-4000:] for w in self.workers if w.log.exists())


@pytest.fixture
def cluster_factory(broker: EmbeddedBroker, tmp_path: Path
                    ) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(size: int, extra: dict[str, str] | None = None) -> Cluster:
        cluster = Cluster(broker, tmp_path, size, extra)
        made.append(cluster)
        return cluster.start()

    yield make
    for cluster in made:
        cluster.stop()


def status_of(worker: DistributedWorker, name: str) -> dict[str, Any] | None:
    try:
        code, body = worker.request("GET", f"/connectors/{name}/status")
    except OSError:
        return None
    return body if code == 200 else None


def running_on(worker: DistributedWorker, name: str, tasks: int) -> set[str] | None:
    """The worker ids running the connector's tasks, once they all are RUNNING."""
    status = status_of(worker, name)
    if status is None or status["connector"]["state"] != "RUNNING":
        return None
    states = [t["state"] for t in status["tasks"]]
    if states != ["RUNNING"] * tasks:
        return None
    return {t["worker_id"] for t in status["tasks"]}


def create(worker: DistributedWorker, name: str, config: dict[str, str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        code, body = worker.request("POST", "/connectors", {"name": name, "config": config})
        if code == 201:
            return
        # 409 while the cluster is still electing its leader, as Kafka's workers answer.
        assert code == 409 and time.monotonic() < deadline, (code, body)
        time.sleep(0.5)


def read_topic(bootstrap: str, topic: str, raw: bool = False) -> list[tuple[str, Any]]:
    """(key, JSON value) of every committed record of the topic (raw: the value's text)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": unique_name("read"),
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed"})
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = list(metadata.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[tuple[str, Any]] = []
    eof: set[int] = set()
    deadline = time.monotonic() + 20
    while len(eof) < len(partitions) and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        if message.error():
            eof.add(message.partition())
            continue
        key, value = message.key(), message.value()
        out.append((key.decode() if key is not None else "",
                    value.decode() if raw else json.loads(value) if value is not None
                    else None))
    consumer.close()
    return out


def test_cluster_spreads_tasks_and_forwards_writes(cluster_factory: Callable[..., Cluster],
                                                   new_topic: Callable[..., str],
                                                   tmp_path: Path) -> None:
    cluster = cluster_factory(3)
    topic = new_topic(partitions=3)
    first, second, third = cluster.workers
    # Every write goes to some worker; followers forward to the leader.
    create(second, "sink", {"connector.class": "FileStreamSink", "tasks.max": "3",
                            "topics": topic, "file": str(tmp_path / "sink.txt")})
    # Spread over the workers: one task each.
    owners = wait_for(lambda: (o := running_on(third, "sink", 3)) is not None and len(o) == 3
                      and o, 60, "the sink's three tasks on three workers")
    assert owners <= {w.id for w in cluster.workers}
    for worker in cluster.workers:  # every worker answers reads, from the same state
        code, body = worker.request("GET", "/connectors/sink")
        assert code == 200 and len(body["tasks"]) == 3
        assert worker.request("GET", "/connectors/sink/config")[1]["topics"] == topic
    # Writes through each worker: one of them is not the leader, so forwarding is exercised.
    for worker in cluster.workers:
        code, _ = worker.request("PUT", "/connectors/sink/pause")
        assert code == 202
        wait_for(lambda: (s := status_of(first, "sink")) is not None
                 and [t["state"] for t in s["tasks"]] == ["PAUSED"] * 3, 30, "paused")
        code, _ = worker.request("PUT", "/connectors/sink/resume")
        assert code == 202
        wait_for(lambda: running_on(first, "sink", 3), 30, "resumed")
    code, body = third.request("POST", "/connectors",
                               {"name": "sink", "config": {"connector.class": "FileStreamSink",
                                                           "topics": topic}})
    assert code == 409, body  # the leader's answer, forwarded
    code, body = first.request("PUT", "/connectors/sink/config",
                               {"connector.class": "FileStreamSink", "tasks.max": "2",
                                "topics": topic, "file": str(tmp_path / "sink.txt")})
    assert code == 200, body
    wait_for(lambda: running_on(second, "sink", 2), 30, "two tasks after the update")
    assert second.request("DELETE", "/connectors/sink")[0] == 204
    wait_for(lambda: all(w.request("GET", "/connectors")[1] == [] for w in cluster.workers),
             30, "deleted everywhere")
    # Kafka Connect's record formats in the config topic.
    records = dict(read_topic(cluster.broker.bootstrap_servers, cluster.topics["configs"]))
    assert records["connector-sink"] is None  # deleted: a tombstone
    assert records["target-state-sink"] is None
    assert records["commit-sink"] == {"tasks": 2}
    assert records["task-sink-0"]["properties"]["topics"] == topic


def test_sigkilled_worker_tasks_move_and_no_record_is_lost(
        cluster_factory: Callable[..., Cluster], new_topic: Callable[..., str],
        tmp_path: Path) -> None:
    cluster = cluster_factory(3)
    topic = new_topic(partitions=3)
    source_file, sink_file = tmp_path / "in.txt", tmp_path / "out.txt"
    source_file.write_text("")
    first = cluster.workers[0]
    create(first, "source", {"connector.class": "FileStreamSource", "tasks.max": "1",
                             "file": str(source_file), "topic": topic})
    create(first, "sink", {"connector.class": "FileStreamSink", "tasks.max": "3",
                           "topics": topic, "file": str(sink_file)})
    wait_for(lambda: running_on(first, "source", 1), 60, "the source running")
    wait_for(lambda: running_on(first, "sink", 3), 60, "the sink running")

    written = 0

    def append(n: int) -> None:
        nonlocal written
        with open(source_file, "a") as out:
            for _ in range(n):
                out.write(f"line-{written:05d}\n")
                written += 1

    def out_lines() -> Counter[str]:
        return Counter(line for line in sink_file.read_text().splitlines()
                       if line) if sink_file.exists() else Counter()

    append(300)
    wait_for(lambda: len(out_lines()) == 300, 60, "the first 300 lines through")
    time.sleep(1.5)  # an offset flush (500 ms) after they were read
    # Kill the worker running the source task (SIGKILL: no offset flush, no group leave).
    status = status_of(first, "source")
    assert status is not None
    victim_id = status["tasks"][0]["worker_id"]
    victim = next(w for w in cluster.workers if w.id == victim_id)
    killed_at = time.monotonic()
    victim.kill()
    append(200)  # written while its source task is dead
    survivor = next(w for w in cluster.workers if w.alive())

    def moved() -> bool:
        for name, n in (("source", 1), ("sink", 3)):
            owners = running_on(survivor, name, n)
            if owners is None or victim.id in owners:
                return False
        return True

    wait_for(moved, (DELAY_MS + SESSION_MS) / 1000 + 30,
             "the killed worker's tasks running elsewhere")
    took = time.monotonic() - killed_at
    append(200)
    wait_for(lambda: len(out_lines()) == 700, 60, "all 700 lines through")
    counts = out_lines()
    expected = {f"line-{i:05d}" for i in range(700)}
    assert set(counts) == expected  # no record lost
    duplicated = [line for line, c in counts.items() if c > 1]
    # At-least-once: the source resumed from the offsets topic (not from the file's start,
    # which would have duplicated the first 300), so at most the sink's uncommitted batch
    # comes again.
    assert len(duplicated) < 300, (len(duplicated), took)
    offsets = read_topic(cluster.broker.bootstrap_servers, cluster.topics["offsets"])
    keys = [json.loads(k) for k, _ in offsets]
    assert ["source", {"filename": str(source_file)}] in keys
    last = [v for k, v in offsets if json.loads(k)[0] == "source"][-1]
    assert last["position"] > 0
    code, body = survivor.request("GET", "/connectors/source/offsets")
    assert code == 200 and body["offsets"][0]["offset"]["position"] >= last["position"]


def test_configs_and_statuses_survive_restarting_every_worker(
        cluster_factory: Callable[..., Cluster], new_topic: Callable[..., str],
        tmp_path: Path) -> None:
    cluster = cluster_factory(2)
    topic = new_topic(partitions=2)
    first, second = cluster.workers
    create(first, "sink", {"connector.class": "FileStreamSink", "tasks.max": "2",
                           "topics": topic, "file": str(tmp_path / "sink.txt")})
    create(second, "paused", {"connector.class": "FileStreamSink", "tasks.max": "1",
                              "topics": topic, "file": str(tmp_path / "other.txt")})
    wait_for(lambda: running_on(first, "sink", 2), 60, "running")
    assert second.request("PUT", "/connectors/paused/pause")[0] == 202
    wait_for(lambda: (s := status_of(first, "paused")) is not None
             and s["connector"]["state"] == "PAUSED", 30, "paused")
    cluster.stop()
    statuses = dict(read_topic(cluster.broker.bootstrap_servers, cluster.topics["status"]))
    record = statuses["status-task-sink-0"]
    assert set(record) == {"state", "trace", "worker_id", "generation"}
    assert record["worker_id"] in {w.id for w in cluster.workers}
    assert record["state"] == "UNASSIGNED"  # written at shutdown, as Kafka's workers do
    cluster.start()
    for worker in cluster.workers:
        assert sorted(worker.request("GET", "/connectors")[1]) == ["paused", "sink"]
    wait_for(lambda: running_on(second, "sink", 2), 60, "running again")
    wait_for(lambda: (s := status_of(first, "paused")) is not None
             and s["connector"]["state"] == "PAUSED"
             and [t["state"] for t in s["tasks"]] == ["PAUSED"], 30, "still paused")
    code, body = second.request("GET", "/connectors/sink/config")
    assert code == 200 and body["tasks.max"] == "2"
    # Really running again: a record produced now reaches the sink's file.
    producer = Producer({"bootstrap.servers": cluster.broker.bootstrap_servers})
    producer.produce(topic, value=b"after-restart")
    producer.flush(10)
    wait_for(lambda: (tmp_path / "sink.txt").exists()
             and "after-restart" in (tmp_path / "sink.txt").read_text(), 30,
             "a record through the restarted sink")


def test_exactly_once_source_across_a_sigkill(cluster_factory: Callable[..., Cluster],
                                              new_topic: Callable[..., str],
                                              tmp_path: Path) -> None:
    """KIP-618: with exactly.once.source.support=enabled a source task's records and offsets
    commit in one transaction (transactional.id `<group>-<connector>-<task>`); the task's
    next incarnation on another worker fences the killed one and aborts its open transaction,
    so a read_committed reader sees every line exactly once."""
    cluster = cluster_factory(2, {"exactly.once.source.support": "enabled"})
    topic = new_topic(partitions=1)
    source_file = tmp_path / "in.txt"
    source_file.write_text("")
    first = cluster.workers[0]
    create(first, "eos", {"connector.class": "FileStreamSource", "tasks.max": "1",
                          "file": str(source_file), "topic": topic, "batch.size": "50"})
    wait_for(lambda: running_on(first, "eos", 1), 60, "the source running")
    lines = [f"eos-{i:05d}" for i in range(3000)]
    with open(source_file, "a") as out:
        out.write("".join(line + "\n" for line in lines[:2000]))
    status = status_of(first, "eos")
    assert status is not None
    victim_id = status["tasks"][0]["worker_id"]
    victim = next(w for w in cluster.workers if w.id == victim_id)
    survivor = next(w for w in cluster.workers if w is not victim)
    time.sleep(0.3)  # mid-stream: some transactions committed, one likely open
    victim.kill()
    with open(source_file, "a") as out:
        out.write("".join(line + "\n" for line in lines[2000:]))
    wait_for(lambda: (owners := running_on(survivor, "eos", 1)) is not None
             and victim.id not in owners, (DELAY_MS + SESSION_MS) / 1000 + 30,
             "the source task running on the survivor")

    def values() -> list[str]:
        return [v for _, v in read_topic(cluster.broker.bootstrap_servers, topic, raw=True)]

    wait_for(lambda: len(set(values())) == len(lines), 60, "every line in the topic")
    got = values()
    assert Counter(got) == Counter(lines)  # none lost, none duplicated
    offsets = dict(read_topic(cluster.broker.bootstrap_servers, cluster.topics["offsets"]))
    assert offsets[json.dumps(["eos", {"filename": str(source_file)}],
                              separators=(",", ":"), sort_keys=True)]["position"] > 0


def test_a_frozen_worker_comes_back_as_a_fenced_zombie(cluster_factory: Callable[..., Cluster],
                                                       new_topic: Callable[..., str],
                                                       tmp_path: Path) -> None:
    """SIGSTOP the worker running an exactly-once source task past its session timeout: the
    task moves; on SIGCONT the frozen worker's task (still holding its file position and an
    open transaction) is a zombie: its transaction is fenced and it stops what it was running,
    so the topic still has every line once (without exactly-once support, duplicates)."""
    cluster = cluster_factory(2, {"exactly.once.source.support": "enabled"})
    topic = new_topic(partitions=1)
    source_file = tmp_path / "in.txt"
    source_file.write_text("")
    first = cluster.workers[0]
    create(first, "z", {"connector.class": "FileStreamSource", "tasks.max": "1",
                        "file": str(source_file), "topic": topic})
    wait_for(lambda: running_on(first, "z", 1), 60, "the source running")
    lines = [f"z-{i:05d}" for i in range(900)]

    def append(part: list[str]) -> None:
        with open(source_file, "a") as out:
            out.write("".join(line + "\n" for line in part))

    append(lines[:300])
    status = status_of(first, "z")
    assert status is not None
    frozen = next(w for w in cluster.workers if w.id == status["tasks"][0]["worker_id"])
    other = next(w for w in cluster.workers if w is not frozen)
    assert frozen.proc is not None
    time.sleep(0.2)
    frozen.proc.send_signal(signal.SIGSTOP)
    try:
        append(lines[300:600])
        wait_for(lambda: (owners := running_on(other, "z", 1)) is not None
                 and frozen.id not in owners, (DELAY_MS + SESSION_MS) / 1000 + 30,
                 "the task running on the other worker")
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    append(lines[600:])

    def values() -> list[str]:
        return [v for _, v in read_topic(cluster.broker.bootstrap_servers, topic, raw=True)]

    wait_for(lambda: len(set(values())) == len(lines), 60, "every line in the topic")
    time.sleep(3)  # the zombie's last transaction would have committed by now
    assert Counter(values()) == Counter(lines)
    owners = wait_for(lambda: running_on(other, "z", 1), 30, "one owner")
    assert len(owners) == 1


def leader_of(cluster: Cluster) -> DistributedWorker:
    """The worker that published the latest assignment (the config topic's `assignment`)."""
    def published() -> str | None:
        value = dict(read_topic(cluster.broker.bootstrap_servers,
                                cluster.topics["configs"])).get("assignment")
        return value["leader"] if value and len(value.get("assignments", {})) == len(
            cluster.workers) else None
    leader = wait_for(published, 60, "an assignment of every worker")
    return next(w for w in cluster.workers if w.id == leader)


def states(worker: DistributedWorker, name: str) -> tuple[str, list[str]] | None:
    status = status_of(worker, name)
    if status is None:
        return None
    return status["connector"]["state"], [t["state"] for t in status["tasks"]]


def test_kafka_ui_flow_through_a_follower(cluster_factory: Callable[..., Cluster],
                                          new_topic: Callable[..., str]) -> None:
    """Kafka UI's calls, each sent to the worker that is not the leader (writes are forwarded),
    then KIP-875 offsets of the stopped connector and a cluster-wide logger level (KIP-976)."""
    cluster = cluster_factory(2)
    leader = leader_of(cluster)
    follower = next(w for w in cluster.workers if w is not leader)
    topic = new_topic(partitions=2)
    name = "ui"
    config = {"connector.class": "tests.integration.connect_plugins:CountingSource",
              "tasks.max": "2", "topic": topic}
    code, body = follower.request("GET", "/connectors?expand=info&expand=status")
    assert (code, body) == (200, {})
    code, plugins = follower.request("GET", "/connector-plugins")
    assert code == 200 and "org.apache.kafka.connect.file.FileStreamSinkConnector" in {
        p["class"] for p in plugins}
    code, body = follower.request("PUT", "/connector-plugins/FileStreamSink/config/validate",
                                  {"connector.class": "FileStreamSink", "name": name})
    assert code == 200 and body["error_count"] == 2  # on topics and on topics.regex, as Kafka
    code, body = follower.request("POST", "/connectors", {"name": name, "config": config})
    assert code == 201, body
    assert body["name"] == name and body["type"] == "source" and body["config"]["topic"] == topic
    wait_for(lambda: states(follower, name) == ("RUNNING", ["RUNNING", "RUNNING"]), 60,
             "running")
    code, listed = follower.request("GET", "/connectors?expand=status&expand=info")
    assert code == 200 and listed[name]["status"]["connector"]["state"] == "RUNNING"
    assert listed[name]["info"]["tasks"] == [{"connector": name, "task": 0},
                                             {"connector": name, "task": 1}]
    code, body = follower.request("GET", "/connectors?expand=status,info")
    assert code == 200 and set(body[name]) == {"status", "info"}
    code, info = follower.request("GET", f"/connectors/{name}")
    assert code == 200 and info["config"]["tasks.max"] == "2"
    assert follower.request("GET", f"/connectors/{name}/config")[1]["name"] == name
    code, tasks = follower.request("GET", f"/connectors/{name}/tasks")
    assert code == 200 and [t["id"] for t in tasks] == [{"connector": name, "task": i}
                                                        for i in (0, 1)]
    code, task = follower.request("GET", f"/connectors/{name}/tasks/1/status")
    assert code == 200 and task["id"] == 1 and task["state"] == "RUNNING"
    assert task["worker_id"] in {w.id for w in cluster.workers}

    code, body = follower.request("PUT", f"/connectors/{name}/pause")
    assert (code, body) == (202, None)
    wait_for(lambda: states(follower, name) == ("PAUSED", ["PAUSED", "PAUSED"]), 30, "paused")
    code, body = follower.request("PUT", f"/connectors/{name}/resume")
    assert (code, body) == (202, None)
    wait_for(lambda: states(follower, name) == ("RUNNING", ["RUNNING", "RUNNING"]), 30,
             "resumed")
    code, body = follower.request(
        "POST", f"/connectors/{name}/restart?includeTasks=true&onlyFailed=false")
    assert code == 202, body
    assert body["name"] == name and body["connector"]["state"] == "RESTARTING"
    assert [t["state"] for t in body["tasks"]] == ["RESTARTING", "RESTARTING"]
    wait_for(lambda: states(follower, name) == ("RUNNING", ["RUNNING", "RUNNING"]), 30,
             "restarted")
    assert follower.request("POST", f"/connectors/{name}/restart") == (204, None)
    assert follower.request("POST", f"/connectors/{name}/tasks/1/restart") == (204, None)
    assert follower.request("POST", f"/connectors/{name}/tasks/9/restart")[0] == 404
    code, body = follower.request("PUT", f"/connectors/{name}/config",
                                  {**config, "tasks.max": "1"})
    assert code == 200 and body["config"]["tasks.max"] == "1"
    wait_for(lambda: states(follower, name) == ("RUNNING", ["RUNNING"]), 30, "one task")
    code, body = follower.request("GET", f"/connectors/{name}/topics")
    assert code == 200 and set(body) == {name} and isinstance(body[name]["topics"], list)

    assert follower.request("PUT", f"/connectors/{name}/stop") == (204, None)
    wait_for(lambda: states(follower, name) == ("STOPPED", []), 30, "stopped")
    offsets = wait_for(lambda: follower.request("GET", f"/connectors/{name}/offsets")[1][
        "offsets"], 30, "committed offsets")
    assert {o["partition"]["task"] for o in offsets} <= {"0", "1"}
    patch = {"offsets": [{"partition": {"task": "0"}, "offset": {"n": 1000}}]}

    def altered() -> tuple[int, Any] | None:
        # 409 until every worker has stopped the connector's tasks (their last offset commit
        # would otherwise land after the change), as Kafka's leader during that rebalance.
        code, body = follower.request("PATCH", f"/connectors/{name}/offsets", patch)
        assert code in (200, 409), body
        return (code, body) if code == 200 else None

    assert wait_for(altered, 30, "the offsets altered") == (200, {
        "message": "The offsets for this connector have been altered successfully"})
    wait_for(lambda: {"partition": {"task": "0"}, "offset": {"n": 1000}} in leader.request(
        "GET", f"/connectors/{name}/offsets")[1]["offsets"], 30, "altered offsets")
    code, body = follower.request("DELETE", f"/connectors/{name}/offsets")
    assert (code, body) == (200, {"message": "The offsets for this connector have been reset "
                                             "successfully"})
    assert follower.request("GET", f"/connectors/{name}/offsets") == (200, {"offsets": []})

    logger = "strom.connect.ui_flow"
    code, _ = follower.request("PUT", f"/admin/loggers/{logger}?scope=cluster",
                               {"level": "DEBUG"})
    assert code == 204
    for worker in cluster.workers:  # applied by every worker
        wait_for(lambda w=worker: w.request("GET", f"/admin/loggers/{logger}")[1].get("level")
                 == "DEBUG", 30, f"the level on {worker.id}")

    assert follower.request("DELETE", f"/connectors/{name}") == (204, None)
    for worker in cluster.workers:
        wait_for(lambda w=worker: w.request("GET", f"/connectors/{name}")[0] == 404, 30,
                 f"deleted on {worker.id}")
        assert worker.request("GET", "/connectors") == (200, [])
