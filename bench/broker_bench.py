"""Side-by-side benchmark of strom and Tansu over the Kafka protocol.

Runs the same confluent-kafka workloads against each broker, one broker at a
time, and prints a table of absolute figures with the ratio strom/Tansu:

  1. producer throughput  (100 B / 1 KiB records, 1 / 6 partitions, acks=1 / all)
  2. consumer throughput  (reads back what step 1 produced; assign + poll, no group)
  3. end-to-end latency   (p50 / p99 / p99.9 at a paced 5,000 msg/s)
  4. startup time         (spawn -> first accepted TCP connection, median of 5)
  5. resident memory      (idle, and after 1,000 partitions with one record each)

Usage (from the repository root):

    .venv/bin/python bench/broker_bench.py            # full run, ~5 min on 2 cores
    .venv/bin/python bench/broker_bench.py --quick    # reduced run, ~1 min
    .venv/bin/python bench/broker_bench.py --only tansu

Results are also written to bench/results/ as JSON and markdown. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import confluent_kafka
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parent.parent
TANSU_SCRIPT = Path("/work/shared/peers/tansu.sh")
BROKERS = ("tansu", "strom")
T0 = time.perf_counter()


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Sizes and time bounds of one run (full or --quick)."""

    count_by_size: dict[int, int]  # record size (bytes) -> records per producer combo
    produce_limit_s: float  # bound on one producer combo (produce + flush)
    consume_limit_s: float  # bound on reading one topic back
    latency_rate: int  # msg/s of the paced latency producer
    latency_s: float  # how long the paced producer runs
    startups: int  # starts per broker for the startup-time median
    rss_topics: int  # topics x partitions for the RSS-after-partitions figure
    rss_partitions: int


FULL = Settings({100: 200_000, 1024: 50_000}, 20.0, 15.0, 5_000, 10.0, 5, 100, 10)
QUICK = Settings({100: 40_000, 1024: 10_000}, 6.0, 6.0, 5_000, 3.0, 3, 100, 10)
PARTITION_COUNTS = (1, 6)
ACKS = ("1", "all")


def log(message: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {message}", flush=True)


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> str:
    """The Tansu binary installed by the peers script (installs it on first use)."""
    out = subprocess.run(["bash", str(TANSU_SCRIPT), "path"], capture_output=True,
                         text=True, timeout=300, check=True)
    return out.stdout.strip().splitlines()[-1]


def broker_command(name: str, port: int, data_dir: Path, tansu: str) -> list[str]:
    """The command line of one broker. Tansu's mirrors `tansu.sh start` (memory engine)."""
    if name == "tansu":
        url = f"tcp://127.0.0.1:{port}"
        return [tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/"]
    return [sys.executable, "-m", "strom", "serve", "--data-dir", str(data_dir / "data"),
            "--listen", f"127.0.0.1:{port}"]


@dataclass
class Broker:
    """A running broker process started by this script."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    startup_s: float

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        text = (self.data_dir / "broker.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def start_broker(name: str, root: Path, tansu: str, timeout_s: float = 30.0) -> Broker:
    """Spawn a broker in a fresh dir on a free port; wait for its first accepted connection."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    port = free_port()
    logfile = open(data_dir / "broker.log", "wb")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    begin = time.perf_counter()
    proc = subprocess.Popen(broker_command(name, port, data_dir, tansu), cwd=data_dir,
                            stdout=logfile, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)
    logfile.close()
    broker = Broker(name, proc, port, data_dir, 0.0)
    while time.perf_counter() - begin < timeout_s:
        if not broker.alive():
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{broker.log_tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                broker.startup_s = time.perf_counter() - begin
                return broker
        except OSError:
            time.sleep(0.005)
    stop_broker(broker)
    raise RuntimeError(f"{name} did not accept a connection within {timeout_s:.0f}s")


def stop_broker(broker: Broker) -> None:
    """SIGTERM the broker's process group (its own session), SIGKILL after 5 s."""
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if broker.proc.poll() is not None:
            return
        try:
            os.killpg(broker.proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            broker.proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue


def rss_mb(pid: int) -> float:
    """VmRSS of pid plus its descendants, in MiB."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        family.update(children)
        frontier.extend(children)
    total_kb = 0
    for member in family:
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


# --------------------------------------------------------------------------- kafka helpers


def create_topics(bootstrap: str, partitions: dict[str, int], timeout_s: float) -> None:
    """Create topics (replication factor 1) and wait until metadata shows all partitions."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(name, count, 1) for name, count in partitions.items()]
    futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
    deadline = time.perf_counter() + timeout_s
    for name, future in futures.items():
        future.result(timeout=max(0.1, deadline - time.perf_counter()))
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
                limit_s: float) -> ProduceResult:
    """Produce `count` records of `size` bytes as fast as possible, then flush; time it all."""
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": acks, "linger.ms": 5,
                         "message.timeout.ms": int(limit_s * 1000) + 5000,
                         "delivery.report.only.error": True, "on_delivery": on_delivery})
    payload = os.urandom(size)
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
    delivered = sent - len(failures) - undelivered
    return ProduceResult(sent, delivered, len(failures), undelivered, seconds,
                         failures[0] if failures else "")


@dataclass
class ConsumeResult:
    received: int
    errors: int
    seconds: float
    first_error: str = ""

    @property
    def msgs_per_s(self) -> float:
        return self.received / self.seconds if self.seconds else 0.0


def consume_run(bootstrap: str, topic: str, partitions: int, expected: int,
                limit_s: float) -> ConsumeResult:
    """Read `expected` records from the beginning of all partitions; time assign -> last."""
    consumer = Consumer(consumer_config(bootstrap))
    received = errors = 0
    first_error = ""
    try:
        begin = time.perf_counter()
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = begin + limit_s
        while received < expected and time.perf_counter() < deadline:
            batch = consumer.consume(num_messages=min(10_000, expected - received), timeout=0.2)
            for msg in batch:
                if msg.error() is None:
                    received += 1
                else:
                    errors += 1
                    first_error = first_error or str(msg.error())
        seconds = time.perf_counter() - begin
    finally:
        consumer.close()
    return ConsumeResult(received, errors, seconds, first_error)


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


def latency_run(bootstrap: str, topic: str, rate: int, seconds: float,
                size: int = 100) -> LatencyResult:
    """A producer thread sends at a paced rate; this thread polls and records receive - send."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "1", "linger.ms": 1})
    consumer = Consumer(consumer_config(bootstrap))
    samples: list[float] = []
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
            if msg is not None and msg.error() is None and len(msg.value() or b"") == size:
                samples.append((now_ns - struct.unpack(">q", msg.value()[:8])[0]) / 1e6)
        sender.join(15.0)
    finally:
        consumer.close()
    if not samples:
        raise RuntimeError("no latency samples received")
    samples.sort()
    return LatencyResult(sent[0], len(samples), percentile(samples, 0.50),
                         percentile(samples, 0.99), percentile(samples, 0.999), samples[-1],
                         sent[0] / seconds)
