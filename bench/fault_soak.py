"""The long fault run: a local strom cluster on PostgreSQL (optionally a primary with a
synchronous standby), the recording workload, faults one after another until both
`--faults` were injected and `--duration` seconds passed, then the history checker.

The target a cluster change must reach before it ships: >= 100 faults over >= 100,000
acknowledged writes with 0 anomalies, e.g.

    PYTHONPATH=src .venv/bin/python bench/fault_soak.py --brokers 3 --faults 100 \\
        --duration 1800 --seed 1
    PYTHONPATH=src .venv/bin/python bench/fault_soak.py --pair ...   # with failover, once

It prints a progress line every 10 s (faults so far by kind, acknowledged and unknown
writes, reads, transactions) and ends with the summary: faults injected by kind, writes
acknowledged / unknown / failed, reads, anomalies by kind with the first few excerpts. The
history (history.jsonl), the broker logs (broker-N.log) and the clients' log stay in the
work directory (`--work-dir`, else a new temporary one) for `strom.testing.history_check`.
Exit status: 0 with no anomaly and no workload problem, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from strom.testing.fault_run import FaultRunConfig, FaultRunResult, run_faults
from strom.testing.nemesis import ALL_KINDS, FaultKind
from strom.testing.postgres import PostgresServer
from strom.testing.postgres_pair import PostgresPair
from strom.testing.workload import WorkloadConfig


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--brokers", type=int, default=3)
    p.add_argument("--faults", type=int, default=100, help="at least this many faults")
    p.add_argument("--duration", type=float, default=0.0,
                   help="and for at least this many seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pair", action="store_true",
                   help="a PostgreSQL primary with a synchronous standby (adds the failover)")
    p.add_argument("--kinds", default=",".join(k.value for k in ALL_KINDS),
                   help="fault kinds, comma-separated")
    p.add_argument("--session-timeout-ms", type=int, default=3000)
    p.add_argument("--heartbeat-interval-ms", type=int, default=500)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--rate", type=float, default=100.0,
                   help="values a second per idempotent producer")
    p.add_argument("--idempotent-producers", type=int, default=2)
    p.add_argument("--transactional-producers", type=int, default=1)
    p.add_argument("--readers", type=int, default=2)
    p.add_argument("--transformers", type=int, default=1)
    p.add_argument("--work-dir", type=Path, default=None)
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> FaultRunConfig:
    workload = WorkloadConfig(
        name=f"soak-{args.seed}-{int(time.time())}", seed=args.seed,
        partitions=args.partitions, idempotent_producers=args.idempotent_producers,
        idempotent_rate_per_s=args.rate, transactional_producers=args.transactional_producers,
        readers=args.readers, transformers=args.transformers)
    return FaultRunConfig(
        brokers=args.brokers, faults=args.faults, duration_s=args.duration, seed=args.seed,
        kinds=tuple(FaultKind(k) for k in args.kinds.split(",") if k),
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_interval_ms, workload=workload)


def say(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


def run(args: argparse.Namespace) -> FaultRunResult:
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="strom-soak-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    config = config_from(args)
    say(f"work directory {work_dir}; {config.brokers} brokers, at least {config.faults} faults"
        f" and {config.duration_s:.0f} s, seed {config.seed}"
        f"{', PostgreSQL primary + standby' if args.pair else ''}")
    postgres: PostgresServer | PostgresPair = PostgresPair() if args.pair else PostgresServer()
    with postgres:
        return run_faults(config, postgres, work_dir, progress=say)


def main(argv: list[str]) -> int:
    result = run(parse_args(argv))
    print(result.render(), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
