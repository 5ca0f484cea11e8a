"""Side-by-side benchmark of strom and Tansu over the Kafka protocol.

Runs the same confluent-kafka workloads against each broker, one broker at a
time, and prints a table of absolute figures with the ratio strom/Tansu:

  1. producer throughput  (100 B / 1 KiB records, 1 / 6 partitions, acks=1 / all)
  2. consumer throughput  (reads back what step 1 produced; assign + poll, no group)
  3. end-to-end latency   (p50 / p99 / p99.9 at a paced 5,000 msg/s)
  4. startup time         (spawn -> first accepted TCP connection, median of 5)
  5. resident memory      (idle, and after 1,000 partitions with one record each)

Usage (from the repository root):

    .venv/bin/python bench/broker_bench.py            # full run, ~1.5 min on 2 cores
    .venv/bin/python bench/broker_bench.py --quick    # reduced run, ~30 s
    .venv/bin/python bench/broker_bench.py --only tansu
    .venv/bin/python bench/broker_bench.py --engines     # strom on its local log vs strom
                                                         # on PostgreSQL, 1 and 3 brokers

With --engines, "strom-pg" is strom with `--storage postgresql://...` on a private PostgreSQL
server the script starts (Debian's postgresql; fsync=on, synchronous_commit=on, on loopback),
and "strom-pg3" is three strom brokers (node ids 1-3) sharing one database of that server,
the clients bootstrapping from all three; the ratio columns are strom-pg/strom and
strom-pg3/strom.

Results are also written to bench/results/ as JSON and markdown. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from processes import (  # some are re-exported to the other benchmarks
    REPO,
    Broker,
    close_postgres,
    start_broker,
    stop_broker,
    tansu_binary,
)

BROKERS = ("tansu", "strom", "strom-pg", "strom-pg3")
PEER_BROKERS = ("tansu", "strom")  # the default run; --engines runs ENGINE_BROKERS
ENGINE_BROKERS = ("strom", "strom-pg", "strom-pg3")
# The ratio columns, numerator / denominator; --engines: PostgreSQL (1 and 3 brokers) over
# the local log.
RATIOS: list[tuple[str, str]] = [("strom", "tansu")]
ENGINE_RATIOS = [("strom-pg", "strom"), ("strom-pg3", "strom")]
T0 = time.perf_counter()


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Sizes and time bounds of one run (full or --quick)."""

    count_by_size: dict[int, int]  # record size (bytes) -> records per producer round
    rounds: int  # timed producer rounds per combo (the median rate is reported)
    produce_limit_s: float  # bound on one producer round (produce + flush)
    consume_limit_s: float  # bound on reading one topic back
    latency_rate: int  # msg/s of the paced latency producer
    latency_s: float  # how long the paced producer runs
    startups: int  # starts per broker for the startup-time median
    rss_topics: int  # topics x partitions for the RSS-after-partitions figure
    rss_partitions: int
    rss_create_limit_s: float  # bound on creating those partitions


FULL = Settings({100: 300_000, 1024: 75_000}, 3, 8.0, 10.0, 5_000, 10.0, 5, 100, 10, 60.0)
QUICK = Settings({100: 40_000, 1024: 10_000}, 1, 6.0, 6.0, 5_000, 3.0, 3, 100, 10, 30.0)
CREATE_LIMIT_S = 20.0  # bound on creating the few topics of the throughput and latency runs
PARTITION_COUNTS = (1, 6)
ACKS = ("1", "all")
# By default librdkafka stops fetching a partition for fetch.queue.backoff.ms (1 s) once
# queued.min.messages (100k) records are prefetched: a client-side stall in the middle of the
# consumer throughput runs, whatever the broker. Let it prefetch freely instead.
UNTHROTTLED_PREFETCH = {"queued.min.messages": 1_000_000, "queued.max.messages.kbytes": 1_048_576,
                        "fetch.queue.backoff.ms": 10}
FETCH_WAITS_MS = (500, 10)  # librdkafka's default, and a short wait that bounds fetch polling


def log(message: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {message}", flush=True)


# --------------------------------------------------------------------------- kafka helpers


def create_topics(bootstrap: str, partitions: dict[str, int], timeout_s: float) -> None:
    """Create topics (replication factor 1) and wait until metadata shows all partitions."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(name, count, 1) for name, count in partitions.items()]
    futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
    deadline = time.perf_counter() + timeout_s
    for name, future in futures.items():
        try:
            future.result(timeout=max(0.1, deadline - time.perf_counter()))
        except TimeoutError:
            raise TimeoutError(f"no CreateTopics answer for {name} within {timeout_s:.0f} s"
                               ) from None
    while time.perf_counter() < deadline:
        meta = admin.list_topics(timeout=max(0.1, min(5.0, deadline - time.perf_counter())))
        ready = [name for name, count in partitions.items()
                 if name in meta.topics and meta.topics[name].error is None
                 and len(meta.topics[name].partitions) == count]
        if len(ready) == len(partitions):
            return
        time.sleep(0.05)
    raise TimeoutError(f"topics not visible in metadata after {timeout_s:.0f}s")


def consumer_config(bootstrap: str) -> dict[str, Any]:
    """Assign-only consumer: strom has no group APIs yet, so never subscribe or commit."""
    return {"bootstrap.servers": bootstrap, "group.id": "bench", "enable.auto.commit": False,
            "enable.auto.offset.store": False, "auto.offset.reset": "earliest"}


@dataclass
class ProduceResult:
    sent: int
    delivered: int
    errors: int
    undelivered: int
    seconds: float
    first_error: str = ""

    @property
    def msgs_per_s(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0


def produce_run(bootstrap: str, topic: str, size: int, count: int, acks: str,
                limit_s: float, extra: dict[str, Any] | None = None,
                warmup: bool = False, payload: bytes | None = None) -> ProduceResult:
    """Produce `count` records of `size` bytes as fast as possible, then flush; time it all.

    `extra` is merged into the producer's configuration (eos_bench: enable.idempotence).
    `payload` (default: `size` random bytes) is the value of every record.
    With `warmup`, one extra record is produced and flushed before the clock starts: an
    idempotent producer only sends once it has its producer id, and librdkafka retries
    InitProducerId on a 500 ms timer when its first attempt finds no connection ready yet.
    """
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5,
                         "message.timeout.ms": int(limit_s * 1000) + 5000,
                         "delivery.report.only.error": True, "on_delivery": on_delivery}
                        | (extra or {}))
    payload = os.urandom(size) if payload is None else payload
    producer.list_topics(topic, timeout=10)  # connect + metadata outside the timed window
    if warmup:
        producer.produce(topic, payload)
        if producer.flush(10.0) or failures:
            raise RuntimeError(f"warm-up record not delivered: {failures or 'timed out'}")
    begin = time.perf_counter()
    deadline = begin + limit_s
    sent = 0
    while sent < count and time.perf_counter() < deadline:
        try:
            producer.produce(topic, payload)
        except BufferError:
            producer.poll(0.005)
            continue
        sent += 1
        if sent % 2000 == 0:
            producer.poll(0)
    undelivered = producer.flush(max(2.0, deadline - time.perf_counter()))
    seconds = time.perf_counter() - begin
    if undelivered:
        producer.purge()  # or destroying the producer waits out message.timeout.ms
    delivered = sent - len(failures) - undelivered
    return ProduceResult(sent, delivered, len(failures), undelivered, seconds,
                         failures[0] if failures else "")


@dataclass
class ConsumeResult:
    received: int
    errors: int
    seconds: float  # assign -> last record
    first_error: str = ""
    first_batch_s: float = 0.0  # assign -> first records

    @property
    def msgs_per_s(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0


def consume_run(bootstrap: str, topic: str, partitions: int, expected: int,
                limit_s: float) -> ConsumeResult:
    """Read `expected` records from the beginning of all partitions; time assign -> last."""
    consumer = Consumer(consumer_config(bootstrap) | UNTHROTTLED_PREFETCH)
    received = errors = 0
    first_error, first_batch_s = "", 0.0
    try:
        consumer.list_topics(topic, timeout=10)  # connect + metadata outside the timed window
        begin = time.perf_counter()
        # Offset 0 is the beginning of these fresh topics. With OFFSET_BEGINNING librdkafka
        # resolves partitions one by one and its first fetch can long-poll (fetch.wait.max.ms)
        # on a single empty partition: a client-side 0.5 s stall, whatever the broker.
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        while received < expected and time.perf_counter() - begin < limit_s:
            batch = consumer.consume(num_messages=min(1000, expected - received), timeout=0.2)
            for msg in batch:
                if msg.error() is None:
                    received += 1
                else:
                    errors += 1
                    first_error = first_error or str(msg.error())
            if batch and not first_batch_s:
                first_batch_s = time.perf_counter() - begin
        seconds = time.perf_counter() - begin
    finally:
        consumer.close()
    return ConsumeResult(received, errors, seconds, first_error, first_batch_s)


# --------------------------------------------------------------------------- latency


@dataclass
class LatencyResult:
    sent: int
    received: int
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    send_rate: float


def paced_send(producer: Producer, topic: str, rate: int, seconds: float, size: int,
               sent: list[int], done: threading.Event) -> None:
    """Send rate*seconds records at a fixed pace; each carries its send time (perf_counter_ns)."""
    pad = b"x" * (size - 8)
    total = int(rate * seconds)
    begin = time.perf_counter()
    for i in range(total):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        while True:
            try:
                producer.produce(topic, struct.pack(">q", time.perf_counter_ns()) + pad)
                break
            except BufferError:
                producer.poll(0.001)
        sent[0] += 1
        producer.poll(0)
    producer.flush(10)
    done.set()


def wait_for_warmup(consumer: Consumer, timeout_s: float) -> None:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None and msg.value() == b"warmup":
            return
    raise TimeoutError("warm-up record never arrived at the consumer")


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def latency_run(bootstrap: str, topic: str, rate: int, seconds: float, fetch_wait_ms: int,
                size: int = 100) -> LatencyResult:
    """A producer thread sends at a paced rate; this thread polls and records receive - send."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 1})
    consumer = Consumer(consumer_config(bootstrap) | {"fetch.wait.max.ms": fetch_wait_ms})
    samples: list[float] = []
    create_topics(bootstrap, {topic: 1}, CREATE_LIMIT_S)
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        producer.produce(topic, b"warmup")
        producer.flush(10)
        wait_for_warmup(consumer, 15.0)
        sent, done = [0], threading.Event()
        sender = threading.Thread(target=paced_send, daemon=True,
                                  args=(producer, topic, rate, seconds, size, sent, done))
        sender.start()
        deadline = time.perf_counter() + seconds + 10.0
        while time.perf_counter() < deadline and not (done.is_set() and len(samples) >= sent[0]):
            msg = consumer.poll(0.05)
            now_ns = time.perf_counter_ns()
            value = msg.value() if msg is not None and msg.error() is None else None
            if value is not None and len(value) == size:
                samples.append((now_ns - struct.unpack(">q", value[:8])[0]) / 1e6)
        sender.join(15.0)
    finally:
        consumer.close()
    if not samples:
        raise RuntimeError("no latency samples received")
    samples.sort()
    return LatencyResult(sent[0], len(samples), percentile(samples, 0.50),
                         percentile(samples, 0.99), percentile(samples, 0.999), samples[-1],
                         sent[0] / seconds)


# --------------------------------------------------------------------------- phases

Record = dict[str, Any]


def attempt(errors: list[str], label: str, fn: Callable[[], Any]) -> Any:
    """Run one measurement; on failure log it, remember it and return None."""
    try:
        return fn()
    except Exception as exc:  # a failed figure must not stop the run
        message = f"{label}: {type(exc).__name__}: {exc}".strip()
        errors.append(message)
        lines = message.splitlines()
        log(f"  FAILED {lines[0]}" + (f" ... {lines[-1]}" if len(lines) > 1 else ""))
        return None


def combo_key(size: int, partitions: int, acks: str) -> str:
    return f"{size} B, {partitions} part, acks={acks}"


def combos(settings: Settings) -> list[tuple[int, int, str]]:
    return [(size, parts, acks) for size in sorted(settings.count_by_size)
            for parts in PARTITION_COUNTS for acks in ACKS]


def topic_name(size: int, partitions: int, acks: str) -> str:
    return f"bench-{size}b-p{partitions}-acks{acks}"


def bench_startup(name: str, root: Path, tansu: str, settings: Settings) -> Record:
    """Median of N cold starts, each in a fresh data dir on a fresh port."""
    times: list[float] = []
    for i in range(settings.startups):
        broker = start_broker(name, root, tansu)
        stop_broker(broker)
        times.append(broker.startup_s)
        log(f"{name}: start {i + 1}/{settings.startups}: {broker.startup_s * 1000:.0f} ms")
    return {"runs_s": times, "median_s": statistics.median(times)}


def produce_one_each(bootstrap: str, topics: dict[str, int]) -> int:
    """One record to every partition; returns how many were still unacknowledged after 30 s."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for topic, count in topics.items():
        for partition in range(count):
            producer.produce(topic, b"one record", partition=partition)
    return int(producer.flush(30.0))


def bench_memory(name: str, root: Path, tansu: str, settings: Settings) -> Record:
    """RSS idle after start, then after topics x partitions with one record in each."""
    broker = start_broker(name, root, tansu)
    try:
        time.sleep(1.0)
        record: Record = {"idle_mb": broker.rss_mb()}
        log(f"{name}: RSS idle {record['idle_mb']:.1f} MiB")
        topics = {f"rss-{i:03d}": settings.rss_partitions for i in range(settings.rss_topics)}
        begin = time.perf_counter()
        create_topics(broker.bootstrap, topics, settings.rss_create_limit_s)
        record["create_s"] = time.perf_counter() - begin
        record["unflushed"] = produce_one_each(broker.bootstrap, topics)
        time.sleep(1.0)
        record["partitions_mb"] = broker.rss_mb()
        log(f"{name}: created {sum(topics.values())} partitions in {record['create_s']:.2f} s,"
            f" RSS {record['partitions_mb']:.1f} MiB ({record['unflushed']} unflushed)")
        return record
    finally:
        stop_broker(broker)


def produce_rounds(bootstrap: str, topic: str, size: int, acks: str,
                   settings: Settings) -> Record:
    """Timed producer rounds into one topic (stopping after one that ran out of time)."""
    count = settings.count_by_size[size]
    rounds: list[ProduceResult] = []
    while len(rounds) < settings.rounds and (not rounds or rounds[-1].sent == count):
        rounds.append(produce_run(bootstrap, topic, size, count, acks, settings.produce_limit_s))
    rate = statistics.median(r.msgs_per_s for r in rounds)
    totals = {name: sum(getattr(r, name) for r in rounds)
              for name in ("sent", "delivered", "errors", "undelivered")}
    return {"msgs_per_s": rate, "mb_per_s": rate * size / 1e6, "count": count * len(rounds),
            **totals, "first_error": next((r.first_error for r in rounds if r.first_error), ""),
            "rounds": [asdict(r) | {"msgs_per_s": r.msgs_per_s} for r in rounds]}


def bench_produce(broker: Broker, settings: Settings, errors: list[str]) -> Record:
    """The 8 producer combos, each on its own topic; returns per-combo results."""
    topics = {topic_name(*combo): combo[1] for combo in combos(settings)}
    create_topics(broker.bootstrap, topics, CREATE_LIMIT_S)
    out: Record = {}
    for size, parts, acks in combos(settings):
        key = combo_key(size, parts, acks)
        result = attempt(errors, f"produce {key}", partial(
            produce_rounds, broker.bootstrap, topic_name(size, parts, acks), size, acks,
            settings))
        if result is None:
            continue
        out[key] = result
        rates = ", ".join(f"{r['msgs_per_s'] / 1000:,.0f}k" for r in result["rounds"])
        log(f"{broker.name}: produce {key}: {result['msgs_per_s']:,.0f} msg/s,"
            f" {result['mb_per_s']:.1f} MB/s (rounds: {rates} msg/s; {result['delivered']:,}/"
            f"{result['count']:,} delivered, {result['errors']} errors)"
            + (f" first error: {result['first_error']}" if result["first_error"] else ""))
    return out


def bench_consume(broker: Broker, produced: Record, settings: Settings,
                  errors: list[str]) -> Record:
    """Read back each topic of bench_produce (as many records as were delivered)."""
    out: Record = {}
    for size, parts, acks in combos(settings):
        key = combo_key(size, parts, acks)
        expected = produced.get(key, {}).get("delivered", 0)
        if expected <= 0:
            continue
        result = attempt(errors, f"consume {key}", partial(
            consume_run, broker.bootstrap, topic_name(size, parts, acks), parts, expected,
            settings.consume_limit_s))
        if result is None:
            continue
        out[key] = dict(asdict(result), expected=expected, msgs_per_s=result.msgs_per_s,
                        mb_per_s=result.msgs_per_s * size / 1e6)
        log(f"{broker.name}: consume {key}: {result.msgs_per_s:,.0f} msg/s,"
            f" {out[key]['mb_per_s']:.1f} MB/s ({result.received:,}/{expected:,} read,"
            f" {result.seconds:.2f} s)"
            + (f" first error: {result.first_error}" if result.first_error else ""))
    return out


def bench_latency(broker: Broker, settings: Settings, errors: list[str]) -> Record:
    """One paced latency run per consumer fetch.wait.max.ms (librdkafka's default and short)."""
    out: Record = {}
    for wait_ms in FETCH_WAITS_MS:
        result = attempt(errors, f"latency fetch.wait.max.ms={wait_ms}", partial(
            latency_run, broker.bootstrap, f"bench-latency-wait{wait_ms}",
            settings.latency_rate, settings.latency_s, wait_ms))
        if result is None:
            continue
        out[f"wait{wait_ms}"] = asdict(result)
        log(f"{broker.name}: latency at {result.send_rate:,.0f} msg/s, fetch.wait.max.ms="
            f"{wait_ms}: p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, p99.9"
            f" {result.p999_ms:.2f} ms ({result.received:,}/{result.sent:,} received)")
    return out


def bench_broker(name: str, root: Path, tansu: str, settings: Settings) -> Record:
    """All measurements of one broker; every broker process is stopped before returning."""
    errors: list[str] = []
    record: Record = {"errors": errors}
    record["startup"] = attempt(errors, "startup",
                                lambda: bench_startup(name, root, tansu, settings))
    if record["startup"] is None:
        return record  # it does not start: nothing else to measure
    record["memory"] = attempt(errors, "memory",
                               lambda: bench_memory(name, root, tansu, settings))
    broker = attempt(errors, "start", lambda: start_broker(name, root, tansu))
    if broker is None:
        return record
    try:
        produced = attempt(errors, "produce", lambda: bench_produce(broker, settings, errors))
        record["produce"] = produced or {}
        if broker.alive():
            record["consume"] = attempt(errors, "consume", lambda: bench_consume(
                broker, record["produce"], settings, errors))
        if broker.alive():
            record["latency"] = bench_latency(broker, settings, errors)
        record["rss_after_bench_mb"] = broker.rss_mb() if broker.alive() else None
        if not broker.alive():
            errors.append(broker.exit_report())
    finally:
        stop_broker(broker)
    return record


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    """One line of the table: a figure per broker (None = not measured) and its display."""

    metric: str
    better: str  # "higher" or "lower"
    values: dict[str, float | None] = field(default_factory=dict)
    cells: dict[str, str] = field(default_factory=dict)

    def ratio(self, pair: tuple[str, str] | None = None) -> str:
        """This row's figure of pair[0] over pair[1] (default: the first of RATIOS)."""
        if pair is None and not RATIOS:
            return "-"
        top, bottom = (self.values.get(name) for name in (pair or RATIOS[0]))
        return "-" if top is None or not bottom else f"{top / bottom:.2f}x"


def ratio_label(pair: tuple[str, str]) -> str:
    return f"{pair[0]}/{pair[1]}"


def throughput_cell(entry: Record) -> str:
    text = f"{entry['msgs_per_s'] / 1000:,.1f}k msg/s, {entry['mb_per_s']:.1f} MB/s"
    failed = int(entry.get("errors", 0)) + int(entry.get("undelivered", 0))
    if "expected" in entry:  # a consumer result
        missing = int(entry["expected"]) - int(entry["received"])
    else:
        missing = int(entry["count"]) - int(entry["delivered"]) - failed
    if failed:
        text += f" ({failed:,} failed)"
    if missing > 0:
        text += f" ({missing:,} missing)"
    return text


def lookup(record: Record, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(record, dict) or record.get(key) is None:
            return None
        record = record[key]
    return record


def add_row(rows: list[Row], results: dict[str, Record], metric: str, better: str,
            path: tuple[str, ...], fmt: Callable[[Any], str],
            value: Callable[[Any], float] = float) -> None:
    row = Row(metric, better)
    for name, record in results.items():
        found = lookup(record, path)
        row.values[name] = None if found is None else value(found)
        row.cells[name] = "failed" if found is None else fmt(found)
    rows.append(row)


def build_rows(results: dict[str, Record], settings: Settings) -> list[Row]:
    rows: list[Row] = []
    for kind in ("produce", "consume"):
        for size, parts, acks in combos(settings):
            key = combo_key(size, parts, acks)
            add_row(rows, results, f"{kind} {key}", "higher", (kind, key), throughput_cell,
                    lambda entry: float(entry["msgs_per_s"]))
    for wait_ms in FETCH_WAITS_MS:
        for label, name in (("p50", "p50_ms"), ("p99", "p99_ms"), ("p99.9", "p999_ms")):
            add_row(rows, results, f"e2e latency {label} @ {settings.latency_rate:,} msg/s,"
                    f" fetch.wait.max.ms={wait_ms}", "lower", ("latency", f"wait{wait_ms}", name),
                    lambda ms: f"{ms:.2f} ms")
    add_row(rows, results, f"startup to first connection (median of {settings.startups};"
            " a cluster: until all accept and Metadata lists all)",
            "lower", ("startup", "median_s"), lambda s: f"{s * 1000:.0f} ms")
    parts = settings.rss_topics * settings.rss_partitions
    add_row(rows, results, "RSS idle after start", "lower", ("memory", "idle_mb"),
            lambda mb: f"{mb:.1f} MiB")
    add_row(rows, results, f"RSS with {parts:,} partitions, 1 record each", "lower",
            ("memory", "partitions_mb"), lambda mb: f"{mb:.1f} MiB")
    add_row(rows, results, f"create {settings.rss_topics} topics x {settings.rss_partitions}"
            " partitions", "lower", ("memory", "create_s"), lambda s: f"{s:.2f} s")
    add_row(rows, results, "RSS after the throughput + latency runs", "lower",
            ("rss_after_bench_mb",), lambda mb: f"{mb:.1f} MiB")
    return rows


def table_lines(rows: list[Row], names: list[str], markdown: bool) -> list[str]:
    header = ["metric", *names, *map(ratio_label, RATIOS), "better"]
    body = [[row.metric, *(row.cells.get(n, "-") for n in names),
             *(row.ratio(pair) for pair in RATIOS), row.better] for row in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return lines + ["| " + " | ".join(cells) + " |" for cells in body]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)]


def version_of(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=30,
                             env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
        return (out.stdout or out.stderr).strip().splitlines()[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"


def machine_info(tansu: str | None) -> Record:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.machine())
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu,
            "python": platform.python_version(), "platform": platform.platform(),
            "confluent_kafka": str(confluent_kafka.__version__),
            "librdkafka": confluent_kafka.libversion()[0],
            "tansu": version_of([tansu, "--version"]) if tansu else "-",
            "strom": version_of([sys.executable, "-m", "strom", "--version"])}


def header_lines(machine: Record, mode: str) -> list[str]:
    return [f"strom vs Tansu broker benchmark ({mode} run, {time.strftime('%Y-%m-%d %H:%M:%S')})",
            f"machine: nproc={machine['nproc']}, {machine['cpu']}, {machine['platform']}",
            f"python {machine['python']}, confluent-kafka {machine['confluent_kafka']}"
            f" (librdkafka {machine['librdkafka']}), {machine['tansu']}, {machine['strom']}",
            "tansu: memory storage engine; strom: defaults (log on local disk); strom-pg: "
            "strom on PostgreSQL 15 on loopback (fsync=on, synchronous_commit=on); strom-pg3: "
            "3 strom brokers sharing one database of that server"]


def write_results(out_dir: Path, header: list[str], rows: list[Row], names: list[str],
                  payload: Record, prefix: str = "bench") -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_path = out_dir / f"{prefix}-{stamp}.json"
    md_path = out_dir / f"{prefix}-{stamp}.md"
    payload = dict(payload, rows=[
        asdict(row) | {"ratio": row.ratio(),
                       "ratios": {ratio_label(pair): row.ratio(pair) for pair in RATIOS}}
        for row in rows])
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    errors = [f"- {name}: {e}" for name in names for e in payload["results"][name]["errors"]]
    md = [f"# {header[0]}", "", *(f"- {line}" for line in header[1:]), "",
          *table_lines(rows, names, markdown=True), ""]
    if errors:
        md += ["## Failures", "", *errors, ""]
    na = [f"- {name}: {key}: {reason}" for name in names
          for key, reason in payload["results"][name].get("na", {}).items()]
    if na:
        md += ["## Not measured (n/a, not supported)", "", *na, ""]
    md_path.write_text("\n".join(md))
    return json_path, md_path


# --------------------------------------------------------------------------- main


def parse_args(quick_help: str = "reduced run (~1 min)") -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--only", choices=BROKERS, help="benchmark one broker only")
    parser.add_argument("--engines", action="store_true",
                        help="strom on its local log vs strom on PostgreSQL, one broker and"
                        " a cluster of three (not Tansu)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results",
                        help="where the JSON and markdown results go")
    return parser.parse_args()


def report(results: dict[str, Record], names: list[str]) -> None:
    for name in names:
        for error in results[name]["errors"]:
            lines = error.splitlines()
            print(f"FAILED {name}: {lines[0]}" + (f" ... {lines[-1]}" if len(lines) > 1 else ""))
        for key, reason in results[name].get("na", {}).items():
            print(f"n/a {name}: {key}: {reason}")


def run_benchmark(args: argparse.Namespace, settings: Any,
                  bench: Callable[[str, Path, str, Any], Record],
                  rows_of: Callable[[dict[str, Record], Any], list[Row]],
                  header_of: Callable[[Record, str], list[str]], prefix: str) -> int:
    """Runs `bench` for each broker, prints the table, writes the results; the exit status."""
    brokers = ENGINE_BROKERS if getattr(args, "engines", False) else PEER_BROKERS
    if brokers is ENGINE_BROKERS:
        RATIOS[:] = ENGINE_RATIOS
    names = [args.only] if args.only else list(brokers)
    tansu = tansu_binary() if "tansu" in names else ""
    machine = machine_info(tansu or None)
    header = header_of(machine, "quick" if args.quick else "full")
    print("\n".join(header), flush=True)
    root = Path(tempfile.mkdtemp(prefix=f"strom-{prefix}-"))
    results: dict[str, Record] = {}
    try:
        for name in names:
            log(f"=== {name} ===")
            results[name] = bench(name, root, tansu, settings)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        close_postgres()
    rows = rows_of(results, settings)
    print("\n" + "\n".join([*header[:1], *table_lines(rows, names, markdown=False)]))
    report(results, names)
    payload = {"machine": machine, "settings": asdict(settings), "results": results}
    json_path, md_path = write_results(args.out, header, rows, names, payload, prefix=prefix)
    log(f"wrote {json_path.relative_to(REPO) if json_path.is_relative_to(REPO) else json_path}"
        f" and {md_path.name}")
    return 0 if all(not results[n]["errors"] for n in names) else 1


def main() -> int:
    args = parse_args()
    settings = QUICK if args.quick else FULL
    return run_benchmark(args, settings, bench_broker, build_rows, header_lines, "bench")


if __name__ == "__main__":
    sys.exit(main())
