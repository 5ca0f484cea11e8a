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
next one waits until the leases are back where they were. The scenarios are in
cluster_scenarios.py, their clients in cluster_clients.py, the processes in processes.py.

Usage (from the repository root):

    .venv/bin/python bench/cluster_bench.py            # full run: 3 repetitions, ~8 min
    .venv/bin/python bench/cluster_bench.py --quick    # 1 repetition: ~3 min
    .venv/bin/python bench/cluster_bench.py --profiles tuned --scenarios kill,term --reps 5

Results are also written to bench/results/ as JSON and markdown. See bench/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from broker_bench import (
    RATIOS,
    Record,
    Row,
    add_row,
    attempt,
    log,
    machine_info,
    report,
    table_lines,
    write_results,
)
from cluster_clients import CLIENT_LOG, log_clients_to
from cluster_scenarios import (
    FAILOVER_TARGET_S,
    FULL,
    MEMBERS,
    PARTITIONS,
    QUICK,
    SIZE,
    Cluster,
    Settings,
    run_scenario,
)
from confluent_kafka.admin import AdminClient
from processes import REPO, Broker, close_postgres, start_broker, stop_broker

PROFILES: dict[str, dict[str, str]] = {
    "default": {},
    "tuned": {"broker.heartbeat.interval.ms": "500", "broker.session.timeout.ms": "3000"},
}
DEFAULT_SESSION_MS = 9000  # strom's broker.session.timeout.ms
SCENARIOS = ("kill", "term", "group-classic", "group-consumer")
LOG_PROBLEMS = (" ERROR ", " CRITICAL ", "Traceback")
PROBLEM_COUNTS = ("failures", "missing", "duplicated", "holes")  # what must stay 0


# --------------------------------------------------------------------------- a profile


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
