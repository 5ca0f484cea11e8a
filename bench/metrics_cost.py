"""What metrics cost: produce throughput of strom with metrics off and on, side by side.

Each round starts two fresh brokers of the same build, one with `--set http.listeners=...`
(the same as `strom serve --http`) and one without, loads one then the other (the order
alternates between rounds) and stops both: no broker carries a round's files, memory or
scheduling luck into the next, and a machine's drift hits both sides alike. While the metrics
broker is loaded, /metrics is scraped every --scrape-s seconds (as Prometheus would; a scrape
reads every partition's offsets).

On a 2-core machine the producer's Python loop and the broker compete for the cores, and where
the scheduler puts them moved a round's throughput by 25% or more in earlier versions of this
benchmark (the "on" side came out faster as often as not). With --pin (the default when the
machine has 2 or more cores) the brokers run on core 0 and the producer on core 1, so every
round gets the same split. A round's figure is the ratio on/off of that round's two runs;
the result is the median ratio over rounds, with the broker's CPU time per message (user +
system, from /proc) as a second, steadier measure of what metrics add to its own work.
The goal (issue 13): metrics on cost less than 3% of produce throughput.

Usage (from the repository root):

    .venv/bin/python bench/metrics_cost.py                  # 7 rounds of 10 s per side
    .venv/bin/python bench/metrics_cost.py --rounds 2 --seconds 3     # a short check
    .venv/bin/python bench/metrics_cost.py --linger-ms 0    # many small Produce requests
    .venv/bin/python bench/metrics_cost.py --size 1024      # 1 KiB records

Prints each round and the medians: msgs/s and broker CPU µs per message, off and on, and
the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from broker_bench import create_topics, produce_run
from processes import Broker, free_port, start_broker, stop_broker
from raw_produce import raw_produce_run

TOPIC = "metrics-cost"
PARTITIONS = 6


class Scraper:
    """Scrapes a /metrics URL every `interval_s` from a thread while running."""

    def __init__(self, url: str, interval_s: float) -> None:
        self.url = url
        self.interval_s = interval_s
        self.scrapes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Scraper:
        if self.interval_s > 0:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            with urllib.request.urlopen(self.url, timeout=10) as answer:
                answer.read()
            self.scrapes += 1


def cpu_seconds(broker: Broker) -> float:
    """User + system CPU time of the broker's process so far."""
    proc = broker.nodes[0].proc
    assert proc is not None
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_round(broker: Broker, args: argparse.Namespace, scrape_url: str | None
              ) -> tuple[float, float]:
    """(msgs/s, broker CPU µs per message) of one round."""
    cpu_before = cpu_seconds(broker)
    with Scraper(scrape_url or "", args.scrape_s if scrape_url else 0) as scraper:
        if args.client == "raw":
            host, port = broker.bootstrap.rsplit(":", 1)
            raw = raw_produce_run(host, int(port), TOPIC, PARTITIONS, args.seconds,
                                  records=args.batch_records, size=args.size)
            delivered, rate, seconds = raw.records, raw.records_per_s, raw.seconds
        else:
            payload = bytes(range(256)) * (args.size // 256 + 1)
            result = produce_run(broker.bootstrap, TOPIC, args.size, args.count, args.acks,
                                 args.seconds, extra={"linger.ms": args.linger_ms},
                                 payload=payload[:args.size])
            if result.errors:  # undelivered at the end (purged) only lower the round's rate
                raise RuntimeError(f"{broker.name}: {result.errors} errors "
                                   f"({result.first_error})")
            delivered, rate, seconds = result.delivered, result.msgs_per_s, result.seconds
    cpu_us = (cpu_seconds(broker) - cpu_before) * 1e6 / max(delivered, 1)
    note = f", {scraper.scrapes} scrapes" if scrape_url else ""
    print(f"  {broker.name:12} {rate:12,.0f} msgs/s {cpu_us:7.2f} CPU µs/msg "
          f"({delivered:,} in {seconds:.1f} s{note})", flush=True)
    return rate, cpu_us


def pin(cores: set[int]) -> None:
    """Run this process (and the processes and threads it starts from now on) on `cores`."""
    os.sched_setaffinity(0, cores)


def one_pair(args: argparse.Namespace, root: Path, on_first: bool
             ) -> dict[str, tuple[float, float]]:
    """Start a metrics-off and a metrics-on broker, load each in turn, stop both; return
    {side: (msgs/s, broker CPU µs per message)}."""
    http_port = free_port()
    url = f"http://127.0.0.1:{http_port}/metrics"
    if args.pin:
        pin({0})  # the brokers inherit core 0
    prefix = "strom-mem" if args.engine == "memory" else "strom"
    off = start_broker(f"{prefix}-off", root, "")
    on = start_broker(f"{prefix}-on", root, "", settings={
        "http.listeners": f"127.0.0.1:{http_port}"})
    if args.pin:
        pin({1})  # the producer (and librdkafka's threads, started later) on core 1
    results: dict[str, tuple[float, float]] = {}
    try:
        for broker in (off, on):
            create_topics(broker.bootstrap, {TOPIC: PARTITIONS}, 30)
            produce_run(broker.bootstrap, TOPIC, args.size, 20_000, args.acks, 10)  # warm-up
        for broker in ((on, off) if on_first else (off, on)):
            os.sync()  # the other run's dirty pages written back: not during this run
            time.sleep(0.5)
            results["on" if broker is on else "off"] = one_round(
                broker, args, url if broker is on else None)
    finally:
        for broker in (off, on):
            stop_broker(broker)
            # A round writes gigabytes (1 M+ records/s): its files go with it.
            shutil.rmtree(broker.data_dir, ignore_errors=True)
        if args.pin:
            pin(set(range(os.cpu_count() or 1)))
    return results


def paired_rounds(rounds: int, pair: Callable[[int], dict[str, tuple[float, float]]],
                  what: str) -> float:
    """Runs `pair(n)` for each round ({"off"|"on": (msgs/s, broker CPU µs/msg)}), prints each
    round's on/off ratios and the medians; returns the median of the rounds' throughput
    ratios on/off."""
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    rate_ratios: list[float] = []
    cpu_ratios: list[float] = []
    for n in range(rounds):
        print(f"round {n + 1}", flush=True)
        result = pair(n)
        for side in ("off", "on"):
            rates[side].append(result[side][0])
            cpu[side].append(result[side][1])
        rate_ratios.append(result["on"][0] / result["off"][0])
        cpu_ratios.append(result["on"][1] / result["off"][1])
        print(f"  on/off {rate_ratios[-1]:.3f} msgs/s, {cpu_ratios[-1]:.3f} CPU/msg",
              flush=True)
    ratio, cpu_ratio = statistics.median(rate_ratios), statistics.median(cpu_ratios)
    print(f"\nmedian msgs/s: {what} off {statistics.median(rates['off']):,.0f}, "
          f"on {statistics.median(rates['on']):,.0f}")
    print(f"median of the rounds' ratios on/off: {ratio:.3f}; "
          f"ratios {min(rate_ratios):.3f}-{max(rate_ratios):.3f}")
    print(f"median broker CPU µs/msg: off {statistics.median(cpu['off']):.3f}, "
          f"on {statistics.median(cpu['on']):.3f}; median ratio on/off {cpu_ratio:.3f} "
          f"({(cpu_ratio - 1) * 100:+.1f}% CPU per message)")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds (a pair of runs each)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time limit of a run")
    parser.add_argument("--count", type=int, default=50_000_000,
                        help="records per run at most (the time limit usually ends it)")
    parser.add_argument("--size", type=int, default=100, help="record size, bytes")
    parser.add_argument("--acks", default="1")
    parser.add_argument("--linger-ms", type=int, default=5,
                        help="the producer's linger.ms (0: small requests, where a "
                             "per-request cost shows most)")
    parser.add_argument("--client", choices=("raw", "librdkafka"), default="raw",
                        help="raw: pre-built Produce requests pipelined on one connection, "
                             "so the broker is the bottleneck (default); librdkafka: "
                             "confluent-kafka's producer from a Python loop")
    parser.add_argument("--batch-records", type=int, default=100,
                        help="raw client: records per partition batch of each request")
    parser.add_argument("--scrape-s", type=float, default=5.0,
                        help="scrape /metrics this often while loaded (0: never)")
    parser.add_argument("--engine", choices=("file", "memory"), default="file",
                        help="the brokers' storage: the local log (default) or memory "
                             "(no disk: the CPU cost alone)")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction,
                        default=(os.cpu_count() or 1) >= 2,
                        help="brokers on core 0, the producer on core 1 (default with 2+ cores)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="metrics-cost-"))
    client = (f"raw client, {args.batch_records} records a batch, acks=1"
              if args.client == "raw" else
              f"librdkafka, acks={args.acks}, linger.ms={args.linger_ms}")
    print(f"{args.rounds} rounds of at most {args.seconds:.0f} s per side, {args.size} B "
          f"records, {client}, {PARTITIONS} partitions, {args.engine} engine, "
          f"{'pinned: brokers core 0, producer core 1' if args.pin else 'not pinned'}",
          flush=True)
    ratio = paired_rounds(args.rounds, lambda n: one_pair(args, root, on_first=n % 2 == 1),
                          "metrics")
    print(f"  ({_change(ratio)})")

def _change(ratio: float) -> str:
    """A ratio on/off as what metrics cost (or, within the noise, seem to give)."""
    if ratio < 1:
        return f"{(1 - ratio) * 100:.1f}% lost with metrics on"
    return f"{(ratio - 1) * 100:.1f}% more with metrics on: noise, not a gain"


if __name__ == "__main__":
    main()
