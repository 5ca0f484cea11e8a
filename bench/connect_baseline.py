"""The hand-written baseline of bench/connect_bench.py: what a team would write by hand instead
of a connector, doing the same work with the same client settings, one process per run.

    python bench/connect_baseline.py file --bootstrap B --topic T --file F [--format string|json]
    python bench/connect_baseline.py sink --bootstrap B --topic T --group G --dsn DSN
                                          --table TABLE --mode insert|upsert

`file`: reads F in batches of --batch-size lines (FileStreamSource's batch.size, 2000) and
produces each line as one record, with the producer settings of a strom.connect source task
(acks=all, linger.ms=5, enable.idempotence=true); value = the line's UTF-8 bytes (what
StringConverter writes) or, with --format json, JsonConverter's schemas.enable=true envelope
of a string. It exits after flush().

`sink`: subscribes to T with the consumer settings of a strom.connect sink task
(enable.auto.commit=false, auto.offset.reset=earliest), takes up to 500 records per consume()
(the worker's batch), decodes JsonConverter's {"schema", "payload"} envelope, creates the
table from the first record's struct schema (as auto.create: NOT NULL for required fields,
PRIMARY KEY (id) for upsert), and writes each batch in one transaction on asyncpg: binary COPY
(insert) or executemany of INSERT ... ON CONFLICT (id) DO UPDATE (upsert), 3000 rows a round
trip, then commits the consumer offsets asynchronously. It runs until SIGTERM.

Both print "ready" once started (imports done, as the worker's are) and wait for a line on
stdin before they create any client, so that the timed part starts where the worker's does: a
running process given its work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any

import asyncpg
from confluent_kafka import Consumer, Producer

PG_TYPES = {"int8": "SMALLINT", "int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT",
            "float": "REAL", "double": "DOUBLE PRECISION", "boolean": "BOOLEAN",
            "string": "TEXT", "bytes": "BYTEA"}  # JsonConverter's schema type names
STRING_SCHEMA = '{"schema":{"type":"string","optional":false},"payload":'


def run_file(args: argparse.Namespace) -> None:
    began = time.perf_counter()
    producer = Producer({"bootstrap.servers": args.bootstrap, "acks": "all", "linger.ms": 5,
                         "enable.idempotence": True})
    as_json = args.format == "json"
    with open(args.file, encoding="utf-8") as source:
        while True:
            lines = source.readlines(args.batch_size * 128)  # a size hint: ~batch_size lines
            if not lines:
                break
            for line in lines:
                text = line.rstrip("\n")
                value = (STRING_SCHEMA + json.dumps(text) + "}" if as_json else text).encode()
                while True:
                    try:
                        producer.produce(args.topic, value)
                        break
                    except BufferError:
                        producer.poll(0.1)
            producer.poll(0)
    producer.flush(60)
    print(f"done {time.perf_counter() - began:.3f}", flush=True)


def create_table_sql(table: str, schema: dict[str, Any], upsert: bool) -> str:
    columns = [f'"{f["field"]}" {PG_TYPES[f["type"]]}'
               + ("" if f.get("optional") else " NOT NULL") for f in schema["fields"]]
    if upsert:
        columns.append('PRIMARY KEY ("id")')
    return f'CREATE TABLE IF NOT EXISTS "{table}" ({", ".join(columns)})'


def upsert_sql(table: str, names: list[str]) -> str:
    cols = ", ".join(f'"{n}"' for n in names)
    params = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    updates = ", ".join(f'"{n}" = EXCLUDED."{n}"' for n in names if n != "id")
    return (f'INSERT INTO "{table}" ({cols}) VALUES ({params}) '
            f'ON CONFLICT ("id") DO UPDATE SET {updates}')


async def run_sink(args: argparse.Namespace, stopping: list[bool]) -> None:
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "session.timeout.ms": 10000, "heartbeat.interval.ms": 3000})
    consumer.subscribe([args.topic])
    connection = await asyncpg.connect(args.dsn)
    upsert = args.mode == "upsert"
    names: list[str] = []
    sql = ""
    try:
        while not stopping:
            messages = consumer.consume(500, 0.5)
            rows = []
            for message in messages:
                if message.error() or message.value() is None:
                    continue
                envelope = json.loads(message.value())
                if not names:
                    names = [f["field"] for f in envelope["schema"]["fields"]]
                    await connection.execute(create_table_sql(args.table, envelope["schema"],
                                                              upsert))
                    sql = upsert_sql(args.table, names)
                payload = envelope["payload"]
                rows.append(tuple(payload.get(n) for n in names))
            if not rows:
                continue
            async with connection.transaction():
                if upsert:
                    for start in range(0, len(rows), 3000):
                        await connection.executemany(sql, rows[start:start + 3000])
                else:
                    await connection.copy_records_to_table(args.table, records=rows,
                                                           columns=names)
            consumer.commit(asynchronous=True)
    finally:
        await connection.close()
        consumer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["file", "sink"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--file")
    parser.add_argument("--format", choices=["string", "json"], default="string")
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--group", default="baseline")
    parser.add_argument("--dsn")
    parser.add_argument("--table")
    parser.add_argument("--mode", choices=["insert", "upsert"], default="insert")
    args = parser.parse_args()
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    print("ready", flush=True)
    sys.stdin.readline()
    if args.command == "file":
        run_file(args)
    else:
        asyncio.run(run_sink(args, stopping))
    return 0


if __name__ == "__main__":
    sys.exit(main())
