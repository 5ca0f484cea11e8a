"""Compressed produce and consume, side by side with Tansu, over the Kafka protocol.

strom validates every produced batch; a compressed one is walked as it decompresses
(strom.protocol.record_stream), in bounded memory. This measures what that costs next to a
peer, per codec: 100 B compressible records (JSON-like text), 1 partition, acks=all,
librdkafka's default batching (linger.ms=5), median of the rounds; then the records are read
back (the broker serves compressed batches as stored). Helpers come from bench/broker_bench.py.

Usage (from the repository root):

    .venv/bin/python bench/codec_bench.py            # full run, ~30 s on 2 cores
    .venv/bin/python bench/codec_bench.py --quick    # reduced run, ~15 s
    .venv/bin/python bench/codec_bench.py --only strom

Results are also written to bench/results/ as JSON and markdown. See bench/README.md.
"""

from __future__ import annotations

import statistics
import sys
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker_bench import (
    CREATE_LIMIT_S,
    Record,
    Row,
    add_row,
    attempt,
    consume_run,
    create_topics,
    header_lines,
    log,
    parse_args,
    produce_run,
    run_benchmark,
    start_broker,
    stop_broker,
    throughput_cell,
)

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
SIZE = 100
PAYLOAD = (b'{"user":4711,"event":"page_view","path":"/products/42","ms":1733400000000,'
           b'"ok":true,"pad":"xxxx"}')[:SIZE].ljust(SIZE, b" ")


@dataclass(frozen=True)
class CodecSettings:
    count: int  # records per producer round
    rounds: int
    produce_limit_s: float
    consume_limit_s: float


FULL = CodecSettings(300_000, 3, 8.0, 10.0)
QUICK = CodecSettings(60_000, 1, 6.0, 6.0)


def topic_of(codec: str) -> str:
    return f"codec-{codec}"


def produce_codec(bootstrap: str, codec: str, settings: CodecSettings) -> Record:
    rounds = [produce_run(bootstrap, topic_of(codec), SIZE, settings.count, "all",
                          settings.produce_limit_s, {"compression.type": codec},
                          payload=PAYLOAD)
              for _ in range(settings.rounds)]
    rate = statistics.median(r.msgs_per_s for r in rounds)
    totals = {name: sum(getattr(r, name) for r in rounds)
              for name in ("sent", "delivered", "errors", "undelivered")}
    return {"msgs_per_s": rate, "mb_per_s": rate * SIZE / 1e6,
            "count": settings.count * len(rounds), **totals,
            "first_error": next((r.first_error for r in rounds if r.first_error), ""),
            "rounds": [asdict(r) | {"msgs_per_s": r.msgs_per_s} for r in rounds]}


def consume_codec(bootstrap: str, codec: str, expected: int, settings: CodecSettings) -> Record:
    """Read the topic from the start once per round; the median round counts."""
    rounds = [consume_run(bootstrap, topic_of(codec), 1, expected, settings.consume_limit_s)
              for _ in range(settings.rounds)]
    rate = statistics.median(r.msgs_per_s for r in rounds)
    return {"msgs_per_s": rate, "mb_per_s": rate * SIZE / 1e6, "expected": expected * len(rounds),
            "received": sum(r.received for r in rounds), "errors": sum(r.errors for r in rounds),
            "first_error": next((r.first_error for r in rounds if r.first_error), ""),
            "rounds": [asdict(r) | {"msgs_per_s": r.msgs_per_s} for r in rounds]}


def bench_codecs(name: str, root: Path, tansu: str, settings: CodecSettings) -> Record:
    errors: list[str] = []
    record: Record = {"errors": errors, "produce": {}, "consume": {}}
    broker = attempt(errors, "start", lambda: start_broker(name, root, tansu))
    if broker is None:
        return record
    try:
        create_topics(broker.bootstrap, {topic_of(c): 1 for c in CODECS}, CREATE_LIMIT_S)
        for codec in CODECS:
            produced = attempt(errors, f"produce {codec}",
                               partial(produce_codec, broker.bootstrap, codec, settings))
            if produced is None:
                continue
            record["produce"][codec] = produced
            log(f"{name}: produce {codec}: {produced['msgs_per_s']:,.0f} msg/s "
                f"({produced['delivered']:,} delivered, {produced['errors']} errors)")
            read = attempt(errors, f"consume {codec}",
                           partial(consume_codec, broker.bootstrap, codec, produced["delivered"],
                                   settings))
            if read is not None:
                record["consume"][codec] = read
                log(f"{name}: consume {codec}: {read['msgs_per_s']:,.0f} msg/s")
    finally:
        stop_broker(broker)
    return record


def build_rows(results: dict[str, Record], settings: Any) -> list[Row]:
    rows: list[Row] = []
    for kind in ("produce", "consume"):
        for codec in CODECS:
            add_row(rows, results, f"{kind} {SIZE} B {codec}, 1 part, acks=all", "higher",
                    (kind, codec), throughput_cell, lambda entry: float(entry["msgs_per_s"]))
    return rows


def main() -> int:
    args = parse_args("reduced run (~15 s)")
    settings = QUICK if args.quick else FULL
    return run_benchmark(args, settings, bench_codecs, build_rows, header_lines, "codec")


if __name__ == "__main__":
    sys.exit(main())
