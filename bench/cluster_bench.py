"""Failover and recovery of a 3-broker strom cluster over PostgreSQL.

Three `strom serve --storage postgresql://...` brokers (node ids 1-3) share one database of a
private PostgreSQL server the script starts. For each settings profile ("default": strom's
broker.heartbeat.interval.ms=2000 / broker.session.timeout.ms=9000; "tuned": 500 / 3000) a
fresh cluster runs these scenarios, several repetitions each (median and max reported):

  kill            an idempotent acks=all producer writes steadily (2,000 msg/s, 6 partitions);
                  one broker leading some of them is SIGKILLed; time from the kill to the
                  first delivery to a partition it led; delivery failures; then everything is
                  read back: nothing acknowledged missing or duplicated
  term            the same with SIGTERM (a clean stop hands the leases over at once)
  group-classic   3 consumers in a group (classic protocol) consume a steady stream; the
                  group's coordinator is SIGKILLed; time until every partition is consumed
                  past its end offset at the kill
  group-consumer  the same with the KIP-848 protocol (group.protocol=consumer)

The killed broker is started again (same node id, same port) between repetitions, and the
next one waits until the leases are back where they were.

Usage (from the repository root):

    .venv/bin/python bench/cluster_bench.py            # full run: 3 repetitions, ~10 min
    .venv/bin/python bench/cluster_bench.py --quick    # 1 repetition: ~4 min
    .venv/bin/python bench/cluster_bench.py --profiles tuned --scenarios kill,term --reps 5

Results are also written to bench/results/ as JSON and markdown. See bench/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker_bench import (
    CREATE_LIMIT_S,
    RATIOS,
    Record,
    Row,
    add_row,
    attempt,
    create_topics,
    log,
    machine_info,
    report,
    table_lines,
    write_results,
)
from cluster_clients import (
    CLIENT_LOG,
    GroupMember,
    GroupWatch,
    SteadyProducer,
    log_clients_to,
    verify,
)
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from processes import REPO, Broker, Node, close_postgres, start_broker, stop_broker, wait_ready

PROFILES: dict[str, dict[str, str]] = {
    "default": {},
    "tuned": {"broker.heartbeat.interval.ms": "500", "broker.session.timeout.ms": "3000"},
}
DEFAULT_SESSION_MS = 9000  # strom's broker.session.timeout.ms
SCENARIOS = ("kill", "term", "group-classic", "group-consumer")
PARTITIONS = 6
SIZE = 100
MEMBERS = 3
FAILOVER_TARGET_S = 15.0  # with default settings
RESTART_LIMIT_S = 60.0  # the killed broker accepts again, Metadata lists all three
LEADERS_LIMIT_S = 30.0  # the leases are back where they were before the kill
EXIT_LIMIT_S = 30.0  # SIGTERM -> the broker has exited
GROUP_FORM_LIMIT_S = 60.0  # members subscribed -> all partitions assigned and consumed
GROUP_RECOVERY_LIMIT_S = 90.0  # kill -> every partition consumed past its end offset again
MEMBER_CLOSE_LIMIT_S = 30.0
FLUSH_LIMIT_S = 30.0
VERIFY_LIMIT_S = 60.0
LOG_PROBLEMS = (" ERROR ", " CRITICAL ", "Traceback")
PROBLEM_COUNTS = ("failures", "missing", "duplicated", "holes")  # what must stay 0


@dataclass(frozen=True)
class Settings:
    reps: int
    rate: int  # msg/s of the steady producer
    warmup_s: float  # steady traffic before the signal
    after_s: float  # traffic after the moved partitions took writes again
    settle_s: float  # group: watching on after every partition recovered


FULL = Settings(reps=3, rate=2000, warmup_s=2.0, after_s=1.0, settle_s=5.0)
QUICK = Settings(reps=1, rate=2000, warmup_s=1.0, after_s=0.5, settle_s=3.0)


@dataclass
class Cluster:
    """One profile's running cluster and what its scenarios share."""

    profile: str
    broker: Broker
    admin: AdminClient
    settings: Settings
    session_s: float
    errors: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- cluster state


def leaders(admin: AdminClient, topic: str) -> dict[int, int]:
    """partition -> leader node id, as Metadata shows it now (-1: no leader)."""
    meta = admin.list_topics(topic, timeout=5)
    return {p: part.leader for p, part in meta.topics[topic].partitions.items()}


def wait_until(check: Callable[[], bool], limit_s: float, what: str, step_s: float = 0.05
               ) -> float:
    """Poll `check` until it holds; the seconds it took. TimeoutError after limit_s."""
    begin = time.perf_counter()
    while not check():
        if time.perf_counter() - begin > limit_s:
            raise TimeoutError(f"{what} (not within {limit_s:.0f} s)")
        time.sleep(step_s)
    return time.perf_counter() - begin


def settled_leaders(admin: AdminClient, topic: str, limit_s: float) -> dict[int, int]:
    """The topic's leaders once every partition has one."""
    found: dict[int, int] = {}

    def ready() -> bool:
        nonlocal found
        try:
            found = leaders(admin, topic)
        except (KafkaException, KeyError):
            return False
        return len(found) == PARTITIONS and all(n >= 0 for n in found.values())

    wait_until(ready, limit_s, f"{topic}: not every partition has a leader")
    return found


def coordinator_of(admin: AdminClient, group: str) -> int:
    """The node coordinating `group`, as FindCoordinator told the admin client."""
    future = admin.describe_consumer_groups([group], request_timeout=10)[group]
    return int(future.result(timeout=15).coordinator.id)


def restart(cluster: Cluster, node: Node, before: dict[int, int], topic: str) -> Record:
    """Start the stopped node again as the same broker; wait until it is listed and the topic's
    leases are back where they were (placement is a function of the live brokers)."""
    if node.alive():  # a SIGTERM that did not finish: do not leave it behind
        node.signal(signal.SIGKILL)
        node.wait(5.0)
    begin = time.perf_counter()
    node.spawn()
    wait_ready(cluster.broker, begin + RESTART_LIMIT_S, [node])
    ready_s = time.perf_counter() - begin
    back_s: float | None = None
    try:
        wait_until(lambda: leaders(cluster.admin, topic) == before, LEADERS_LIMIT_S,
                   "leases not back", step_s=0.1)
        back_s = time.perf_counter() - begin
    except (TimeoutError, KafkaException, KeyError) as exc:
        log(f"  WARNING {cluster.profile}: node {node.node_id} restarted, but {topic}'s"
            f" leaders are {leaders(cluster.admin, topic)} not {before}: {exc}")
    log(f"  node {node.node_id} back in {ready_s:.1f} s"
        + (f", leaders as before after {back_s:.1f} s" if back_s is not None else ""))
    return {"ready_s": ready_s, "leaders_back_s": back_s}


def wall_clock() -> str:
    """The time of day with milliseconds, as the brokers' logs show it."""
    now = time.time()
    return time.strftime("%H:%M:%S", time.localtime(now)) + f",{int(now % 1 * 1000):03d}"


def pick_target(before: dict[int, int], rep: int) -> int:
    """A broker leading some of the partitions, another one each repetition."""
    candidates = sorted(set(before.values()))
    return candidates[rep % len(candidates)]


# --------------------------------------------------------------------------- failover


def failover_rep(cluster: Cluster, sig: signal.Signals, rep: int) -> Record:
    """One producer failover: warm up, signal a leader, time the first deliveries to the
    partitions it led, go on a little, then verify everything and restart the broker."""
    settings, broker = cluster.settings, cluster.broker
    topic = f"failover-{cluster.profile}-{sig.name.lower()}-{rep}"
    create_topics(broker.bootstrap, {topic: PARTITIONS}, CREATE_LIMIT_S)
    before = settled_leaders(cluster.admin, topic, LEADERS_LIMIT_S)
    target = pick_target(before, rep)
    node, moved = broker.node(target), sorted(p for p, n in before.items() if n == target)
    producer = SteadyProducer(broker.bootstrap, topic, PARTITIONS, settings.rate, SIZE)
    producer.start()
    record: Record = {"topic": topic, "leaders": before, "node": target, "moved": moved}
    try:
        wait_until(producer.caught_up, 30.0, "the producer reached not every partition")
        time.sleep(settings.warmup_s)
        record["controller"] = cluster.admin.list_topics(timeout=5).controller_id
        log(f"  node {target} leads partitions {moved} (controller: node"
            f" {record['controller']}); {sig.name} at {wall_clock()}")
        record |= observe_failover(cluster, producer, node, sig, set(moved))
        time.sleep(settings.after_s)
    finally:
        left = producer.stop(FLUSH_LIMIT_S)
    record |= {"sent": producer.sent, "acknowledged": len(producer.acks),
               "failures": len(producer.failures), "unacknowledged": left,
               "first_failure": producer.failures[0][1] if producer.failures else "",
               "client_errors": producer.client_errors[:5]}
    verdict = verify(broker.bootstrap, producer, VERIFY_LIMIT_S)
    record["verify"] = asdict(verdict)
    log(f"  {producer.sent:,} sent, {len(producer.acks):,} acknowledged,"
        f" {len(producer.failures)} failed, {left} unacknowledged; read back {verdict.read:,}:"
        f" {verdict.missing} missing, {verdict.duplicated} duplicated, {verdict.misplaced}"
        f" misplaced{'' if verdict.complete else ', read-back INCOMPLETE'}")
    check_delivery(cluster, record, verdict.ok, verdict.examples)
    record["restart"] = restart(cluster, node, before, topic)
    return record


def observe_failover(cluster: Cluster, producer: SteadyProducer, node: Node,
                     sig: signal.Signals, moved: set[int]) -> Record:
    """Signal the node, then watch until every moved partition took a write sent after the
    signal (and, for SIGTERM, the broker has exited)."""
    limit_s = cluster.session_s + 30.0
    begin = time.perf_counter()
    producer.mark(begin)
    node.signal(sig)
    exit_s: float | None = None
    while time.perf_counter() - begin < max(limit_s, EXIT_LIMIT_S):
        if exit_s is None and not node.alive():
            exit_s = time.perf_counter() - begin
        written = moved <= producer.first_after.keys()
        if written and exit_s is not None:
            break
        if written and time.perf_counter() - begin > EXIT_LIMIT_S:
            break
        time.sleep(0.005)
    firsts = {p: producer.first_after[p] - begin for p in moved if p in producer.first_after}
    now = time.perf_counter()
    others = set(range(PARTITIONS)) - moved
    result: Record = {
        "signal": sig.name, "exit_s": exit_s, "per_partition_s": firsts,
        "first_s": min(firsts.values()) if firsts else None,
        "all_s": max(firsts.values()) if len(firsts) == len(moved) else None,
        "others_longest_gap_s": producer.longest_ack_gap(begin, others, now) if others else None}
    if result["all_s"] is None:
        raise TimeoutError(f"partitions {sorted(moved - firsts.keys())} took no write within"
                           f" {limit_s:.0f} s of the {sig.name}")
    log(f"  first delivery to a moved partition after {result['first_s']:.2f} s, all"
        f" {len(moved)} after {result['all_s']:.2f} s"
        + (f"; the broker exited after {exit_s:.2f} s" if exit_s is not None else "")
        + (f"; other partitions' longest pause {result['others_longest_gap_s']:.2f} s"
           if others else ""))
    return result


def check_delivery(cluster: Cluster, record: Record, verified: bool,
                   examples: list[str]) -> None:
    """Delivery failures and read-back problems are strom bugs: they fail the run."""
    problems = []
    if record["failures"] or record["unacknowledged"]:
        problems.append(f"{record['failures']} delivery failures ({record['first_failure']}),"
                        f" {record['unacknowledged']} unacknowledged at the end")
    if not verified:
        problems.append("read-back: " + "; ".join(examples or ["incomplete"]))
    if record["client_errors"]:
        problems.append(f"client errors: {record['client_errors']}")
    for problem in problems:
        cluster.errors.append(f"{record['topic']}: {problem}")
        log(f"  PROBLEM {record['topic']}: {problem}")


# --------------------------------------------------------------------------- group


def member_config(bootstrap: str, group: str, protocol: str) -> dict[str, Any]:
    """librdkafka's defaults otherwise (classic: session.timeout.ms 45000, heartbeats every
    3 s, range/roundrobin, offsets auto-committed every 5 s)."""
    config = {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    return config | ({"group.protocol": "consumer"} if protocol == "consumer" else {})


def group_rep(cluster: Cluster, protocol: str, rep: int) -> Record:
    """One coordinator failover under a consuming group."""
    settings, broker = cluster.settings, cluster.broker
    topic = f"group-{cluster.profile}-{protocol}-{rep}"
    group = f"cluster-bench-{cluster.profile}-{protocol}-{rep}"
    create_topics(broker.bootstrap, {topic: PARTITIONS}, CREATE_LIMIT_S)
    before = settled_leaders(cluster.admin, topic, LEADERS_LIMIT_S)
    producer = SteadyProducer(broker.bootstrap, topic, PARTITIONS, settings.rate, SIZE)
    watch = GroupWatch(PARTITIONS)
    members = [GroupMember(i, member_config(broker.bootstrap, group, protocol), topic, watch)
               for i in range(MEMBERS)]
    record: Record = {"topic": topic, "group": group, "protocol": protocol, "leaders": before}
    producer.start()
    try:
        wait_until(producer.caught_up, 30.0, "the producer reached not every partition")
        for member in members:
            member.start()
        begin = time.perf_counter()
        wait_until(lambda: watch.assigned() == set(range(PARTITIONS)), GROUP_FORM_LIMIT_S,
                   "the group's members were not assigned every partition")
        ends = dict(producer.acked_end)
        wait_until(lambda: watch.caught_up(ends), GROUP_FORM_LIMIT_S,
                   "the group did not consume what was written before it formed")
        record["formed_s"] = time.perf_counter() - begin
        log(f"  the group of {MEMBERS} formed and caught up in {record['formed_s']:.1f} s")
        time.sleep(settings.warmup_s)
        record |= observe_group(cluster, producer, watch, group, before)
    finally:
        for member in members:
            member.stop()
        closed = all(member.join(MEMBER_CLOSE_LIMIT_S) for member in members)
        producer.stop(FLUSH_LIMIT_S)
    holes, repeats = watch.holes_and_repeats()
    record |= {"holes": holes, "repeats": repeats, "members_closed": closed,
               "member_errors": watch.errors[:10], "member_error_count": len(watch.errors)}
    log(f"  consumed: {holes} offsets never consumed, {repeats:,} consumed again"
        f" (at-least-once); {len(watch.errors)} consumer errors"
        + ("" if closed else "; a member's close() did not return in time"))
    if holes:
        cluster.errors.append(f"{topic}: {holes} offsets no member of {group} consumed")
    if "node" in record:
        record["restart"] = restart(cluster, broker.node(record["node"]), before, topic)
    return record


def observe_group(cluster: Cluster, producer: SteadyProducer, watch: GroupWatch, group: str,
                  before: dict[int, int]) -> Record:
    """SIGKILL the group's coordinator; time until every partition has given the group a
    record sent after the kill (so past its end offset at the kill); then watch on for later
    disruptions (settle_s)."""
    target = coordinator_of(cluster.admin, group)
    led = sorted(p for p, n in before.items() if n == target)
    record: Record = {"node": target, "coordinator": target, "node_leads": led}
    log(f"  node {target} coordinates {group} and leads partitions {led}; SIGKILL at"
        f" {wall_clock()}")
    begin = time.perf_counter()
    cluster.broker.node(target).signal(signal.SIGKILL)
    record["first_seq_after_kill"] = producer.sent
    watch.mark(producer.sent)
    try:
        wait_until(lambda: len(watch.recovered) == PARTITIONS, GROUP_RECOVERY_LIMIT_S,
                   "the group did not consume every partition past its end offset again",
                   step_s=0.005)
    finally:
        per_partition = {p: t - begin for p, t in watch.recovered.items()}
        record["per_partition_s"] = per_partition
    record["recovery_s"] = max(per_partition.values())
    time.sleep(cluster.settings.settle_s)
    end = time.perf_counter()
    events = [(round(t - begin, 3), member, kind, count) for t, member, kind, count
              in watch.events if t >= begin]
    record |= {"longest_stall_s": watch.longest_stall(begin, end), "events_after_kill": events}
    try:
        record["coordinator_after"] = coordinator_of(cluster.admin, group)
    except Exception as exc:  # informational only
        record["coordinator_after"] = f"{type(exc).__name__}: {exc}"
    log(f"  every partition consumed past its end offset after {record['recovery_s']:.2f} s"
        f" (first {min(per_partition.values()):.2f} s); longest pause on a partition"
        f" {record['longest_stall_s']:.2f} s over {end - begin:.1f} s;"
        f" {len(events)} rebalance callbacks since the kill")
    return record


# --------------------------------------------------------------------------- a profile


def run_scenario(cluster: Cluster, scenario: str) -> list[Record]:
    reps: list[Record] = []
    for rep in range(cluster.settings.reps):
        log(f"{cluster.profile}: {scenario} {rep + 1}/{cluster.settings.reps}")
        if scenario in ("kill", "term"):
            sig = signal.SIGKILL if scenario == "kill" else signal.SIGTERM
            step = partial(failover_rep, cluster, sig, rep)
        else:
            step = partial(group_rep, cluster, scenario.removeprefix("group-"), rep)
        result = attempt(cluster.errors, f"{scenario} {rep + 1}", step)
        reps.append(result if result is not None else {"failed": True})
        if not cluster.broker.alive() and not bring_back(cluster):
            break
    return reps


def bring_back(cluster: Cluster) -> bool:
    """After a failed repetition: start any stopped node again; False if that fails too."""
    for node in cluster.broker.nodes:
        if not node.alive():
            log(f"  node {node.node_id} {node.exit_status()}; starting it again")
            node.spawn()
    try:
        wait_ready(cluster.broker, time.perf_counter() + RESTART_LIMIT_S)
    except RuntimeError as exc:
        cluster.errors.append(f"cluster not restored: {exc}")
        return False
    return True


def run_profile(profile: str, root: Path, settings: Settings, scenarios: list[str]) -> Record:
    """A fresh cluster with the profile's settings; every scenario on it; it is stopped."""
    overrides = PROFILES[profile]
    session_ms = int(overrides.get("broker.session.timeout.ms", DEFAULT_SESSION_MS))
    errors: list[str] = []
    record: Record = {"errors": errors, "overrides": overrides}
    log(f"=== {profile}: " + (", ".join(f"{k}={v}" for k, v in overrides.items())
                               or "strom's defaults") + " ===")
    broker = attempt(errors, "start", lambda: start_broker("strom-pg3", root, "",
                                                           settings=overrides))
    if broker is None:
        return record
    log(f"{profile}: 3 brokers ready in {broker.startup_s:.1f} s ({broker.bootstrap})")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap, "logger": CLIENT_LOG})
    cluster = Cluster(profile, broker, admin, settings, session_ms / 1000, errors)
    try:
        for scenario in scenarios:
            record[scenario] = run_scenario(cluster, scenario)
    finally:
        record["log_problems"], seen = log_problems(broker)
        stop_broker(broker)  # all three at once: what they log doing so is kept apart
        record["log_problems_at_stop"] = log_problems(broker, seen)[0]
    if record["log_problems"]:
        log(f"{profile}: {len(record['log_problems'])} ERROR/Traceback lines in the broker"
            f" logs, first: {record['log_problems'][0]}")
    record["summary"] = summarise(record, scenarios)
    return record


def log_problems(broker: Broker, skip: dict[int, int] | None = None, limit: int = 50
                 ) -> tuple[list[str], dict[int, int]]:
    """ERROR, CRITICAL and Traceback lines of the brokers' logs (node id prefixed), after
    the first skip[node id] lines of each; and how many lines each log has now."""
    found, seen = [], {}
    for node in broker.nodes:
        try:
            lines = node.log_path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        seen[node.node_id] = len(lines)
        found += [f"node {node.node_id}: {line}" for line in lines[(skip or {}).get(
            node.node_id, 0):] if any(mark in line for mark in LOG_PROBLEMS)]
    return found[:limit], seen


# --------------------------------------------------------------------------- report


def stats(values: list[float]) -> Record | None:
    return {"median": statistics.median(values), "max": max(values), "n": len(values),
            "values": values} if values else None


def summarise(record: Record, scenarios: list[str]) -> Record:
    """Median and max of each figure over the repetitions that measured it; summed counts."""
    summary: Record = {}
    for scenario in scenarios:
        reps = [r for r in record.get(scenario, []) if not r.get("failed")]

        def figure(key: str, reps: list[Record] = reps) -> Record | None:
            return stats([float(r[key]) for r in reps if r.get(key) is not None])

        if scenario in ("kill", "term"):
            summary[scenario] = {
                "first_s": figure("first_s"), "all_s": figure("all_s"), "exit_s":
                figure("exit_s"), "counts": {
                    "acknowledged": sum(r["acknowledged"] for r in reps),
                    "failures": sum(r["failures"] + r["unacknowledged"] for r in reps),
                    "missing": sum(r["verify"]["missing"] for r in reps),
                    "duplicated": sum(r["verify"]["duplicated"] for r in reps)}}
        else:
            summary[scenario] = {
                "recovery_s": figure("recovery_s"), "longest_stall_s": figure("longest_stall_s"),
                "counts": {"holes": sum(r["holes"] for r in reps),
                           "repeats": sum(r["repeats"] for r in reps),
                           "callbacks": sum(len(r["events_after_kill"]) for r in reps)}}
    return summary


def seconds_cell(entry: Record) -> str:
    text = f"{entry['median']:.2f} s"
    return text + (f" (max {entry['max']:.2f} s, n={entry['n']})" if entry["n"] > 1 else "")


def build_rows(results: dict[str, Record], settings: Settings) -> list[Row]:
    """The table's rows, for the scenarios that ran."""
    rows: list[Row] = []
    ran = {scenario for record in results.values() for scenario in record.get("summary", {})}

    def seconds(metric: str, path: tuple[str, ...]) -> None:
        add_row(rows, results, metric, "lower", ("summary", *path), seconds_cell,
                lambda entry: float(entry["median"]))

    def counts(metric: str, scenario: str, fmt: Callable[[Record], str]) -> None:
        add_row(rows, results, metric, "lower", ("summary", scenario, "counts"), fmt,
                lambda c: float(sum(v for k, v in c.items() if k in PROBLEM_COUNTS)))

    def deliveries(c: Record) -> str:
        return (f"{c['failures']} / {c['missing']} / {c['duplicated']}"
                f" (of {c['acknowledged']:,} acknowledged)")

    for scenario, label in (("kill", "SIGKILL"), ("term", "SIGTERM")):
        if scenario not in ran:
            continue
        target = f", target < {FAILOVER_TARGET_S:.0f} s (default)" if scenario == "kill" else ""
        seconds(f"failover, {label}: first delivery to a moved partition{target}",
                (scenario, "first_s"))
        seconds(f"failover, {label}: every moved partition written again", (scenario, "all_s"))
        if scenario == "term":
            seconds("clean stop: SIGTERM -> the broker exited", (scenario, "exit_s"))
        counts(f"failover, {label}: delivery failures / acknowledged missing / duplicated",
               scenario, deliveries)
    for scenario, label in (("group-classic", "classic"), ("group-consumer", "KIP-848")):
        if scenario not in ran:
            continue
        seconds(f"group recovery, {label}, coordinator SIGKILLed: every partition consumed"
                " past its end offset at the kill", (scenario, "recovery_s"))
        seconds(f"group, {label}: longest pause in consumption of a partition"
                f" (kill + {settings.settle_s:.0f} s after recovery)",
                (scenario, "longest_stall_s"))
        counts(f"group, {label}: offsets never consumed / consumed again / rebalance callbacks",
               scenario, lambda c: f"{c['holes']} / {c['repeats']:,} / {c['callbacks']}")
    return rows


def header_lines(machine: Record, mode: str, settings: Settings) -> list[str]:
    profiles = "; ".join(f"{name}: " + (", ".join(f"{k}={v}" for k, v in o.items())
                                         or "strom's defaults (2000 / 9000 ms)")
                         for name, o in PROFILES.items())
    return [f"strom cluster failover benchmark ({mode} run, {time.strftime('%Y-%m-%d %H:%M:%S')})",
            f"machine: nproc={machine['nproc']}, {machine['cpu']}, {machine['platform']}",
            f"python {machine['python']}, confluent-kafka {machine['confluent_kafka']}"
            f" (librdkafka {machine['librdkafka']}), {machine['strom']}",
            "3 strom brokers (node ids 1-3) sharing one database of a private PostgreSQL 15 on"
            " loopback (fsync=on, synchronous_commit=on)",
            f"profiles: {profiles}",
            f"traffic: idempotent acks=all producer, {settings.rate:,} msg/s x {SIZE} B over"
            f" {PARTITIONS} partitions; groups of {MEMBERS} confluent-kafka consumers;"
            f" {settings.reps} repetition(s) per scenario"]


# --------------------------------------------------------------------------- main


def choices(text: str, allowed: tuple[str, ...] | list[str]) -> list[str]:
    picked = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in picked if item not in allowed]
    if unknown or not picked:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
    return picked


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition per scenario")
    parser.add_argument("--reps", type=int, help="repetitions per scenario (default 3, quick 1)")
    parser.add_argument("--profiles", default=",".join(PROFILES),
                        type=lambda t: choices(t, list(PROFILES)), help="comma-separated")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        type=lambda t: choices(t, SCENARIOS), help="comma-separated")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results",
                        help="where the JSON and markdown results go")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (broker and client logs)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    settings = QUICK if args.quick else FULL
    if args.reps:
        settings = Settings(args.reps, settings.rate, settings.warmup_s, settings.after_s,
                            settings.settle_s)
    RATIOS.clear()  # the columns are profiles, not brokers to compare
    machine = machine_info(None)
    header = header_lines(machine, "quick" if args.quick else "full", settings)
    print("\n".join(header), flush=True)
    root = Path(tempfile.mkdtemp(prefix="strom-cluster-bench-"))
    log_clients_to(root / "clients.log")
    results: dict[str, Record] = {}
    try:
        for profile in args.profiles:
            results[profile] = run_profile(profile, root, settings, args.scenarios)
    finally:
        close_postgres()
        if args.keep:
            log(f"kept the broker and client logs in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    rows = build_rows(results, settings)
    names = list(results)
    print("\n" + "\n".join([*header[:1], *table_lines(rows, names, markdown=False)]))
    report(results, names)
    payload = {"machine": machine, "settings": asdict(settings), "profiles": PROFILES,
               "results": results}
    json_path, md_path = write_results(args.out, header, rows, names, payload,
                                       prefix="cluster-bench")
    log(f"wrote {json_path.relative_to(REPO) if json_path.is_relative_to(REPO) else json_path}"
        f" and {md_path.name}")
    return 0 if all(not results[n]["errors"] for n in names) else 1


if __name__ == "__main__":
    sys.exit(main())
