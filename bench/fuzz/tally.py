"""Outcome accounting, shared by the worker threads: per category, per mutator or corruption,
per API key, plus the connection-level figures."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.fuzz.wire import OUTCOMES


@dataclass
class Replay:
    """A timeout replayed on a fresh connection."""

    api_key: int
    category: str
    outcome: str
    elapsed_s: float
    verdict: str  # "answered", "closed", "no answer due (acks=0)", "hang", ...


@dataclass
class Tally:
    categories: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    labels: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    apis: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    versions: set[tuple[int, int]] = field(default_factory=set)
    connections: int = 0
    preambles_sent: int = 0
    preambles_answered: int = 0
    correlation_mismatches: int = 0
    no_answer_due: int = 0
    harness_errors: dict[str, int] = field(default_factory=dict)
    bombs: list[dict[str, Any]] = field(default_factory=list)
    replays: list[Replay] = field(default_factory=list)
    # --security: outcomes per scenario, what the oracles saw (counts), and timings (seconds:
    # count, min, max, sum)
    scenarios: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    steps: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    sec_checks: Counter[str] = field(default_factory=Counter)
    sec_times: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def frame(self, category: str, labels: list[str], head: tuple[int, int, int] | None,
              outcome: str) -> None:
        with self._lock:
            self.categories[category][outcome] += 1
            for label in set(labels):
                self.labels[label][outcome] += 1
            if head is not None:
                self.apis[head[0]][outcome] += 1
                if outcome == "response":
                    self.versions.add((head[0], head[1]))

    def security_frame(self, category: str, scenario: str, step: str, labels: list[str],
                       head: tuple[int, int, int] | None, outcome: str) -> None:
        """A frame of a security worker: counted in its category (so in the total), its
        scenario and step, and its mutators (`labels`), if any."""
        with self._lock:
            self.categories[category][outcome] += 1
            self.scenarios[scenario][outcome] += 1
            self.steps[f"{scenario} {step}"][outcome] += 1
            for label in set(labels):
                self.labels[label][outcome] += 1
            if head is not None:
                self.apis[head[0]][outcome] += 1

    def check(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.sec_checks[what] += n

    def timing(self, what: str, seconds: float) -> None:
        with self._lock:
            found = self.sec_times.get(what)
            if found is None:
                self.sec_times[what] = [1, seconds, seconds, seconds]
            else:
                found[0] += 1
                found[1] = min(found[1], seconds)
                found[2] = max(found[2], seconds)
                found[3] += seconds

    def connection(self, preamble: bool, answered: bool) -> None:
        with self._lock:
            self.connections += 1
            self.preambles_sent += preamble
            self.preambles_answered += preamble and answered

    def harness_error(self, text: str) -> None:
        with self._lock:
            self.harness_errors[text[:200]] = self.harness_errors.get(text[:200], 0) + 1

    def mismatch(self) -> None:
        with self._lock:
            self.correlation_mismatches += 1

    def total(self) -> int:
        with self._lock:
            return sum(sum(c.values()) for c in self.categories.values())

    def outcome_totals(self) -> Counter[str]:
        with self._lock:
            totals: Counter[str] = Counter()
            for counts in self.categories.values():
                totals.update(counts)
            return totals

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "categories": {k: _full(v) for k, v in sorted(self.categories.items())},
                "labels": {k: _full(v) for k, v in sorted(self.labels.items())},
                "apis": {str(k): _full(v) for k, v in sorted(self.apis.items())},
                "versions_answered": len(self.versions),
                "connections": self.connections,
                "preambles_sent": self.preambles_sent,
                "preambles_answered": self.preambles_answered,
                "correlation_mismatches": self.correlation_mismatches,
                "no_answer_due": self.no_answer_due,
                "harness_errors": self.harness_errors,
                "bombs": self.bombs,
                "replays": [vars(r) for r in self.replays],
                "scenarios": {k: _full(v) for k, v in sorted(self.scenarios.items())},
                "steps": {k: _full(v) for k, v in sorted(self.steps.items())},
                "security_checks": dict(sorted(self.sec_checks.items())),
                "security_times": {k: {"count": int(v[0]), "min_s": round(v[1], 2),
                                       "max_s": round(v[2], 2),
                                       "mean_s": round(v[3] / v[0], 2)}
                                   for k, v in sorted(self.sec_times.items())},
            }


def _full(counts: Counter[str]) -> dict[str, int]:
    return {"frames": sum(counts.values()), **{o: counts.get(o, 0) for o in OUTCOMES}}
