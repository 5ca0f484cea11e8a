"""What validation on produce costs: produce throughput of strom into a topic with
`confluent.value.schema.validation=true` and into one without, side by side.

Each round starts two fresh brokers of the same build. Both get the same `_schemas` (one Avro
schema registered under the topic's subject, written in Confluent's record format) and the
same topic, validated on one broker and not on the other; every record carries a valid wire
header (magic byte 0 and the schema's id), so every record passes. Each broker is loaded in
turn (the order alternates between rounds) and both are stopped: no broker carries a round's
files, memory or scheduling luck into the next. As in metrics_cost.py, with --pin (the
default with 2 or more cores) the brokers run on core 0 and the producer on core 1. A round's
figure is the ratio on/off of its two runs; the result is the median over rounds, with the
broker's CPU time per message as a second, steadier measure. The goal (issue 14): validation
on keeps at least 90% of the throughput.

Usage (from the repository root):

    .venv/bin/python bench/schema_validation_cost.py                  # 5 rounds of 10 s
    .venv/bin/python bench/schema_validation_cost.py --rounds 2 --seconds 3   # a short check
    .venv/bin/python bench/schema_validation_cost.py --decode    # with the decode check too
    .venv/bin/python bench/schema_validation_cost.py --size 1024 # 1 KiB records
    .venv/bin/python bench/schema_validation_cost.py --compression lz4
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from broker_bench import create_topics, produce_run
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource
from metrics_cost import cpu_seconds, paired_rounds, pin
from processes import REPO, Broker, start_broker, stop_broker

sys.path.insert(0, str(REPO / "src"))
from strom.registry import wire
from strom.registry.records import Record, SchemaKey, SchemaValue

TOPIC = "validated"
PARTITIONS = 6
SCHEMA_ID = 1
# A record with one `bytes` field: any payload after the length varint decodes.
SCHEMA = json.dumps({"type": "record", "name": "Blob", "namespace": "bench",
                     "fields": [{"name": "data", "type": "bytes"}]})


def payload(size: int) -> bytes:
    """A `size`-byte value: the wire header, then an Avro Blob whose bytes fill the rest."""
    body = size - wire.HEADER_SIZE - 2
    return wire.frame(SCHEMA_ID, wire.encode_varint(body) + os.urandom(body))[:size]


def prepare(broker: Broker, validate: bool, decode: bool) -> None:
    """`_schemas` with the schema, and the topic (validated or not)."""
    create_topics(broker.bootstrap, {"_schemas": 1, TOPIC: PARTITIONS}, 30)
    key, value = Record(SchemaKey(f"{TOPIC}-value", 1), SchemaValue(
        f"{TOPIC}-value", 1, SCHEMA_ID, SCHEMA)).encode()
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    p.produce("_schemas", value=value, key=key)
    if p.flush(10):
        raise RuntimeError("the schema was not written to _schemas")
    if validate:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        resource = ConfigResource(ConfigResource.Type.TOPIC, TOPIC, incremental_configs=[
            ConfigEntry("confluent.value.schema.validation", "true",
                        incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("strom.schema.validation.decode", "true" if decode else "false",
                        incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([resource])[resource].result(30)
        refused: list[object] = []
        check = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0})
        check.produce(TOPIC, b"no wire header", on_delivery=lambda err, _: refused.append(err))
        check.flush(10)
        if not refused or refused[0] is None:
            raise RuntimeError("the validating broker accepted a record without a header")


def one_round(broker: Broker, args: argparse.Namespace) -> tuple[float, float]:
    """(msgs/s, broker CPU µs per message) of one run."""
    cpu_before = cpu_seconds(broker)
    result = produce_run(broker.bootstrap, TOPIC, args.size, args.count, args.acks,
                         args.seconds, extra={"linger.ms": args.linger_ms,
                                              "compression.type": args.compression},
                         payload=payload(args.size))
    if result.errors:
        raise RuntimeError(f"{broker.name}: {result.errors} errors ({result.first_error})")
    cpu_us = (cpu_seconds(broker) - cpu_before) * 1e6 / max(result.delivered, 1)
    print(f"  {broker.name:12} {result.msgs_per_s:12,.0f} msgs/s {cpu_us:7.2f} CPU µs/msg "
          f"({result.delivered:,} in {result.seconds:.1f} s)", flush=True)
    return result.msgs_per_s, cpu_us


def one_pair(args: argparse.Namespace, root: Path, on_first: bool
             ) -> dict[str, tuple[float, float]]:
    if args.pin:
        pin({0})
    off = start_broker("validation-off", root, "")
    on = start_broker("validation-on", root, "")
    if args.pin:
        pin({1})
    results: dict[str, tuple[float, float]] = {}
    try:
        prepare(off, False, args.decode)
        prepare(on, True, args.decode)
        for broker in (off, on):  # warm-up; the validating broker reads _schemas here
            warm = produce_run(broker.bootstrap, TOPIC, args.size, 20_000, args.acks, 10,
                               payload=payload(args.size))
            if warm.errors:
                raise RuntimeError(f"{broker.name}: warm-up failed: {warm.first_error}")
        for broker in ((on, off) if on_first else (off, on)):
            time.sleep(0.5)
            results["on" if broker is on else "off"] = one_round(broker, args)
    finally:
        for broker in (off, on):
            stop_broker(broker)
            # A round writes gigabytes (1 M+ records/s): its files go with it.
            shutil.rmtree(broker.data_dir, ignore_errors=True)
        if args.pin:
            pin(set(range(os.cpu_count() or 1)))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (a pair of runs each)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time limit of a run")
    parser.add_argument("--count", type=int, default=50_000_000,
                        help="records per run at most (the time limit usually ends it)")
    parser.add_argument("--size", type=int, default=100, help="record size, bytes")
    parser.add_argument("--acks", default="1")
    parser.add_argument("--linger-ms", type=int, default=5, help="the producer's linger.ms")
    parser.add_argument("--compression", default="none",
                        help="the producer's compression.type (a compressed batch is "
                             "decompressed once more for validation)")
    parser.add_argument("--decode", action="store_true",
                        help="also strom.schema.validation.decode=true (every value decoded)")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction,
                        default=(os.cpu_count() or 1) >= 2,
                        help="brokers on core 0, the producer on core 1 (default with 2+ cores)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="validation-cost-"))
    print(f"{args.rounds} rounds of at most {args.seconds:.0f} s per side, {args.size} B "
          f"records, acks={args.acks}, linger.ms={args.linger_ms}, {PARTITIONS} partitions, "
          f"compression {args.compression}, decode {'on' if args.decode else 'off'}, "
          f"{'pinned: brokers core 0, producer core 1' if args.pin else 'not pinned'}",
          flush=True)
    ratio = paired_rounds(args.rounds, lambda n: one_pair(args, root, on_first=n % 2 == 1),
                          "validation")
    print(f"  (target >= 0.90: {'met' if ratio >= 0.9 else 'not met'})")

if __name__ == "__main__":
    main()
