"""What metrics cost: produce throughput of strom with metrics off and on, side by side.

Two brokers of the same build run at once, one started with `--set http.listeners=...` (the
same as `strom serve --http`) and one without; rounds alternate between them (off, on, off,
on, ...) so that drift of the machine hits both alike, and only one is loaded at a time. While
the metrics broker is loaded, /metrics is scraped every --scrape-s seconds (as Prometheus
would; its scrapes read every partition's offsets). The goal (issue 13): metrics on cost less
than 3% of produce throughput.

On a shared machine throughput swings by more than that from round to round, so each round
also reports the broker process's CPU time per message (user + system, from /proc): a
steadier measure of what metrics add to the broker's own work.

Usage (from the repository root):

    .venv/bin/python bench/metrics_cost.py                  # 5 rounds of 10 s per side
    .venv/bin/python bench/metrics_cost.py --rounds 2 --seconds 3     # a short check
    .venv/bin/python bench/metrics_cost.py --linger-ms 0    # many small Produce requests

Prints each round and the medians: msgs/s and broker CPU µs per message, off and on, and
their ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from broker_bench import create_topics, produce_run
from processes import Broker, free_port, start_broker, stop_broker

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
    payload = bytes(range(256)) * (args.size // 256 + 1)
    cpu_before = cpu_seconds(broker)
    with Scraper(scrape_url or "", args.scrape_s if scrape_url else 0) as scraper:
        result = produce_run(broker.bootstrap, TOPIC, args.size, args.count, args.acks,
                             args.seconds, extra={"linger.ms": args.linger_ms},
                             payload=payload[:args.size])
    if result.errors:  # undelivered at the end (purged) only lower the round's rate
        raise RuntimeError(f"{broker.name}: {result.errors} errors ({result.first_error})")
    cpu_us = (cpu_seconds(broker) - cpu_before) * 1e6 / max(result.delivered, 1)
    note = f", {scraper.scrapes} scrapes" if scrape_url else ""
    print(f"  {broker.name:12} {result.msgs_per_s:12,.0f} msgs/s {cpu_us:7.2f} CPU µs/msg "
          f"({result.delivered:,} in {result.seconds:.1f} s{note})", flush=True)
    return result.msgs_per_s, cpu_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per side")
    parser.add_argument("--seconds", type=float, default=10.0, help="time limit of a round")
    parser.add_argument("--count", type=int, default=50_000_000,
                        help="records per round at most (the time limit usually ends it)")
    parser.add_argument("--size", type=int, default=100, help="record size, bytes")
    parser.add_argument("--acks", default="1")
    parser.add_argument("--linger-ms", type=int, default=5,
                        help="the producer's linger.ms (0: small requests, where a "
                             "per-request cost shows most)")
    parser.add_argument("--scrape-s", type=float, default=5.0,
                        help="scrape /metrics this often while loaded (0: never)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="metrics-cost-"))
    http_port = free_port()
    off = start_broker("strom-off", root, "")
    on = start_broker("strom-on", root, "", settings={
        "http.listeners": f"127.0.0.1:{http_port}"})
    url = f"http://127.0.0.1:{http_port}/metrics"
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for broker in (off, on):
            create_topics(broker.bootstrap, {TOPIC: PARTITIONS}, 30)
            produce_run(broker.bootstrap, TOPIC, args.size, 20_000, args.acks, 10)  # warm-up
        print(f"{args.rounds} rounds per side of at most {args.seconds:.0f} s, "
              f"{args.size} B records, acks={args.acks}, linger.ms={args.linger_ms}, "
              f"{PARTITIONS} partitions", flush=True)
        for n in range(args.rounds):
            print(f"round {n + 1}", flush=True)
            first, second = ((off, on) if n % 2 == 0 else (on, off))
            for broker in (first, second):
                side = "on" if broker is on else "off"
                time.sleep(0.5)  # the other broker's flushes settle
                rate, cpu_us = one_round(broker, args, url if broker is on else None)
                rates[side].append(rate)
                cpu[side].append(cpu_us)
    finally:
        stop_broker(off)
        stop_broker(on)
    off_rate, on_rate = statistics.median(rates["off"]), statistics.median(rates["on"])
    off_cpu, on_cpu = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    print(f"\nmedian msgs/s: metrics off {off_rate:,.0f}, on {on_rate:,.0f}; "
          f"on/off {on_rate / off_rate:.3f} ({_change(on_rate / off_rate)})")
    print(f"median broker CPU µs/msg: off {off_cpu:.3f}, on {on_cpu:.3f}; "
          f"on/off {on_cpu / off_cpu:.3f} ({(on_cpu / off_cpu - 1) * 100:+.1f}% CPU)")


def _change(ratio: float) -> str:
    """A ratio on/off as what metrics cost (or, within the noise, seem to give)."""
    if ratio < 1:
        return f"{(1 - ratio) * 100:.1f}% lost with metrics on"
    return f"{(ratio - 1) * 100:.1f}% more with metrics on: noise, not a gain"


if __name__ == "__main__":
    main()
