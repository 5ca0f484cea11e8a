"""What an application measures, by Kafka Streams' metric names: per thread the records
processed (total and rate), commits (count, average and largest latency), polls; per task the
records processed and dropped and the input lag (records between the position and the end
of each input partition); restoration (records and time). `StreamsApp.metrics()` gives a
snapshot as plain dicts (operations tooling exposes them as Prometheus metrics)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

RATE_WINDOW_S = 30.0


@dataclass
class ThreadMetrics:
    process_total: int = 0
    poll_total: int = 0
    commit_total: int = 0
    commit_time_total_s: float = 0.0
    commit_time_max_s: float = 0.0
    restore_total: int = 0
    restore_time_total_s: float = 0.0
    _samples: deque[tuple[float, int]] = field(default_factory=deque)
    cache: Any = None  # the thread's record cache (strom.streams.stores.caching), if any

    def processed(self, count: int) -> None:
        self.process_total += count
        now = time.monotonic()
        self._samples.append((now, self.process_total))
        while self._samples and now - self._samples[0][0] > RATE_WINDOW_S:
            self._samples.popleft()

    def committed(self, seconds: float) -> None:
        self.commit_total += 1
        self.commit_time_total_s += seconds
        self.commit_time_max_s = max(self.commit_time_max_s, seconds)

    def process_rate(self) -> float:
        """Records per second over the last RATE_WINDOW_S seconds."""
        if len(self._samples) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def snapshot(self) -> dict[str, Any]:
        average = self.commit_time_total_s / self.commit_total if self.commit_total else 0.0
        return {"process-total": self.process_total, "process-rate": self.process_rate(),
                "poll-total": self.poll_total, "commit-total": self.commit_total,
                "commit-latency-avg-ms": average * 1000,
                "commit-latency-max-ms": self.commit_time_max_s * 1000,
                "restore-total": self.restore_total,
                "restore-time-total-ms": self.restore_time_total_s * 1000,
                **(self.cache.snapshot() if self.cache is not None else {})}
