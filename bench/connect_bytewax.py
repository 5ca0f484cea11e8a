"""PEER ONLY: bytewax doing bench/connect_bench.py's file -> topic and topic -> PostgreSQL work.

Runs in its own environment (bench/.venvs/bytewax: bytewax, confluent-kafka, asyncpg) and
imports nothing of strom. Same command line and protocol as bench/connect_baseline.py: it
prints "ready" once imported, waits for a line on stdin, then builds and runs the dataflow
(bytewax.testing.run_main: one worker, in this process).

`file`: FileSource (batch_size 2000) -> map to KafkaSinkMessage (the line's bytes, or the
JsonConverter envelope with --format json) -> KafkaSink with the worker's producer settings
(acks=all, linger.ms=5, enable.idempotence=true). It ends with the file and prints
`done SECONDS` once the sink has flushed.

`sink`: KafkaSource (earliest, tail, batches of 500) -> map json.loads -> a DynamicSink whose
partition writes each batch in one transaction on asyncpg (the table created from the first
record's schema; COPY for insert, executemany of INSERT ... ON CONFLICT (id) DO UPDATE for
upsert), as connect_baseline.py's sink does. It runs until it is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import asyncpg
import bytewax.operators as op
from bytewax.connectors.files import FileSource
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main
from confluent_kafka import OFFSET_BEGINNING

PG_TYPES = {"int8": "SMALLINT", "int16": "SMALLINT", "int32": "INTEGER", "int64": "BIGINT",
            "float": "REAL", "double": "DOUBLE PRECISION", "boolean": "BOOLEAN",
            "string": "TEXT", "bytes": "BYTEA"}
STRING_SCHEMA = '{"schema":{"type":"string","optional":false},"payload":'
PRODUCER = {"acks": "all", "linger.ms": "5", "enable.idempotence": "true"}


def file_flow(args: argparse.Namespace) -> Dataflow:
    flow = Dataflow("file_to_topic")
    lines = op.input("lines", flow, FileSource(args.file, batch_size=args.batch_size))
    if args.format == "json":
        def to_message(line: str) -> KafkaSinkMessage[None, bytes]:
            return KafkaSinkMessage(None, (STRING_SCHEMA + json.dumps(line) + "}").encode())
    else:
        def to_message(line: str) -> KafkaSinkMessage[None, bytes]:
            return KafkaSinkMessage(None, line.encode())
    messages = op.map("message", lines, to_message)
    op.output("topic", messages, KafkaSink([args.bootstrap], args.topic, add_config=PRODUCER))
    return flow


class PgPartition(StatelessSinkPartition[Any]):
    def __init__(self, args: argparse.Namespace) -> None:
        self.table, self.upsert = args.table, args.mode == "upsert"
        self.loop = asyncio.new_event_loop()
        self.connection = self.loop.run_until_complete(asyncpg.connect(args.dsn))
        self.names: list[str] = []
        self.sql = ""

    def write_batch(self, items: list[Any]) -> None:
        self.loop.run_until_complete(self._write(items))

    async def _write(self, envelopes: list[Any]) -> None:
        if not envelopes:
            return
        if not self.names:
            schema = envelopes[0]["schema"]
            self.names = [f["field"] for f in schema["fields"]]
            columns = [f'"{f["field"]}" {PG_TYPES[f["type"]]}'
                       + ("" if f.get("optional") else " NOT NULL") for f in schema["fields"]]
            if self.upsert:
                columns.append('PRIMARY KEY ("id")')
            await self.connection.execute(
                f'CREATE TABLE IF NOT EXISTS "{self.table}" ({", ".join(columns)})')
            cols = ", ".join(f'"{n}"' for n in self.names)
            params = ", ".join(f"${i}" for i in range(1, len(self.names) + 1))
            updates = ", ".join(f'"{n}" = EXCLUDED."{n}"' for n in self.names if n != "id")
            self.sql = (f'INSERT INTO "{self.table}" ({cols}) VALUES ({params}) '
                        f'ON CONFLICT ("id") DO UPDATE SET {updates}')
        rows = [tuple(e["payload"].get(n) for n in self.names) for e in envelopes]
        async with self.connection.transaction():
            if self.upsert:
                for start in range(0, len(rows), 3000):
                    await self.connection.executemany(self.sql, rows[start:start + 3000])
            else:
                await self.connection.copy_records_to_table(self.table, records=rows,
                                                            columns=self.names)

    def close(self) -> None:
        self.loop.run_until_complete(self.connection.close())
        self.loop.close()


class PgSink(DynamicSink[Any]):
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args

    def build(self, step_id: str, worker_index: int, worker_count: int) -> PgPartition:
        return PgPartition(self.args)


def sink_flow(args: argparse.Namespace) -> Dataflow:
    flow = Dataflow("topic_to_postgres")
    source = KafkaSource([args.bootstrap], [args.topic], tail=True,
                         starting_offset=OFFSET_BEGINNING, batch_size=500,
                         add_config={"group.id": args.group})
    messages = op.input("topic", flow, source)
    envelopes = op.map("decode", messages, lambda m: json.loads(m.value))
    op.output("postgres", envelopes, PgSink(args))
    return flow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["file", "sink"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--file")
    parser.add_argument("--format", choices=["string", "json"], default="string")
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--group", default="bytewax")
    parser.add_argument("--dsn")
    parser.add_argument("--table")
    parser.add_argument("--mode", choices=["insert", "upsert"], default="insert")
    args = parser.parse_args()
    print("ready", flush=True)
    sys.stdin.readline()
    began = time.perf_counter()
    run_main(file_flow(args) if args.command == "file" else sink_flow(args))
    print(f"done {time.perf_counter() - began:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
