"""What the metrics add to each Produce request, measured in one process, A/B interleaved.

bench/metrics_cost.py compares two brokers end to end, but on a shared 2-core virtual machine
one 5-10 s run differs from the next by 20-40% whatever runs in it, which hides a cost of a few
percent. This script removes everything but the difference: one broker (BrokerServer with
`http.listeners` set, the local log in a temporary directory) handles the same pre-built
Produce request (acks=1, a batch of `--records` records for each of 6 partitions) through
`strom.server.dispatch`, in short alternating samples with the metrics switched off (no
meters, `broker.meter` and the engine's storage meter unset) and on (exactly what
`Connection.answer_metered` and `write_answers` do: the API's meters, queue/handle/send
times, request/response bytes, error codes, and the storage append timings; what each
partition appended the engine counts whether metrics are on or not, so it is on both
sides). The CPU time (time.process_time) of each sample gives µs per request; the result is
the median over samples of on/off, and the median extra µs per request.

Usage (from the repository root):

    .venv/bin/python bench/metrics_overhead.py                 # 100 rounds of 200 requests
    .venv/bin/python bench/metrics_overhead.py --records 5     # small requests
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from raw_produce import produce_frame

from strom.config.broker import BrokerConfig
from strom.security.session import Session
from strom.server.app import BrokerServer
from strom.server.dispatch import dispatch

TOPIC = "metrics-overhead"
PARTITIONS = 6


async def create_topic(server: BrokerServer) -> None:
    from kio.schema.create_topics.v5.request import CreatableTopic, CreateTopicsRequest
    from kio.static.primitive import i16, i32

    from strom.protocol.messages import encode_request
    body = CreateTopicsRequest(
        topics=(CreatableTopic(name=TOPIC, num_partitions=i32(PARTITIONS),
                               replication_factor=i16(1), assignments=(), configs=()),),
        timeout=__import__("datetime").timedelta(seconds=30), validate_only=False)
    frame = encode_request(1, "bench", body)[4:]
    assert server.broker is not None
    await dispatch(server.broker, memoryview(frame), Session.plaintext("127.0.0.1"))


async def run(args: argparse.Namespace) -> None:
    root = Path(tempfile.mkdtemp(prefix="metrics-overhead-"))
    config = BrokerConfig.build(root, "127.0.0.1", 0, {"http.listeners": "127.0.0.1:0"})
    server = BrokerServer(config)
    await server.start()
    try:
        broker, service = server.broker, server.metrics
        assert broker is not None and service is not None
        await create_topic(server)
        frame = produce_frame(TOPIC, PARTITIONS, args.records, args.size)[4:]
        view = memoryview(frame)
        session = Session.plaintext("127.0.0.1")
        topic_meter = broker.meter
        metrics = service.metrics

        async def off() -> None:
            await dispatch(broker, view, session, None)

        async def on() -> None:
            read_at = time.perf_counter()
            meters = metrics.api_of(frame)
            started = time.perf_counter()
            answer = await dispatch(broker, view, session, meters)
            meters.handled(len(frame) + 4, started - read_at, time.perf_counter() - started)
            sent = time.perf_counter()
            assert answer is not None
            meters.sent(len(answer), time.perf_counter() - sent)

        async def sample(metered: bool) -> float:
            broker.meter = topic_meter if metered else None
            service.meter_storage(metered)
            step = on if metered and not args.topic_meters_only else off
            begin = time.process_time()
            for _ in range(args.requests):
                await step()
            return (time.process_time() - begin) / args.requests * 1e6

        for _ in range(5):  # warm-up
            await sample(False)
            await sample(True)
        ratios, extra, offs, ons = [], [], [], []
        for n in range(args.rounds):
            if n % 2 == 0:  # off first, then on; the other way round in odd rounds
                off_us = await sample(False)
                on_us = await sample(True)
            else:
                on_us = await sample(True)
                off_us = await sample(False)
            offs.append(off_us)
            ons.append(on_us)
            ratios.append(on_us / off_us)
            extra.append(on_us - off_us)
        print(f"{args.rounds} rounds of {args.requests} Produce requests per side, "
              f"{args.records} records of {args.size} B for each of {PARTITIONS} partitions "
              f"per request, local log, metrics on/off interleaved in one process")
        print(f"CPU µs per request: off median {statistics.median(offs):.1f}, "
              f"on median {statistics.median(ons):.1f}")
        print(f"median extra µs per request with metrics on: {statistics.median(extra):.2f} "
              f"({statistics.median(extra) / (args.records * PARTITIONS) * 1000:.1f} ns "
              f"per record)")
        ratio = statistics.median(ratios)
        q = statistics.quantiles(ratios, n=4)
        print(f"median on/off CPU per request: {ratio:.4f} ({(ratio - 1) * 100:+.2f}%; "
              f"quartiles {q[0]:.4f}-{q[2]:.4f}): throughput on/off at saturation "
              f"{1 / ratio:.4f}")
    finally:
        await server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200, help="requests per sample")
    parser.add_argument("--records", type=int, default=100,
                        help="records per partition batch of each request")
    parser.add_argument("--size", type=int, default=100, help="record size, bytes")
    parser.add_argument("--topic-meters-only", action="store_true",
                        help="the on side keeps only the per-partition meters (the storage "
                             "append times), not the per-request API meters")
    args = parser.parse_args()
    try:
        import uvloop
        uvloop.run(run(args))
    except ImportError:  # pragma: no cover
        asyncio.run(run(args))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
