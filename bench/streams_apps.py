"""The applications of bench/streams_bench.py: the same four workloads written with strom.streams,
Quix Streams and Faust, one process per run.

    python bench/streams_apps.py '{"lib": "strom", "workload": "count", ...}'

The one argument is the run's spec (JSON; see `Spec`). The process runs the application until
SIGTERM, then stops it cleanly. Each library runs in its own interpreter: strom in strom's own
environment, Quix Streams and Faust in the benchmark's separate virtual environments (their
packages are never imported into strom's). So this file imports each library only inside its
own section, and the shared part below uses the standard library only.

What every application does, whatever the library (user code is the functions below, shared):

- input: key = UTF-8 string, value = a JSON object {"id", "k", "v", "pad"}; output: key = the
  input key, value = a JSON object.
- map_filter: keep records with `v % 4 != 0`, write {"id", "k", "v2": 2 v}.
- count: running count per message key, one output record per input record, {"count": n}.
- window_count: running count per message key and 1 s tumbling window (event time: the record's
  timestamp), one output per input record ("emit on every update"), {"start": ms, "count": n}.
- join: the table topic (key -> {"name"}) joined with the stream by key (inner join, both
  topics co-partitioned), {"id", "k", "v", "name"}.
- state in RocksDB in all three (strom: default.dsl.store=rocksDB, Quix: always, Faust:
  store=rocksdb:// with rocksdict), changelogged; no record caches (strom has none; Quix and
  Faust emit per update as written here).
- JSON: each library's own JSON (de)serializer (strom: the standard library's json; Quix and
  Faust: orjson).
- the first input record the library deserializes writes the wall-clock time to
  `mark_file` (the start of the throughput clock): a wrapper around each library's JSON
  deserializer of the input topic (not of the join's table topic).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

WORKLOADS = ("map_filter", "count", "window_count", "join")
MARKED: list[float] = []


class Spec:
    """A run: which library, workload and guarantee, on which topics."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.lib: str = raw["lib"]
        self.workload: str = raw["workload"]
        self.exactly_once: bool = raw["guarantee"] == "exactly_once"
        self.bootstrap: str = raw["bootstrap"]
        self.input: str = raw["input"]
        self.output: str = raw["output"]
        self.table: str = raw.get("table", "")
        self.app_id: str = raw["app_id"]
        self.state_dir: str = raw["state_dir"]
        self.commit_interval_ms: int = int(raw["commit_interval_ms"])
        self.partitions: int = int(raw["partitions"])
        self.window_ms: int = int(raw.get("window_ms", 1000))
        self.grace_ms: int = int(raw.get("grace_ms", 60_000))
        self.mark_file: str = raw["mark_file"]
        if self.workload not in WORKLOADS:
            raise SystemExit(f"unknown workload {self.workload!r}")


# --------------------------------------------------------------------- shared user code


def mark(path: str) -> None:
    """Writes the time of the first input record (once)."""
    if not MARKED:
        MARKED.append(time.time())
        with open(path, "w") as out:
            out.write(repr(MARKED[0]))


def marking(loads: Callable[[Any], Any], path: str) -> Callable[[Any], Any]:
    """`loads` that marks the first call."""
    def load(data: Any) -> Any:
        if not MARKED:
            mark(path)
        return loads(data)
    return load


def keep(value: dict[str, Any]) -> bool:
    return bool(value["v"] % 4 != 0)


def transform(value: dict[str, Any]) -> dict[str, Any]:
    return {"id": value["id"], "k": value["k"], "v2": value["v"] * 2}


def enrich(value: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    return {"id": value["id"], "k": value["k"], "v": value["v"], "name": row["name"]}


def window_start(timestamp_ms: int, window_ms: int) -> int:
    return timestamp_ms - timestamp_ms % window_ms


# --------------------------------------------------------------------- strom.streams


def run_strom(spec: Spec) -> None:
    from strom.streams import (
        Consumed,
        JsonSerde,
        Materialized,
        Produced,
        Serdes,
        StreamsApp,
        StreamsBuilder,
        TimeWindows,
    )

    class MarkingJson(JsonSerde[Any]):
        def deserialize(self, topic: str, data: bytes | None) -> Any:
            if not MARKED:
                mark(spec.mark_file)
            return super().deserialize(topic, data)

    string, out_json = Serdes.String(), JsonSerde[Any]()
    produced = Produced(string, out_json)
    builder = StreamsBuilder()
    stream = builder.stream(spec.input, consumed=Consumed(string, MarkingJson()))
    if spec.workload == "map_filter":
        stream.filter(lambda _k, v: keep(v)).map_values(transform).to(spec.output, produced)
    elif spec.workload == "count":
        (stream.group_by_key().count(Materialized("counts", key_serde=string))
         .to_stream().map_values(lambda n: {"count": n}).to(spec.output, produced))
    elif spec.workload == "window_count":
        windows = TimeWindows.of_size_and_grace(spec.window_ms, spec.grace_ms)
        (stream.group_by_key().windowed_by(windows)
         .count(Materialized("window-counts", key_serde=string))
         .to_stream()
         .map(lambda wk, n: (wk.key, {"start": wk.window.start, "count": n}))
         .to(spec.output, produced))
    else:
        table = builder.table(spec.table, Consumed(string, JsonSerde[Any]()),
                              Materialized("names"))
        stream.join(table, enrich).to(spec.output, produced)
    config = {"application.id": spec.app_id, "bootstrap.servers": spec.bootstrap,
              "processing.guarantee": "exactly_once_v2" if spec.exactly_once
              else "at_least_once",
              "commit.interval.ms": spec.commit_interval_ms, "state.dir": spec.state_dir,
              "default.dsl.store": "rocksDB"}
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    app = StreamsApp(builder.build(), config)
    if os.environ.get("BENCH_STROM_PROFILE"):  # cProfile of the stream threads, to that file
        profile_threads(app, os.environ["BENCH_STROM_PROFILE"])
    app.start()
    while not stop.wait(0.2) and app.failure is None:
        pass
    app.close(30)
    if app.failure is not None:
        raise SystemExit(f"strom.streams app failed: {app.failure}")


def profile_threads(app: Any, path: str) -> None:
    """Runs each stream thread's loop under cProfile; the stats go to `path` when it ends."""
    import cProfile

    run = app._run

    def profiled(thread: Any) -> None:
        profile = cProfile.Profile()
        profile.enable()
        try:
            run(thread)
        finally:
            profile.disable()
            profile.dump_stats(f"{path}.{thread.index}")

    app._run = profiled


# --------------------------------------------------------------------- PEERS ONLY: Quix Streams
# Runs in the benchmark's Quix Streams environment (bench/.venvs/quixstreams), never in strom's.


def run_quix(spec: Spec) -> None:
    from quixstreams import Application
    from quixstreams.models.serializers.json import JSONDeserializer
    from quixstreams.utils.json import loads as quix_loads

    app = Application(
        broker_address=spec.bootstrap, consumer_group=spec.app_id,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once" if spec.exactly_once else "at-least-once",
        commit_interval=spec.commit_interval_ms / 1000, state_dir=spec.state_dir,
        loglevel="WARNING")
    source = app.topic(spec.input, key_deserializer="str",
                       value_deserializer=JSONDeserializer(
                           loads=marking(quix_loads, spec.mark_file)))
    sink = app.topic(spec.output, key_serializer="str", value_serializer="json")
    sdf = app.dataframe(source)
    if spec.workload == "map_filter":
        sdf = sdf.filter(keep).apply(transform)
    elif spec.workload == "count":
        def count(_value: dict[str, Any], state: Any) -> dict[str, Any]:
            n = state.get("count", 0) + 1
            state.set("count", n)
            return {"count": n}
        sdf = sdf.apply(count, stateful=True)
    elif spec.workload == "window_count":
        sdf = (sdf.tumbling_window(spec.window_ms, grace_ms=spec.grace_ms).count().current()
               .apply(lambda w: {"start": w["start"], "count": w["value"]}))
    else:
        table = app.dataframe(app.topic(spec.table, key_deserializer="str",
                                        value_deserializer="json"))
        sdf = sdf.join_asof(table, how="inner", on_merge=enrich)
    sdf.to_topic(sink)
    app.run()


# --------------------------------------------------------------------- PEERS ONLY: Faust
# Runs in the benchmark's Faust environment (bench/.venvs/faust), never in strom's.


def run_faust(spec: Spec) -> None:
    import faust
    from faust.serializers import codecs

    class MarkingJson(codecs.json):  # type: ignore[misc,name-defined]
        def _loads(self, s: bytes) -> Any:
            if not MARKED:
                mark(spec.mark_file)
            return super()._loads(s)

    codecs.register("bench_marking_json", MarkingJson())
    app = faust.App(
        spec.app_id, broker=f"kafka://{spec.bootstrap}",
        store=os.environ.get("BENCH_FAUST_STORE", "rocksdb://"),
        processing_guarantee="exactly_once" if spec.exactly_once else "at_least_once",
        broker_commit_interval=spec.commit_interval_ms / 1000,
        broker_commit_every=1_000_000_000,  # commit by time only, as the others do
        topic_partitions=spec.partitions, datadir=spec.state_dir, web_enabled=False,
        consumer_auto_offset_reset="earliest", table_standby_replicas=0)
    source = app.topic(spec.input, key_serializer="raw", value_serializer="bench_marking_json",
                       partitions=spec.partitions)
    sink = app.topic(spec.output, key_serializer="raw", value_serializer="json",
                     partitions=spec.partitions)
    FAUST_AGENTS[spec.workload](app, spec, source, sink)
    sys.argv = [sys.argv[0], "worker", "--loglevel",
                os.environ.get("BENCH_FAUST_LOGLEVEL", "warn")]
    app.main()


def _faust_map_filter(app: Any, spec: Spec, source: Any, sink: Any) -> None:
    @app.agent(source)
    async def map_filter(stream: Any) -> None:
        async for key, value in stream.items():
            if keep(value):
                await sink.send(key=key, value=transform(value))


def _faust_count(app: Any, spec: Spec, source: Any, sink: Any) -> None:
    counts = app.Table("counts", default=int, partitions=spec.partitions)

    @app.agent(source)
    async def count(stream: Any) -> None:
        async for key, _value in stream.items():
            n = counts[key] + 1
            counts[key] = n
            await sink.send(key=key, value={"count": n})


def _faust_window_count(app: Any, spec: Spec, source: Any, sink: Any) -> None:
    windowed = app.Table("window-counts", default=int, partitions=spec.partitions
                         ).tumbling(spec.window_ms / 1000, expires=3600.0)

    @app.agent(source)
    async def window_count(stream: Any) -> None:
        async for event in stream.events():
            key = event.key.decode()
            windowed[key] += 1
            start = window_start(round(event.message.timestamp * 1000), spec.window_ms)
            await sink.send(key=event.key, value={"start": start,
                                                  "count": windowed[key].current()})


def _faust_join(app: Any, spec: Spec, source: Any, sink: Any) -> None:
    # The table topic is the table's changelog: Faust reads it into the table (recovery)
    # before its agents start (Faust's Stream.join is not implemented).
    names = app.Table("names", default=None, partitions=spec.partitions,
                      changelog_topic=app.topic(spec.table, key_serializer="raw",
                                                value_serializer="json",
                                                partitions=spec.partitions))

    @app.agent(source)
    async def join(stream: Any) -> None:
        async for key, value in stream.items():
            row = names.get(key)
            if row is not None:
                await sink.send(key=key, value=enrich(value, row))


FAUST_AGENTS: dict[str, Callable[[Any, Spec, Any, Any], None]] = {
    "map_filter": _faust_map_filter, "count": _faust_count,
    "window_count": _faust_window_count, "join": _faust_join}


def main() -> None:
    spec = Spec(json.loads(sys.argv[1]))
    os.makedirs(spec.state_dir, exist_ok=True)
    {"strom": run_strom, "quix": run_quix, "faust": run_faust}[spec.lib](spec)


if __name__ == "__main__":
    main()
