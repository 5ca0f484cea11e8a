"""One fault run end to end: a LocalCluster on a PostgreSQL server (or pair), the workload
recording a history, the nemesis injecting faults, the workload's finish (drain and final
reads), and the checker's report. The CI test (tests/integration/test_cluster_faults.py) and
the soak (bench/fault_soak.py) are both this, at different sizes.

    result = run_faults(FaultRunConfig(brokers=3, faults=10, seed=1), postgres, work_dir)
    assert result.ok, result.render()

Faults are injected until at least `faults` were and at least `duration_s` passed; the
workload runs `settle_s` before the first fault and after the last.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from strom.testing.cluster import LocalCluster
from strom.testing.history_check import Report, check
from strom.testing.history_jsonl import HistoryRecorder, read_history
from strom.testing.nemesis import ALL_KINDS, Fault, FaultKind, Nemesis, random_schedule
from strom.testing.postgres import PostgresServer
from strom.testing.postgres_pair import PostgresPair
from strom.testing.workload import Workload, WorkloadConfig, WorkloadResult
from strom.testing.workload_worker import CLIENT_LOG

Progress = Callable[[str], None]
PROGRESS_EVERY_S: Final = 10.0
SCHEDULE_BATCH: Final = 50


@dataclass(frozen=True)
class FaultRunConfig:
    brokers: int = 3
    faults: int = 10
    duration_s: float = 0.0
    seed: int = 0
    kinds: tuple[FaultKind, ...] = ALL_KINDS
    session_timeout_ms: int = 3000
    heartbeat_interval_ms: int = 500
    settle_s: float = 3.0
    gap_s: tuple[float, float] = (2.0, 4.0)
    stall_limit_s: float = 30.0  # longer without any acknowledged write fails the run
    broker_settings: dict[str, str] = field(default_factory=dict)
    workload: WorkloadConfig = field(default_factory=lambda: WorkloadConfig(name="faults"))

    def cluster_settings(self) -> dict[str, str]:
        return {"broker.session.timeout.ms": str(self.session_timeout_ms),
                "broker.heartbeat.interval.ms": str(self.heartbeat_interval_ms),
                "group.initial.rebalance.delay.ms": "0", **self.broker_settings}


@dataclass(frozen=True)
class Stall:
    """A stretch without any acknowledged write: how long, from when (seconds into the run)."""

    seconds: float
    from_s: float

    def __str__(self) -> str:
        return f"{self.seconds:.0f} s from {self.from_s:.0f} s into the run"


@dataclass
class FaultRunResult:
    report: Report
    workload: WorkloadResult
    faults: list[Fault]
    elapsed_s: float
    work_dir: Path
    error: str | None = None  # the nemesis or cluster failure that cut the run short
    longest_stall: Stall | None = None
    stall_limit_s: float = 0.0

    @property
    def stalled(self) -> bool:
        """Whether writes stopped for longer than the limit (0: no limit)."""
        return (self.stall_limit_s > 0 and self.longest_stall is not None
                and self.longest_stall.seconds > self.stall_limit_s)

    @property
    def ok(self) -> bool:
        return (self.report.ok and not self.workload.problems and self.error is None
                and not self.stalled)

    def fault_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for fault in self.faults:
            counts[fault.kind.value] = counts.get(fault.kind.value, 0) + 1
        return counts

    def render(self) -> str:
        s = self.report.summary
        lines = [
            f"{len(self.faults)} faults in {self.elapsed_s:.0f} s: "
            + ", ".join(f"{k} {n}" for k, n in sorted(self.fault_counts().items())),
            f"acknowledged writes: {s.writes_acknowledged} (of {s.writes_attempted} attempted; "
            f"{s.writes_unknown} unknown, {s.writes_failed} failed); reads: {s.reads}",
            f"workload: {self.workload.counters}",
            "problems: " + ("; ".join(self.workload.problems) or "none"),
            f"longest stretch without an acknowledged write: {self.longest_stall or 'none'}"
            + (f" (over the {self.stall_limit_s:.0f} s limit)" if self.stalled else ""),
        ]
        if self.error is not None:
            lines.append(f"run cut short: {self.error}")
        lines += [self.report.render(), f"history and broker logs: {self.work_dir}"]
        if not self.ok:
            lines.append(broker_log_tails(self.work_dir))
        return "\n".join(lines)


def broker_log_tails(work_dir: Path, lines: int = 40) -> str:
    """The last `lines` lines of every broker log of a run, each headed by its file name."""
    tails = []
    for log in sorted(work_dir.glob("broker-*.log")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"--- {log.name}, last {len(text)} lines ---\n" + "\n".join(text))
    return "\n".join(tails)


def run_faults(config: FaultRunConfig, postgres: PostgresServer | PostgresPair,
               work_dir: Path, progress: Progress | None = None) -> FaultRunResult:
    """The whole run (see the module docstring); the history is `work_dir/history.jsonl`,
    the broker logs `work_dir/broker-N.log`, the clients' own log `work_dir/clients.log`."""
    say = progress or (lambda _line: None)
    started = time.monotonic()
    history = work_dir / "history.jsonl"
    with _client_log(work_dir / "clients.log"), \
            HistoryRecorder(history, keep=False) as recorder, \
            LocalCluster(postgres, brokers=config.brokers, settings=config.cluster_settings(),
                         log_dir=work_dir) as cluster:
        say(f"cluster of {config.brokers} up at {cluster.bootstrap_servers} "
            f"({time.monotonic() - started:.1f} s)")
        workload = Workload(config.workload, cluster.bootstrap_servers, recorder)
        workload.start()
        nemesis = Nemesis(cluster, recorder, gap_s=config.gap_s, seed=config.seed)
        reporter = _Reporter(say, started, workload, nemesis)
        error = _faults(config, cluster, nemesis, reporter, say)
        say("finishing the workload (drain, final reads)")
        try:
            result = workload.finish()
        except Exception as exc:  # the history so far is still checked
            result = WorkloadResult(False, 0, [f"finishing failed: {exc!r}"],
                                    workload.counters)
    say("checking the history")
    report = check(read_history(history))
    return FaultRunResult(report, result, list(nemesis.injected),
                          time.monotonic() - started, work_dir, error,
                          reporter.longest_stall, config.stall_limit_s)


def _faults(config: FaultRunConfig, cluster: LocalCluster, nemesis: Nemesis,
            reporter: _Reporter, say: Progress) -> str | None:
    """The fault phase, with progress lines; what cut it short, if anything did."""
    reporter.start()
    try:
        time.sleep(config.settle_s)
        _inject(config, cluster, nemesis)
        time.sleep(config.settle_s)
        return None
    except Exception as exc:  # the run goes on to its checks; the result says so
        say(f"faults stopped: {type(exc).__name__}: {exc}")
        return f"{type(exc).__name__}: {exc}"
    finally:
        reporter.stop()


def _inject(config: FaultRunConfig, cluster: LocalCluster, nemesis: Nemesis) -> None:
    """Faults, drawn a batch at a time, until at least `faults` were injected and
    `duration_s` passed."""
    deadline = time.monotonic() + config.duration_s

    def done() -> bool:
        return len(nemesis.injected) >= config.faults and time.monotonic() >= deadline

    batch = 0
    while not done():
        schedule = random_schedule(
            seed=config.seed * 1000 + batch, count=SCHEDULE_BATCH, brokers=cluster.node_ids,
            session_timeout_s=config.session_timeout_ms / 1000,
            can_fail_over=cluster.can_fail_over, kinds=config.kinds)
        batch += 1
        nemesis.run(schedule, done=done)


@contextmanager
def _client_log(path: Path) -> Iterator[None]:
    """The clients' librdkafka log lines into `path` for the run, not to stderr."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    level = CLIENT_LOG.level
    CLIENT_LOG.addHandler(handler)
    CLIENT_LOG.setLevel(logging.DEBUG)  # what librdkafka's `debug` contexts ask for, too
    CLIENT_LOG.propagate = False
    try:
        yield
    finally:
        CLIENT_LOG.removeHandler(handler)
        CLIENT_LOG.setLevel(level)
        CLIENT_LOG.propagate = True
        handler.close()


class _Reporter:
    """Watches the workload once a second: a progress line every PROGRESS_EVERY_S (time,
    faults, the workload's counts), and the longest stretch in which no write was
    acknowledged (a cluster that stops serving after a fault is healed is a bug even when
    nothing it did serve is wrong)."""

    def __init__(self, say: Progress, started: float, workload: Workload,
                 nemesis: Nemesis) -> None:
        self.say, self.started, self.workload, self.nemesis = say, started, workload, nemesis
        self.longest_stall: Stall | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-run-progress",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        acked, since = -1, time.monotonic()
        next_line = time.monotonic() + PROGRESS_EVERY_S
        while not self._stop.wait(1.0):
            now, c = time.monotonic(), self.workload.counters
            if c.get("acknowledged", 0) != acked:
                acked, since = c.get("acknowledged", 0), now
            elif self.longest_stall is None or now - since > self.longest_stall.seconds:
                self.longest_stall = Stall(now - since, since - self.started)
            if now >= next_line:
                next_line += PROGRESS_EVERY_S
                self.say(self._line(now, c))

    def _line(self, now: float, c: dict[str, int]) -> str:
        return (f"[{now - self.started:6.0f} s] faults {len(self.nemesis.injected)} "
                f"{self.nemesis.counts()}; acknowledged {c.get('acknowledged', 0)}, unknown "
                f"{c.get('unknown', 0)}, read {c.get('read', 0)}, txn committed "
                f"{c.get('txn_committed', 0)} aborted {c.get('txn_aborted', 0)} unknown "
                f"{c.get('txn_commit_unknown', 0)}, clients replaced "
                f"{c.get('clients_replaced', 0)}")
