"""strom.connect throughput and latency: file -> topic, topic -> PostgreSQL, PostgreSQL CDC.

Every process is separate: a strom broker (`python -m strom serve --data-dir DIR`, with
`group.initial.rebalance.delay.ms=0`), a standalone strom.connect worker (`python -m strom
connect --standalone worker.properties`, no connector files: the script creates each
connector through the REST API and deletes it after its run), a private PostgreSQL server
(`strom.testing.postgres.PostgresServer`: fsync=on, synchronous_commit=on,
wal_level=logical) and, for the comparison, two peers doing the same work with the same
client settings: the hand-written baseline `bench/connect_baseline.py` (confluent-kafka +
asyncpg) and bytewax 0.21 (`bench/connect_bytewax.py`, in its own venv under bench/.venvs,
made on first use). This script only creates the work and watches it finish.

1. file -> topic: FileStreamSource over a file of N lines of ~100 B into a 1-partition topic,
   value StringConverter (the line as is), then JsonConverter schemas.enable=true (as Kafka's
   quickstart; --no-file-json skips it), batch.size 2000. Time from POST /connectors until
   the topic's high watermark reaches N (get_watermark_offsets every 20 ms): records/s and
   MB/s of lines.
2. topic -> PostgreSQL: a 1-partition topic pre-filled with N records in JsonConverter's
   schemas.enable=true format (a struct: id int64 + 4 fields, ~445 B a record), written by the
   PostgreSQL sink with auto.create=true: insert.mode=insert (pk.mode=none, binary COPY) and
   insert.mode=upsert (pk.mode=record_value, pk.fields=id), each into its own new table. Time
   from POST /connectors until SELECT count(*) reaches N (polled every 100 ms).
3. CDC: the PostgreSQL CDC source (pgoutput) on a table; a thread inserts one row per statement
   (autocommit) at R rows/s for S seconds, each carrying time.time_ns() taken just before its
   INSERT; a consumer in this process reads the topic and records receive time - that time:
   p50/p95/p99/max. Then the sustained rate: N rows inserted into another table in 10
   transactions (INSERT ... SELECT generate_series), timed from the first INSERT until that
   table's topic holds N records.

The peers run for 1 and 2 (a hand-written CDC reader of pgoutput is not what a team would
write for a comparison, and bytewax has no PostgreSQL CDC source; CDC is absolute). Each peer
process starts, imports, prints "ready", and is timed from the line that tells it to go: like
the worker, it creates its clients in the timed part. The ratio columns are
strom.connect / peer.

Everything the run writes (broker data, the worker's offsets, the input file, PostgreSQL's
cluster) is in temporary directories removed at the end, also on errors, Ctrl-C and SIGTERM;
only the bytewax environment (an install, reused) and the results in bench/results/ stay.

Usage (from the repository root):

    PYTHONPATH=src:. .venv/bin/python -m bench.connect_bench            # ~2-3 min on 2 cores
    PYTHONPATH=src:. .venv/bin/python -m bench.connect_bench --short    # ~30 s: a check
    PYTHONPATH=src:. .venv/bin/python -m bench.connect_bench --only file,sink --peers none
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import confluent_kafka
import psycopg2
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

try:  # python -m bench.connect_bench, or python bench/connect_bench.py
    from bench.processes import REPO, Broker, Node, free_port, start_broker, stop_broker
except ImportError:  # pragma: no cover
    from processes import REPO, Broker, Node, free_port, start_broker, stop_broker

BASELINE = Path(__file__).resolve().with_name("connect_baseline.py")
BYTEWAX = Path(__file__).resolve().with_name("connect_bytewax.py")
# PEER ONLY: what the bytewax environment installs (its own venv, never strom's)
BYTEWAX_PACKAGES = ["bytewax==0.21.1", "confluent-kafka", "asyncpg"]
BROKER_SETTINGS = {"group.initial.rebalance.delay.ms": "0"}
PG_SETTINGS = {"wal_level": "logical", "max_replication_slots": "10", "max_wal_senders": "10",
               "shared_buffers": "256MB"}
JSON = "org.apache.kafka.connect.json.JsonConverter"
STRING = "org.apache.kafka.connect.storage.StringConverter"
STEP_LIMIT_S = 300.0  # bound on one measured run
SINK_SCHEMA = json.dumps({"type": "struct", "name": "bench.Order", "optional": False, "fields": [
    {"field": "id", "type": "int64", "optional": False},
    {"field": "customer", "type": "string", "optional": False},
    {"field": "amount", "type": "double", "optional": False},
    {"field": "quantity", "type": "int32", "optional": False},
    {"field": "note", "type": "string", "optional": True}]}, separators=(",", ":"))


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Stop(Exception):
    """SIGTERM or SIGHUP: unwinds like Ctrl-C, so that every `finally` cleans up."""


def on_signal(signum: int, _frame: Any) -> None:
    raise Stop(f"signal {signum}")


@dataclass
class Result:
    scenario: str
    runner: str  # "strom.connect" or "baseline"
    records: int
    seconds: float = 0.0
    first_s: float = 0.0  # time to the first record (startup: task start, group join, ...)
    mbytes: float = 0.0
    reached: int = 0
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds and not self.error else 0.0


# --------------------------------------------------------------------------- processes


def start_worker(root: Path, bootstrap: str) -> Node:
    """A standalone strom.connect worker with no connectors; returns once its REST API answers."""
    port = free_port()
    props = root / "worker.properties"
    props.write_text("\n".join([
        f"bootstrap.servers={bootstrap}", f"key.converter={JSON}", f"value.converter={JSON}",
        "key.converter.schemas.enable=true", "value.converter.schemas.enable=true",
        f"offset.storage.file.filename={root / 'connect.offsets'}",
        "offset.flush.interval.ms=10000", f"listeners=http://127.0.0.1:{port}", ""]))
    command = [sys.executable, "-m", "strom", "connect", "--standalone", str(props)]
    node = Node(200, port, command, root, root / "worker.log")
    node.spawn()
    deadline = time.perf_counter() + 60
    while True:
        if not node.alive():
            raise RuntimeError(f"the worker exited:\n{node.log_tail()}")
        with contextlib.suppress(OSError):
            if rest(node, "GET", "/")[0] == 200:
                return node
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the worker's REST API never answered:\n{node.log_tail()}")
        time.sleep(0.1)


def stop_node(node: Node | None) -> None:
    if node is None:
        return
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if not node.signal(sig) or node.wait(wait_s):
            return


def rest(node: Node, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{node.port}{path}", data=data,
                                     method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            raw = reply.read()
            return reply.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None


class Connector:
    """A connector created on the worker for one run, deleted at the end of it."""

    def __init__(self, worker: Node, name: str, config: dict[str, str]) -> None:
        self.worker, self.name, self.config = worker, name, config
        self.last_check = 0.0

    def start(self) -> None:
        code, body = rest(self.worker, "POST", "/connectors",
                          {"name": self.name, "config": self.config})
        if code != 201:
            raise RuntimeError(f"POST /connectors {self.name}: {code} {body}")

    def check(self) -> None:
        """Raise if the connector or a task failed (asked at most once a second)."""
        now = time.perf_counter()
        if now - self.last_check < 1.0:
            return
        self.last_check = now
        code, body = rest(self.worker, "GET", f"/connectors/{self.name}/status")
        states = [body["connector"], *body.get("tasks", [])] if code == 200 else []
        for state in states:
            if state.get("state") == "FAILED":
                raise RuntimeError(f"{self.name} failed: {state.get('trace', '')[-1500:]}")

    def delete(self) -> None:
        with contextlib.suppress(OSError):
            rest(self.worker, "DELETE", f"/connectors/{self.name}")


@dataclass(frozen=True)
class Peer:
    """What runs beside strom.connect: the hand-written baseline, or bytewax in its venv."""

    name: str
    python: str
    script: Path


class BaselineProcess:
    """A peer's script (connect_baseline.py, connect_bytewax.py) started ahead and told to go
    by `start()`."""

    def __init__(self, root: Path, name: str, argv: list[str], peer: Peer) -> None:
        self.log_path = root / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of strom
        with open(self.log_path, "ab") as logfile:
            self.proc = subprocess.Popen([peer.python, str(peer.script), *argv],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=logfile, env=env, start_new_session=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"{peer.name} did not start:\n{self.log_tail()}")

    def start(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def check(self) -> None:
        code = self.proc.poll()
        if code not in (None, 0):
            raise RuntimeError(f"the peer exited with {code}:\n{self.log_tail()}")

    def own_seconds(self) -> float | None:
        """The time the baseline took by its own clock (`done S` once flushed), if it said."""
        assert self.proc.stdout is not None
        with contextlib.suppress(ValueError, OSError):
            line = self.proc.stdout.readline().decode().split()
            if line[:1] == ["done"]:
                return float(line[1])
        return None

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-15:])

    def stop(self) -> None:
        for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait_s)


# --------------------------------------------------------------------------- helpers


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)
    deadline = time.perf_counter() + 30
    while topic not in admin.list_topics(timeout=10).topics:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"topic {topic} never showed up in Metadata")
        time.sleep(0.05)


class Watermarks:
    """The sum of a topic's high watermarks, asked of the broker (not cached)."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watermarks",
                                  "enable.auto.commit": False})

    def total(self, topic: str, partitions: int = 1) -> int:
        return sum(self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10,
                                                       cached=False)[1]
                   for p in range(partitions))

    def close(self) -> None:
        self.consumer.close()


def measure(result: Result, start: Callable[[], None], progress: Callable[[], int],
            check: Callable[[], None], interval_s: float, limit_s: float = STEP_LIMIT_S
            ) -> Result:
    """Calls start(), then progress() every interval_s until it reaches result.records;
    check() raises when the runner failed. Fills in seconds, first_s, reached or error."""
    began = time.perf_counter()
    try:
        start()
        while True:
            reached = progress()
            now = time.perf_counter() - began
            if reached and not result.first_s:
                result.first_s = now
            result.reached = reached
            if reached >= result.records:
                result.seconds = now
                return result
            if now > limit_s:
                raise TimeoutError(f"{reached:,} of {result.records:,} after {limit_s:.0f} s")
            check()
            time.sleep(interval_s)
    except (RuntimeError, TimeoutError, OSError, psycopg2.Error) as exc:
        result.error = str(exc).splitlines()[0][:300]
        log(f"  FAILED {result.scenario} {result.runner}: {exc}")
        return result


def progress_line(result: Result, unit: str = "records") -> None:
    if result.error:
        return
    mb = f", {result.mbytes / result.seconds:.1f} MB/s" if result.mbytes else ""
    own = result.extra.get("own_seconds")
    log(f"  {result.runner}: {result.records:,} {unit} in {result.seconds:.2f} s "
        f"({result.rate:,.0f}/s{mb}; first after {result.first_s:.2f} s"
        + (f"; by its own clock {own:.2f} s" if own is not None else "") + ")")


# --------------------------------------------------------------------------- 1. file -> topic


def write_lines(path: Path, count: int) -> int:
    """count lines of 100 bytes (99 + newline); returns the bytes of the lines' text."""
    pad = "x" * 80
    with open(path, "w") as out:
        for start in range(0, count, 10000):
            out.write("".join(f"line {i:012d} {pad}\n"
                              for i in range(start, min(count, start + 10000))))
    return count * 99


def bench_file(ctx: Context) -> list[Result]:
    count = ctx.args.file_records
    path = ctx.root / "lines.txt"
    text_bytes = write_lines(path, count)
    log(f"file -> topic: {count:,} lines of 100 B ({path.stat().st_size / 1e6:.0f} MB)")
    variants = [("string", STRING)] + ([("json", JSON)] if ctx.args.file_json else [])
    results = []
    for label, converter in variants:
        scenario = f"file -> topic, {label}"
        topic = f"file-{label}"
        create_topic(ctx.broker.bootstrap, topic)
        connector = Connector(ctx.worker, f"file-source-{label}", {
            "connector.class": "FileStreamSource", "tasks.max": "1", "file": str(path),
            "topic": topic, "batch.size": str(ctx.args.file_batch),
            "value.converter": converter, "value.converter.schemas.enable": "true"})
        result = Result(scenario, "strom.connect", count, mbytes=text_bytes / 1e6)
        try:
            measure(result, connector.start, lambda t=topic: ctx.marks.total(t),
                    connector.check, 0.02)
        finally:
            connector.delete()
        progress_line(result)
        results.append(result)
        for peer in ctx.peers:
            results.append(file_peer(ctx, peer, scenario, label, path, text_bytes))
    path.unlink()
    return results


def file_peer(ctx: Context, peer: Peer, scenario: str, label: str, path: Path,
              text_bytes: int) -> Result:
    count = ctx.args.file_records
    topic = f"file-{label}-{peer.name}"
    create_topic(ctx.broker.bootstrap, topic)
    result = Result(scenario, peer.name, count, mbytes=text_bytes / 1e6)
    try:
        process = BaselineProcess(ctx.root, f"{peer.name}-file-{label}", [
            "file", "--bootstrap", ctx.broker.bootstrap, "--topic", topic, "--file", str(path),
            "--format", label, "--batch-size", str(ctx.args.file_batch)], peer)
    except RuntimeError as exc:
        result.error = str(exc).splitlines()[0]
        log(f"  FAILED {scenario} {peer.name}: {exc}")
        return result
    try:
        measure(result, process.start, lambda: ctx.marks.total(topic), process.check, 0.02)
    finally:
        process.stop()
    own = process.own_seconds()
    if own is not None:
        result.extra["own_seconds"] = own
    progress_line(result)
    return result


# --------------------------------------------------------------------------- 2. topic -> PG


def prefill(bootstrap: str, topic: str, count: int) -> float:
    """count JsonConverter (schemas.enable=true) records of bench.Order; returns MB written."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "1",
                         "batch.size": 1 << 20})
    head = '{"schema":' + SINK_SCHEMA + ',"payload":'
    total = 0
    for i in range(count):
        payload = {"id": i, "customer": f"customer-{i % 1000:04d}", "amount": i * 0.01,
                   "quantity": i % 100, "note": "a note of some twenty"}
        value = (head + json.dumps(payload, separators=(",", ":")) + "}").encode()
        total += len(value)
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.1)
        if i % 10000 == 0:
            producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("pre-fill: records still unsent after 60 s")
    return total / 1e6


def row_count(conn: Any, table: str) -> int:
    with conn.cursor() as cur:
        try:
            cur.execute(f'SELECT count(*) FROM "{table}"')
        except psycopg2.errors.UndefinedTable:
            return 0
        return int(cur.fetchone()[0])


def bench_sink(ctx: Context) -> list[Result]:
    count = ctx.args.sink_records
    topic = "orders"
    create_topic(ctx.broker.bootstrap, topic)
    log(f"topic -> PostgreSQL: pre-filling {topic} with {count:,} records ...")
    mbytes = prefill(ctx.broker.bootstrap, topic, count)
    log(f"  {mbytes:.0f} MB of JSON with schemas ({mbytes * 1e6 / count:.0f} B a record)")
    url = ctx.pg.new_database()
    dbname = url.rsplit("/", 1)[1]
    conn = ctx.pg_connect(dbname)
    modes = {"insert": {"insert.mode": "insert", "pk.mode": "none"},
             "upsert": {"insert.mode": "upsert", "pk.mode": "record_value", "pk.fields": "id"}}
    results = []
    try:
        for mode, settings in modes.items():
            scenario = f"topic -> PostgreSQL, {mode}"
            table = f"sink_{mode}"
            connector = Connector(ctx.worker, f"pg-sink-{mode}", {
                "connector.class": "io.confluent.connect.jdbc.JdbcSinkConnector",
                "tasks.max": "1", "topics": topic, "table.name.format": table,
                "connection.url": f"jdbc:postgresql://127.0.0.1:{ctx.pg.port}/{dbname}",
                "connection.user": ctx.pg_user, "connection.password": ctx.pg_password,
                "auto.create": "true", **settings})
            result = Result(scenario, "strom.connect", count, mbytes=mbytes)
            try:
                measure(result, connector.start, lambda t=table: row_count(conn, t),
                        connector.check, 0.1)
            finally:
                connector.delete()
            progress_line(result)
            results.append(result)
            for peer in ctx.peers:
                results.append(sink_peer(ctx, peer, scenario, mode, topic, url, mbytes, conn))
    finally:
        conn.close()
    return results


def sink_peer(ctx: Context, peer: Peer, scenario: str, mode: str, topic: str, url: str,
              mbytes: float, conn: Any) -> Result:
    table = f"{peer.name}_{mode}"
    result = Result(scenario, peer.name, ctx.args.sink_records, mbytes=mbytes)
    try:
        process = BaselineProcess(ctx.root, f"{peer.name}-sink-{mode}", [
            "sink", "--bootstrap", ctx.broker.bootstrap, "--topic", topic,
            "--group", f"{peer.name}-{mode}", "--dsn", url, "--table", table, "--mode", mode],
            peer)
    except RuntimeError as exc:
        result.error = str(exc).splitlines()[0]
        log(f"  FAILED {scenario} {peer.name}: {exc}")
        return result
    try:
        measure(result, process.start, lambda: row_count(conn, table), process.check, 0.1)
    finally:
        process.stop()
    progress_line(result)
    return result


# --------------------------------------------------------------------------- 3. CDC


def cdc_events(consumer: Consumer, timeout_s: float) -> Iterator[tuple[int, dict[str, Any]]]:
    """(receive time ns, the change event) of the messages that arrive within timeout_s.

    poll(), one message at a time: consume(n, timeout) would hold what arrived until n
    messages or the timeout."""
    deadline = time.perf_counter() + timeout_s
    while (remaining := deadline - time.perf_counter()) > 0:
        message = consumer.poll(remaining)
        received = time.time_ns()
        if message is None or message.error() or message.value() is None:
            continue
        event = json.loads(message.value())
        if event.get("after"):
            yield received, event


def paced_inserts(conn: Any, rate: int, seconds: float, stop: threading.Event,
                  sent: list[int]) -> None:
    """One INSERT (autocommit) every 1/rate s, each with time.time_ns() taken just before."""
    began = time.perf_counter()
    with conn.cursor() as cur:
        for i in range(int(rate * seconds)):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if stop.is_set():
                return
            cur.execute("INSERT INTO events (sent_ns, payload) VALUES (%s, %s)",
                        (time.time_ns(), "p" * 80))
            sent.append(i)


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_run(ctx: Context, writer_conn: Any, consumer: Consumer) -> Result:
    rate, seconds = ctx.args.cdc_rate, ctx.args.cdc_seconds
    expected = int(rate * seconds)
    result = Result(f"CDC latency @ {rate} rows/s for {seconds:g} s", "strom.connect", expected)
    latencies: list[float] = []
    stages: list[tuple[float, float, float]] = []  # ms: INSERT -> commit -> read -> received
    stop = threading.Event()
    sent: list[int] = []
    writer = threading.Thread(target=paced_inserts, args=(writer_conn, rate, seconds, stop, sent),
                              daemon=True)
    writer.start()
    deadline = time.perf_counter() + seconds + 30
    try:
        while len(latencies) < expected and time.perf_counter() < deadline:
            for received, event in cdc_events(consumer, 0.2):
                after = event["after"]
                if after.get("payload") != "warm":
                    sent_ms = int(after["sent_ns"]) / 1e6
                    latencies.append(received / 1e6 - sent_ms)
                    stages.append((event["source"]["ts_ms"] - sent_ms,
                                   event["ts_ms"] - event["source"]["ts_ms"],
                                   received / 1e6 - event["ts_ms"]))
    finally:
        stop.set()
        writer.join(10)
    result.reached = len(latencies)
    if len(latencies) < expected:
        result.error = f"{len(latencies):,} of {expected:,} changes arrived ({len(sent):,} sent)"
        log(f"  FAILED {result.scenario}: {result.error}")
    result.seconds = seconds
    if latencies:
        ordered = sorted(latencies)
        result.extra = {"p50_ms": percentile(ordered, 0.50), "p95_ms": percentile(ordered, 0.95),
                        "p99_ms": percentile(ordered, 0.99), "max_ms": ordered[-1],
                        "mean_ms": statistics.fmean(ordered)}
        log("  latency ms: " + ", ".join(f"{k[:-3]} {v:.1f}" for k, v in result.extra.items()))
        # where the time goes (medians, ms; PostgreSQL's commit time and the connector's
        # envelope ts_ms have millisecond resolution)
        result.extra["stages_p50_ms"] = {
            name: statistics.median(s[i] for s in stages) for i, name in
            enumerate(("insert_to_commit", "commit_to_connector", "connector_to_consumer"))}
        log("  medians ms: " + ", ".join(f"{k} {v:.1f}"
                                         for k, v in result.extra["stages_p50_ms"].items()))
    return result


def bulk_run(ctx: Context, writer_conn: Any, topic: str) -> Result:
    count = ctx.args.cdc_bulk
    result = Result(f"CDC throughput, {count:,} rows in 10 transactions", "strom.connect", count)
    step = max(1, count // 10)
    inserted: list[float] = []

    def insert_all() -> None:
        began = time.perf_counter()
        with writer_conn.cursor() as cur:
            for start in range(0, count, step):
                cur.execute("INSERT INTO bulk (id, sent_ns, payload) SELECT g, 0, "
                            "repeat('b', 80) FROM generate_series(%s, %s) g",
                            (start, min(count, start + step) - 1))
        inserted.append(time.perf_counter() - began)

    measure(result, insert_all, lambda: ctx.marks.total(topic), lambda: None, 0.05)
    if inserted:
        result.extra["insert_s"] = inserted[0]
    progress_line(result, "rows")
    return result


def bench_cdc(ctx: Context) -> list[Result]:
    dbname = ctx.pg.new_database().rsplit("/", 1)[1]
    conn = ctx.pg_connect(dbname)
    prefix = "cdc"
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE events (id bigserial PRIMARY KEY, sent_ns bigint NOT NULL, "
                    "payload text)")
        cur.execute("CREATE TABLE bulk (id bigint PRIMARY KEY, sent_ns bigint, payload text)")
    events_topic, bulk_topic = f"{prefix}.public.events", f"{prefix}.public.bulk"
    for topic in (events_topic, bulk_topic):
        create_topic(ctx.broker.bootstrap, topic)
    connector = Connector(ctx.worker, "pg-cdc", {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1", "database.hostname": "127.0.0.1", "database.port": str(ctx.pg.port),
        "database.user": ctx.pg_user, "database.password": ctx.pg_password,
        "database.dbname": dbname, "topic.prefix": prefix, "slot.name": "bench_slot",
        "publication.name": "bench_pub", "slot.drop.on.stop": "true",
        "key.converter": JSON, "key.converter.schemas.enable": "false",
        "value.converter": JSON, "value.converter.schemas.enable": "false"})
    consumer = Consumer({"bootstrap.servers": ctx.broker.bootstrap, "group.id": "bench-cdc",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(events_topic, 0, 0)])
    results = []
    try:
        log("CDC: starting the connector, warming up ...")
        connector.start()
        warm_up(conn, consumer, connector)
        log(f"CDC latency: {ctx.args.cdc_rate} rows/s for {ctx.args.cdc_seconds:g} s ...")
        results.append(latency_run(ctx, conn, consumer))
        log(f"CDC throughput: {ctx.args.cdc_bulk:,} rows ...")
        results.append(bulk_run(ctx, conn, bulk_topic))
    finally:
        consumer.close()
        connector.delete()
        conn.close()
    return results


def warm_up(conn: Any, consumer: Consumer, connector: Connector) -> None:
    """Insert a row every 100 ms until one arrives (the slot exists, the task streams)."""
    deadline = time.perf_counter() + 60
    with conn.cursor() as cur:
        while time.perf_counter() < deadline:
            cur.execute("INSERT INTO events (sent_ns, payload) VALUES (%s, 'warm')",
                        (time.time_ns(),))
            if any(True for _ in cdc_events(consumer, 0.1)):
                for _ in cdc_events(consumer, 0.5):  # drain the other warm-up rows
                    pass
                return
            connector.check()
    raise RuntimeError("CDC: no change arrived within 60 s of starting the connector")


# --------------------------------------------------------------------------- the run


@dataclass
class Context:
    args: argparse.Namespace
    root: Path
    broker: Broker
    worker: Node
    marks: Watermarks
    peers: list[Peer] = field(default_factory=list)
    pg: Any = None
    pg_user: str = ""
    pg_password: str = ""

    def pg_connect(self, dbname: str) -> Any:
        conn = psycopg2.connect(host="127.0.0.1", port=self.pg.port, user=self.pg_user,
                                password=self.pg_password, dbname=dbname)
        conn.autocommit = True
        return conn


def machine_info() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.machine())
    try:
        pg = subprocess.run(["psql", "--version"], capture_output=True, text=True,
                            timeout=10).stdout.strip()
    except OSError:
        pg = "unknown"
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu,
            "python": platform.python_version(), "platform": platform.platform(),
            "confluent_kafka": str(confluent_kafka.__version__),
            "librdkafka": confluent_kafka.libversion()[0], "postgresql": pg}


def header_lines(machine: dict[str, Any], args: argparse.Namespace) -> list[str]:
    return [f"strom.connect benchmark ({args.mode} run, "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')})",
            f"machine: nproc={machine['nproc']}, {machine['cpu']}, {machine['platform']}",
            f"python {machine['python']}, confluent-kafka {machine['confluent_kafka']} "
            f"(librdkafka {machine['librdkafka']}), {machine['postgresql']}",
            "broker, worker, PostgreSQL (fsync=on), the peers and this script share the "
            f"{machine['nproc']} cores; the worker is a separate standalone process",
            "peers (no Python Kafka Connect runtime installs here): baseline = "
            "bench/connect_baseline.py, a hand-written confluent-kafka + asyncpg pipeline doing "
            "the same work; bytewax = the same pipelines as bytewax 0.21 dataflows "
            "(bench/connect_bytewax.py, in its own venv)"]


def table_header(peers: list[str]) -> list[str]:
    return ["figure", "strom.connect", "first record after",
            *(cell for p in peers for cell in (p, f"strom.connect/{p}"))]


def table_rows(results: list[Result], peers: list[str]) -> list[list[str]]:
    rows = []
    by_key = {(r.scenario, r.runner): r for r in results}
    for r in results:
        if r.runner != "strom.connect":
            continue
        if "latency" in r.scenario:
            figure = ("p50 {p50_ms:.1f} / p95 {p95_ms:.1f} / p99 {p99_ms:.1f} / "
                      "max {max_ms:.1f} ms").format(**r.extra) if r.extra else "failed"
            rows.append([r.scenario, figure, "-", *(["-"] * 2 * len(peers))])
            continue
        row = [r.scenario, rate_cell(r), f"{r.first_s:.2f} s" if not r.error else "-"]
        for name in peers:
            other = by_key.get((r.scenario, name))
            row += [rate_cell(other) if other else "-",
                    f"{r.rate / other.rate:.2f}x" if other and other.rate and r.rate else "-"]
        rows.append(row)
    return rows


def rate_cell(r: Result) -> str:
    if r.error:
        return f"failed ({r.reached:,} of {r.records:,})"
    mb = f", {r.mbytes / r.seconds:.1f} MB/s" if r.mbytes else ""
    return f"{r.rate:,.0f} rec/s ({r.seconds:.1f} s{mb})"


def format_table(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                *("| " + " | ".join(row) + " |" for row in rows)]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [fmt(header), "  ".join("-" * w for w in widths), *map(fmt, rows)]


def write_results(out: Path, header: list[str], table: list[str], payload: dict[str, Any]
                  ) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"connect-bench-{stamp}.json").write_text(
        json.dumps(payload, indent=2, default=str) + "\n")
    md = out / f"connect-bench-{stamp}.md"
    md.write_text("\n".join([f"# {header[0]}", "", *(f"- {line}" for line in header[1:]), "",
                             *table, ""]))
    return md


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true",
                        help="small sizes for a check (~30 s): 50,000 lines, 20,000 records, "
                        "5 s of CDC at 100 rows/s, 10,000 bulk rows")
    parser.add_argument("--only", default="file,sink,cdc",
                        help="comma-separated parts: file, sink, cdc (all)")
    parser.add_argument("--peers", default="baseline,bytewax",
                        help="what runs beside strom.connect for file and sink: baseline "
                        "(bench/connect_baseline.py), bytewax (bench/connect_bytewax.py in "
                        "its own venv), both (the default) or none")
    parser.add_argument("--venv", type=Path, default=REPO / "bench" / ".venvs",
                        help="where the bytewax environment is made on first use "
                        "(bench/.venvs, gitignored)")
    parser.add_argument("--file-records", type=int, help="lines of the file (1,000,000)")
    parser.add_argument("--file-batch", type=int, default=2000,
                        help="FileStreamSource batch.size (2000, its default)")
    parser.add_argument("--no-file-json", dest="file_json", action="store_false",
                        help="skip the file -> topic run with JsonConverter "
                        "schemas.enable=true (run by default after the StringConverter one)")
    parser.add_argument("--sink-records", type=int, help="records for the sink (200,000)")
    parser.add_argument("--cdc-rate", type=int, help="CDC latency: rows/s (200)")
    parser.add_argument("--cdc-seconds", type=float, help="CDC latency: seconds (20)")
    parser.add_argument("--cdc-bulk", type=int, help="CDC throughput: rows (100,000)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results",
                        help="where the JSON and markdown results go (bench/results)")
    args = parser.parse_args()
    short = args.short
    sizes = ("file_records", "sink_records", "cdc_rate", "cdc_seconds", "cdc_bulk")
    args.mode = "short" if short else "full"
    if any(getattr(args, name) is not None for name in sizes):
        args.mode += ", sizes changed"
    for name, full, small in (("file_records", 1_000_000, 50_000),
                              ("sink_records", 200_000, 20_000), ("cdc_rate", 200, 100),
                              ("cdc_seconds", 20.0, 5.0), ("cdc_bulk", 100_000, 10_000)):
        if getattr(args, name) is None:
            setattr(args, name, small if short else full)
    args.parts = {p.strip() for p in args.only.split(",") if p.strip()}
    args.peer_names = [p.strip() for p in args.peers.split(",")
                       if p.strip() in ("baseline", "bytewax")]
    return args


def bytewax_python(root: Path) -> str:
    """PEER ONLY: the python of bytewax's own environment, made on first use (~10 s)."""
    venv = root / "bytewax"
    python = venv / "bin" / "python"
    ready = venv / ".bench-ready"
    if not ready.exists():
        log(f"creating the bytewax environment in {venv} (python -m venv + pip install "
            f"{' '.join(BYTEWAX_PACKAGES)}) ...")
        if venv.exists():
            shutil.rmtree(venv)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *BYTEWAX_PACKAGES], check=True, timeout=900)
        ready.write_text(subprocess.run([str(python), "-m", "pip", "freeze"], check=True,
                                        capture_output=True, text=True, timeout=120).stdout)
    return str(python)


def make_peers(args: argparse.Namespace) -> list[Peer]:
    peers = []
    for name in args.peer_names:
        if name == "baseline":
            peers.append(Peer("baseline", sys.executable, BASELINE))
            continue
        try:
            peers.append(Peer("bytewax", bytewax_python(args.venv), BYTEWAX))
        except (OSError, subprocess.SubprocessError) as exc:
            log(f"bytewax left out: its environment could not be made ({exc})")
    args.peer_names = [peer.name for peer in peers]
    return peers


def run(args: argparse.Namespace, root: Path, closers: list[Callable[[], None]]
        ) -> list[Result]:
    log("starting a strom broker and a standalone strom.connect worker ...")
    broker = start_broker("strom", root, "", settings=BROKER_SETTINGS)
    closers.append(lambda: stop_broker(broker))
    worker = start_worker(root, broker.bootstrap)
    closers.append(lambda: stop_node(worker))
    marks = Watermarks(broker.bootstrap)
    closers.append(marks.close)
    ctx = Context(args, root, broker, worker, marks, make_peers(args))
    results: list[Result] = []
    if "file" in args.parts:
        results += bench_file(ctx)
    if args.parts & {"sink", "cdc"}:
        from strom.testing.postgres import PASSWORD, USER, PostgresServer

        log("starting PostgreSQL (initdb in a temporary directory) ...")
        ctx.pg = PostgresServer(fsync=True, settings=PG_SETTINGS)
        closers.append(ctx.pg.close)
        ctx.pg.start()
        ctx.pg_user, ctx.pg_password = USER, PASSWORD
    if "sink" in args.parts:
        results += bench_sink(ctx)
    if "cdc" in args.parts:
        results += bench_cdc(ctx)
    return results


def main() -> int:
    args = parse_args()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    machine = machine_info()
    header = header_lines(machine, args)
    print("\n".join(header), flush=True)
    root = Path(tempfile.mkdtemp(prefix="strom-connect-bench-"))
    closers: list[Callable[[], None]] = []
    began = time.perf_counter()
    try:
        try:
            results = run(args, root, closers)
        finally:
            for close in reversed(closers):
                with contextlib.suppress(Exception):
                    close()
            shutil.rmtree(root, ignore_errors=True)
    except (KeyboardInterrupt, Stop) as exc:
        log(f"interrupted ({str(exc) or 'Ctrl-C'}): processes stopped, temporary files removed")
        return 130
    columns = table_header(args.peer_names)
    rows = table_rows(results, args.peer_names)
    print("\n" + "\n".join([header[0], *format_table(columns, rows, markdown=False)]))
    print(f"\n(total {time.perf_counter() - began:.0f} s)")
    if args.short:
        print("short run: the peers' runs last under a second, so their start-up weighs in"
              " their rates and the ratios; take figures from a full run")
    payload = {"machine": machine, "settings": {k: v for k, v in vars(args).items()
                                                if k not in ("out", "parts", "venv")},
               "results": [asdict(r) | {"rate": r.rate} for r in results]}
    md = write_results(args.out, header, format_table(columns, rows, markdown=True), payload)
    log(f"wrote {md.with_suffix('.json').name} and {md.name} in {md.parent}")
    return 0 if all(not r.error for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
