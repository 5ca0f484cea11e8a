"""One fuzzing run from start to report: broker, seeds, campaign, oracle, state checks."""

from __future__ import annotations

import faulthandler
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.fuzz import (
    abuse,
    oracle,
    probes,
    recorder,
    report,
    sec_state,
    security,
    state_checks,
    target,
    tls_attacks,
    wire,
)
from bench.fuzz.bomber import Bomber
from bench.fuzz.broker import Broker
from bench.fuzz.campaign import FrameSource, Gate, Replayer, Settings, Worker, check_answer
from bench.fuzz.findings import FindingLog
from bench.fuzz.logscan import FrameHistory, LogWatch
from bench.fuzz.mutators import Seed
from bench.fuzz.sec_worker import SecurityContext, SecurityWorker, healthy_sasl_ssl, healthy_tls
from bench.fuzz.tally import Tally
from bench.fuzz.target import PRODUCE_TOPICS
from bench.fuzz.wire import Conn

T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {text}", flush=True)


@dataclass
class Options:
    duration_s: float
    workers: int
    seed: int
    out: Path
    bootstrap: str | None = None
    broker_settings: list[str] = field(default_factory=list)
    liveness_frames: int = 15_000
    liveness_deadline_s: float = 30.0
    frame_timeout_s: float = 1.5
    replays_per_key: int = 12
    bomb_every_s: float = 20.0
    tiny_records: int = 2_000_000
    idle_connections: int = 500
    seeds_per_version: int = 12
    record_budget_s: float = 30.0
    progress_every_s: float = 10.0
    keep: bool = False
    security: bool = False
    security_workers: int | None = None  # None: as many as --workers
    stall_every_s: float = 30.0
    frames: int = 0  # stop once this many frames were sent (0: run for the duration)


@dataclass
class Run:
    options: Options
    broker: Broker
    tally: Tally = field(default_factory=Tally)
    findings: FindingLog = field(default_factory=FindingLog)
    history: FrameHistory = field(default_factory=FrameHistory)
    rounds: list[oracle.Round] = field(default_factory=list)
    scenarios: list[abuse.Scenario] = field(default_factory=list)
    checks: list[Any] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    listeners: security.Listeners | None = None
    security: oracle.SecurityOracle | None = None  # once the users and targets are made
    user_seeds: list[Seed] = field(default_factory=list)
    staller: tls_attacks.Staller | None = None
    staller_thread: threading.Thread | None = None
    staller_stop: threading.Event = field(default_factory=threading.Event)


def liveness(run: Run, gate: Gate | None, expected: dict[str, int]) -> None:
    index = len(run.rounds)
    if gate is not None and not gate.pause(run.options.frame_timeout_s * 4 + 70):
        say("liveness: workers did not pause in time; checking anyway")
        faulthandler.dump_traceback(all_threads=True)
    try:
        result = oracle.liveness_round(run.broker.address, index, run.tally.total(), run.tag,
                                       run.options.liveness_deadline_s, expected, run.security)
    finally:
        if gate is not None:
            gate.resume()
    run.rounds.append(result)
    failed = [c for c in result.checks if not c.ok]
    for check in failed:
        run.findings.add("liveness", f"liveness: {check.name} failed",
                         f"round {index} at {result.at_frames:,} frames: {check.detail}")
    say(f"liveness round {index} at {result.at_frames:,} frames: "
        + ("ok" if not failed else "FAILED " + ", ".join(c.name for c in failed))
        + f" ({sum(c.elapsed_s for c in result.checks):.1f} s)")


def prepare(run: Run) -> tuple[target.Target, list[Any]]:
    broker, options = run.broker, run.options
    if broker.own:
        broker.start()
        say(f"broker pid {broker.pid} on {broker.bootstrap}, log {broker.log_path}")
    run.info["rss_broker_start_kib"] = broker.sample_rss()
    found = target.discover(broker.address)
    secret = str(broker.work_dir).encode() if broker.own else None
    probe_frames = probes.probe_frames()
    for frame, answer in probes.send(broker.address, probe_frames):
        head = wire.frame_header(frame)
        run.tally.frame("probe", ["probe"], head, "response" if answer else "close")
        if answer is None:
            run.findings.add("probe", f"well-formed probe (API key {head and head[0]}) got "
                             "no answer", "the connection closed or timed out", frame)
        else:
            check_answer(frame, answer, "probe", run.tally, run.findings, secret)
    target.create_fuzz_topics(broker.address)
    frames, failed, names = recorder.record(broker.host, broker.port, options.record_budget_s)
    for failure in failed:
        run.findings.add("recording", "a real-client workflow failed on the fresh broker",
                         failure)
    seeds, schema_count = target.build_seeds(random.Random(options.seed), found, frames,
                                             names, options.seeds_per_version)
    seeds += [s for s in (Seed.of(f, "probe") for f in probe_frames) if s is not None]
    run.info.update(seeds_schema=schema_count, seeds_recorded=len(seeds) - schema_count,
                    advertised_versions=len(found.advertised_pairs),
                    advertised_pairs=sorted(found.advertised_pairs),
                    broker_settings=found.settings)
    say(f"seeds: {schema_count} from schemas, {len(seeds) - schema_count} recorded "
        f"({len(failed)} recording failures)")
    if run.listeners is not None:
        prepare_security(run, found, frames, names)
    return found, seeds


def prepare_security(run: Run, found: target.Target, recorded: list[bytes],
                     names: list[str]) -> None:
    """The users, ACLs and target resources (after the probes, which want fresh internal
    topics), and the fuzz user's seeds."""
    assert run.listeners is not None
    security.create_principals(run.broker.bootstrap)
    baseline = sec_state.prepare(run.broker.address)
    run.security = oracle.SecurityOracle(run.listeners, baseline)
    run.user_seeds = security.fuzz_user_seeds(random.Random(run.options.seed + 1),
                                              found.versions, recorded, names,
                                              run.options.seeds_per_version)
    run.info["seeds_fuzz_user"] = len(run.user_seeds)
    run.info["listeners"] = dict(run.listeners.ports)
    say(f"security: listeners {run.listeners.ports}, users {security.FUZZ_USER} and "
        f"{security.LIVENESS_USER}, {len(run.user_seeds)} seeds for the fuzz user")
    start_staller(run)  # now: its first round is judged by the time a short campaign ends


def campaign(run: Run, found: target.Target, seeds: list[Any]) -> None:
    options, broker = run.options, run.broker
    settings = Settings(options.frame_timeout_s, found.fetch_cap_s + 10,
                        options.replays_per_key,
                        str(broker.work_dir).encode() if broker.own else None)
    sec_count = 0
    if run.security is not None:
        sec_count = (options.workers if options.security_workers is None
                     else options.security_workers)
    gate = Gate(options.workers + 1 + sec_count)  # the bomber pauses too
    replayer = Replayer(broker.address, settings, run.tally, run.findings)
    source = FrameSource(seeds, PRODUCE_TOPICS, found.versions.get(0, (3, 9)))
    workers: list[Any] = [Worker(i, options.seed, broker.address, source, gate, run.tally,
                                 run.findings, run.history, replayer, settings)
                          for i in range(options.workers)]
    threads = [w.thread for w in workers]
    if run.security is not None:
        context = SecurityContext.build(run.security.listeners, run.user_seeds, source,
                                        settings)
        workers += [SecurityWorker(i, options.seed, context, gate, run.tally, run.findings,
                                   run.history) for i in range(sec_count)]
        run.info["security_workers"] = sec_count
        run.security.in_flight_max = sec_count + 2
        threads = [w.thread for w in workers]
    bomber = Bomber(broker.address, found.decompressed_max, options.bomb_every_s,
                    options.tiny_records, gate, run.tally, run.findings)
    held = abuse.HeldConnections(broker.address)
    held.open(options.idle_connections)
    stop_abuse = threading.Event()
    abuse_thread = threading.Thread(target=lambda: run.scenarios.extend(
        abuse.run_all(broker.address, stop_abuse)), name="abuse", daemon=True)
    run.info["rss_fuzz_start_kib"] = broker.sample_rss()
    broker.start_sampling(1.0, T0)
    for thread in [*threads, bomber.thread, abuse_thread]:
        thread.start()
    try:
        fuzz_loop(run, gate, workers, found, held)
    finally:
        gate.stop()
        stop_abuse.set()
        run.staller_stop.set()
        for thread in [*threads, abuse_thread, bomber.thread]:
            thread.join(options.frame_timeout_s + 75)
    if broker.alive():
        liveness(run, None, found.expected_internal)
        run.scenarios.append(held.check(found.idle_timeout_s, 20, at_end=True))
    held.close()
    say("waiting for timeout replays")
    replayer.drain(settings.replay_window_s + 20)
    broker.stop_sampling()
    for scenario in run.scenarios:
        if not scenario.ok and not scenario.skipped:
            run.findings.add("abuse", f"{scenario.name}: {scenario.observed}",
                             f"expected: {scenario.expected}")


def start_staller(run: Run) -> None:
    """The stalled TLS handshakes, on a thread of their own (not paused by liveness rounds:
    they only wait)."""
    assert run.security is not None
    listeners = run.security.listeners

    def healthy() -> None:
        healthy_tls(listeners)
        healthy_sasl_ssl(listeners)

    def judged(result: tls_attacks.StallResult) -> None:
        closed = result.closed_after_s is not None
        run.tally.security_frame("tls", f"tls:stall-{result.kind}", result.listener, [], None,
                                 wire.CLOSE if closed else wire.TIMEOUT)
        if result.closed_after_s is not None:
            run.tally.timing("stalled TLS handshakes closed after", result.closed_after_s)
        else:
            run.findings.add("tls", "a stalled TLS handshake was not closed",
                             f"{result.kind} on {result.listener}: still open after "
                             f"{tls_attacks.HANDSHAKE_TIMEOUT_S + tls_attacks.CLOSE_SLACK_S:.0f}"
                             f" s (handshake timeout {tls_attacks.HANDSHAKE_TIMEOUT_S:.0f} s)")

    run.staller = tls_attacks.Staller(
        {name: listeners.address(name) for name in security.TLS_LISTENERS}, healthy,
        run.options.stall_every_s, run.staller_stop, security.TLS_ATTACKER_IP)
    run.staller_thread = threading.Thread(target=run.staller.run, args=(judged,),
                                          name="tls-staller", daemon=True)
    run.staller_thread.start()


def finish_staller(run: Run) -> None:
    if run.staller is None or run.staller_thread is None:
        return
    run.staller_stop.set()
    run.staller_thread.join(tls_attacks.HANDSHAKE_TIMEOUT_S + tls_attacks.CLOSE_SLACK_S + 15)
    run.staller_thread = None
    run.tally.check("healthy TLS clients served while handshakes stalled",
                    run.staller.healthy_ok)
    for failure in run.staller.healthy_failures:
        run.findings.add("tls", "a healthy TLS client was not served while handshakes "
                         "stalled", failure)


def fuzz_loop(run: Run, gate: Gate, workers: list[Any], found: target.Target,
              held: abuse.HeldConnections) -> None:
    options, expected = run.options, found.expected_internal
    start = time.monotonic()
    idle_check_at = start + min(60.0, options.duration_s / 2, found.idle_timeout_s / 2)
    next_liveness = options.liveness_frames
    next_progress = start + options.progress_every_s
    while time.monotonic() - start < options.duration_s:
        if options.frames and run.tally.total() >= options.frames:
            say(f"{options.frames:,} frames sent")
            return
        time.sleep(0.25)
        if not run.broker.alive():
            code = run.broker.proc.poll() if run.broker.proc else None
            run.findings.add("crash", f"broker died (exit status {code})",
                             "frames last sent on each worker connection are the candidates")
            for worker in workers:
                if worker.last_frame is not None:
                    run.findings.add("crash", f"broker died (exit status {code})", "",
                                     worker.last_frame)
            say(f"BROKER DIED (exit status {code})")
            return
        if idle_check_at and time.monotonic() >= idle_check_at:
            run.scenarios.append(held.check(found.idle_timeout_s, 10, at_end=False))
            idle_check_at = 0.0
        if run.tally.total() >= next_liveness:
            liveness(run, gate, expected)
            next_liveness = run.tally.total() + options.liveness_frames
        if time.monotonic() >= next_progress:
            say(report.progress_line(run.tally, run.broker, len(run.rounds),
                                     sum(r.ok for r in run.rounds), len(run.findings.all())))
            next_progress += options.progress_every_s


def reproduce_tracebacks(run: Run, watch: LogWatch) -> None:
    """Sends each signature's candidate frame again; `reproduced` if a traceback follows."""
    for signature in list(watch.counts.signatures.values())[:20]:
        for frame in signature.frames[:1]:
            before = watch.tracebacks_now()
            try:
                with Conn(run.broker.address) as conn:
                    conn.exchange(abuse.api_versions_frame(0), 10.0)
                    conn.exchange(frame, 10.0)
            except OSError:
                pass
            time.sleep(1.0)
            run.info.setdefault("reproduced", {})[signature.key] = (
                watch.tracebacks_now() > before)


def security_end_checks(run: Run) -> list[Any]:
    from bench.fuzz.findings import run_check

    assert run.security is not None
    security_oracle = run.security
    return [run_check("security: nothing done for the fuzz user", lambda: sec_state.check(
                run.broker.address, security_oracle.baseline)),
            run_check("security: the fuzz user's Produce refused (SASL_SSL)",
                      lambda: sec_state.refused(security_oracle.listeners, tls=True)),
            run_check("security: connections released after attacks",
                      lambda: sec_state.connections_released(run.broker.address, 2))]


def execute(options: Options) -> int:
    if options.security and options.bootstrap is not None:
        raise SystemExit("--security starts its own broker: it cannot go with --bootstrap")
    work_dir = Path(tempfile.mkdtemp(prefix="strom-fuzz-"))
    run = Run(options, Broker(work_dir, options.broker_settings, options.bootstrap))
    if options.security:
        run.listeners, keystore = security.make_listeners(run.broker.host, run.broker.port,
                                                          work_dir)
        run.broker.settings = [*run.broker.settings,
                               *security.broker_settings(run.listeners, keystore)]
    watch = LogWatch(run.broker.log_path, run.history)
    watch.start()
    exit_status: int | None = None
    try:
        found, seeds = prepare(run)
        liveness(run, None, found.expected_internal)
        campaign(run, found, seeds)
        finish_staller(run)
        if run.broker.alive():
            reproduce_tracebacks(run, watch)
            say("state checks")
            if run.security is not None:
                run.checks += security_end_checks(run)
            run.checks += state_checks.run(
                run.broker.address, found.expected_internal, found.existing,
                run.broker.restart if run.broker.own else None, run.tag)
            for check in run.checks:
                if not check.ok:
                    run.findings.add("state", f"state: {check.name}", check.detail,
                                     frame_hex=check.frame)
    finally:
        exit_status = run.broker.stop()
        watch.stop()
        finish_staller(run)
    run.info["broker_exit_status"] = exit_status
    result = report.build(run, watch.counts)
    report.write(result, options.out)
    print(report.markdown(result), flush=True)
    if not options.keep:
        shutil.rmtree(work_dir, ignore_errors=True)
    else:
        say(f"kept {work_dir}")
    return 1 if result["findings"] else 0


def main(options: Options) -> int:
    try:
        return execute(options)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 2
