"""The scenarios of the cluster benchmark (bench/cluster_bench.py): a producer failover
(a broker leading some partitions is SIGKILLed or SIGTERMed) and a consumer group recovery
(the group's coordinator is SIGKILLed), each on a running 3-broker cluster, and the restart
of the broker afterwards. Every wait is bounded; a step that runs out of time raises, and
the repetition fails without stopping the run."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

from broker_bench import CREATE_LIMIT_S, Record, attempt, create_topics, log
from cluster_clients import GroupMember, GroupWatch, SteadyProducer, verify
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from processes import Broker, Node, wait_ready

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
        wait_until(lambda: watch.spread(MEMBERS), GROUP_FORM_LIMIT_S,
                   "the partitions were not spread over the group's members")
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


# --------------------------------------------------------------------------- repetitions


def run_scenario(cluster: Cluster, scenario: str) -> list[Record]:
    """The scenario's repetitions on the cluster; a failed one is recorded as failed."""
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
