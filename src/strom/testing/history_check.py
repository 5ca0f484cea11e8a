"""`check(history) -> Report`: every check over a recorded history (docs/testing.md).

    report = check(read_history("soak.jsonl"))
    assert report.ok, report.render()

The report counts what the history holds (writes attempted, acknowledged, failed, unknown;
reads; transactions) and lists anomalies by kind, each with its explanation and excerpt.
`render()` prints at most `per_kind` anomalies of each kind: a systematic bug in a long soak
finds thousands, and the first few say what it is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from strom.testing.history import Event, ProduceAcked, ProduceFailed, describe
from strom.testing.history_index import Anomaly, AnomalyKind, HistoryIndex, build_index
from strom.testing.history_jsonl import read_history
from strom.testing.history_log_checks import (
    duplicates,
    final_read_order,
    inconsistent_offsets,
    lost_writes,
    phantom_reads,
    reorders,
    written_values,
)
from strom.testing.history_txn_checks import (
    aborted_reads,
    consume_transform_produce,
    offsets_backwards,
)

Check = Callable[[HistoryIndex], list[Anomaly]]
CHECKS: tuple[Check, ...] = (
    lost_writes,
    duplicates,
    reorders,
    inconsistent_offsets,
    final_read_order,
    phantom_reads,
    aborted_reads,
    offsets_backwards,
    consume_transform_produce,
)


@dataclass(frozen=True, slots=True)
class Summary:
    events: int
    writes_attempted: int
    writes_acknowledged: int
    writes_failed: int
    writes_unknown: int  # no answer that settles it: a timeout, or no answer recorded at all
    reads: int
    values_read: int
    final_reads: int
    transactions: dict[str, int]  # committed, aborted, commit_unknown, open


@dataclass(frozen=True, slots=True)
class Report:
    summary: Summary
    anomalies: tuple[Anomaly, ...]

    @property
    def ok(self) -> bool:
        return not self.anomalies

    def by_kind(self) -> dict[AnomalyKind, list[Anomaly]]:
        kinds: dict[AnomalyKind, list[Anomaly]] = {}
        for a in self.anomalies:
            kinds.setdefault(a.kind, []).append(a)
        return kinds

    def counts(self) -> dict[str, int]:
        """Anomalies by kind, every kind listed (0 for none)."""
        found = Counter(a.kind for a in self.anomalies)
        return {kind.value: found[kind] for kind in AnomalyKind}

    def render(self, per_kind: int = 5) -> str:
        s = self.summary
        lines = [
            f"history: {s.events} events; writes: {s.writes_attempted} attempted, "
            f"{s.writes_acknowledged} acknowledged, {s.writes_failed} failed, "
            f"{s.writes_unknown} unknown; reads: {s.reads} ({s.values_read} values), "
            f"{s.final_reads} final",
            "transactions: " + ", ".join(f"{k} {v}" for k, v in s.transactions.items()),
            "anomalies: " + (", ".join(f"{k} {n}" for k, n in self.counts().items() if n)
                             or "none"),
        ]
        for kind, found in self.by_kind().items():
            lines.append(f"\n{kind.value} ({len(found)}):")
            for a in found[:per_kind]:
                lines.append(f"  - {a.explanation}")
                lines.extend(f"      #{e.index} {describe(e.event)}" for e in a.excerpt)
            if len(found) > per_kind:
                lines.append(f"  ... and {len(found) - per_kind} more")
        return "\n".join(lines)


def check(history: Iterable[Event]) -> Report:
    ix = build_index(history)
    anomalies = tuple(a for one_check in CHECKS for a in one_check(ix))
    return Report(summarize(ix), anomalies)


def check_file(path: str | Path) -> Report:
    """Checks a JSON-lines history file (history_jsonl)."""
    return check(read_history(path))


def summarize(ix: HistoryIndex) -> Summary:
    outcomes = Counter(type(o.event) for o in ix.outcomes.values())
    attempted = len(written_values(ix))
    settled = outcomes[ProduceAcked] + outcomes[ProduceFailed]
    ends = Counter(type(e.event).__name__ for e in ix.txn_ends.values())
    txns = set(ix.txn_begun) | set(ix.txn_ends)
    txns |= {a.event.txn for a in ix.attempts.values() if a.event.txn is not None}
    return Summary(
        events=len(ix.events),
        writes_attempted=attempted,
        writes_acknowledged=outcomes[ProduceAcked],
        writes_failed=outcomes[ProduceFailed],
        writes_unknown=attempted - settled,
        reads=len(ix.reads),
        values_read=len(ix.reads_by_value),
        final_reads=sum(len(f) for f in ix.final_reads.values()),
        transactions={
            "committed": ends["TxnCommitted"],
            "aborted": ends["TxnAborted"],
            "commit_unknown": ends["TxnCommitUnknown"],
            "open": len(txns) - len(ix.txn_ends.keys() & txns),
        },
    )
