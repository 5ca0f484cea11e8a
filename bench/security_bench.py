"""What security costs: produce throughput and end-to-end latency over PLAINTEXT, SSL,
SASL_PLAINTEXT (SCRAM-SHA-512) and SASL_SSL listeners of one strom broker, as ratios to
PLAINTEXT; and the authorizer's cost with 10,000 ACLs (the same SASL_PLAINTEXT workload on a
broker without an authorizer and on one with `authorizer.class.name` and 10,000 ACLs, one of
which allows the producing user).

Usage (from the repository root):

    .venv/bin/python bench/security_bench.py           # ~2 min on 2 cores
    .venv/bin/python bench/security_bench.py --quick   # ~40 s

Both brokers keep their data in memory (`--storage memory:`), so the figures are what the
protocols cost in CPU, not the disk. Results go to bench/results/security-*.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from broker_bench import ProduceResult, percentile, produce_run
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from processes import REPO, free_port

USER, PASSWORD = "bench", "bench-password"
LISTENERS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
ACLS = 10_000


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


def start(work: Path, name: str, settings: dict[str, str]) -> tuple[subprocess.Popen[bytes],
                                                                      dict[str, int]]:
    ports = {listener: free_port() for listener in LISTENERS}
    listeners = ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items())
    # The memory engine: the figures are the protocols' CPU cost, not the disk's (page-cache
    # writeback made runs on the local log vary 2-3x within one run of this script).
    command = [sys.executable, "-m", "strom", "serve", "--storage", "memory:",
               "--listen", f"127.0.0.1:{ports['PLAINTEXT']}", "--set", f"listeners={listeners}"]
    for key, value in settings.items():
        command += ["--set", f"{key}={value}"]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    logfile = open(work / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(command, stdout=logfile, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", ports["SASL_SSL"]), timeout=0.5):
                break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{name} did not start: see {work / name}.log") from None
            time.sleep(0.1)
    return proc, ports


def client(ports: dict[str, int], listener: str, certs: Path) -> dict[str, Any]:
    conf: dict[str, Any] = {"bootstrap.servers": f"127.0.0.1:{ports[listener]}",
                            "security.protocol": listener}
    if "SSL" in listener:
        conf["ssl.ca.location"] = str(certs / "ca.pem")
    if "SASL" in listener:
        conf |= {"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": USER,
                 "sasl.password": PASSWORD}
    return conf


def prepare(ports: dict[str, int], topic: str, partitions: int) -> AdminClient:
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{ports['PLAINTEXT']}"})
    admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
        USER, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
        PASSWORD.encode())])[USER].result(30)
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)
    return admin


def throughput(conf: dict[str, Any], topic: str, count: int, runs: int) -> dict[str, float]:
    rates = []
    for _ in range(runs):
        result: ProduceResult = produce_run(conf["bootstrap.servers"], topic, 1024, count, "all",
                                            60.0, extra=conf)
        if result.errors or result.undelivered:
            raise RuntimeError(f"produce failed: {result.first_error}")
        rates.append(result.delivered * 1024 / result.seconds / 1e6)
    return {"mb_per_s": statistics.median(rates), "runs": rates}


def latency(conf: dict[str, Any], topic: str, rate: int, seconds: float) -> dict[str, float]:
    producer = Producer(conf | {"acks": "1", "linger.ms": 1})
    consumer = Consumer(conf | {"group.id": "bench", "enable.auto.commit": False,
                                "fetch.wait.max.ms": 10})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    samples: list[float] = []
    producer.produce(topic, b"warmup")
    producer.flush(10)
    deadline = time.perf_counter() + 15
    while time.perf_counter() < deadline:
        msg = consumer.poll(0.1)
        if msg is not None and msg.error() is None and msg.value() == b"warmup":
            break
    total = int(rate * seconds)

    def send() -> None:
        begin = time.perf_counter()
        for i in range(total):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            producer.produce(topic, struct.pack(">q", time.perf_counter_ns()) + b"x" * 92)
            producer.poll(0)
        producer.flush(10)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    deadline = time.perf_counter() + seconds + 10
    while time.perf_counter() < deadline and len(samples) < total:
        msg = consumer.poll(0.05)
        now = time.perf_counter_ns()
        value = msg.value() if msg is not None and msg.error() is None else None
        if value is not None and len(value) == 100:
            samples.append((now - struct.unpack(">q", value[:8])[0]) / 1e6)
    sender.join(15)
    consumer.close()
    samples.sort()
    return {"p50_ms": percentile(samples, 0.5), "p99_ms": percentile(samples, 0.99),
            "received": len(samples), "sent": total}


def many_acls(admin: AdminClient, count: int) -> None:
    """`count` ACLs: other users' literal and prefixed topic ACLs, and one allowing WRITE
    (and so DESCRIBE) to the bench user on the topics it writes."""
    bindings = [AclBinding(ResourceType.TOPIC, f"other-{i}",
                           ResourcePatternType.PREFIXED if i % 2 else ResourcePatternType.LITERAL,
                           f"User:user-{i}", "*", AclOperation.WRITE, AclPermissionType.ALLOW)
                for i in range(count - 2)]
    bindings.append(AclBinding(ResourceType.TOPIC, "sec-", ResourcePatternType.PREFIXED,
                               f"User:{USER}", "*", AclOperation.WRITE,
                               AclPermissionType.ALLOW))
    bindings.append(AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL,
                               f"User:{USER}", "*", AclOperation.IDEMPOTENT_WRITE,
                               AclPermissionType.ALLOW))
    for start_at in range(0, len(bindings), 1000):
        for future in admin.create_acls(bindings[start_at:start_at + 1000]).values():
            future.result(60)


def bench_listeners(work: Path, tls: dict[str, str], count: int, runs: int,
                    seconds: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    proc, ports = start(work, "listeners", tls)
    try:
        admin = prepare(ports, "sec-warm", 6)
        topics = [f"sec-{n.lower()}-{r}" for n in LISTENERS for r in range(runs)]
        topics += [f"sec-lat-{n.lower()}" for n in LISTENERS]
        for future in admin.create_topics(
                [NewTopic(t, 1 if "lat" in t else 6, 1) for t in topics]).values():
            future.result(30)
        rates: dict[str, list[float]] = {n: [] for n in LISTENERS}
        for run in range(runs):  # interleaved, rotated, each run into a fresh topic
            for listener in LISTENERS[run % 4:] + LISTENERS[:run % 4]:
                conf = client(ports, listener, work / "certs")
                log(f"{listener} run {run + 1}: produce 1 KiB x {count}, 6 partitions, "
                    "acks=all")
                rates[listener] += throughput(conf, f"sec-{listener.lower()}-{run}",
                                              count, 1)["runs"]
                admin.delete_topics([f"sec-{listener.lower()}-{run}"])[
                    f"sec-{listener.lower()}-{run}"].result(30)
        for listener in LISTENERS:
            conf = client(ports, listener, work / "certs")
            log(f"{listener}: e2e latency at 2,000 msg/s for {seconds:g} s")
            entry: dict[str, Any] = {"mb_per_s": statistics.median(rates[listener]),
                                     "runs": rates[listener]}
            entry |= latency(conf, f"sec-lat-{listener.lower()}", 2000, seconds)
            results[listener] = entry
            log(f"{listener}: {entry['mb_per_s']:.1f} MB/s, p99 {entry['p99_ms']:.2f} ms")
    finally:
        proc.terminate()
        proc.wait(30)
    return results


def bench_authorizer(work: Path, tls: dict[str, str], count: int, runs: int
                     ) -> dict[str, Any]:
    results: dict[str, Any] = {}
    brokers = {}
    try:
        for name, settings in (("no-authorizer", {}), ("10k-acls", {
                "authorizer.class.name": "org.apache.kafka.metadata.authorizer."
                                         "StandardAuthorizer",
                "super.users": "User:ANONYMOUS"})):
            proc, ports = start(work, name, tls | settings)
            brokers[name] = (proc, ports)
            admin = prepare(ports, "sec-a-warm", 1)
            for future in admin.create_topics(
                    [NewTopic(f"sec-a-{r}", 6, 1) for r in range(runs)]).values():
                future.result(30)
            if settings:
                log(f"creating {ACLS:,} ACLs")
                many_acls(admin, ACLS)
        authz_rates: dict[str, list[float]] = {name: [] for name in brokers}
        order = list(brokers.items())
        for run in range(runs):  # alternating, each run into a fresh topic
            for name, (_, ports) in (order if run % 2 else order[::-1]):
                conf = client(ports, "SASL_PLAINTEXT", work / "certs")
                log(f"{name} run {run + 1}: produce 1 KiB x {count} over SASL_PLAINTEXT")
                authz_rates[name] += throughput(conf, f"sec-a-{run}", count, 1)["runs"]
        for name, found in authz_rates.items():
            results[name] = {"mb_per_s": statistics.median(found),
                                           "runs": found}
            log(f"{name}: {results[name]['mb_per_s']:.1f} MB/s")
    finally:
        for proc, _ in brokers.values():
            proc.terminate()
            proc.wait(30)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    count, runs, seconds = (30_000, 1, 4.0) if args.quick else (100_000, 5, 10.0)
    results: dict[str, Any] = {"listeners": {}, "authorizer": {}}
    with tempfile.TemporaryDirectory(prefix="strom-secbench-") as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-m", "strom", "certs", "create", "--dir",
                        str(work / "certs")], check=True, capture_output=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO / "src")))
        tls = {"ssl.keystore.location": str(work / "certs" / "broker.pem")}
        results["listeners"] = bench_listeners(work, tls, count, runs, seconds)
        results["authorizer"] = bench_authorizer(work, tls, count, runs)
    plain = results["listeners"]["PLAINTEXT"]
    lines = ["| listener | produce 1 KiB MB/s | ratio | e2e p50 ms | e2e p99 ms | p99 ratio |",
             "|---|---|---|---|---|---|"]
    for listener, entry in results["listeners"].items():
        lines.append(f"| {listener} | {entry['mb_per_s']:.1f} | "
                     f"{entry['mb_per_s'] / plain['mb_per_s']:.2f}x | {entry['p50_ms']:.2f} | "
                     f"{entry['p99_ms']:.2f} | {entry['p99_ms'] / plain['p99_ms']:.2f}x |")
    off, on = results["authorizer"]["no-authorizer"], results["authorizer"]["10k-acls"]
    lines += ["", f"authorizer with {ACLS:,} ACLs: {on['mb_per_s']:.1f} MB/s vs "
              f"{off['mb_per_s']:.1f} MB/s without ({on['mb_per_s'] / off['mb_per_s']:.2f}x)"]
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"security-{stamp}.json").write_text(json.dumps(results, indent=2))
    (args.out / f"security-{stamp}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
