"""A CI-sized fuzzing run (about 25 s, fixed seed) against a fresh `strom serve`: no crash, no
hang, no traceback in the broker's log, every liveness round (consumer group, transactional
producer, admin calls) and every end-of-run state check (internal topics, coordinators on many
partitions, every topic deletable also after a restart) passes, no other finding, and the
broker's peak RSS stays bounded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # runs first: see tests/conftest.py

REPO = Path(__file__).resolve().parents[2]
SEED = 20_240_601
PEAK_RSS_KIB_MAX = 512 * 1024  # generous: the run's bombs decompress at most 16 MiB
ARGS = ["--duration", "16", "--workers", "3", "--seed", str(SEED),
        "--liveness-frames", "2500", "--liveness-deadline", "15",
        "--bomb-every", "3", "--tiny-records", "200000", "--idle-connections", "50",
        "--seeds-per-version", "6", "--replays-per-key", "2", "--progress-every", "10",
        "--broker-set", "fetch.max.wait.ms.cap=2000",
        "--broker-set", f"message.max.decompressed.bytes={16 * 2**20}"]


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("fuzz")
    run = subprocess.run([sys.executable, "-m", "bench.fuzz", *ARGS, "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=280, check=False)
    report = out / "fuzz-report.json"
    assert report.exists(), f"no report; exit {run.returncode}\n{run.stdout}\n{run.stderr}"
    loaded: dict[str, Any] = json.loads(report.read_text())
    loaded["_markdown"] = (out / "fuzz-report.md").read_text()
    loaded["_exit"] = run.returncode
    return loaded


def failed(checks: list[dict[str, Any]]) -> list[str]:
    return [f"{c['name']}: {c['detail']}" for c in checks if not c["ok"]]


def test_the_run_fuzzed(result: dict[str, Any]) -> None:
    outcomes = result["outcomes"]
    assert result["frames"] > 1000
    assert {"control", "mutated", "header", "produce-batch", "probe"} <= set(
        outcomes["categories"])
    assert outcomes["bombs"], "no compression bomb was sent"
    assert len(result["abuse"]) >= 13
    assert not outcomes["harness_errors"], outcomes["harness_errors"]


def test_no_crash_no_hang(result: dict[str, Any]) -> None:
    assert result["summary"]["crashes"] == 0
    assert result["summary"]["hangs"] == 0
    assert result["broker"]["exit_status"] == 0


def test_no_traceback_in_the_broker_log(result: dict[str, Any]) -> None:
    tracebacks = [f["title"] for f in result["findings"] if f["kind"] == "traceback"]
    assert result["log"]["tracebacks"] == 0, tracebacks


def test_liveness_held(result: dict[str, Any]) -> None:
    rounds = result["liveness"]
    assert len(rounds) >= 2
    assert not [(r["index"], failed(r["checks"])) for r in rounds if not r["ok"]]


def test_state_checks_passed(result: dict[str, Any]) -> None:
    checks = result["state_checks"]
    assert len(checks) >= 8
    assert not failed(checks)


def test_rss_bounded(result: dict[str, Any]) -> None:
    rss = result["rss_kib"]
    assert 0 < rss["vm_hwm"] < PEAK_RSS_KIB_MAX, rss


def test_no_finding(result: dict[str, Any]) -> None:
    findings = [f"[{f['kind']}] {f['title']}: {f['detail'][:300]} {f['frames'][:1]}"
                for f in result["findings"]]
    assert not findings, "\n".join(findings)
    assert result["_exit"] == 0
