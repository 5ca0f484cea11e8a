"""Consumer-group benchmarks of strom and Tansu over the Kafka protocol.

Runs the same confluent-kafka group workloads against each broker, one broker at a time,
and prints a table with the ratio strom/Tansu:

  1. rebalance time, classic protocol: an 11th member joins a stable group of 10 on a
     20-partition topic (eager `range` and `cooperative-sticky`), median of 3 trials
  2. the same with the KIP-848 consumer protocol (`group.protocol=consumer`), where the
     broker advertises ConsumerGroupHeartbeat; "n/a" otherwise
  3. offset commits per second (synchronous, and asynchronous with a final flush)
  4. coordinator memory: broker RSS before and after 1,000 groups with one committed offset

The brokers are started with their default settings (so strom's
group.initial.rebalance.delay.ms is Kafka's 3000 ms; it only delays the first rebalance of
an empty group, which is not the one measured). Helpers come from bench/broker_bench.py.

Usage (from the repository root):

    .venv/bin/python bench/group_bench.py            # full run, ~4 min on 2 cores
    .venv/bin/python bench/group_bench.py --quick    # reduced run, ~1.5 min
    .venv/bin/python bench/group_bench.py --only strom

Results are also written to bench/results/ as JSON and markdown. See bench/README.md.
"""

from __future__ import annotations

import socket
import statistics
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker_bench import (
    Broker,
    Record,
    Row,
    attempt,
    create_topics,
    log,
    lookup,
    parse_args,
    run_benchmark,
    start_broker,
    stop_broker,
)
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

CONSUMER_GROUP_HEARTBEAT = 68  # the KIP-848 API key
API_VERSIONS = 18


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Settings:
    trials: int  # rebalance trials per variant (the median is reported)
    members: int  # stable members before the extra one joins
    partitions: int  # partitions of the subscribed topic
    form_limit_s: float  # bound on forming the stable group
    rebalance_limit_s: float  # bound on the rebalance after the extra member joins
    commit_s: float  # duration of each commit loop
    groups: int  # groups created for the coordinator-memory figure
    groups_limit_s: float  # bound on creating them


FULL = Settings(3, 10, 20, 40.0, 40.0, 5.0, 1000, 90.0)
QUICK = Settings(1, 10, 20, 30.0, 30.0, 2.0, 200, 60.0)
SESSION_TIMEOUT_MS = 10_000
HEARTBEAT_INTERVAL_MS = 1_000
# A stable group: complete, balanced assignment and no rebalance callback for QUIET_S
# (longer than the 1 s heartbeat, through which classic members learn of a rebalance).
QUIET_S = 1.2
POLL_S = 0.05  # poll timeout of each member's loop (poll wakes as soon as an event arrives)
ASYNC_WINDOW = 1000  # most asynchronous commits in flight at once
ALTER_BATCH = 100  # AlterConsumerGroupOffsets requests in flight at once


@dataclass(frozen=True)
class Variant:
    """One way of forming a group: a protocol and its assignor."""

    key: str
    label: str
    config: dict[str, Any]
    incremental: bool  # on_assign/on_revoke carry increments, not the whole assignment
    needs_kip848: bool = False


VARIANTS = (
    Variant("classic-range", "classic, eager range",
            {"group.protocol": "classic", "partition.assignment.strategy": "range",
             "session.timeout.ms": SESSION_TIMEOUT_MS,
             "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS}, incremental=False),
    Variant("classic-cooperative", "classic, cooperative-sticky",
            {"group.protocol": "classic", "partition.assignment.strategy": "cooperative-sticky",
             "session.timeout.ms": SESSION_TIMEOUT_MS,
             "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS}, incremental=True),
    # Session timeout, heartbeat interval and assignor are the broker's under KIP-848;
    # librdkafka rejects the classic settings with group.protocol=consumer.
    Variant("consumer", "KIP-848 group.protocol=consumer, broker defaults",
            {"group.protocol": "consumer"}, incremental=True, needs_kip848=True),
)


# --------------------------------------------------------------------------- probes


def advertised_apis(port: int, timeout_s: float = 5.0) -> dict[int, tuple[int, int]]:
    """ApiVersions v0 over a raw socket: {api_key: (min_version, max_version)}."""
    client_id = b"group-bench"
    body = struct.pack(">hhih", API_VERSIONS, 0, 1, len(client_id)) + client_id
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)

        def read(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = sock.recv(n - len(data))
                if not chunk:
                    raise ConnectionError("connection closed during ApiVersions")
                data += chunk
            return data

        (size,) = struct.unpack(">i", read(4))
        data = read(size)
    _correlation, error, count = struct.unpack_from(">ihi", data)
    if error:
        raise RuntimeError(f"ApiVersions error code {error}")
    return {key: (low, high) for key, low, high in
            (struct.unpack_from(">hhh", data, 10 + 6 * i) for i in range(count))}


# --------------------------------------------------------------------------- rebalance


class Board:
    """Who owns which partitions, updated by the members' rebalance callbacks."""

    def __init__(self, partitions: int, incremental: bool) -> None:
        self.incremental = incremental
        self.all = set(range(partitions))
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.members: list[Member] = []
        self.converged_at: float | None = None
        self.callbacks = 0
        self.events: list[tuple[float, str, int]] = []  # (time, kind, partitions) per callback

    def watch(self, members: list[Member]) -> None:
        """From now on, convergence means: these members own all partitions, each some."""
        with self.lock:
            self.members = list(members)
            self.converged_at = None
            self._check()

    def update(self, member: Member, kind: str, partitions: list[TopicPartition]) -> None:
        now = time.perf_counter()
        incremental = self.incremental
        ids = {tp.partition for tp in partitions}
        with self.lock:
            self.callbacks += 1
            self.events.append((now, kind, len(ids)))
            if kind == "assign":
                member.owned = member.owned | ids if incremental else ids
                member.assigns += 1
            elif incremental:
                member.owned = member.owned - ids
            else:
                member.owned = set()
            self._check(now)

    def _holds(self) -> bool:
        """Every watched member owns its share: all partitions, disjoint, counts within 1."""
        owned = [m.owned for m in self.members]
        counts = [len(o) for o in owned]
        return (bool(owned) and min(counts) > 0 and max(counts) - min(counts) <= 1
                and sum(counts) == len(self.all) and set().union(*owned) == self.all)

    def _check(self, now: float | None = None) -> None:
        if self.converged_at is None and self.members and self._holds():
            self.converged_at = now or time.perf_counter()
            self.changed.notify_all()

    def wait_stable(self, quiet_s: float, timeout_s: float, members: list[Member]) -> float:
        """Wait for a complete assignment and then quiet_s without callbacks; returns the
        time of the last callback before the quiet spell."""
        deadline = time.perf_counter() + timeout_s
        while True:
            self.wait(max(0.1, deadline - time.perf_counter()), members)
            with self.lock:
                last = self.events[-1][0] if self.events else 0.0
                if self._holds() and time.perf_counter() - last >= quiet_s:
                    return last
                if not self._holds():
                    self.converged_at = None  # a rebalance is under way: start again
            if time.perf_counter() > deadline:
                raise TimeoutError(f"group not quiet for {quiet_s} s within {timeout_s:.0f} s")
            time.sleep(0.05)

    def wait(self, timeout_s: float, members: list[Member]) -> float:
        deadline = time.perf_counter() + timeout_s
        with self.lock:
            while self.converged_at is None:
                left = deadline - time.perf_counter()
                fatal = next((e for m in members for e in m.errors if m.fatal), None)
                if left <= 0 or fatal:
                    state = ", ".join(str(len(m.owned)) for m in members)
                    errors = sorted({e for m in members for e in m.errors})
                    raise TimeoutError(
                        f"no complete assignment within {timeout_s:.0f} s (partitions per"
                        f" member: {state}; {self.callbacks} callbacks)"
                        + (f"; client errors: {'; '.join(errors[:3])}" if errors else ""))
                self.changed.wait(min(left, 0.2))
            return self.converged_at


@dataclass(eq=False)
class Member:
    """One group member: a consumer polled by its own thread."""

    consumer: Consumer
    board: Board
    topic: str
    owned: set[int] = field(default_factory=set)
    assigns: int = 0
    subscribed_at: float = 0.0
    errors: list[str] = field(default_factory=list)
    fatal: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            self.subscribed_at = time.perf_counter()
            self.consumer.subscribe(
                [self.topic],
                on_assign=lambda c, ps: self.board.update(self, "assign", ps),
                on_revoke=lambda c, ps: self.board.update(self, "revoke", ps),
                on_lost=lambda c, ps: self.board.update(self, "lost", ps))
            while not self.stop.is_set():
                msg = self.consumer.poll(POLL_S)
                error = msg.error() if msg is not None else None
                if error is not None:
                    self.note(error)
        except Exception as exc:  # surfaced through Board.wait / the trial record
            self.errors.append(f"{type(exc).__name__}: {exc}")
            self.fatal = True
        finally:
            try:
                self.consumer.close()
            except Exception as exc:
                self.errors.append(f"close: {exc}")

    def note(self, error: KafkaError) -> None:
        if len(self.errors) < 5:
            self.errors.append(str(error))
        if error.fatal() or error.code() in (KafkaError._FATAL, KafkaError._UNSUPPORTED_FEATURE,
                                             KafkaError.UNSUPPORTED_VERSION,
                                             KafkaError._INVALID_ARG):
            self.fatal = True


def stop_members(members: list[Member], timeout_s: float = 15.0) -> None:
    """Each thread closes its own consumer (leaving the group); all close in parallel."""
    for member in members:
        member.stop.set()
    deadline = time.perf_counter() + timeout_s
    for member in members:
        if member.thread is not None:
            member.thread.join(max(0.1, deadline - time.perf_counter()))


def rebalance_trial(bootstrap: str, topic: str, group: str, variant: Variant,
                    settings: Settings) -> Record:
    """Form a stable group of N members, then time how long an (N+1)th takes to fit in."""
    board = Board(settings.partitions, variant.incremental)
    config = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
              "auto.offset.reset": "latest"} | variant.config
    members = [Member(Consumer(config), board, topic) for _ in range(settings.members + 1)]
    stable, extra = members[:-1], members[-1]
    try:
        board.watch(stable)
        for member in stable:
            member.start()
        formed_at = board.wait_stable(QUIET_S, settings.form_limit_s, stable)
        formation_s = formed_at - min(m.subscribed_at for m in stable)
        callbacks_before = board.callbacks
        board.watch(members)
        extra.start()
        done_at = board.wait(settings.rebalance_limit_s, members)
        begin = extra.subscribed_at
        after = [t - begin for t, _kind, _n in board.events[callbacks_before:]]
        return {"rebalance_s": done_at - begin, "formation_s": formation_s,
                "first_callback_s": min(after) if after else None,
                "callbacks": board.callbacks - callbacks_before,
                "events": [(round(t - begin, 4), kind, n) for t, kind, n
                           in board.events[callbacks_before:]],
                "partitions_per_member": sorted(len(m.owned) for m in members)}
    finally:
        stop_members(members)


def bench_rebalance(broker: Broker, variant: Variant, settings: Settings,
                    errors: list[str]) -> Record | None:
    topic = "group-bench-rebalance"
    trials: list[Record] = []
    for trial in range(settings.trials):
        group = f"bench-{variant.key}-{trial}"
        result = attempt(errors, f"rebalance {variant.label}, trial {trial + 1}",
                         partial(rebalance_trial, broker.bootstrap, topic, group, variant,
                                 settings))
        if result is None:
            break  # a variant that fails once is not retried: keeps the run bounded
        trials.append(result)
        log(f"{broker.name}: {variant.label}, trial {trial + 1}/{settings.trials}: rebalance"
            f" {result['rebalance_s'] * 1000:,.0f} ms (group of {settings.members} formed in"
            f" {result['formation_s'] * 1000:,.0f} ms; {result['callbacks']} callbacks, the"
            f" first after {(result['first_callback_s'] or 0) * 1000:,.0f} ms;"
            f" partitions per member {result['partitions_per_member']})")
    if len(trials) < settings.trials:
        return None
    return {"rebalance_s": statistics.median(t["rebalance_s"] for t in trials),
            "formation_s": statistics.median(t["formation_s"] for t in trials),
            "trials": trials}


# --------------------------------------------------------------------------- commits


def commit_rates(bootstrap: str, topic: str, seconds: float) -> Record:
    """Synchronous commits in a loop, then windowed asynchronous commits; commits/s each.

    Commits go to a group without members (no subscribe, no assign): the simple-consumer
    OffsetCommit path (generation -1), as `kafka-consumer-groups --reset-offsets` uses.
    """
    base = {"bootstrap.servers": bootstrap, "group.id": "bench-commits",
            "enable.auto.commit": False}
    out: Record = {}
    sync = Consumer(base)
    try:
        sync.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)  # coordinator
        count, begin = 0, time.perf_counter()
        while time.perf_counter() - begin < seconds:
            count += 1
            sync.commit(offsets=[TopicPartition(topic, 0, count)], asynchronous=False)
        elapsed = time.perf_counter() - begin
        out["sync"] = {"commits": count, "seconds": elapsed, "per_s": count / elapsed}
    finally:
        sync.close()

    done: list[int] = [0, 0]  # completed, failed
    first_error: list[str] = []

    def on_commit(err: Any, _partitions: Any) -> None:
        done[0] += 1
        if err is not None:
            done[1] += 1
            first_error.append(str(err))

    asy = Consumer(base | {"on_commit": on_commit})
    try:
        asy.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
        asy.poll(0.1)
        done[:] = [0, 0]
        issued, offset0 = 0, out["sync"]["commits"] + 10
        begin = time.perf_counter()
        while time.perf_counter() - begin < seconds:
            if issued - done[0] >= ASYNC_WINDOW:
                asy.poll(0.001)
                continue
            issued += 1
            asy.commit(offsets=[TopicPartition(topic, 0, offset0 + issued)], asynchronous=True)
            if issued % 50 == 0:
                asy.poll(0)
        flush_deadline = time.perf_counter() + 30.0
        while done[0] < issued and time.perf_counter() < flush_deadline:
            asy.poll(0.01)
        elapsed = time.perf_counter() - begin
        committed = asy.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
        out["async"] = {"commits": issued, "completed": done[0], "failed": done[1],
                        "seconds": elapsed, "per_s": (done[0] - done[1]) / elapsed,
                        "window": ASYNC_WINDOW, "first_error": first_error[0] if first_error
                        else "", "last_committed": committed,
                        "expected_last": offset0 + issued}
    finally:
        asy.close()
    if out["async"]["completed"] < out["async"]["commits"]:
        raise RuntimeError(f"{out['async']['commits'] - out['async']['completed']} async"
                           " commits unanswered after 30 s")
    return out


# --------------------------------------------------------------------------- memory


def alter_offsets(admin: AdminClient, groups: list[str], topic: str, timeout_s: float) -> None:
    """One committed offset per group via AlterConsumerGroupOffsets (OffsetCommit)."""
    deadline = time.perf_counter() + timeout_s
    for start in range(0, len(groups), ALTER_BATCH):
        futures: list[Any] = []
        for group in groups[start:start + ALTER_BATCH]:
            request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 1)])
            futures.extend(admin.alter_consumer_group_offsets(
                [request], request_timeout=max(1.0, deadline - time.perf_counter())).values())
        for future in futures:
            result = future.result(timeout=max(0.1, deadline - time.perf_counter()))
            bad = [tp for tp in result.topic_partitions if tp.error is not None]
            if bad:
                raise RuntimeError(f"{result.group_id}: {bad[0].error}")


def bench_group_memory(broker: Broker, settings: Settings) -> Record:
    """RSS before and after `groups` groups with one committed offset each."""
    topic = "group-bench-offsets"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    alter_offsets(admin, ["bench-rss-warmup"], topic, 30.0)  # one-time costs (offsets topic)
    time.sleep(1.0)
    before = broker.rss_mb()
    groups = [f"bench-rss-{i:05d}" for i in range(settings.groups)]
    begin = time.perf_counter()
    alter_offsets(admin, groups, topic, settings.groups_limit_s)
    create_s = time.perf_counter() - begin
    time.sleep(1.0)
    after = broker.rss_mb()
    check = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(groups[-1], [TopicPartition(topic, 0)])])
    fetched = next(iter(check.values())).result(timeout=10).topic_partitions[0].offset
    if fetched != 1:
        raise RuntimeError(f"OffsetFetch of {groups[-1]} returned {fetched}, not 1")
    return {"rss_before_mb": before, "rss_after_mb": after, "groups": settings.groups,
            "create_s": create_s, "groups_per_s": settings.groups / create_s,
            "kib_per_group": (after - before) * 1024 / settings.groups}


# --------------------------------------------------------------------------- per broker


def bench_broker(name: str, root: Path, tansu: str, settings: Settings) -> Record:
    errors: list[str] = []
    record: Record = {"errors": errors, "na": {}}
    broker = attempt(errors, "start", lambda: start_broker(name, root, tansu))
    if broker is None:
        return record
    try:
        apis = attempt(errors, "ApiVersions", lambda: advertised_apis(broker.port)) or {}
        record["kip848_advertised"] = CONSUMER_GROUP_HEARTBEAT in apis
        log(f"{name}: ConsumerGroupHeartbeat (KIP-848) "
            + (f"advertised, v{apis[CONSUMER_GROUP_HEARTBEAT][0]}-"
               f"{apis[CONSUMER_GROUP_HEARTBEAT][1]}" if record["kip848_advertised"]
               else "not advertised"))
        create_topics(broker.bootstrap, {"group-bench-rebalance": settings.partitions,
                                         "group-bench-offsets": 1, "group-bench-commits": 1},
                      30.0)
        # Memory first, on the fresh broker, before other groups exist.
        record["memory"] = attempt(errors, "group memory",
                                   lambda: bench_group_memory(broker, settings))
        if record["memory"]:
            m = record["memory"]
            log(f"{name}: {m['groups']:,} groups in {m['create_s']:.2f} s; RSS"
                f" {m['rss_before_mb']:.1f} -> {m['rss_after_mb']:.1f} MiB,"
                f" {m['kib_per_group']:.2f} KiB/group")
        if broker.alive():
            record["commits"] = attempt(errors, "offset commits", lambda: commit_rates(
                broker.bootstrap, "group-bench-commits", settings.commit_s))
            if record["commits"]:
                c = record["commits"]
                log(f"{name}: commits: sync {c['sync']['per_s']:,.0f}/s, async"
                    f" {c['async']['per_s']:,.0f}/s ({c['async']['failed']} failed, last"
                    f" committed {c['async']['last_committed']}/"
                    f"{c['async']['expected_last']})")
        record["rebalance"] = {}
        for variant in VARIANTS:
            if not broker.alive():
                break
            if variant.needs_kip848 and not record["kip848_advertised"]:
                record["na"][variant.key] = "ConsumerGroupHeartbeat not advertised"
                log(f"{name}: {variant.label}: n/a (ConsumerGroupHeartbeat not advertised)")
                continue
            record["rebalance"][variant.key] = bench_rebalance(broker, variant, settings,
                                                               errors)
        if not broker.alive():
            errors.append(broker.exit_report())
    finally:
        stop_broker(broker)
    return record


# --------------------------------------------------------------------------- report


def build_rows(results: dict[str, Record], settings: Settings) -> list[Row]:
    rows: list[Row] = []

    def add(metric: str, better: str, path: tuple[str, ...], fmt: Callable[[float], str],
            na_key: str = "") -> None:
        row = Row(metric, better)
        for name, record in results.items():
            found = lookup(record, path)
            row.values[name] = None if found is None else float(found)
            if found is not None:
                row.cells[name] = fmt(float(found))
            elif na_key and na_key in record.get("na", {}):
                row.cells[name] = "n/a"
            else:
                row.cells[name] = "failed"
        rows.append(row)

    ms = lambda s: f"{s * 1000:,.0f} ms"  # noqa: E731
    n, trials = settings.members, settings.trials
    for variant in VARIANTS:
        add(f"rebalance: member {n + 1} joins {n} stable, {settings.partitions} partitions,"
            f" {variant.label} (median of {trials})", "lower",
            ("rebalance", variant.key, "rebalance_s"), ms, variant.key)
    for variant in VARIANTS:
        add(f"info: forming the group of {n}, {variant.label} (includes any initial"
            " rebalance delay)", "lower", ("rebalance", variant.key, "formation_s"), ms,
            variant.key)
    add("offset commits, synchronous, 1 at a time", "higher", ("commits", "sync", "per_s"),
        lambda v: f"{v:,.0f}/s")
    add(f"offset commits, asynchronous (<= {ASYNC_WINDOW} in flight)", "higher",
        ("commits", "async", "per_s"), lambda v: f"{v:,.0f}/s")
    add("RSS before the groups", "lower", ("memory", "rss_before_mb"), lambda v: f"{v:.1f} MiB")
    add(f"RSS after {settings.groups:,} groups, 1 committed offset each", "lower",
        ("memory", "rss_after_mb"), lambda v: f"{v:.1f} MiB")
    add("RSS per group", "lower", ("memory", "kib_per_group"), lambda v: f"{v:.2f} KiB")
    add(f"create {settings.groups:,} groups (AlterConsumerGroupOffsets, {ALTER_BATCH} in"
        " flight)", "lower", ("memory", "create_s"), lambda v: f"{v:.2f} s")
    return rows


def header_lines(machine: Record, mode: str) -> list[str]:
    return [f"strom vs Tansu consumer-group benchmark ({mode} run,"
            f" {time.strftime('%Y-%m-%d %H:%M:%S')})",
            f"machine: nproc={machine['nproc']}, {machine['cpu']}, {machine['platform']}",
            f"python {machine['python']}, confluent-kafka {machine['confluent_kafka']}"
            f" (librdkafka {machine['librdkafka']}), {machine['tansu']}, {machine['strom']}",
            "tansu: memory storage engine; strom: default settings"
            " (group.initial.rebalance.delay.ms=3000)"]


def main() -> int:
    args = parse_args("reduced run (~1.5 min)")
    settings = QUICK if args.quick else FULL
    return run_benchmark(args, settings, bench_broker, build_rows, header_lines, "group-bench")


if __name__ == "__main__":
    sys.exit(main())
