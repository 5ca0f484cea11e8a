"""`python -m bench.fuzz`: fuzz a strom broker over the Kafka protocol; see bench/fuzz/README.md.

    .venv/bin/python -m bench.fuzz --duration 1200 --workers 8 --seed 1 --out /tmp/fuzz
    .venv/bin/python -m bench.fuzz --security --duration 60 --workers 2 --out /tmp/fuzz-sec

The exit status is 1 when the run has any finding, 0 when it has none.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.fuzz.run import Options, main


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=1200, help="fuzzing seconds")
    parser.add_argument("--frames", type=int, default=0,
                        help="stop once this many frames were sent (--duration still bounds "
                        "the run); 0: run for the duration")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/fuzz"))
    parser.add_argument("--bootstrap", help="fuzz this broker (HOST:PORT) instead of "
                        "starting one; it is not restarted and its log is not read")
    parser.add_argument("--broker-set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the broker this run starts (repeatable)")
    parser.add_argument("--liveness-frames", type=int, default=15_000,
                        help="a liveness round every this many frames")
    parser.add_argument("--liveness-deadline", type=float, default=30.0,
                        help="seconds each liveness check may take")
    parser.add_argument("--frame-timeout", type=float, default=1.5,
                        help="seconds to wait for an answer to a frame")
    parser.add_argument("--replays-per-key", type=int, default=12)
    parser.add_argument("--bomb-every", type=float, default=20.0, help="seconds")
    parser.add_argument("--tiny-records", type=int, default=2_000_000,
                        help="records in the many-tiny-records bomb")
    parser.add_argument("--idle-connections", type=int, default=500)
    parser.add_argument("--seeds-per-version", type=int, default=12)
    parser.add_argument("--record-budget", type=float, default=30.0,
                        help="seconds for recording client traffic")
    parser.add_argument("--progress-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--keep", action="store_true", help="keep the broker's directory")
    parser.add_argument("--security", action="store_true",
                        help="also SASL_PLAINTEXT, SASL_SSL and SSL listeners with ACLs, and "
                        "security workers attacking them (pre-authentication frames, SASL, "
                        "TLS, an authenticated user without ACLs)")
    parser.add_argument("--security-workers", type=int, default=None,
                        help="security worker threads (default: as many as --workers)")
    parser.add_argument("--stall-every", type=float, default=30.0,
                        help="seconds between rounds of stalled TLS handshakes (--security)")
    args = parser.parse_args(argv)
    return Options(args.duration, args.workers, args.seed, args.out, args.bootstrap,
                   ["group.initial.rebalance.delay.ms=0", *args.broker_set],
                   args.liveness_frames, args.liveness_deadline, args.frame_timeout,
                   args.replays_per_key, args.bomb_every, args.tiny_records,
                   args.idle_connections, args.seeds_per_version, args.record_budget,
                   args.progress_every, args.keep, args.security, args.security_workers,
                   args.stall_every, args.frames)


if __name__ == "__main__":
    sys.exit(main(parse(sys.argv[1:])))
