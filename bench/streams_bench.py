"""Stream processing benchmark: strom.streams against Quix Streams and Faust on one strom broker.

Four workloads (the applications are in bench/streams_apps.py, one per library, with the same
user functions), each at at-least-once and at exactly-once (strom
processing.guarantee=exactly_once_v2, Quix processing_guarantee="exactly-once", Faust
processing_guarantee="exactly_once"):

  map_filter    stateless: JSON in, keep v % 4 != 0, JSON out
  count         running count per message key (an output per update, or fewer: strom, as
                Kafka Streams, deduplicates a key's updates in its record cache until the
                next commit)
  window_count  running count per key and 1 s tumbling window (event time), emitting on
                update (as for count: fewer outputs with strom's record cache)
  join          stream-table inner join: a table topic preloaded with one row per key (and per
                latency key), every stream record enriched with its row

Usage (from the repository root; the first run creates the peers' environments, ~1 min):

    .venv/bin/python bench/streams_bench.py                 # full run (~25 min on 2 cores)
    .venv/bin/python bench/streams_bench.py --quick         # 20,000 records (~7 min)
    .venv/bin/python bench/streams_bench.py --libs strom    # strom only, no peer environment
    .venv/bin/python bench/streams_bench.py --workloads count,join --guarantees exactly_once
    .venv/bin/python bench/streams_bench.py --venv /tmp/peer-venvs --out /tmp/streams.json

Environments. strom's application runs in this interpreter's environment, with the checkout's
src/ on PYTHONPATH. Quix Streams (`quixstreams` 3.x) and Faust (`faust-streaming` with its
rocksdict and orjson extras) each get their own virtual environment, made once with
`python -m venv` + pip and reused (a `.bench-ready` file marks a finished one), under
bench/.venvs/ (gitignored) or --venv DIR: their dependency pins never meet strom's. Every
application runs in a process of its own environment.

Method, the same for every library:

  - A fresh strom broker per run (`python -m strom serve --storage memory: --listen
    127.0.0.1:PORT --set group.initial.rebalance.delay.ms=3000`, Kafka's default delay, which
    is before the clock starts; with no delay Faust's assignor sometimes runs before its
    metadata knows the topics; --storage-engine file for the local log). Each run gets its
    own topics, all with P partitions (default 4).
  - Input: M records (default 200,000; --quick 20,000), the same bytes for every run, made once
    with a fixed seed: key "k-J" (J uniform over K=1,000 keys), value a JSON object of ~70 B
    {"id", "k", "v", "pad"}, partition J % P (set explicitly, so co-partitioning does not depend
    on a partitioner), record timestamps spread evenly over M / 10,000 s of event time ending
    5 s before the run started (so ~10 records per key and 1 s window). The join's table topic
    holds one row {"name"} per key (and per latency key), partition J % P, timestamps 60 s
    before the first stream record; it is written before the stream.
  - The application is started (fresh application id / consumer group, fresh state
    directory, auto offset reset earliest) once all input is written.
  - Commit interval: 1 s at at-least-once, 100 ms at exactly-once (Kafka Streams' exactly-once
    default), set explicitly for all three (strom commit.interval.ms, Quix commit_interval,
    Faust broker_commit_interval with broker_commit_every out of the way).
  - Throughput = M / (t_end - t_start). t_start: the wall-clock time at which the application
    deserializes its first input record (a wrapper around each library's JSON deserializer of
    the input topic writes it to a file once). t_end: the wall-clock time at which a
    read_committed consumer of this script, assigned to every output partition from offset 0,
    has received every expected output record of the M inputs (M, or the filtered count for
    map_filter; for count and window_count, the final count of every key or (key, window):
    with a record cache only the latest count at each commit is written). So group join
    and start-up are outside the clock; writing, committing and, under exactly-once, the
    visibility of the last transaction are inside it. The same consumer keeps every output
    record for the correctness check. If the outputs stop short while the app's group has
    committed its whole input, the run ends at its last output and is flagged WRONG (a run
    that drops records still gets a rate, marked as such).
  - Latency: once the M inputs are done, L records (default 2,000) are produced at a paced
    R/s (default 500/s) into the same input topic, each with a unique key "lat-N" (the join's
    table has a row for each), a "ts" field and the current time as record timestamp. Each
    produces exactly one output record with its key (a new key: one count per record; with a
    record cache it comes out at the next commit, so the latency includes that wait).
    Latency = the time this script's consumer receives that output - the time it produced the
    input (one clock, perf_counter, in this process). p50 and p99 over the L records. Under
    exactly-once this includes waiting for the commit (about half the commit interval).
  - Correctness: once the app is stopped, the outputs are checked against what the input
    implies: map_filter, the set of ids kept and their values; count, the final (highest)
    count of every key; window_count, the final count of every (key, window); join, every id
    once with the name of its key; plus the number of outputs (duplicates are reported;
    exactly-once must have none; for the counts, a count that does not increase on its key's
    previous one is a duplicate, and there is at least one output per key or window) and one
    output per latency record. A run that fails any check is flagged WRONG in the table and
    in the JSON, whatever its speed. Under exactly-once the output topic must also hold
    transaction markers (its end offsets exceed its records); output written outside
    transactions is noted in the table.
  - Order: for each workload and guarantee, the three libraries run one after the other, in an
    order rotated from one (workload, guarantee) to the next and from round to round
    (--rounds N repeats everything; the table shows medians).

Output: progress lines, then a table per workload and guarantee (library, records/s, p50, p99,
strom/peer ratios, check); the JSON (every run's figures, the settings, versions and machine)
goes to --out FILE (default bench/results/streams-YYYYmmdd-HHMMSS.json, with a .md copy of the
table). The exit status is 1 if any run failed or was wrong.

Debugging: STREAMS_BENCH_KEEP=DIR keeps every run's directory (app log, state) under DIR;
BENCH_STROM_PROFILE=FILE runs strom's stream threads under cProfile (FILE.0, ...);
BENCH_FAUST_LOGLEVEL=info shows Faust's worker log.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import confluent_kafka
from broker_bench import create_topics, percentile
from confluent_kafka import Consumer, Producer, TopicPartition
from processes import REPO, Broker, Node, free_port, stop_broker, strom_command, wait_ready
from streams_apps import WORKLOADS, keep, transform, window_start

LIBS = ("strom", "quix", "faust")
PEERS = ("quix", "faust")  # PEERS ONLY: the libraries that run in their own environments
GUARANTEES = ("at_least_once", "exactly_once")
APPS = Path(__file__).resolve().parent / "streams_apps.py"
# PEERS ONLY: what each peer environment installs (pip requirement specifiers).
PEER_PACKAGES = {"quix": ["quixstreams>=3,<4"],
                 "faust": ["faust-streaming[rocksdict,orjson]"]}
PEER_DIST = {"quix": "quixstreams", "faust": "faust-streaming"}
# The count workloads' groups: a key, or (key, window start), of an output record.
COUNTS: dict[str, Callable[[bytes, Any], Any]] = {
    "count": lambda key, _value: key.decode(),
    "window_count": lambda key, value: (key.decode(), value["start"])}
EVENTS_PER_S = 10_000  # input records per second of event time
WINDOW_MS = 1000
GRACE_MS = 60_000
START_LIMIT_S = 60.0  # app start to its first record
STOP_GRACE_S = 30.0
T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {message}", flush=True)


# --------------------------------------------------------------------------- settings


@dataclass
class Settings:
    records: int = 200_000
    partitions: int = 4
    keys: int = 1000
    latency_records: int = 2000
    latency_rate: int = 500
    commit_alos_ms: int = 1000
    commit_eos_ms: int = 100
    run_timeout_s: float = 600.0
    stall_s: float = 60.0
    shared_broker: bool = False
    rebalance_delay_ms: int = 3000
    rounds: int = 1
    storage: str = "memory"
    seed: int = 20261207
    libs: tuple[str, ...] = LIBS
    workloads: tuple[str, ...] = WORKLOADS
    guarantees: tuple[str, ...] = GUARANTEES

    def commit_ms(self, guarantee: str) -> int:
        return self.commit_eos_ms if guarantee == "exactly_once" else self.commit_alos_ms


# --------------------------------------------------------------------------- input data


@dataclass
class Dataset:
    """The input of every run: (key, value, partition, timestamp ms) tuples."""

    stream: list[tuple[bytes, bytes, int, int]]
    table: list[tuple[bytes, bytes, int, int]]
    expected: dict[str, Any] = field(default_factory=dict)
    partition_counts: dict[int, int] = field(default_factory=dict)


def make_dataset(settings: Settings) -> Dataset:
    rng = random.Random(settings.seed)
    m, keys, parts = settings.records, settings.keys, settings.partitions
    span_ms = max(1, m * 1000 // EVENTS_PER_S)
    base = int(time.time() * 1000) - span_ms - 5000
    stream = []
    kept: dict[int, tuple[str, int]] = {}
    per_key: Counter[str] = Counter()
    per_window: Counter[tuple[str, int]] = Counter()
    ids_key: dict[int, str] = {}
    for i in range(m):
        j = rng.randrange(keys)
        key = f"k-{j}"
        value = {"id": i, "k": key, "v": rng.randrange(1000), "pad": "x" * 24}
        ts = base + i * span_ms // m
        stream.append((key.encode(), json.dumps(value, separators=(",", ":")).encode(),
                       j % parts, ts))
        if keep(value):
            kept[i] = (key, transform(value)["v2"])
        per_key[key] += 1
        per_window[(key, window_start(ts, WINDOW_MS))] += 1
        ids_key[i] = key
    table = [(f"k-{j}".encode(), json.dumps({"name": f"name-{j}"}).encode(), j % parts,
              base - 60_000) for j in range(keys)]
    table += [(f"lat-{n}".encode(), json.dumps({"name": f"name-lat-{n}"}).encode(), n % parts,
               base - 60_000) for n in range(settings.latency_records)]
    # outputs: how many there must be (the counts: at least one per key or window)
    expected = {"map_filter": kept, "count": per_key, "window_count": per_window,
                "join": ids_key, "outputs": {"map_filter": len(kept), "count": len(per_key),
                                             "window_count": len(per_window), "join": m}}
    counts = Counter(partition for _, _, partition, _ in stream)
    return Dataset(stream, table, expected, {p: counts[p] for p in range(parts)})


def produce_all(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, int, int]]
                ) -> float:
    """Writes the records (acks=all) and waits for every one; seconds taken."""
    errors: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "acks": "all",
                         "batch.num.messages": 10_000, "on_delivery": delivered,
                         "delivery.report.only.error": True})
    begin = time.perf_counter()
    for i, (key, value, partition, ts) in enumerate(records):
        while True:
            try:
                producer.produce(topic, value, key, partition=partition, timestamp=ts)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 5000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left or errors:
        raise RuntimeError(f"writing {topic}: {left} not delivered, errors {errors[:3]}")
    return time.perf_counter() - begin


# --------------------------------------------------------------------------- environments


@dataclass
class Env:
    """Where one library's application runs."""

    python: str
    pythonpath: str
    version: str


def strom_env() -> Env:
    out = subprocess.run([sys.executable, "-m", "strom", "--version"], capture_output=True,
                         text=True, env=dict(os.environ, PYTHONPATH=str(REPO / "src")),
                         timeout=60)
    return Env(sys.executable, str(REPO / "src"), (out.stdout or out.stderr).strip())


def peer_env(lib: str, root: Path) -> Env:
    """PEERS ONLY: the library's own virtual environment, made on first use."""
    venv = root / PEER_DIST[lib]
    python = venv / "bin" / "python"
    ready = venv / ".bench-ready"
    if not ready.exists():
        log(f"creating the {lib} environment in {venv} (python -m venv + pip install "
            f"{' '.join(PEER_PACKAGES[lib])})")
        if venv.exists():
            shutil.rmtree(venv)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *PEER_PACKAGES[lib]], check=True, timeout=1200)
        freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True,
                                text=True, check=True, timeout=120).stdout
        ready.write_text(freeze)
    client = "confluent-kafka" if lib == "quix" else "aiokafka"
    version = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; "
         f"print('{PEER_DIST[lib]}', m.version('{PEER_DIST[lib]}') + ',', '{client}', "
         f"m.version('{client}'))"],
        capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    return Env(str(python), "", version)


# --------------------------------------------------------------------------- one run


class OutputReader:
    """A read_committed consumer of the output topic in a thread: keeps every record, notes
    when the bulk outputs are all there and when each latency record's output arrives."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, expected: int,
                 final: dict[Any, int] | None = None,
                 group: Callable[[bytes, Any], Any] | None = None) -> None:
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-reader",
                                  "isolation.level": "read_committed",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 20,
                                  "auto.offset.reset": "earliest"})
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.expected = expected
        # The counts: done when every group (key, or (key, window start)) has its final
        # count, whatever the number of outputs (a record cache writes only the latest).
        self.final = final
        self.group = group
        self.reached: set[Any] = set()
        self.records: list[tuple[bytes, bytes]] = []
        self.bulk = 0
        self.done_at: float | None = None  # time.time() when the bulk outputs were all read
        self.last_bulk_at: float | None = None  # time.time() when the last one was read
        self.latency_seen: dict[bytes, float] = {}  # key -> perf_counter at receipt
        self.errors: list[str] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            # What is there, without waiting; else wait for one record (consume(n, timeout)
            # would wait for n records or the timeout, delaying the latency samples).
            batch = self.consumer.consume(1000, 0)
            if not batch:
                one = self.consumer.poll(0.02)
                batch = [one] if one is not None else []
            now, wall = time.perf_counter(), time.time()
            for msg in batch:
                if msg.error() is not None:
                    self.errors.append(str(msg.error()))
                    continue
                key = msg.key() or b""
                self.records.append((key, msg.value() or b""))
                if key.startswith(b"lat-"):
                    self.latency_seen.setdefault(key, now)
                else:
                    self.bulk += 1
                    self.last_bulk_at = wall
                    if self.final is not None and self.group is not None:
                        value = json.loads(msg.value() or b"{}")
                        group = self.group(key, value)
                        if value.get("count") == self.final.get(group):
                            self.reached.add(group)
            if self.done_at is None and (
                    len(self.reached) >= len(self.final) if self.final is not None
                    else self.bulk >= self.expected):
                self.done_at = wall

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.consumer.close()


def paced_latency(bootstrap: str, topic: str, settings: Settings, sent: dict[bytes, float]
                  ) -> None:
    """L records at R/s, unique keys lat-N; `sent` gets each one's perf_counter send time."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    producer.list_topics(topic, timeout=10)
    begin = time.perf_counter()
    for n in range(settings.latency_records):
        delay = begin + n / settings.latency_rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        key = f"lat-{n}"
        value = json.dumps({"id": settings.records + n, "k": key, "v": 1, "pad": "x" * 24,
                            "ts": time.time()}, separators=(",", ":")).encode()
        sent[key.encode()] = time.perf_counter()
        producer.produce(topic, value, key.encode(), partition=n % settings.partitions,
                         timestamp=int(time.time() * 1000))
        producer.poll(0)
    producer.flush(30)


def wait_for_outputs(reader: OutputReader, proc: subprocess.Popen[bytes], bootstrap: str,
                     spec: dict[str, Any], settings: Settings, expected: int,
                     partition_counts: dict[int, int], lib: str) -> str:
    """Until every expected output is read ("done"); or the outputs stop growing while the
    app's group has committed the whole input ("consumed all input"): a short, wrong run whose
    clock ends at its last output; or the app exits, stalls or runs out of time."""
    deadline = time.monotonic() + settings.run_timeout_s
    last_note = last_change = last_probe = time.monotonic()
    seen = 0
    while reader.done_at is None:
        time.sleep(0.05)
        now = time.monotonic()
        if proc.poll() is not None:
            return "the app exited"
        if now > deadline:
            return "timed out"
        if reader.bulk != seen:
            seen, last_change = reader.bulk, now
        elif now - last_change > settings.stall_s:
            return f"no new output for {settings.stall_s:.0f} s"
        elif now - last_change > 3 and now - last_probe > 1:
            last_probe = now
            if consumed_all(bootstrap, spec["app_id"], spec["input"], partition_counts):
                return "consumed all input"
        if now - last_note >= 10:
            last_note = now
            log(f"    {lib}: {reader.bulk:,}/{expected:,} outputs")
    return "done"


def consumed_all(bootstrap: str, group: str, topic: str, counts: dict[int, int]) -> bool:
    """Whether `group` has committed every partition of `topic` to its end."""
    committed = committed_offsets(bootstrap, group, topic, list(counts))
    return bool(committed) and all(committed.get(p, -1) >= n for p, n in counts.items())


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: list[int]
                      ) -> dict[int, int]:
    """`group`'s committed offsets on `topic` (OffsetFetch only: the consumer does not join
    the group); {} when they cannot be read."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=5)
        return {tp.partition: tp.offset for tp in found}
    except Exception:  # not known (yet)
        return {}
    finally:
        consumer.close()


def measure_latency(bootstrap: str, topic: str, settings: Settings, reader: OutputReader,
                    proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The paced latency records, then their outputs (up to 30 s after the last one)."""
    sent: dict[bytes, float] = {}
    paced_latency(bootstrap, topic, settings, sent)
    wait_until = time.monotonic() + 30
    while len(reader.latency_seen) < len(sent) and time.monotonic() < wait_until and \
            proc.poll() is None:
        time.sleep(0.05)
    samples = sorted((reader.latency_seen[k] - t) * 1000 for k, t in sent.items()
                     if k in reader.latency_seen)
    found: dict[str, Any] = {"latency_samples": len(samples)}
    if samples:
        found |= {"p50_ms": percentile(samples, 0.50), "p99_ms": percentile(samples, 0.99),
                  "max_ms": samples[-1]}
    return found


def end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    """The sum of the topic's high watermarks: its records plus, for transactional writes,
    the commit markers."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-offsets"})
    try:
        return sum(consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in range(partitions))
    finally:
        consumer.close()


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def start_strom_broker(root: Path, storage: str, rebalance_delay_ms: int) -> Broker:
    data_dir = Path(tempfile.mkdtemp(prefix="broker-", dir=root))
    port = free_port()
    where = ["--storage", "memory:"] if storage == "memory" else \
        ["--storage", f"file:{data_dir / 'data'}"]
    command = strom_command(where, port, None,
                            {"group.initial.rebalance.delay.ms": str(rebalance_delay_ms)})
    broker = Broker("strom", [Node(1, port, command, data_dir, data_dir / "broker.log")],
                    data_dir)
    broker.nodes[0].spawn()
    try:
        wait_ready(broker, time.perf_counter() + 30)
    except BaseException:
        stop_broker(broker)
        raise
    return broker


def stop_app(proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            return "killed after SIGTERM grace"
    return f"exit {proc.returncode}"


def run_one(lib: str, env: Env, workload: str, guarantee: str, data: Dataset,
            settings: Settings, root: Path, tag: str, shared: Broker | None = None
            ) -> dict[str, Any]:
    """One application run on a fresh broker (or on `shared`); its figures and its check."""
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=root))
    result: dict[str, Any] = {"lib": lib, "workload": workload, "guarantee": guarantee}
    broker = shared or start_strom_broker(work, settings.storage, settings.rebalance_delay_ms)
    run = AppRun(lib, env, workload, guarantee, broker.bootstrap, work, tag, settings)
    try:
        result["produce_s"] = run.prepare(data)
        result |= run.measure(data)
        result["check"] = check(workload, guarantee, data, run.reader.records, settings)
        # Transactional writes leave commit markers: offsets the records do not use.
        result["check"]["markers"] = result["output_offsets"] - len(run.reader.records)
        if guarantee == "exactly_once" and result["check"]["outputs"] and \
                result["check"]["markers"] <= 0:
            result["check"]["note"] = "output written outside transactions"
        if run.reader.errors:
            result["check"]["consumer_errors"] = run.reader.errors[:5]
        if "error" in result or not result["check"]["ok"]:
            result["app_log_tail"] = (work / "app.log").read_text(
                errors="replace").splitlines()[-25:]
    except Exception as exc:  # a broken run is reported, the benchmark goes on
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        run.close()
        if shared is None:
            stop_broker(broker)
        if not os.environ.get("STREAMS_BENCH_KEEP"):  # debugging: keep logs and state
            shutil.rmtree(work, ignore_errors=True)
    return result


class AppRun:
    """One library's application on its own topics: input written, the app started, its
    outputs read and timed, the app stopped."""

    def __init__(self, lib: str, env: Env, workload: str, guarantee: str, bootstrap: str,
                 work: Path, tag: str, settings: Settings) -> None:
        self.lib, self.env, self.workload, self.work = lib, env, workload, work
        self.bootstrap, self.settings = bootstrap, settings
        self.names = {"input": f"{tag}-in", "output": f"{tag}-out", "table": f"{tag}-table"}
        self.mark_file = work / "first-record"
        self.spec = {"lib": lib, "workload": workload, "guarantee": guarantee,
                     "bootstrap": bootstrap, **self.names, "app_id": f"{tag}-app",
                     "state_dir": str(work / "state"),
                     "commit_interval_ms": settings.commit_ms(guarantee),
                     "partitions": settings.partitions, "window_ms": WINDOW_MS,
                     "grace_ms": GRACE_MS, "mark_file": str(self.mark_file)}
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: OutputReader | None = None
        self._log: Any = None

    @property
    def reader(self) -> OutputReader:
        assert self._reader is not None
        return self._reader

    def prepare(self, data: Dataset) -> float:
        """Topics made and the input written (the table first); seconds writing the input."""
        parts = self.settings.partitions
        topics = {self.names["input"]: parts, self.names["output"]: parts}
        if self.workload == "join":
            topics[self.names["table"]] = parts
        create_topics(self.bootstrap, topics, 30)
        if self.workload == "join":
            produce_all(self.bootstrap, self.names["table"], data.table)
        return produce_all(self.bootstrap, self.names["input"], data.stream)

    def measure(self, data: Dataset) -> dict[str, Any]:
        """Starts the app; throughput over the input, then latency; stops the app."""
        expected = data.expected["outputs"][self.workload]
        final = data.expected[self.workload] if self.workload in COUNTS else None
        self._reader = reader = OutputReader(self.bootstrap, self.names["output"],
                                             self.settings.partitions, expected, final,
                                             COUNTS.get(self.workload))
        app_env = dict(os.environ, PYTHONPATH=self.env.pythonpath) if self.env.pythonpath \
            else {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self._log = open(self.work / "app.log", "wb")  # noqa: SIM115 - closed in close()
        spawned = time.time()
        self.proc = proc = subprocess.Popen(
            [self.env.python, str(APPS), json.dumps(self.spec)], cwd=self.work,
            stdout=self._log, stderr=subprocess.STDOUT, env=app_env, start_new_session=True)
        outcome = wait_for_outputs(reader, proc, self.bootstrap, self.spec, self.settings,
                                   expected, data.partition_counts, self.lib)
        started = float(self.mark_file.read_text()) if self.mark_file.exists() else None
        found: dict[str, Any] = {"startup_s": started - spawned if started else None}
        end = {"done": reader.done_at, "consumed all input": reader.last_bulk_at}.get(outcome)
        if outcome != "done":  # what the app had committed of its input, for the report
            found["committed"] = committed_offsets(self.bootstrap, self.spec["app_id"],
                                                   self.names["input"],
                                                   list(data.partition_counts))
            found["input_ends"] = data.partition_counts
        if end is None or started is None:
            found["error"] = f"{outcome} with {reader.bulk:,} of {expected:,} outputs"
        else:
            if outcome != "done":
                found["short"] = f"{outcome}: {reader.bulk:,} of {expected:,} outputs"
            found |= {"seconds": end - started,
                      "records_per_s": self.settings.records / (end - started),
                      "app_cpu_s": cpu_seconds(proc.pid)}
            time.sleep(0.5)
            found |= measure_latency(self.bootstrap, self.names["input"], self.settings,
                                     reader, proc)
        found["app_exit"] = stop_app(proc)
        time.sleep(0.3)  # the last records of a clean stop
        reader.stop()
        found["output_offsets"] = end_offsets(self.bootstrap, self.names["output"],
                                              self.settings.partitions)
        return found

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop_app(self.proc)
        if self._reader is not None and self._reader.thread.is_alive():
            self._reader.stop()
        if self._log is not None:
            self._log.close()


def check(workload: str, guarantee: str, data: Dataset, records: list[tuple[bytes, bytes]],
          settings: Settings) -> dict[str, Any]:
    """The outputs against the input: what is wrong, missing or duplicated."""
    bulk = [(k, json.loads(v)) for k, v in records if not k.startswith(b"lat-")]
    latency = {k for k, _ in records if k.startswith(b"lat-")}
    expected = data.expected[workload]
    wrong = missing = repeated = 0
    sample: list[Any] = []
    if workload in ("map_filter", "join"):
        seen: Counter[int] = Counter(v["id"] for _, v in bulk)
        absent = [i for i in expected if i not in seen]
        missing = len(absent)
        sample = absent[:10]
        wrong = sum(1 for i in seen if i not in expected)
        for key, value in bulk:
            if workload == "map_filter":
                want = expected.get(value["id"])
                if want is None or want != (value["k"], value["v2"]) or key.decode() != want[0]:
                    wrong += 1
            else:
                name = f"name-{key.decode()[2:]}"
                if value.get("name") != name or expected.get(value["id"]) != key.decode():
                    wrong += 1
    else:
        final: dict[Any, int] = {}
        repeated = 0  # counts not above their group's previous one: written twice
        for key, value in bulk:
            group = COUNTS[workload](key, value)
            if value["count"] <= final.get(group, 0):
                repeated += 1
            final[group] = max(final.get(group, 0), value["count"])
        absent_groups = [g for g in expected if g not in final or final[g] < expected[g]]
        missing = sum(1 for g in expected if g not in final)
        sample = absent_groups[:10]
        wrong = sum(1 for g, n in final.items() if expected.get(g) != n)
    outputs = len(bulk)
    want_outputs = data.expected["outputs"][workload]
    duplicates = repeated if workload in COUNTS else max(0, outputs - want_outputs)
    lat_missing = settings.latency_records - len(latency)
    ok = wrong == 0 and missing == 0 and outputs >= want_outputs and lat_missing == 0 and (
        duplicates == 0 or guarantee == "at_least_once")
    return {"ok": ok, "outputs": outputs, "expected_outputs": want_outputs,
            "duplicates": duplicates, "missing": missing, "wrong": wrong,
            "short_sample": sample,
            "latency_outputs_missing": lat_missing}


# --------------------------------------------------------------------------- the table


def median_of(runs: list[dict[str, Any]], name: str) -> float | None:
    values = [r[name] for r in runs if r.get(name) is not None and "error" not in r]
    return statistics.median(values) if values else None


def summarize(results: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    rows = []
    for workload in settings.workloads:
        for guarantee in settings.guarantees:
            for lib in settings.libs:
                runs = [r for r in results if (r["lib"], r["workload"], r["guarantee"]) ==
                        (lib, workload, guarantee)]
                if not runs:
                    continue
                problems = [r["error"] + cause(r) for r in runs if "error" in r]
                problems += [f"WRONG {r['check']}" for r in runs
                             if "check" in r and not r["check"]["ok"]]
                rows.append({"workload": workload, "guarantee": guarantee, "lib": lib,
                             "records_per_s": median_of(runs, "records_per_s"),
                             "p50_ms": median_of(runs, "p50_ms"),
                             "p99_ms": median_of(runs, "p99_ms"),
                             "app_cpu_s": median_of(runs, "app_cpu_s"),
                             "startup_s": median_of(runs, "startup_s"),
                             "ok": not problems, "problems": problems,
                             "notes": sorted({r["check"]["note"] for r in runs
                                              if "note" in r.get("check", {})
                                              and r["check"]["outputs"]})})
    return rows


def cause(run: dict[str, Any]) -> str:
    """The last error line of a failed run's app log, if any."""
    lines = [line for line in run.get("app_log_tail", []) if "Error" in line
             or "Exception" in line or "failed" in line]
    return f" ({lines[-1].strip()[:160]})" if lines else ""


def num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def table_row(r: dict[str, Any], strom: dict[str, Any] | None) -> str:
    rate_ratio = p99_ratio = "-"
    if strom is not None and r["lib"] != "strom":
        if strom["records_per_s"] and r["records_per_s"]:
            rate_ratio = f"{strom['records_per_s'] / r['records_per_s']:.2f}x"
        if strom["p99_ms"] and r["p99_ms"]:
            p99_ratio = f"{strom['p99_ms'] / r['p99_ms']:.2f}x"
    status = "ok" if r["ok"] else ("WRONG" if all(
        p.startswith("WRONG") for p in r["problems"]) else "FAILED")
    if r.get("notes"):
        status += " (" + "; ".join(r["notes"]) + ")"
    return (f"| {r['lib']} | {num(r['records_per_s'], ',.0f')} | {num(r['p50_ms'], '.1f')} | "
            f"{num(r['p99_ms'], '.1f')} | {rate_ratio} | {p99_ratio} | "
            f"{num(r['app_cpu_s'], '.1f')} | {status} |")


def render(rows: list[dict[str, Any]], settings: Settings) -> str:
    lines = [f"strom.streams vs Quix Streams vs Faust: {settings.records:,} records, "
             f"{settings.partitions} partitions, {settings.keys:,} keys; latency: "
             f"{settings.latency_records:,} records at {settings.latency_rate}/s; commit "
             f"interval {settings.commit_alos_ms} ms (at-least-once) / "
             f"{settings.commit_eos_ms} ms (exactly-once)", ""]
    for workload in settings.workloads:
        for guarantee in settings.guarantees:
            cell = [r for r in rows if (r["workload"], r["guarantee"]) == (workload, guarantee)]
            if not cell:
                continue
            strom = next((r for r in cell if r["lib"] == "strom"), None)
            lines += [f"### {workload}, {guarantee.replace('_', '-')}", "",
                      "| library | records/s | p50 ms | p99 ms | strom/lib records/s | "
                      "strom/lib p99 | app CPU s | check |",
                      "|---|---|---|---|---|---|---|---|"]
            lines += [table_row(r, strom) for r in cell]
            lines.append("")
    problems = [f"- {r['lib']} {r['workload']} {r['guarantee']}: {p}" for r in rows
                for p in r["problems"]]
    if problems:
        lines += ["Problems:", *problems, ""]
    lines += ["records/s: input records / (last expected output read - first input record "
              "deserialized); p50/p99: produce -> output read of paced records; ratios: strom's "
              "figure / the library's (records/s: higher is better; p99: lower is better); app "
              "CPU s: the app process's CPU time until its last bulk output was read."]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 records, shorter latency")
    parser.add_argument("--records", type=int)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--latency-records", type=int)
    parser.add_argument("--latency-rate", type=int)
    parser.add_argument("--commit-alos-ms", type=int, default=1000)
    parser.add_argument("--commit-eos-ms", type=int, default=100)
    parser.add_argument("--run-timeout", type=float, default=600.0,
                        help="seconds a run may take to write all its outputs")
    parser.add_argument("--stall", type=float, default=60.0,
                        help="give a run up after this many seconds without a new output")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rebalance-delay-ms", type=int, default=3000,
                        help="the broker's group.initial.rebalance.delay.ms (before the clock)")
    parser.add_argument("--shared-broker", action="store_true",
                        help="one broker for every run (the smoke test), not one per run")
    parser.add_argument("--storage-engine", choices=("memory", "file"), default="memory")
    parser.add_argument("--libs", default=",".join(LIBS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--guarantees", default=",".join(GUARANTEES))
    parser.add_argument("--venv", type=Path, default=REPO / "bench" / ".venvs",
                        help="where the peers' environments are made and kept")
    parser.add_argument("--out", type=Path, help="JSON results file (a .md copy beside it)")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="print the table of an earlier run's JSON file, run nothing")
    args = parser.parse_args(argv)
    records = args.records or (20_000 if args.quick else 200_000)
    settings = Settings(
        records=records, partitions=args.partitions, keys=args.keys,
        latency_records=args.latency_records or (600 if args.quick else 2000),
        latency_rate=args.latency_rate or (300 if args.quick else 500),
        commit_alos_ms=args.commit_alos_ms, commit_eos_ms=args.commit_eos_ms,
        run_timeout_s=args.run_timeout, stall_s=args.stall, shared_broker=args.shared_broker,
        rebalance_delay_ms=args.rebalance_delay_ms,
        rounds=args.rounds, storage=args.storage_engine,
        libs=tuple(_choose(args.libs, LIBS)), workloads=tuple(_choose(args.workloads,
                                                                        WORKLOADS)),
        guarantees=tuple(_choose(args.guarantees, GUARANTEES)))
    return settings, args


def _choose(raw: str, allowed: tuple[str, ...]) -> list[str]:
    chosen = [item.strip() for item in raw.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in allowed]
    if unknown or not chosen:
        raise SystemExit(f"choose from {', '.join(allowed)} (not {', '.join(unknown)})")
    return [item for item in allowed if item in chosen]


def run(settings: Settings, venv_root: Path, out: Path) -> int:
    envs = {"strom": strom_env()} if "strom" in settings.libs else {}
    for lib in settings.libs:
        if lib in PEERS:  # PEERS ONLY
            envs[lib] = peer_env(lib, venv_root)
    for lib, env in envs.items():
        log(f"{lib}: {env.version} ({env.python})")
    log(f"making the input: {settings.records:,} records, {settings.keys:,} keys, "
        f"{settings.partitions} partitions")
    data = make_dataset(settings)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="strom-streams-bench-") as tmp:
        root = Path(os.environ.get("STREAMS_BENCH_KEEP") or tmp)
        shared = start_strom_broker(root, settings.storage,
                                    settings.rebalance_delay_ms) if settings.shared_broker else None
        try:
            run_all(settings, envs, data, root, shared, results)
        finally:
            if shared is not None:
                stop_broker(shared)
    rows = summarize(results, settings)
    table = render(rows, settings)
    print()
    print(table)
    machine = {"nproc": len(os.sched_getaffinity(0)), "python": platform.python_version(),
               "platform": platform.platform(),
               "confluent_kafka (strom, this script)": confluent_kafka.__version__,
               "librdkafka": confluent_kafka.libversion()[0]}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": settings.__dict__, "machine": machine,
                               "versions": {lib: env.version for lib, env in envs.items()},
                               "summary": rows, "runs": results}, indent=2, default=str))
    out.with_suffix(".md").write_text(table + "\n")
    log(f"results: {out} (and {out.with_suffix('.md').name})")
    return 0 if all(r["ok"] for r in rows) else 1


def run_all(settings: Settings, envs: dict[str, Env], data: Dataset, root: Path,
            shared: Broker | None, results: list[dict[str, Any]]) -> None:
    """Every run, in rotated order; a progress line before and after each."""
    cells = [(w, g) for w in settings.workloads for g in settings.guarantees]
    total = settings.rounds * len(cells) * len(settings.libs)
    started = time.monotonic()
    for rnd in range(settings.rounds):
        for index, (workload, guarantee) in enumerate(cells):
            shift = (rnd + index) % len(settings.libs)
            for lib in settings.libs[shift:] + settings.libs[:shift]:
                done = len(results)
                eta = ""
                if done:
                    left = (time.monotonic() - started) / done * (total - done)
                    eta = f", ~{left / 60:.0f} min left"
                log(f"[{done + 1}/{total}{eta}] {lib}: {workload}, {guarantee}"
                    f"{f', round {rnd + 1}' if settings.rounds > 1 else ''}")
                tag = f"r{rnd}-{workload.replace('_', '')}-{guarantee[:3]}-{lib}"
                result = run_one(lib, envs[lib], workload, guarantee, data, settings, root,
                                 tag, shared)
                result["round"] = rnd
                results.append(result)
                log("    " + describe(result))


def describe(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"FAILED: {result['error']}"
    verdict = "ok" if result["check"]["ok"] else f"WRONG {result['check']}"
    latency = (f", p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms"
               if "p99_ms" in result else ", no latency samples")
    return (f"{result['records_per_s']:,.0f} records/s ({result['seconds']:.1f} s, start-up "
            f"{result['startup_s']:.1f} s){latency}; check {verdict}")


def main(argv: list[str] | None = None) -> int:
    settings, args = parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        known = Settings().__dict__.keys()
        settings = Settings(**{k: tuple(v) if isinstance(v, list) else v
                               for k, v in saved["settings"].items() if k in known})
        print(render(summarize(saved["runs"], settings), settings))
        return 0
    out = args.out or REPO / "bench" / "results" / \
        f"streams-{time.strftime('%Y%m%d-%H%M%S')}.json"
    return run(settings, args.venv, out)


if __name__ == "__main__":
    sys.exit(main())
