"""Exactly-once benchmarks of strom and Tansu over the Kafka protocol.

Runs the same confluent-kafka workloads against each broker, one broker at a time, and
prints a table with the ratio strom/Tansu:

  1. idempotent versus plain producer: 100 B records, 1 and 6 partitions, acks=all,
     enable.idempotence false / true, median of 3 rounds each (rounds interleaved; each
     producer sends and flushes one warm-up record before its clock starts)
  2. a transactional consume-transform-produce loop: a read_committed consumer in a group and
     a transactional producer that commits the consumed offsets with the output
     (send_offsets_to_transaction + commit_transaction) every 100 ms; records/s and
     transactions/s until the whole pre-filled input is processed, then a read_committed
     check that the output holds every input record exactly once

A broker that fails the transactional workload on an unsupported API is shown as
"not supported" with the error, not as a failed run. Helpers come from bench/broker_bench.py.

Usage (from the repository root):

    .venv/bin/python bench/eos_bench.py            # full run, ~1 min on 2 cores
    .venv/bin/python bench/eos_bench.py --quick    # reduced run, ~35 s
    .venv/bin/python bench/eos_bench.py --only strom

Results are also written to bench/results/ as JSON and markdown. See bench/README.md.
"""

from __future__ import annotations

import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker_bench import (
    UNTHROTTLED_PREFETCH,
    Broker,
    ProduceResult,
    Record,
    Row,
    attempt,
    create_topics,
    log,
    lookup,
    parse_args,
    produce_run,
    run_benchmark,
    start_broker,
    stop_broker,
)
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from group_bench import advertised_apis

# The APIs of the transactional loop (KIP-98): InitProducerId, AddPartitionsToTxn,
# AddOffsetsToTxn, EndTxn, TxnOffsetCommit.
TXN_APIS = {22: "InitProducerId", 24: "AddPartitionsToTxn", 25: "AddOffsetsToTxn",
            26: "EndTxn", 28: "TxnOffsetCommit"}


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    """Sizes and time bounds of one run (full or --quick)."""

    produce_count: int  # 100 B records per producer round
    rounds: int  # rounds per mode (plain / idempotent); the median rate is reported
    produce_limit_s: float  # bound on one producer round (produce + flush)
    txn_records: int  # 100 B records pre-filled into the loop's input topic
    txn_partitions: int  # partitions of the input and output topics
    commit_interval_s: float  # the loop commits its transaction this often
    txn_limit_s: float  # bound on the loop (from the first record to the last commit)
    verify_limit_s: float  # bound on reading the output back


FULL = Settings(300_000, 3, 10.0, 1_000_000, 3, 0.1, 120.0, 60.0)
QUICK = Settings(40_000, 1, 6.0, 200_000, 3, 0.1, 60.0, 30.0)
SIZE = 100
PARTITION_COUNTS = (1, 6)
MODES = ("plain", "idempotent")
CREATE_LIMIT_S = 20.0
TXN_CALL_TIMEOUT_S = 15.0  # bound on each init/send_offsets/commit call of the loop
JOIN_LIMIT_S = 30.0  # bound on the loop's consumer getting its first records
GROUP = "eos-bench-ctp"
TRANSACTIONAL_ID = "eos-bench-ctp"


def produce_config(mode: str) -> dict[str, Any]:
    """Both modes use acks=all and linger.ms=5 (produce_run); idempotence is the only change.

    With enable.idempotence=true librdkafka caps max.in.flight at 5 per connection (the
    plain producer's default is 1,000,000) and retries without reordering or duplicates.
    """
    return {"enable.idempotence": mode == "idempotent"}


def topic_name(mode: str, partitions: int) -> str:
    return f"eos-bench-{mode}-p{partitions}"


def combo_key(partitions: int) -> str:
    return f"{SIZE} B, {partitions} part, acks=all"


# --------------------------------------------------------------------------- produce


def produce_compare(broker: Broker, partitions: int, settings: Settings) -> Record:
    """Plain and idempotent rounds, interleaved (and alternating who goes first) so that drift
    over the run affects both modes alike; the median rate of each mode."""
    rounds: dict[str, list[ProduceResult]] = {mode: [] for mode in MODES}
    for i in range(settings.rounds):
        order = MODES if i % 2 == 0 else tuple(reversed(MODES))
        for mode in order:
            result = produce_run(broker.bootstrap, topic_name(mode, partitions), SIZE,
                                 settings.produce_count, "all", settings.produce_limit_s,
                                 produce_config(mode), warmup=True)
            rounds[mode].append(result)
            if result.delivered < settings.produce_count:
                raise RuntimeError(
                    f"{mode} round {i + 1}: {result.delivered:,}/{settings.produce_count:,}"
                    f" delivered in {result.seconds:.1f} s ({result.errors} errors,"
                    f" {result.undelivered} unacknowledged)"
                    + (f"; first error: {result.first_error}" if result.first_error else ""))
    out: Record = {}
    for mode in MODES:
        rate = statistics.median(r.msgs_per_s for r in rounds[mode])
        out[mode] = {"msgs_per_s": rate, "mb_per_s": rate * SIZE / 1e6,
                     "rounds": [asdict(r) | {"msgs_per_s": r.msgs_per_s} for r in rounds[mode]]}
    out["ratio"] = out["idempotent"]["msgs_per_s"] / out["plain"]["msgs_per_s"]
    return out


def bench_produce(broker: Broker, settings: Settings, errors: list[str]) -> Record:
    create_topics(broker.bootstrap, {topic_name(mode, parts): parts for mode in MODES
                                     for parts in PARTITION_COUNTS}, CREATE_LIMIT_S)
    out: Record = {}
    for parts in PARTITION_COUNTS:
        key = combo_key(parts)
        result = attempt(errors, f"produce {key}",
                         partial(produce_compare, broker, parts, settings))
        if result is None:
            continue
        out[key] = result
        rates = "; ".join(f"{mode} " + ", ".join(f"{r['msgs_per_s'] / 1000:,.0f}k"
                                                 for r in result[mode]["rounds"])
                          for mode in MODES)
        log(f"{broker.name}: produce {key}: plain {result['plain']['msgs_per_s']:,.0f} msg/s,"
            f" idempotent {result['idempotent']['msgs_per_s']:,.0f} msg/s, ratio"
            f" {result['ratio']:.3f} (rounds: {rates})")
    return out


# --------------------------------------------------------------------------- transactions


class TxnError(RuntimeError):
    """The transactional loop failed; `unsupported` when the broker lacks an API it needs."""

    def __init__(self, message: str, unsupported: bool) -> None:
        super().__init__(message)
        self.unsupported = unsupported


UNSUPPORTED_CODES = (KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION,
                     KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT)


def txn_error(step: str, exc: BaseException) -> TxnError:
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    if isinstance(error, KafkaError):
        return TxnError(f"{step}: {error.name()}: {error.str()}",
                        error.code() in UNSUPPORTED_CODES)
    return TxnError(f"{step}: {type(exc).__name__}: {exc}", False)


def prefill(bootstrap: str, topic: str, partitions: int, count: int) -> float:
    """`count` records, round-robin over the partitions; each value starts with its sequence
    number (8 bytes), so the output can be checked record by record. Returns the seconds."""
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "on_delivery": on_delivery, "delivery.report.only.error": True})
    pad = b"p" * (SIZE - 8)
    begin = time.perf_counter()
    for seq in range(count):
        while True:
            try:
                producer.produce(topic, struct.pack(">q", seq) + pad, partition=seq % partitions)
                break
            except BufferError:
                producer.poll(0.005)
        if seq % 2000 == 0:
            producer.poll(0)
    left = producer.flush(60.0)
    if left or failures:
        raise RuntimeError(f"pre-fill: {left} unacknowledged, {len(failures)} failed"
                           + (f"; first: {failures[0]}" if failures else ""))
    return time.perf_counter() - begin


def transform(value: bytes) -> bytes:
    """The 'transform': keep the sequence number, reverse the rest."""
    return value[:8] + value[:7:-1]


class CtpLoop:
    """Consume-transform-produce with a transaction committed every commit_interval_s.

    The clock starts at the first consumed record (the group join before it, including
    strom's 3 s initial rebalance delay, is reported separately) and stops when the
    transaction holding the last input record has committed.
    """

    def __init__(self, bootstrap: str, source: str, sink: str, settings: Settings) -> None:
        self.source, self.sink, self.settings = source, sink, settings
        self.client_errors: list[str] = []
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP,
                                  "isolation.level": "read_committed",
                                  "enable.auto.commit": False, "enable.auto.offset.store": False,
                                  "auto.offset.reset": "earliest", "error_cb": self.on_error}
                                 | UNTHROTTLED_PREFETCH)
        self.producer = Producer({"bootstrap.servers": bootstrap,
                                  "transactional.id": TRANSACTIONAL_ID, "linger.ms": 5,
                                  "transaction.timeout.ms": 60_000, "error_cb": self.on_error})
        self.processed = self.pending = self.transactions = 0  # pending: in the open txn
        self.commit_s: list[float] = []
        self.begin = self.last_commit = 0.0
        self.consume_s = self.buffer_wait_s = 0.0  # time in consume(); produce() queue full

    def on_error(self, err: KafkaError) -> None:
        if len(self.client_errors) < 5:
            self.client_errors.append(f"{err.name()}: {err.str()}")

    def call(self, step: str, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except KafkaException as exc:
            raise txn_error(step, exc) from None

    def commit(self) -> None:
        """Offsets of the consumed records into the transaction, commit, open the next."""
        t0 = time.perf_counter()
        self.call("send_offsets_to_transaction", lambda: self.producer.send_offsets_to_transaction(
            self.consumer.position(self.consumer.assignment()),
            self.consumer.consumer_group_metadata(), TXN_CALL_TIMEOUT_S))
        self.call("commit_transaction", lambda: self.producer.commit_transaction(
            TXN_CALL_TIMEOUT_S))
        self.call("begin_transaction", self.producer.begin_transaction)
        self.last_commit = time.perf_counter()
        self.commit_s.append(self.last_commit - t0)
        self.transactions += 1
        self.pending = 0

    def transform_batch(self, batch: list[Any]) -> None:
        for msg in batch:
            if msg.error() is not None:
                raise TxnError(f"consume: {msg.error()}", False)
            value = transform(msg.value())
            while True:
                try:
                    self.producer.produce(self.sink, value, partition=msg.partition())
                    break
                except BufferError:
                    t0 = time.perf_counter()
                    self.producer.poll(0.005)
                    self.buffer_wait_s += time.perf_counter() - t0
        self.processed += len(batch)
        self.pending += len(batch)
        self.producer.poll(0)

    def check_bounds(self, subscribed: float) -> None:
        now = time.perf_counter()
        if not self.begin and now - subscribed > JOIN_LIMIT_S:
            raise TxnError(f"no input record within {JOIN_LIMIT_S:.0f} s of subscribe()"
                           + (f"; client errors: {'; '.join(self.client_errors)}"
                              if self.client_errors else ""), False)
        if self.begin and now - self.begin > self.settings.txn_limit_s:
            raise TxnError(f"{self.processed:,}/{self.settings.txn_records:,} records processed"
                           f" in {self.settings.txn_limit_s:.0f} s", False)

    def run(self) -> Record:
        expected, interval = self.settings.txn_records, self.settings.commit_interval_s
        join_s = 0.0
        try:
            self.call("init_transactions",
                      lambda: self.producer.init_transactions(TXN_CALL_TIMEOUT_S))
            self.call("begin_transaction", self.producer.begin_transaction)
            subscribed = time.perf_counter()
            self.consumer.subscribe([self.source])
            while self.processed < expected:
                self.check_bounds(subscribed)
                t0 = time.perf_counter()
                batch = self.consumer.consume(num_messages=1000, timeout=0.02)
                self.consume_s += time.perf_counter() - t0
                if batch and not self.begin:
                    self.begin = self.last_commit = time.perf_counter()
                    join_s = self.begin - subscribed
                    self.consume_s = 0.0  # from here on: the timed loop only
                self.transform_batch(batch)
                if self.pending and time.perf_counter() - self.last_commit >= interval:
                    self.commit()
            if self.pending:
                self.commit()
            self.call("abort_transaction",  # the empty transaction left open
                      lambda: self.producer.abort_transaction(TXN_CALL_TIMEOUT_S))
        finally:
            self.consumer.close()
        seconds = self.last_commit - self.begin
        commits = sorted(self.commit_s)
        return {"records": self.processed, "seconds": seconds,
                "records_per_s": self.processed / seconds, "transactions": self.transactions,
                "txn_per_s": self.transactions / seconds,
                "records_per_txn": self.processed / max(1, self.transactions),
                "commit_ms_p50": statistics.median(commits) * 1000 if commits else None,
                "commit_ms_max": commits[-1] * 1000 if commits else None,
                "commit_total_s": sum(commits), "consume_s": self.consume_s,
                "buffer_wait_s": self.buffer_wait_s, "join_s": join_s,
                "client_errors": self.client_errors}


def verify_output(bootstrap: str, source: str, sink: str, partitions: int, expected: int,
                  limit_s: float) -> Record:
    """Read the output with read_committed: every input sequence number exactly once, and
    the group's committed offsets at the end of the input."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP,
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    seen: set[int] = set()
    received = duplicates = malformed = 0
    try:
        consumer.assign([TopicPartition(sink, p, 0) for p in range(partitions)])
        deadline = time.perf_counter() + limit_s
        quiet_until = 0.0
        while time.perf_counter() < deadline:
            if received >= expected and not quiet_until:
                quiet_until = time.perf_counter() + 1.0  # wait a little for any extras
            if quiet_until and time.perf_counter() > quiet_until:
                break
            for msg in consumer.consume(num_messages=1000, timeout=0.2):
                value = msg.value() if msg.error() is None else None
                if value is None or len(value) != SIZE:
                    malformed += 1
                    continue
                seq = struct.unpack(">q", value[:8])[0]
                received += 1
                if seq in seen:
                    duplicates += 1
                seen.add(seq)
        committed = consumer.committed([TopicPartition(source, p) for p in range(partitions)],
                                       timeout=10)
    finally:
        consumer.close()
    committed_total = sum(max(0, tp.offset) for tp in committed)
    return {"received": received, "distinct": len(seen), "duplicates": duplicates,
            "malformed": malformed, "committed_input_offsets": committed_total,
            "ok": (received == expected and len(seen) == expected and not malformed
                   and committed_total == expected)}


def bench_txn(broker: Broker, settings: Settings) -> Record:
    source, sink = "eos-bench-ctp-in", "eos-bench-ctp-out"
    create_topics(broker.bootstrap, {source: settings.txn_partitions,
                                     sink: settings.txn_partitions}, CREATE_LIMIT_S)
    fill_s = prefill(broker.bootstrap, source, settings.txn_partitions, settings.txn_records)
    log(f"{broker.name}: pre-filled {settings.txn_records:,} x {SIZE} B in {fill_s:.2f} s")
    result = CtpLoop(broker.bootstrap, source, sink, settings).run()
    result["prefill_s"] = fill_s
    log(f"{broker.name}: consume-transform-produce: {result['records_per_s']:,.0f} records/s,"
        f" {result['txn_per_s']:.1f} txn/s ({result['records']:,} records in"
        f" {result['seconds']:.2f} s, {result['transactions']} transactions, commit p50"
        f" {result['commit_ms_p50'] or 0:.1f} ms, max {result['commit_ms_max'] or 0:.1f} ms;"
        f" group joined after {result['join_s']:.2f} s)")
    result["verify"] = verify_output(broker.bootstrap, source, sink, settings.txn_partitions,
                                     settings.txn_records, settings.verify_limit_s)
    v = result["verify"]
    log(f"{broker.name}: read_committed output: {v['received']:,} records, {v['distinct']:,}"
        f" distinct, {v['duplicates']} duplicates, {v['malformed']} malformed; committed input"
        f" offsets {v['committed_input_offsets']:,}/{settings.txn_records:,}:"
        f" {'ok' if v['ok'] else 'MISMATCH'}")
    if not v["ok"]:
        raise RuntimeError(f"exactly-once check failed: {v}")
    return result


# --------------------------------------------------------------------------- per broker


def bench_broker(name: str, root: Path, tansu: str, settings: Settings) -> Record:
    errors: list[str] = []
    record: Record = {"errors": errors, "na": {}}
    broker = attempt(errors, "start", lambda: start_broker(name, root, tansu))
    if broker is None:
        return record
    try:
        apis = attempt(errors, "ApiVersions", lambda: advertised_apis(broker.port)) or {}
        record["txn_apis"] = {label: (f"v{apis[key][0]}-{apis[key][1]}" if key in apis
                                      else "not advertised") for key, label in TXN_APIS.items()}
        log(f"{name}: " + ", ".join(f"{k} {v}" for k, v in record["txn_apis"].items()))
        record["produce"] = attempt(errors, "produce",
                                    lambda: bench_produce(broker, settings, errors)) or {}
        if broker.alive():
            try:
                record["txn"] = bench_txn(broker, settings)
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}"
                # The peer may lack transactional APIs: recorded as "not supported" with the
                # error; strom must pass, so any failure of its own is an error.
                if name == "tansu" or (isinstance(exc, TxnError) and exc.unsupported):
                    record["na"]["txn"] = message
                    log(f"{name}: consume-transform-produce not supported: {message}")
                else:
                    errors.append(f"consume-transform-produce: {message}")
                    log(f"  FAILED consume-transform-produce: {message}")
        record["rss_after_bench_mb"] = broker.rss_mb() if broker.alive() else None
        if not broker.alive():
            errors.append(broker.exit_report())
    finally:
        stop_broker(broker)
    return record


# --------------------------------------------------------------------------- report


class RatioRow(Row):
    """A row whose figures are already ratios: no strom/tansu quotient of them."""

    def ratio(self, pair: tuple[str, str] | None = None) -> str:
        return "-"


def build_rows(results: dict[str, Record], settings: Settings) -> list[Row]:
    rows: list[Row] = []

    def add(metric: str, better: str, path: tuple[str, ...], fmt: Callable[[float], str],
            na_key: str = "", row_type: type[Row] = Row) -> None:
        row = row_type(metric, better)
        for name, record in results.items():
            found = lookup(record, path)
            row.values[name] = None if found is None else float(found)
            if found is not None:
                row.cells[name] = fmt(float(found))
            elif na_key and na_key in record.get("na", {}):
                row.cells[name] = "not supported"
            else:
                row.cells[name] = "failed"
        rows.append(row)

    def rate(v: float) -> str:
        return f"{v / 1000:,.1f}k msg/s, {v * SIZE / 1e6:.1f} MB/s"

    median = f"median of {settings.rounds}" if settings.rounds > 1 else "1 round"
    for parts in PARTITION_COUNTS:
        key = combo_key(parts)
        for mode in MODES:
            add(f"produce {key}, {mode} ({median})", "higher",
                ("produce", key, mode, "msgs_per_s"), rate)
        add(f"idempotent / plain, {parts} part", "higher", ("produce", key, "ratio"),
            lambda v: f"{v:.2f}x", row_type=RatioRow)
    label = (f"consume-transform-produce, {settings.txn_records:,} x {SIZE} B,"
             f" {settings.txn_partitions} part, commit every"
             f" {settings.commit_interval_s * 1000:.0f} ms")
    add(f"{label}: records/s", "higher", ("txn", "records_per_s"),
        lambda v: f"{v / 1000:,.1f}k records/s", "txn")
    add(f"{label}: transactions/s", "higher", ("txn", "txn_per_s"), lambda v: f"{v:.1f}/s",
        "txn")
    add("info: commit (send_offsets + commit_transaction + begin), p50", "lower",
        ("txn", "commit_ms_p50"), lambda v: f"{v:.1f} ms", "txn")
    add("info: consumer group join before the first record", "lower", ("txn", "join_s"),
        lambda v: f"{v * 1000:,.0f} ms", "txn")
    add("info: read_committed output records (each input exactly once)", "higher",
        ("txn", "verify", "distinct"), lambda v: f"{v:,.0f}", "txn")
    return rows


def header_lines(machine: Record, mode: str) -> list[str]:
    return [f"strom vs Tansu exactly-once benchmark ({mode} run,"
            f" {time.strftime('%Y-%m-%d %H:%M:%S')})",
            f"machine: nproc={machine['nproc']}, {machine['cpu']}, {machine['platform']}",
            f"python {machine['python']}, confluent-kafka {machine['confluent_kafka']}"
            f" (librdkafka {machine['librdkafka']}), {machine['tansu']}, {machine['strom']}",
            "tansu: memory storage engine; strom: default settings (log on local disk)"]


def main() -> int:
    args = parse_args("reduced run (~35 s)")
    settings = QUICK if args.quick else FULL
    return run_benchmark(args, settings, bench_broker, build_rows, header_lines, "eos-bench")


if __name__ == "__main__":
    sys.exit(main())
