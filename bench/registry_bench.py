"""Schema registry lookups and registrations per second: `strom registry` over HTTP, and
confluent-kafka's SchemaRegistryClient and AvroSerializer on top of it (issue 14).

The script starts a strom broker (`python -m strom serve --data-dir DIR`, as the other
benchmarks do) and `python -m strom registry` against it, both as subprocesses in process
groups of their own, on free ports. It registers N Avro record schemas under S subjects
(`t000-value` ...; each subject's versions add one string field with a default, so every version
passes the default BACKWARD check), then measures:

- registrations: the POST /subjects/{s}/versions of those N schemas, C clients in parallel.
  Every one is a write by the primary to `_schemas` in a transaction, answered once the
  registry has read its record back.
- over HTTP (no client-side cache; every request reaches the registry): GET /schemas/ids/{id},
  GET /subjects/{s}/versions/latest and POST /subjects/{s} (lookup by schema), on random ids
  and subjects, from C keep-alive connections in parallel (aiohttp), for D seconds each.
- client-side cache: confluent-kafka's SchemaRegistryClient `get_schema(id)` and
  `lookup_schema(subject, schema)` repeated over every registered schema after one warm-up pass
  (the lookups its cache answers), and AvroSerializer (auto.register.schemas=False,
  use.latest.version=False) serializing small records for the S topics: records/s, one thread.

Each row gives the rate, and for the HTTP rows the latency's p50 and p99. Karapace (the
comparison the issue asks for) does not install from the package index on this machine, so
the figures are absolute.

Usage (from the repository root):

    .venv/bin/python bench/registry_bench.py            # 1,000 schemas under 100 subjects, 10 s
    .venv/bin/python bench/registry_bench.py --short    # 200 under 20, 3 s: a quick check
    .venv/bin/python bench/registry_bench.py --schemas 5000 --subjects 500 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from processes import Broker, Node, free_port, start_broker, stop_broker

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
REGISTRY_START_LIMIT_S = 60.0
KARAPACE_NOTE = ("Karapace does not install from the package index on this machine: "
                 "absolute figures, no comparison.")


def subject_name(index: int) -> str:
    return f"t{index:03d}-value"


def schema_text(subject: int, version: int) -> str:
    """Version `version` (1..) of subject `subject`: a record with `version` string fields,
    each but the first with a default (so each version is BACKWARD compatible with the last)."""
    fields: list[dict[str, Any]] = [{"name": "f0", "type": "string"}]
    fields += [{"name": f"f{i}", "type": "string", "default": ""} for i in range(1, version)]
    return json.dumps({"type": "record", "name": f"R{subject}", "namespace": "bench",
                       "fields": fields})


@dataclass
class Row:
    name: str
    count: int
    seconds: float
    latencies_s: list[float]
    errors: int = 0
    unit: str = "req/s"

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> str:
        if not self.latencies_s:
            return "-"
        ordered = sorted(self.latencies_s)
        return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.2f}"


# --------------------------------------------------------------------------- processes


def start_registry(broker: Broker, root: Path) -> Node:
    """`python -m strom registry` against `broker`; returns once GET / answers."""
    port = free_port()
    command = [sys.executable, "-m", "strom", "registry", "--bootstrap-servers", broker.bootstrap,
               "--listen", f"127.0.0.1:{port}", "--log-level", "WARNING"]
    node = Node(100, port, command, root, root / "registry.log")
    node.spawn()
    deadline = time.perf_counter() + REGISTRY_START_LIMIT_S
    while True:
        if not node.alive():
            raise RuntimeError(f"strom registry exited:\n{node.log_tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
                if reply.status == 200:
                    return node
        except OSError:
            pass
        if time.perf_counter() > deadline:
            raise RuntimeError(f"strom registry never answered:\n{node.log_tail()}")
        time.sleep(0.1)


def stop_node(node: Node) -> None:
    import signal

    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        if not node.signal(sig) or node.wait(wait_s):
            return


# --------------------------------------------------------------------------- HTTP


Request = tuple[str, str, dict[str, Any] | None]  # method, path, JSON body


async def http_load(url: str, concurrency: int, requests: Callable[[], Request],
                    seconds: float | None = None, total: list[Request] | None = None,
                    name: str = "") -> Row:
    """C workers on keep-alive connections: for `seconds`, each sends requests() in a loop;
    or (`total`) the workers share out the given requests. Latency per request."""
    latencies: list[float] = []
    errors = 0
    queue = list(reversed(total)) if total is not None else None
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": CONTENT_TYPE}
    async with aiohttp.ClientSession(url, connector=connector, headers=headers) as session:

        async def call(request: Request) -> None:
            nonlocal errors
            method, path, body = request
            began = time.perf_counter()
            async with session.request(method, path, json=body) as reply:
                await reply.read()
                if reply.status != 200:
                    errors += 1
                    if errors <= 3:
                        print(f"  {method} {path}: {reply.status} {await reply.text()}",
                              file=sys.stderr)
            latencies.append(time.perf_counter() - began)

        async def worker(stop_at: float) -> None:
            while True:
                if queue is not None:
                    if not queue:
                        return
                    await call(queue.pop())
                else:
                    if time.perf_counter() >= stop_at:
                        return
                    await call(requests())

        began = time.perf_counter()
        stop_at = began + (seconds or 0.0)
        await asyncio.gather(*(worker(stop_at) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return Row(name, len(latencies) - errors, elapsed, latencies, errors)


# --------------------------------------------------------------------------- client cache


def timed_loop(name: str, seconds: float, step: Callable[[int], object],
               unit: str = "lookups/s") -> Row:
    count = 0
    began = time.perf_counter()
    stop_at = began + seconds
    while True:
        for _ in range(100):
            step(count)
            count += 1
        if time.perf_counter() >= stop_at:
            break
    return Row(name, count, time.perf_counter() - began, [], unit=unit)


def client_rows(url: str, ids: list[int], registered: list[tuple[int, int]],
                seconds: float, subjects: int) -> list[Row]:
    """SchemaRegistryClient's cached lookups and AvroSerializer's throughput."""
    rows = []
    with SchemaRegistryClient({"url": url}) as client:
        for schema_id in ids:  # warm-up: fills the client's cache
            client.get_schema(schema_id)
        rows.append(timed_loop("cached: SchemaRegistryClient.get_schema", seconds,
                               lambda i: client.get_schema(ids[i % len(ids)])))
        schemas = [(subject_name(s), Schema(schema_text(s, v), "AVRO"))
                   for s, v in registered]
        for subject, schema in schemas:
            client.lookup_schema(subject, schema)
        rows.append(timed_loop("cached: SchemaRegistryClient.lookup_schema", seconds,
                               lambda i: client.lookup_schema(*schemas[i % len(schemas)])))
        serializers = []
        for s in range(subjects):
            serializer = AvroSerializer(client, schema_text(s, 1), conf={
                "auto.register.schemas": False, "use.latest.version": False})
            context = SerializationContext(subject_name(s)[:-len("-value")], MessageField.VALUE)
            serializer({"f0": "warm"}, context)
            serializers.append((serializer, context))
        record = {"f0": "a value of some thirty bytes..."}
        rows.append(timed_loop("cached: AvroSerializer(record)", seconds,
                               lambda i: serializers[i % subjects][0](
                                   record, serializers[i % subjects][1]),
                               unit="records/s"))
    return rows


# --------------------------------------------------------------------------- the run


async def http_rows(url: str, args: argparse.Namespace
                    ) -> tuple[list[Row], list[int], list[tuple[int, int]]]:
    per_subject = max(1, args.schemas // args.subjects)
    # registrations: version v of every subject before version v+1 (one worker per subject
    # at a time would serialize them anyway: the registry writes one at a time)
    registrations: list[Request] = []
    registered = []
    for version in range(1, per_subject + 1):
        for s in range(args.subjects):
            registrations.append(("POST", f"/subjects/{subject_name(s)}/versions",
                                  {"schema": schema_text(s, version)}))
            registered.append((s, version))
    # warm-up: the first write waits for the instance to be elected primary and open its writer
    warm = ("POST", "/subjects/warm-up-value/versions", {"schema": schema_text(999, 1)})
    await http_load(url, 1, lambda: warm, total=[warm])
    rows = []
    for version in range(1, per_subject + 1):  # each round: no two writes to one subject race
        batch = registrations[(version - 1) * args.subjects: version * args.subjects]
        row = await http_load(url, args.concurrency, lambda b=batch: b[0], total=batch,
                              name="register: POST /subjects/{s}/versions")
        rows.append(row)
    register = Row(rows[0].name, sum(r.count for r in rows), sum(r.seconds for r in rows),
                   [lat for r in rows for lat in r.latencies_s], sum(r.errors for r in rows),
                   unit="schemas/s")
    async with aiohttp.ClientSession(url) as session, session.get("/schemas") as reply:
        listed = await reply.json()
    ids = sorted({entry["id"] for entry in listed})
    pick = random.Random(7)
    latest = [f"/subjects/{subject_name(s)}/versions/latest" for s in range(args.subjects)]

    def by_id() -> Request:
        return "GET", f"/schemas/ids/{pick.choice(ids)}", None

    def by_latest() -> Request:
        return "GET", pick.choice(latest), None

    def by_schema() -> Request:
        s, v = pick.choice(registered)
        return "POST", f"/subjects/{subject_name(s)}", {"schema": schema_text(s, v)}

    measured = [register]
    for name, make in (("uncached: GET /schemas/ids/{id}", by_id),
                       ("uncached: GET /subjects/{s}/versions/latest", by_latest),
                       ("uncached: POST /subjects/{s} (lookup)", by_schema)):
        await http_load(url, args.concurrency, make, seconds=min(1.0, args.seconds))  # warm-up
        measured.append(await http_load(url, args.concurrency, make, seconds=args.seconds,
                                        name=name))
    return measured, ids, registered


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    print()
    print(f"strom registry: {args.schemas} Avro schemas under {args.subjects} subjects, "
          f"{args.concurrency} HTTP connections, {args.seconds:g} s per figure"
          f"{' (short run)' if args.short else ''}")
    print(KARAPACE_NOTE)
    print()
    header = f"{'figure':<48} {'rate':>12} {'unit':<10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row.name:<48} {row.rate:>12,.0f} {row.unit:<10} {row.percentile(0.50):>8} "
              f"{row.percentile(0.99):>8} {row.errors:>6}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true",
                        help="a quick run: 200 schemas under 20 subjects, 3 s per figure")
    parser.add_argument("--schemas", type=int, default=None, help="schemas registered (1000)")
    parser.add_argument("--subjects", type=int, default=None, help="subjects (100)")
    parser.add_argument("--seconds", type=float, default=None, help="per figure (10)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="parallel HTTP connections (4)")
    args = parser.parse_args()
    defaults = (200, 20, 3.0) if args.short else (1000, 100, 10.0)
    args.schemas = args.schemas or defaults[0]
    args.subjects = min(args.subjects or defaults[1], args.schemas)
    args.seconds = args.seconds or defaults[2]
    root = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    broker = registry = None
    try:
        print("starting a strom broker and strom registry ...", flush=True)
        broker = start_broker("strom", root, "")
        registry = start_registry(broker, root)
        url = f"http://127.0.0.1:{registry.port}"
        print(f"registering {args.schemas} schemas, then measuring ...", flush=True)
        rows, ids, registered = asyncio.run(http_rows(url, args))
        rows += client_rows(url, ids, registered, args.seconds, args.subjects)
        print_table(rows, args)
        return 0 if all(row.errors == 0 for row in rows) else 1
    finally:
        if registry is not None:
            stop_node(registry)
        if broker is not None:
            stop_broker(broker)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
