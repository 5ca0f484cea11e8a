"""A CI-sized run of bench/streams_bench.py, strom side only (no peer environment): each
workload once, at-least-once and exactly-once between them, a few hundred records, one broker
for all, through the benchmark's own code (input, app process, output reader, latency phase,
check), so that the benchmark cannot rot unnoticed."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import streams_bench as sb  # noqa: E402

SETTINGS = sb.Settings(records=300, keys=10, latency_records=10, latency_rate=500,
                       run_timeout_s=30, stall_s=10, shared_broker=True,
                       rebalance_delay_ms=0, libs=("strom",))
CASES = [("map_filter", "at_least_once"), ("count", "exactly_once"),
         ("window_count", "at_least_once"), ("join", "exactly_once")]


@pytest.fixture(scope="module")
def setup() -> Iterator[tuple[sb.Broker, sb.Env, sb.Dataset, Path]]:
    with tempfile.TemporaryDirectory(prefix="streams-bench-smoke-") as tmp:
        root = Path(tmp)
        broker = sb.start_strom_broker(root, "memory", SETTINGS.rebalance_delay_ms)
        try:
            yield broker, sb.strom_env(), sb.make_dataset(SETTINGS), root
        finally:
            sb.stop_broker(broker)


@pytest.mark.parametrize(("workload", "guarantee"), CASES)
def test_strom_side_of_each_workload(setup: tuple[sb.Broker, sb.Env, sb.Dataset, Path],
                                     workload: str, guarantee: str) -> None:
    broker, env, data, root = setup
    result: dict[str, Any] = sb.run_one("strom", env, workload, guarantee, data, SETTINGS,
                                        root, f"smoke-{workload.replace('_', '')}", broker)
    check = result.get("check", {})
    assert "error" not in result, result
    assert result["records_per_s"] > 0
    assert result["latency_samples"] == SETTINGS.latency_records
    assert result["p50_ms"] <= result["p99_ms"]
    assert check["wrong"] == 0 and check["duplicates"] == 0, check
    assert check["latency_outputs_missing"] == 0, check
    # The join's tasks wait for their table partitions to catch up before the stream records
    # they precede (KIP-695): no join misses a row the table topic already holds.
    assert check["ok"], check
    if workload in sb.COUNTS:
        # one count per key (or window) at least, one per input at most: the record cache
        # writes a key's latest count at each commit
        assert data.expected["outputs"][workload] <= check["outputs"] <= SETTINGS.records
    else:
        assert check["outputs"] == data.expected["outputs"][workload]
